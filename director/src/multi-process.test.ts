/**
 * Several director processes on one PostgreSQL database and the machine's
 * Mosquitto: `upfleet-director serve --processes 3` as a real child process, on
 * a database of its own (created and dropped here) and a topic prefix of its own.
 * - Concurrent assignments and manifests of one device, spread over the
 *   processes, keep its targets versions strictly increasing (no version signed
 *   twice) and count every accepted manifest once.
 * - A worker killed with SIGKILL mid-campaign, while vehicles send manifests over
 *   MQTT and HTTP, loses nothing: every manifest a vehicle saw delivered is
 *   recorded exactly once, no assignment stays open, the campaign completes.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { connect, type MqttClient } from 'mqtt';
import { utf8, type TargetFile } from '@upfleet/core';
import { ADMIN_TOKEN, directorDir, ImageRepoServer, PROVISIONING_TOKEN, SimDevice } from './testing/harness.ts';
import { createTestDatabase, type TestDatabase } from './testing/postgres.ts';
import { startDirectorChild, type DirectorChild } from './testing/director-child.ts';

const MOSQUITTO = 'mqtt://127.0.0.1:1883';
const PROCESSES = 3;

describe('several director processes on PostgreSQL and Mosquitto', () => {
  let db: TestDatabase;
  let dir: string;
  let repo: ImageRepoServer;
  let director: DirectorChild;
  let images: Record<string, TargetFile>;
  const prefix = `upfleet-test-${randomBytes(4).toString('hex')}/v1`;

  before(async () => {
    db = await createTestDatabase('cluster');
    dir = await directorDir();
    repo = await new ImageRepoServer().start();
    images = {
      'brake-2.bin': repo.addImage('brake-2.bin', utf8('brake two'), ['brake'], 2),
      'brake-3.bin': repo.addImage('brake-3.bin', utf8('brake three'), ['brake'], 3),
    };
    writeFileSync(join(dir, 'image-root.json'), repo.rootBytes);
    director = await startDirectorChild([
      '--dir', dir, '--port', '0', '--image-repo', repo.url, '--image-repo-root', join(dir, 'image-root.json'),
      '--database', db.url, '--processes', String(PROCESSES), '--mqtt-url', MOSQUITTO, '--mqtt-prefix', prefix,
      '--admin-token', ADMIN_TOKEN, '--provisioning-token', PROVISIONING_TOKEN,
    ], { UPFLEET_ONLINE_PASSPHRASE: 'online-pass' });
  });
  after(async () => {
    await director?.stop();
    await repo?.close();
    await db?.drop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** One HTTP call to the cluster, tried again on a broken connection (a worker that died). */
  async function call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
    for (let attempt = 0; ; attempt++) {
      try {
        const res = await fetch(`${director.url}${path}`, {
          method, headers: { 'content-type': 'application/json', ...headers },
          ...(body !== undefined && { body: typeof body === 'string' ? body : JSON.stringify(body) }),
        });
        const text = await res.text();
        return { status: res.status, body: text ? JSON.parse(text) : undefined };
      } catch (error) {
        if (attempt >= 20) throw error;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }
  const admin = (method: string, path: string, body?: unknown) => call(method, path, body, { authorization: `Bearer ${ADMIN_TOKEN}` });

  async function register(d: SimDevice, tags: string[] = []): Promise<void> {
    const r = await call('POST', `/api/v1/devices/${d.id}/register`, d.registration(tags), { authorization: `Bearer ${PROVISIONING_TOKEN}` });
    assert.equal(r.status, 201, JSON.stringify(r.body));
  }

  async function metadata(d: SimDevice, file: string): Promise<any> {
    const r = await call('GET', `/api/v1/devices/${d.id}/metadata/${file}`, undefined, d.headers());
    assert.equal(r.status, 200, `${file}: ${JSON.stringify(r.body)}`);
    return r.body.signed;
  }

  it('keeps each device targets versions strictly increasing under concurrent assignments and manifests', async () => {
    const devices = Array.from({ length: 3 }, (_, i) => new SimDevice(`conc-${i}`));
    for (const d of devices) await register(d);
    const created: Array<{ device: SimDevice; status: number; body: any }> = [];
    const sent: Array<{ device: SimDevice; counter: number; status: number }> = [];
    await Promise.all(devices.flatMap((d) => [
      ...Array.from({ length: 6 }, async (_, i) => {
        const image = i % 2 ? 'brake-3.bin' : 'brake-2.bin';
        const r = await admin('POST', `/api/v1/admin/devices/${d.id}/assignments`, { ecus: [{ ecuSerial: d.ecu('brake').serial, image }] });
        created.push({ device: d, ...r });
      }),
      ...Array.from({ length: 6 }, async () => {
        const m = d.manifest();
        const r = await call('POST', `/api/v1/devices/${d.id}/manifest`, m, d.headers());
        sent.push({ device: d, counter: m.signed.counter, status: r.status });
      }),
    ]));

    for (const d of devices) {
      const mine = created.filter((c) => c.device === d);
      assert.ok(mine.every((c) => c.status === 201), JSON.stringify(mine.map((c) => c.body)));
      const versions = mine.map((c) => c.body.targetsVersion as number);
      assert.equal(new Set(versions).size, versions.length, `no targets version signed twice for ${d.id}: ${versions}`);
      // The newest assignment is the one left open, and the device's current targets list its image.
      const view = (await admin('GET', `/api/v1/admin/devices/${d.id}`)).body;
      const open = view.assignments.filter((a: any) => ['pending', 'downloading', 'installing'].includes(a.status));
      const newest = mine.reduce((a, b) => (a.body.targetsVersion > b.body.targetsVersion ? a : b)).body;
      assert.deepEqual(open.map((a: any) => a.id), [newest.id]);
      assert.ok(view.metadata.targetsVersion >= Math.max(...versions));
      assert.deepEqual(Object.keys(view.targets), [newest.items[0].image]);
      // The chain the device sees is one consistent version: timestamp -> snapshot -> targets.
      const timestamp = await metadata(d, 'timestamp.json');
      const snapshot = await metadata(d, `${timestamp.meta['snapshot.json'].version}.snapshot.json`);
      assert.equal(snapshot.meta['targets.json'].version, view.metadata.targetsVersion);
      const targets = await metadata(d, `${view.metadata.targetsVersion}.targets.json`);
      assert.deepEqual(Object.keys(targets.targets), [newest.items[0].image]);

      const accepted = sent.filter((s) => s.device === d && s.status === 200).map((s) => s.counter);
      assert.ok(sent.filter((s) => s.device === d).every((s) => s.status === 200 || s.status === 409), 'accepted or a replay');
      const recorded = (await admin('GET', `/api/v1/admin/devices/${d.id}/manifests?limit=1000`)).body.manifests.map((m: any) => m.counter);
      assert.deepEqual([...recorded].sort((a, b) => a - b), [...accepted].sort((a, b) => a - b), 'each accepted manifest recorded once');
      assert.equal(view.manifestCounter, Math.max(...accepted));
    }
  });

  it('loses nothing when a worker is killed with SIGKILL mid-campaign', async () => {
    const vehicles = Array.from({ length: 8 }, (_, i) => ({ device: new SimDevice(`kill-${i}`), via: i % 2 ? 'mqtt' as const : 'http' as const, delivered: [] as number[] }));
    for (const v of vehicles) await register(v.device, ['kill']);
    const clients: MqttClient[] = [];
    let stop = false;

    /** A light vehicle: installs what its targets name, sends one manifest at a time and waits for the director's answer. */
    async function drive(v: (typeof vehicles)[number]): Promise<void> {
      const d = v.device;
      const acks: Array<{ counter: number | null; accepted: boolean; code?: string; lastCounter?: number }> = [];
      let client: MqttClient | undefined;
      if (v.via === 'mqtt') {
        client = connect(MOSQUITTO, { protocolVersion: 5, clientId: `${prefix}-${d.id}`.replace(/\//g, '_'), clean: true, reconnectPeriod: 200 });
        clients.push(client);
        await new Promise<void>((r) => client!.once('connect', () => r()));
        client.on('message', (_t, payload) => acks.push(JSON.parse(payload.toString())));
        await client.subscribeAsync(`${prefix}/devices/${d.id}/ack`, { qos: 1 });
      }
      const brake = d.ecu('brake');
      let seenTimestamp = 0;
      while (!stop) {
        const timestamp = await metadata(d, 'timestamp.json');
        if (timestamp.version !== seenTimestamp) {
          seenTimestamp = timestamp.version;
          const snapshot = await metadata(d, `${timestamp.meta['snapshot.json'].version}.snapshot.json`);
          const targets = await metadata(d, `${snapshot.meta['targets.json'].version}.targets.json`);
          for (const [name, t] of Object.entries<any>(targets.targets)) {
            if (t.custom.ecuIdentifiers[brake.serial]) d.install('brake', name, images[name]!, t.custom.releaseCounter);
          }
        }
        const m = d.manifest();
        const counter = m.signed.counter;
        const bytes = JSON.stringify(m);
        // Until the director answers (a worker killed meanwhile drops the answer): the same bytes again.
        for (;;) {
          if (v.via === 'http') {
            const r = await call('POST', `/api/v1/devices/${d.id}/manifest`, bytes, d.headers());
            if (r.status === 200 || (r.status === 409 && r.body.error.lastCounter >= counter)) break;
            assert.fail(`${d.id} manifest ${counter}: ${r.status} ${JSON.stringify(r.body)}`);
          }
          await client!.publishAsync(`${prefix}/devices/${d.id}/manifest`, bytes, { qos: 1 });
          const deadline = Date.now() + 3000;
          let answer: (typeof acks)[number] | undefined;
          while (!answer && Date.now() < deadline) {
            answer = acks.find((a) => a.counter === counter);
            if (!answer) await new Promise((r) => setTimeout(r, 20));
          }
          if (answer && (answer.accepted || (answer.code === 'MANIFEST_REPLAY' && answer.lastCounter! >= counter))) break;
          if (answer) assert.fail(`${d.id} manifest ${counter} refused: ${JSON.stringify(answer)}`);
        }
        v.delivered.push(counter);
        await new Promise((r) => setTimeout(r, 100));
      }
    }

    const driving = vehicles.map(drive);
    try {
      const created = await admin('POST', '/api/v1/admin/campaigns', { name: 'kill', images: [{ hardwareId: 'brake', image: 'brake-2.bin' }], tags: ['kill'], waves: [50, 100], successThreshold: 1 });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      const id = created.body.id;
      assert.equal((await admin('POST', `/api/v1/admin/campaigns/${id}/start`)).status, 200);
      // Mid-campaign: the first wave is out and manifests are flowing.
      while (vehicles.reduce((n, v) => n + v.delivered.length, 0) < vehicles.length * 2) await new Promise((r) => setTimeout(r, 20));
      const victim = director.workers.get(1)!;
      process.kill(victim, 'SIGKILL');
      await director.waitForLog((e) => e.msg === 'director started' && e.worker === 1 && e.pid !== victim, 90_000);

      const deadline = Date.now() + 90_000;
      let status: any;
      do {
        await new Promise((r) => setTimeout(r, 200));
        status = (await admin('GET', `/api/v1/admin/campaigns/${id}`)).body;
      } while (status.status === 'running' && Date.now() < deadline);
      assert.equal(status.status, 'completed', JSON.stringify(status.counts));
      assert.equal(status.counts.succeeded, vehicles.length);
    } finally {
      stop = true;
      await Promise.allSettled(driving);
      for (const c of clients) await c.endAsync();
    }
    await Promise.all(driving); // a vehicle that failed fails the test

    for (const v of vehicles) {
      const recorded = (await admin('GET', `/api/v1/admin/devices/${v.device.id}/manifests?limit=1000`)).body.manifests.map((m: any) => m.counter);
      assert.deepEqual([...recorded].sort((a: number, b: number) => a - b), v.delivered, `${v.device.id} (${v.via}): every delivered manifest recorded once`);
      const assignments = (await admin('GET', `/api/v1/admin/devices/${v.device.id}/assignments`)).body.assignments;
      assert.deepEqual(assignments.map((a: any) => a.status), ['succeeded'], `${v.device.id}: no assignment left open`);
    }
    assert.ok(director.lines.some((e) => e.msg === 'director worker exited; starting another in its place' && e.signal === 'SIGKILL'));
  });
});
