/**
 * Campaigns over the admin HTTP API, with devices reporting over HTTP: group
 * selection, waves gated by the success ratio, halt and override, pause and
 * resume, abort cancelling pending assignments; waves launched in chunks of
 * their own transactions, which pause and abort stop.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { AsyncLocalStorage } from 'node:async_hooks';
import { utf8, type TargetFile } from '@upfleet/core';
import { harness, SimDevice, type Harness } from './testing/harness.ts';

describe('campaigns', () => {
  let h: Harness;
  let info: TargetFile;
  before(async () => {
    h = await harness();
    info = h.imageRepo.addImage('brake-9.bin', utf8('brake nine'), ['brake'], 9);
  });
  after(() => h.close());

  /** Registers n devices tagged `tag`, each with a first manifest. */
  async function fleet(tag: string, n: number): Promise<Map<string, SimDevice>> {
    const devices = new Map<string, SimDevice>();
    for (let i = 0; i < n; i++) {
      const d = new SimDevice(`${tag}-${i}`);
      await h.register(d, [tag]);
      assert.equal((await h.send(d, d.manifest())).status, 200);
      devices.set(d.id, d);
    }
    return devices;
  }

  async function create(tag: string, extra: Record<string, unknown> = {}) {
    const r = await h.admin('POST', '/api/v1/admin/campaigns', { name: tag, images: [{ hardwareId: 'brake', image: 'brake-9.bin' }], tags: [tag], ...extra });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return r.body.id as string;
  }

  const status = async (id: string) => (await h.admin('GET', `/api/v1/admin/campaigns/${id}`)).body;

  /** The devices of the campaign whose assignment is open. */
  async function openDevices(id: string, devices: Map<string, SimDevice>): Promise<SimDevice[]> {
    const out: SimDevice[] = [];
    for (const d of devices.values()) {
      const as = (await h.admin('GET', `/api/v1/admin/devices/${d.id}/assignments`)).body.assignments;
      if (as.some((a: any) => a.campaignId === id && ['pending', 'downloading', 'installing'].includes(a.status))) out.push(d);
    }
    return out;
  }

  async function succeed(d: SimDevice) {
    d.install('brake', 'brake-9.bin', info, 9);
    assert.equal((await h.send(d, d.manifest())).status, 200);
  }

  async function fail(d: SimDevice) {
    const v = (await h.admin('GET', `/api/v1/admin/devices/${d.id}`)).body.metadata.targetsVersion;
    const r = await h.send(d, d.manifest({ installationResult: { directorTargetsVersion: v, success: false, code: 'INSTALL_FAILED', description: 'flash error',
      ecus: [{ ecuSerial: d.ecu('brake').serial, success: false, code: 'INSTALL_FAILED', description: 'flash error' }] } }));
    assert.equal(r.status, 200);
  }

  it('rolls out in waves, each gated by the success ratio, to the tagged group only', async () => {
    const devices = await fleet('wave', 10);
    await h.register(new SimDevice('wave-untagged')); // not in the group
    const id = await create('wave', { waves: [10, 50, 100], successThreshold: 0.8 });
    assert.equal((await status(id)).status, 'draft');
    let s = (await h.admin('POST', `/api/v1/admin/campaigns/${id}/start`)).body;
    assert.equal(s.devices.length, 10);
    assert.ok(!s.devices.includes('wave-untagged'));
    assert.deepEqual([s.currentWave, s.counts.pending, s.counts.waiting], [1, 1, 9]);

    const first = await openDevices(id, devices);
    assert.equal(first.length, 1);
    await h.api('POST', `/api/v1/devices/${first[0]!.id}/progress`, { state: 'downloading' }, first[0]!.headers());
    assert.equal((await status(id)).counts.downloading, 1);
    await succeed(first[0]!);
    s = await status(id);
    assert.deepEqual([s.currentWave, s.counts.succeeded, s.counts.pending, s.counts.waiting], [2, 1, 4, 5]);

    const second = await openDevices(id, devices);
    assert.equal(second.length, 4);
    await fail(second[0]!);
    for (const d of second.slice(1, 3)) await succeed(d);
    assert.equal((await status(id)).currentWave, 2, 'the wave is not over until every device is done');
    await succeed(second[3]!);
    s = await status(id); // 4 of 5 succeeded = 0.8
    assert.deepEqual([s.currentWave, s.counts.succeeded, s.counts.failed, s.counts.pending], [3, 4, 1, 5]);
    // Per device, in rollout order: wave 1 is 1 device, wave 2 four more, wave 3 the last five.
    const perDevice = s.deviceStatus as Array<{ deviceId: string; wave: number; status: string; errorCode: string | null; assignmentId: string | null }>;
    assert.deepEqual(perDevice.map((d) => d.deviceId), s.devices);
    assert.deepEqual(perDevice.map((d) => d.wave), [1, 2, 2, 2, 2, 3, 3, 3, 3, 3]);
    assert.equal(perDevice[0]!.deviceId, first[0]!.id);
    assert.equal(perDevice[0]!.status, 'succeeded');
    const failed = perDevice.find((d) => d.deviceId === second[0]!.id)!;
    assert.deepEqual([failed.wave, failed.status, failed.errorCode], [2, 'failed', 'INSTALL_FAILED']);
    assert.deepEqual(perDevice.slice(5).map((d) => d.status), ['pending', 'pending', 'pending', 'pending', 'pending']);
    assert.ok(perDevice.every((d) => d.assignmentId !== null));
    for (const d of await openDevices(id, devices)) await succeed(d);
    s = await status(id);
    assert.equal(s.status, 'completed');
    assert.deepEqual([s.counts.succeeded, s.counts.failed, s.counts.waiting], [9, 1, 0]);
  });

  it('halts below the threshold; resume overrides the gate', async () => {
    const devices = await fleet('gate', 4);
    const id = await create('gate', { waves: [25, 100], successThreshold: 1 });
    await h.admin('POST', `/api/v1/admin/campaigns/${id}/start`);
    const [only] = await openDevices(id, devices);
    await fail(only!);
    let s = await status(id);
    assert.equal(s.status, 'halted');
    assert.match(s.reason, /below 1/);
    assert.equal(s.counts.waiting, 3);
    s = (await h.admin('POST', `/api/v1/admin/campaigns/${id}/resume`)).body;
    assert.deepEqual([s.status, s.currentWave, s.counts.pending], ['running', 2, 3]);
  });

  it('pause stops new waves, resume continues', async () => {
    const devices = await fleet('pause', 2);
    const id = await create('pause', { waves: [50, 100], successThreshold: 0.5 });
    await h.admin('POST', `/api/v1/admin/campaigns/${id}/start`);
    assert.equal((await h.admin('POST', `/api/v1/admin/campaigns/${id}/pause`)).body.status, 'paused');
    const [d] = await openDevices(id, devices);
    await succeed(d!);
    let s = await status(id);
    assert.deepEqual([s.status, s.currentWave, s.counts.waiting], ['paused', 1, 1]);
    assert.equal((await h.admin('POST', `/api/v1/admin/campaigns/${id}/pause`)).status, 409);
    s = (await h.admin('POST', `/api/v1/admin/campaigns/${id}/resume`)).body;
    assert.deepEqual([s.status, s.currentWave, s.counts.pending], ['running', 2, 1]);
  });

  it('abort cancels pending assignments and drops them from device targets', async () => {
    const devices = await fleet('abort', 3);
    const id = await create('abort', { waves: [100] });
    await h.admin('POST', `/api/v1/admin/campaigns/${id}/start`);
    const [busy, ...idle] = await openDevices(id, devices);
    await h.api('POST', `/api/v1/devices/${busy!.id}/progress`, { state: 'installing' }, busy!.headers());
    assert.ok((await h.admin('GET', `/api/v1/admin/devices/${idle[0]!.id}`)).body.targets['brake-9.bin']);
    const s = (await h.admin('POST', `/api/v1/admin/campaigns/${id}/abort`)).body;
    assert.deepEqual([s.status, s.counts.cancelled, s.counts.installing], ['aborted', 2, 1]);
    assert.deepEqual((await h.admin('GET', `/api/v1/admin/devices/${idle[0]!.id}`)).body.targets, {});
    assert.ok((await h.admin('GET', `/api/v1/admin/devices/${busy!.id}`)).body.targets['brake-9.bin'], 'an install in flight keeps its target');
    assert.equal((await h.admin('POST', `/api/v1/admin/campaigns/${id}/resume`)).status, 409);
  });

  it('carries on after a director restart', async () => {
    const devices = await fleet('restart', 2);
    const id = await create('restart', { waves: [50, 100], successThreshold: 1 });
    await h.admin('POST', `/api/v1/admin/campaigns/${id}/start`);
    const before = await status(id);
    await h.restart();
    assert.deepEqual(await status(id), before);
    const [first] = await openDevices(id, devices);
    await succeed(first!);
    const s = await status(id);
    assert.deepEqual([s.currentWave, s.counts.succeeded, s.counts.pending], [2, 1, 1]);
    const [second] = await openDevices(id, devices);
    assert.notEqual(second!.id, first!.id);
    assert.ok((await h.admin('GET', `/api/v1/admin/devices/${second!.id}`)).body.targets['brake-9.bin']);
  });

  it('refuses to create a campaign whose image the image repository lacks, or lists for other hardware, storing nothing', async () => {
    const before = (await h.admin('GET', '/api/v1/admin/campaigns')).body.campaigns.length;
    const ghost = await h.admin('POST', '/api/v1/admin/campaigns', { name: 'ghost', images: [{ hardwareId: 'brake', image: 'ghost.bin' }] });
    assert.equal(ghost.status, 422, JSON.stringify(ghost.body));
    assert.deepEqual([ghost.body.error.code, ghost.body.error.field, ghost.body.error.image], ['ASSIGNMENT_REFUSED', 'missing', 'ghost.bin']);
    const wrongHardware = await h.admin('POST', '/api/v1/admin/campaigns', { name: 'gw', images: [{ hardwareId: 'gw', image: 'brake-9.bin' }] });
    assert.equal(wrongHardware.status, 422);
    assert.deepEqual([wrongHardware.body.error.field, wrongHardware.body.error.image], ['hardwareId', 'brake-9.bin']);
    assert.match(wrongHardware.body.error.message, /not for hardware gw/);
    assert.equal((await h.admin('GET', '/api/v1/admin/campaigns')).body.campaigns.length, before);
  });

  it('refuses bad campaign specs', async () => {
    for (const body of [{ name: 'x', images: [] }, { name: 'x', images: [{ hardwareId: 'a', image: 'b' }], waves: [50, 40, 100] },
      { name: 'x', images: [{ hardwareId: 'a', image: 'b' }], waves: [10, 50] }, { name: 'x', images: [{ hardwareId: 'a', image: 'b' }], successThreshold: 2 }]) {
      assert.equal((await h.admin('POST', '/api/v1/admin/campaigns', body)).status, 400, JSON.stringify(body));
    }
  });
});

