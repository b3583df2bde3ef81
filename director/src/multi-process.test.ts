/**
 * Several director processes on one PostgreSQL database and the machine's
 * Mosquitto: `upfleet-director serve --processes 3` as a real child process, on
 * a database of its own (created and dropped here) and a topic prefix of its own.
 * - Concurrent assignments and manifests of one device, spread over the
 *   processes, keep its targets versions strictly increasing (no version signed
 *   twice) and count every accepted manifest once.
 * - Registrations of one device (and of one ECU serial by two devices) sent at once
 *   and spread over the processes answer as one process would, never 500: the same
 *   registration is created once (201) and otherwise idempotent (200), another one
 *   for the device or its ECU is a typed 409.
 * - A worker killed with SIGKILL mid-campaign, while vehicles send manifests over
 *   MQTT and HTTP, loses nothing: every manifest a vehicle saw delivered is
 *   recorded exactly once, no assignment stays open, the campaign completes.
 * - The worker launching a campaign wave (one device per transaction here) killed
 *   with SIGKILL mid-launch: another process finishes the launch, each device of
 *   the wave assigned exactly once.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect, type MqttClient } from 'mqtt';
import { PROVISIONING_TOKEN, SimDevice } from './testing/harness.ts';
import { createTestDatabase, type TestDatabase } from './testing/postgres.ts';
import { concurrentChanges, startCluster, type Cluster } from './testing/cluster.ts';

const MOSQUITTO = 'mqtt://127.0.0.1:1883';

describe('several director processes on PostgreSQL and Mosquitto', () => {
  let db: TestDatabase;
  let c: Cluster;
  const prefix = `upfleet-test-${randomBytes(4).toString('hex')}/v1`;
  before(async () => {
    db = await createTestDatabase('cluster');
    // Waves launch one device per transaction: a launch spans many transactions, to be cut short.
    c = await startCluster(db.url, ['--mqtt-url', MOSQUITTO, '--mqtt-prefix', prefix], { UPFLEET_CAMPAIGN_LAUNCH_CHUNK: '1' });
  });
  after(async () => {
    await c?.close();
    await db?.drop();
  });

  it('keeps each device targets versions strictly increasing under concurrent assignments and manifests', () => concurrentChanges(c, 'pg'));

  it('answers registrations of one device racing over the processes as one process would, never 500', async () => {
    const { call } = c;
    const provisioning = { authorization: `Bearer ${PROVISIONING_TOKEN}` };
    const register = (id: string, body: unknown) => call('POST', `/api/v1/devices/${id}/register`, body, provisioning);
    // Eight at once per case: eight connections, which the cluster hands to its workers in turn.
    const same = new SimDevice('race-same');
    const sameAnswers = await Promise.all(Array.from({ length: 8 }, () => register(same.id, same.registration())));
    assert.deepEqual(sameAnswers.map((r) => r.status).sort(), [200, 200, 200, 200, 200, 200, 200, 201], JSON.stringify(sameAnswers.map((r) => r.body)));

    const keys = Array.from({ length: 8 }, () => new SimDevice('race-keys'));
    const keyAnswers = await Promise.all(keys.map((d) => register(d.id, d.registration())));
    assert.deepEqual(keyAnswers.map((r) => r.status).sort(), [201, 409, 409, 409, 409, 409, 409, 409], JSON.stringify(keyAnswers.map((r) => r.body)));
    assert.ok(keyAnswers.filter((r) => r.status === 409).every((r) => r.body.error.code === 'ALREADY_REGISTERED'));

    const owners = Array.from({ length: 8 }, (_, i) => new SimDevice(`race-ecu-${i}`));
    const shared = owners[0]!.registration() as { primary: { ecuSerial: string } };
    const ecuAnswers = await Promise.all(owners.map((d) => {
      const body = d.registration() as { primary: { ecuSerial: string } };
      return register(d.id, { ...body, primary: { ...body.primary, ecuSerial: shared.primary.ecuSerial } });
    }));
    assert.deepEqual(ecuAnswers.map((r) => r.status).sort(), [201, 409, 409, 409, 409, 409, 409, 409], JSON.stringify(ecuAnswers.map((r) => r.body)));
    assert.ok(ecuAnswers.filter((r) => r.status === 409).every((r) => r.body.error.code === 'ECU_TAKEN'));
  });

  it('loses nothing when a worker is killed with SIGKILL mid-campaign', async () => {
    const vehicles = Array.from({ length: 8 }, (_, i) => ({ device: new SimDevice(`kill-${i}`), via: i % 2 ? 'mqtt' as const : 'http' as const, delivered: [] as number[] }));
    const { admin, call, metadata, director, images } = c;
    for (const v of vehicles) await c.register(v.device, ['kill']);
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

  it('finishes a wave launch whose worker was killed with SIGKILL mid-launch, each device assigned once', async () => {
    const { admin, director } = c;
    const devices = Array.from({ length: 60 }, (_, i) => new SimDevice(`launch-${i}`));
    for (const d of devices) await c.register(d, ['launch']);
    const created = await admin('POST', '/api/v1/admin/campaigns', { name: 'launch', images: [{ hardwareId: 'brake', image: 'brake-3.bin' }], tags: ['launch'], waves: [100] });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const id = created.body.id;
    const chunks = () => director.lines.filter((e) => e.msg === 'campaign launch chunk' && e.campaign === id);
    assert.equal((await admin('POST', `/api/v1/admin/campaigns/${id}/start`)).status, 200);
    // The start's own chunk names the worker that launches the rest after its commit.
    const first = await director.waitForLog((e) => e.msg === 'campaign launch chunk' && e.campaign === id, 10_000);
    const victim = first.pid as number;
    await director.waitForLog((e) => e.msg === 'campaign launch chunk' && e.campaign === id && e.pid === victim && (e.launched as number) >= 3, 10_000);
    process.kill(victim, 'SIGKILL');

    const deadline = Date.now() + 60_000;
    let status: any;
    do {
      await new Promise((r) => setTimeout(r, 200));
      status = (await admin('GET', `/api/v1/admin/campaigns/${id}`)).body;
    } while (status.launchedCount < devices.length && Date.now() < deadline);
    assert.equal(status.launchedCount, devices.length, JSON.stringify(status.counts));
    const byVictim = chunks().filter((e) => e.pid === victim).map((e) => e.launched as number);
    assert.ok(Math.max(...byVictim) < devices.length, `the killed worker launched ${Math.max(...byVictim)} of ${devices.length}: killed mid-launch`);
    assert.ok(chunks().some((e) => e.pid !== victim && e.launched === devices.length), 'another process finished the launch');
    assert.deepEqual([status.counts.pending, status.counts.waiting], [devices.length, 0]);
    for (const d of devices) {
      const assignments = (await admin('GET', `/api/v1/admin/devices/${d.id}/assignments`)).body.assignments.filter((a: any) => a.campaignId === id);
      assert.equal(assignments.length, 1, `${d.id}: assigned exactly once`);
    }
    assert.equal((await admin('POST', `/api/v1/admin/campaigns/${id}/abort`)).status, 200);
  });
});
