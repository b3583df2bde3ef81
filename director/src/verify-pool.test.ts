/**
 * Ingestion through the verify pool on the real paths: hostile manifests over
 * HTTP and MQTT (embedded broker and the machine's Mosquitto) are refused with
 * the same typed errors as the inline checks give, and change nothing; group
 * commit keeps the good manifests of a batch that holds a bad one; a verify
 * worker killed mid-check never lets a manifest through unverified.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Ed25519Signer, signEcuReport, signVehicleManifest, utf8, type SignedVehicleManifest } from '@upfleet/core';
import { harness, SimDevice, type Harness } from './testing/harness.ts';
import { deviceClient, type DeviceClient } from './testing/mqtt-device.ts';
import { ManifestRejectedError, VerifierUnavailableError } from './errors.ts';
import { VerifyPool } from './verify-pool.ts';
import { GroupCommit } from './group-commit.ts';
import type { DirectorStore } from './store.ts';

const MOSQUITTO = 'mqtt://127.0.0.1:1883';

/** The four hostile manifests of a device whose manifest `accepted` was accepted last. */
function hostile(d: SimDevice, accepted: SignedVehicleManifest): Array<[name: string, manifest: SignedVehicleManifest]> {
  const brake = d.ecu('brake');
  const forgedReport = signEcuReport(d.manifest({ counter: 10_000 }).signed.ecuVersionReports[brake.serial]!.signed, Ed25519Signer.generate());
  const badEcu = d.manifest({ reports: { [brake.serial]: forgedReport } });
  const badVehicle = signVehicleManifest(d.manifest().signed, Ed25519Signer.generate());
  const tampered: SignedVehicleManifest = JSON.parse(JSON.stringify(d.manifest()));
  tampered.signed.ecuVersionReports[brake.serial]!.signed.installedImage!.filename = 'evil.bin';
  return [['bad ECU signature', badEcu], ['bad vehicle signature', badVehicle], ['replay', accepted], ['tampered', tampered]];
}

/** Counts the store's outermost transactions (not their savepoints) until stop(). */
function countTransactions(store: DirectorStore) {
  const transaction = store.transaction.bind(store);
  const db = (store as unknown as { db: { inTransaction(): boolean } }).db;
  const counter = { count: 0, stop: () => void (store.transaction = transaction) };
  store.transaction = (fn) => {
    if (!db.inTransaction()) counter.count++;
    return transaction(fn);
  };
  return counter;
}

/** What an admin sees of the device, but its security event log. */
async function state(h: Harness, id: string) {
  const { events: _e, ...rest } = (await h.admin('GET', `/api/v1/admin/devices/${id}`)).body;
  return { rest, manifests: (await h.admin('GET', `/api/v1/admin/devices/${id}/manifests?limit=100`)).body.manifests };
}

/** The refusal of each hostile manifest over HTTP, as { status, code, fields }. */
async function refusalsOverHttp(h: Harness, tag: string) {
  const d = new SimDevice(`${tag}-http`, ['gw', 'brake']);
  await h.register(d);
  const first = d.manifest();
  assert.equal((await h.send(d, first)).status, 200);
  const before = await state(h, d.id);
  const out: Record<string, unknown> = {};
  for (const [name, m] of hostile(d, first)) {
    const r = await h.send(d, m);
    const { message: _m, deviceId: _d, ...fields } = r.body.error;
    out[name] = { status: r.status, ...fields };
  }
  assert.deepEqual(await state(h, d.id), before, 'nothing changed');
  return out;
}