describe('campaign waves launched in chunks', () => {
  const CHUNK = 3;
  let h: Harness;
  let info: TargetFile;
  before(async () => {
    h = await harness({ campaignLaunchChunk: CHUNK });
    info = h.imageRepo.addImage('brake-9.bin', utf8('brake nine'), ['brake'], 9);
  });
  after(() => h.close());

  async function fleet(tag: string, n: number): Promise<SimDevice[]> {
    const devices: SimDevice[] = [];
    for (let i = 0; i < n; i++) {
      const d = new SimDevice(`${tag}-${i}`);
      await h.register(d, [tag]);
      assert.equal((await h.send(d, d.manifest())).status, 200);
      devices.push(d);
    }
    return devices;
  }

  async function create(tag: string, waves: number[]): Promise<string> {
    const r = await h.admin('POST', '/api/v1/admin/campaigns', { name: tag, images: [{ hardwareId: 'brake', image: 'brake-9.bin' }], tags: [tag], waves, successThreshold: 1 });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return r.body.id;
  }

  async function start(id: string): Promise<void> {
    const r = await h.admin('POST', `/api/v1/admin/campaigns/${id}/start`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
  }

  /** Each device's assignments of the campaign. */
  async function assignmentsOf(id: string, devices: SimDevice[]) {
    const s = h.director.services;
    return Promise.all(devices.map(async (d) => (await s.store.assignmentsOf(d.id)).filter((a) => a.campaignId === id)));
  }

  it('launches a wave larger than the chunk in several transactions, each device once', async () => {
    const devices = await fleet('chunks', 8);
    const s = h.director.services;
    const store = s.store;
    // The campaign's assignments created by each outermost transaction, in commit order.
    const perTransaction: Array<{ n: number }> = [];
    const tx = new AsyncLocalStorage<{ n: number }>();
    const { transaction, insertAssignment } = store;
    store.transaction = <T>(fn: () => Promise<T>): Promise<T> => (tx.getStore() ? transaction.call(store, fn) : transaction.call(store, () => {
      const bucket = { n: 0 };
      perTransaction.push(bucket);
      return tx.run(bucket, fn);
    })) as Promise<T>;
    store.insertAssignment = (a) => {
      if (a.campaignId !== null) tx.getStore()!.n++;
      return insertAssignment.call(store, a);
    };
    // What the MQTT bus would be told (this director runs without MQTT): devices, after each commit.
    const notified: string[] = [];
    s.ctx.notifier = (deviceId) => notified.push(deviceId);
    try {
      const id = await create('chunks', [25, 100]);
      await start(id);
      await s.campaigns.launchesIdle();
      assert.deepEqual(perTransaction.map((b) => b.n).filter((n) => n > 0), [2], 'wave 1 (2 devices) in the start transaction');
      const assigned = await assignmentsOf(id, devices);
      for (const d of devices.filter((_, i) => assigned[i]!.length > 0)) {
        d.install('brake', 'brake-9.bin', info, 9);
        assert.equal((await h.send(d, d.manifest())).status, 200);
      }
      await s.campaigns.launchesIdle();
      // Wave 2 (6 devices): its first chunk in the manifest commit that passed the gate, the rest in one more.
      assert.deepEqual(perTransaction.map((b) => b.n).filter((n) => n > 0), [2, CHUNK, CHUNK]);
      assert.deepEqual((await assignmentsOf(id, devices)).map((as) => as.length), devices.map(() => 1), 'every device assigned exactly once');
      const c = (await h.admin('GET', `/api/v1/admin/campaigns/${id}`)).body;
      assert.deepEqual([c.currentWave, c.launchedCount, c.counts.succeeded, c.counts.pending, c.counts.waiting], [2, 8, 2, 6, 0]);
      // Every device was told of its new targets, those launched after the opening commit too.
      for (const d of devices) assert.ok((await h.admin('GET', `/api/v1/admin/devices/${d.id}`)).body.targets['brake-9.bin'], d.id);
      assert.deepEqual(devices.filter((d) => !notified.includes(d.id)).map((d) => d.id), []);
    } finally {
      s.ctx.notifier = undefined;
      delete (store as Partial<typeof store>).transaction;
      delete (store as Partial<typeof store>).insertAssignment;
    }
  });

  /**
   * Starts a one-wave campaign of 8 devices and holds its launch inside the second chunk
   * until `during` has queued its change (the SQLite store runs transactions in turn, so the
   * change waits for that chunk, and the launch's next chunk for the change).
   */
  async function interruptLaunch(tag: string, during: (id: string) => Promise<unknown>) {
    const devices = await fleet(tag, 8);
    const s = h.director.services;
    const store = s.store;
    const { hasCampaignAssignment } = store;
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let reached!: () => void;
    const holding = new Promise<void>((r) => (reached = r));
    let checks = 0;
    store.hasCampaignAssignment = async (campaignId, deviceId) => {
      if (++checks === CHUNK + 1) {
        reached();
        await held;
      }
      return hasCampaignAssignment.call(store, campaignId, deviceId);
    };
    const id = await create(tag, [100]);
    try {
      // Not awaited before the hold: the answer's status read waits for the held transaction.
      const started = start(id);
      await holding;
      const change = during(id);
      await new Promise((r) => setTimeout(r, 100));
      release();
      await Promise.all([started, change]);
      await s.campaigns.launchesIdle();
    } finally {
      delete (store as Partial<typeof store>).hasCampaignAssignment;
    }
    return { id, devices };
  }

  it('pause stops the launch after the chunk in progress; resume finishes it', async () => {
    const s = h.director.services;
    const { id, devices } = await interruptLaunch('chunk-pause', (id) => s.campaigns.pause(id));
    let c = (await h.admin('GET', `/api/v1/admin/campaigns/${id}`)).body;
    assert.deepEqual([c.status, c.launchedCount, c.counts.pending, c.counts.waiting], ['paused', 2 * CHUNK, 2 * CHUNK, 8 - 2 * CHUNK]);
    c = (await h.admin('POST', `/api/v1/admin/campaigns/${id}/resume`)).body;
    assert.equal(c.status, 'running');
    await s.campaigns.launchesIdle();
    c = (await h.admin('GET', `/api/v1/admin/campaigns/${id}`)).body;
    assert.deepEqual([c.launchedCount, c.counts.pending, c.counts.waiting], [8, 8, 0]);
    assert.deepEqual((await assignmentsOf(id, devices)).map((as) => as.length), devices.map(() => 1));
  });

  it('abort stops the launch after the chunk in progress and cancels what it launched', async () => {
    const s = h.director.services;
    const { id, devices } = await interruptLaunch('chunk-abort', (id) => s.campaigns.abort(id));
    const c = (await h.admin('GET', `/api/v1/admin/campaigns/${id}`)).body;
    // The abort waited for the chunk in progress, then cancelled its assignments with the first chunk's.
    assert.deepEqual([c.status, c.launchedCount, c.counts.cancelled, c.counts.pending, c.counts.waiting], ['aborted', 2 * CHUNK, 2 * CHUNK, 0, 8 - 2 * CHUNK]);
    const launched = (await assignmentsOf(id, devices)).map((as) => as.length);
    assert.deepEqual([launched.filter((n) => n === 1).length, launched.filter((n) => n > 1).length], [2 * CHUNK, 0]);
  });

  it('a launch cut short (its process gone) is resumed by the periodic sweep', async () => {
    const s = h.director.services;
    const { id, devices } = await interruptLaunch('chunk-sweep', (id) => s.campaigns.pause(id));
    // As a process killed after two chunks leaves it: running, its launch incomplete, nobody launching.
    await s.store.transaction(() => s.store.updateCampaign(id, { status: 'running' }));
    let c: any;
    const deadline = Date.now() + 10_000;
    do {
      await new Promise((r) => setTimeout(r, 100));
      c = (await h.admin('GET', `/api/v1/admin/campaigns/${id}`)).body;
    } while (c.launchedCount < 8 && Date.now() < deadline);
    await s.campaigns.launchesIdle();
    assert.deepEqual([c.status, c.launchedCount, c.counts.pending, c.counts.waiting], ['running', 8, 8, 0]);
    assert.deepEqual((await assignmentsOf(id, devices)).map((as) => as.length), devices.map(() => 1));
  });
});