describe('ingestion through the verify pool', () => {
  let pooled: Harness;
  let inline: Harness;
  const prefix = `t${randomBytes(4).toString('hex')}/v1`;
  before(async () => {
    [pooled, inline] = await Promise.all([harness({ verifyWorkers: 2, mqtt: 'embedded', mqttPrefix: prefix }), harness({ verifyWorkers: 0, mqtt: 'none' })]);
  });
  after(async () => {
    await Promise.all([pooled?.close(), inline?.close()]);
  });

  it('runs on workers when asked, inline at size 0', () => {
    assert.equal((pooled.director.services.manifests.verifier as VerifyPool).size, 2);
    assert.equal((inline.director.services.manifests.verifier as VerifyPool).size, 0);
  });

  it('over HTTP refuses each hostile manifest with the same typed error as inline checks, changing nothing', async () => {
    const viaPool = await refusalsOverHttp(pooled, 'adv');
    const viaInline = await refusalsOverHttp(inline, 'adv');
    assert.deepEqual(viaPool, viaInline);
    assert.deepEqual(Object.values(viaPool).map((r: any) => [r.status, r.code]), [
      [422, 'BAD_ECU_SIGNATURE'], [422, 'BAD_SIGNATURE'], [409, 'MANIFEST_REPLAY'], [422, 'BAD_SIGNATURE'],
    ]);
  });

  const overMqtt = async (h: Harness, url: string, topicPrefix: string, auth: boolean, tag: string) => {
    const d = new SimDevice(`${tag}-mqtt`, ['gw', 'brake']);
    await h.register(d);
    // The embedded broker wants the device ID as client ID; on Mosquitto, one of its own.
    const dc: DeviceClient = await deviceClient(url, topicPrefix, d, { auth, ...(!auth && { clientId: `${d.id}-${randomBytes(3).toString('hex')}` }) });
    try {
      const send = async (m: SignedVehicleManifest) => {
        await dc.client.publishAsync(`${topicPrefix}/devices/${d.id}/manifest`, JSON.stringify(m), { qos: 1 });
        return dc.next('ack', 10_000);
      };
      const first = d.manifest();
      assert.equal((await send(first)).accepted, true);
      const before = await state(h, d.id);
      const codes: string[] = [];
      for (const [, m] of hostile(d, first)) {
        const ack = await send(m);
        assert.equal(ack.accepted, false);
        codes.push(ack.code);
      }
      assert.deepEqual(await state(h, d.id), before, 'nothing changed');
      // And a good one still goes through afterwards.
      assert.equal((await send(d.manifest())).accepted, true);
      return codes;
    } finally {
      dc.client.end(true);
    }
  };
  const EXPECTED = ['BAD_ECU_SIGNATURE', 'BAD_SIGNATURE', 'MANIFEST_REPLAY', 'BAD_SIGNATURE'];

  it('over MQTT (embedded broker) refuses each hostile manifest with the same codes, changing nothing', async () => {
    assert.deepEqual(await overMqtt(pooled, pooled.director.mqttUrl!, prefix, true, 'adv-emb'), EXPECTED);
  });

  it('over MQTT (Mosquitto) refuses each hostile manifest with the same codes, changing nothing', async () => {
    const mprefix = `t${randomBytes(4).toString('hex')}/v1`;
    const h = await harness({ verifyWorkers: 2, mqtt: { url: MOSQUITTO, sessionExpirySeconds: 30 }, mqttPrefix: mprefix });
    try {
      assert.deepEqual(await overMqtt(h, MOSQUITTO, mprefix, false, 'adv-mos'), EXPECTED);
    } finally {
      await h.close();
    }
  });

  it('commits the good manifests of a batch that holds a bad one', async () => {
    // Inline checks: all seven reach the commit in one turn, so they are one batch by construction
    // (through the pool, answers arrive in whatever order and time the workers take).
    const devices = Array.from({ length: 6 }, (_, i) => new SimDevice(`batch-${i}`, ['gw', 'brake']));
    for (const d of devices) await inline.register(d);
    const { store, manifests } = inline.director.services;
    const transactions = countTransactions(store);
    try {
      const bad = devices[0]!;
      const good = bad.manifest();
      // Its reports again under a higher counter: it passes the checks before the commit and is
      // refused inside it (STALE_NONCE), in the same batch as its predecessor.
      const again = bad.manifest({ reports: good.signed.ecuVersionReports });
      const sends = [good, again, ...devices.slice(1).map((d) => d.manifest())].map((m) =>
        manifests.ingest(m.signed.deviceId, utf8(JSON.stringify(m)), 'function', true).then(() => 'ok', (e) => (e as ManifestRejectedError).code));
      assert.deepEqual(await Promise.all(sends), ['ok', 'STALE_NONCE', 'ok', 'ok', 'ok', 'ok', 'ok']);
      assert.equal(transactions.count, 2, 'one transaction for the seven, one for the refusal\'s security event');
    } finally {
      transactions.stop();
    }
    assert.equal((await store.getDevice('batch-0'))!.manifestCounter, 1, 'only the first of batch-0');
    assert.deepEqual((await store.eventsOf('batch-0')).map((e) => e.code), ['STALE_NONCE']);
    for (const d of devices.slice(1)) assert.equal((await store.manifestsOf(d.id, 10)).length, 1);
  });

  it('rolls back a change refused inside a batch alone (its notifications too), and runs a batch again change by change after an untyped failure', async () => {
    const { ctx, store } = pooled.director.services;
    const commits = new GroupCommit((fn) => ctx.commit(fn));
    const event = (deviceId: string, code: string) => store.insertEvent({ deviceId, ecuSerial: null, kind: 'attack', code, detail: code, at: ctx.nowIso() });
    const d = new SimDevice('gc-1', ['gw']);
    await pooled.register(d);
    const notified: string[] = [];
    const notifier = ctx.notifier;
    ctx.notifier = (deviceId) => notified.push(deviceId);
    const state = (await store.getRepoState(d.id))!;
    const transactions = countTransactions(store);
    try {
      // A typed refusal after a write: rolled back alone, in the one shared transaction.
      const refused = await Promise.allSettled([
        commits.run(async () => {
          await event(d.id, 'A');
          ctx.queueNotify('told-a', state);
        }),
        commits.run(async () => {
          await event(d.id, 'REFUSED');
          ctx.queueNotify('told-refused', state);
          throw new ManifestRejectedError(d.id, 'STALE_NONCE', 'refused after a write');
        }),
        commits.run(() => event(d.id, 'B')),
      ]);
      assert.deepEqual(refused.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled']);
      assert.equal(transactions.count, 1);
      // An untyped failure may have broken the transaction: each change runs again alone.
      const broken = await Promise.allSettled([
        commits.run(async () => {
          await event(d.id, 'BROKEN');
          throw new TypeError('a bug');
        }),
        commits.run(() => event(d.id, 'C')),
      ]);
      assert.deepEqual(broken.map((r) => r.status), ['rejected', 'fulfilled']);
    } finally {
      transactions.stop();
      ctx.notifier = notifier;
    }
    assert.deepEqual((await store.eventsOf(d.id)).map((e) => e.code), ['A', 'B', 'C']);
    assert.deepEqual(notified, ['told-a'], 'a rolled-back change tells nobody');
  });
});

describe('a verify worker that dies', () => {
  let h: Harness;
  before(async () => {
    h = await harness({ verifyWorkers: 1, mqtt: 'none' });
  });
  after(() => h?.close());

  const pool = () => h.director.services.manifests.verifier as VerifyPool;

  /** Kills the running worker: its replacement is loading (far slower than a check), so jobs wait in its inbox. */
  const freshWorker = async () => {
    while (pool().workers === 0) await new Promise((r) => setTimeout(r, 10));
    await pool().killWorker(0);
  };
  const held = async () => {
    while (pool().queued === 0) await new Promise((r) => setImmediate(r));
  };

  it('has its manifest checked again after its worker died: a good one is accepted, a forged one refused', async () => {
    const d = new SimDevice('crash-1', ['gw', 'brake']);
    await h.register(d);
    await freshWorker();
    const good = h.director.services.manifests.ingest(d.id, utf8(JSON.stringify(d.manifest())), 'function', true);
    await held();
    await pool().killWorker(0); // dies holding it
    assert.equal((await good).counter, 1);
    const forged = signVehicleManifest(d.manifest().signed, Ed25519Signer.generate());
    await freshWorker();
    const refused = h.director.services.manifests.ingest(d.id, utf8(JSON.stringify(forged)), 'function', true);
    await held();
    await pool().killWorker(0);
    await assert.rejects(refused, { code: 'BAD_SIGNATURE' });
    assert.equal((await h.director.services.store.getDevice(d.id))!.manifestCounter, 1);
  });

  it('refuses a manifest whose worker dies twice with VERIFIER_UNAVAILABLE, storing nothing; HTTP answers 503', async () => {
    const d = new SimDevice('crash-2', ['gw', 'brake']);
    await h.register(d);
    const m = d.manifest();
    await freshWorker();
    const sent = h.send(d, m);
    await held();
    await pool().killWorker(0); // first death
    await freshWorker(); // the next one dies holding it too
    const r = await sent;
    assert.equal(r.status, 503);
    assert.equal(r.body.error.code, 'VERIFIER_UNAVAILABLE');
    assert.equal((await h.director.services.store.getDevice(d.id))!.manifestCounter, -1);
    assert.deepEqual(await h.director.services.store.manifestsOf(d.id, 10), []);
    // The pool recovers: the same manifest is accepted once a worker is back.
    while (pool().workers === 0) await new Promise((r) => setTimeout(r, 10));
    assert.equal((await h.send(d, m)).status, 200);
    assert.equal((await h.director.services.store.getDevice(d.id))!.manifestCounter, 1);
  });

  it('refuses at once with VERIFIER_BUSY when its queue is full', async () => {
    const small = await VerifyPool.start({ size: 1, maxQueued: 1 });
    try {
      const d = new SimDevice('busy-1', ['gw']);
      const bytes = utf8(JSON.stringify(d.manifest()));
      const view = { device: undefined, ecus: [] };
      const first = small.check(d.id, bytes, view);
      await assert.rejects(small.check(d.id, bytes, view), (e) => e instanceof VerifierUnavailableError && e.code === 'VERIFIER_BUSY' && e.status === 503);
      await assert.rejects(first, { code: 'NOT_FOUND' });
    } finally {
      await small.close();
    }
  });
});
