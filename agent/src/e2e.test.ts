/**
 * End to end on loopback: the real director and image repository servers,
 * two simulated secondaries on real pty pairs (one partial, one full
 * verification) and the primary's install handler. Every ECU must end on its
 * assigned image as the director records it from the manifests.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { createAgent, type Agent } from './agent.ts';
import type { ProgressEvent } from './cycle.ts';
import { realWorld, type RealWorld } from './testing/real-world.ts';

describe('agent against the real director and image repository', () => {
  let w: RealWorld;
  let agent: Agent;
  const progress: ProgressEvent[] = [];
  const data = { 'gateway-2.bin': randomBytes(200_000), 'brake-2.bin': randomBytes(60_000), 'camera-2.bin': randomBytes(40_000) };

  before(async () => {
    w = await realWorld({
      secondaries: [
        { serial: 'brake-1', hardwareId: 'brake', verification: 'partial' },
        { serial: 'camera-1', hardwareId: 'camera', verification: 'full' },
      ],
    });
    agent = await createAgent(w.config, { logger: pino({ level: process.env.LOG ?? 'silent' }), onProgress: (p) => progress.push(p) });
  });
  after(async () => {
    await agent?.close();
    await w?.close();
  });

  it('provisions: key, pinned roots, registration with every ECU key', async () => {
    const r = await agent.provision();
    assert.equal(r.status, 'active');
    const device = await w.device();
    assert.deepEqual(device.ecus.map((e: { serial: string }) => e.serial).sort(), ['brake-1', 'camera-1', 'primary-1']);
  });

  it('has nothing to do before an assignment, and the director accepts its manifest', async () => {
    const out = await agent.checkOnce();
    assert.equal(out.result, 'noUpdate', JSON.stringify(out.failure));
    assert.equal(out.undelivered, 0);
    assert.equal((await w.device()).manifestCounter, 1);
  });

  it('installs the assigned image on every ECU and the director records success', async () => {
    await w.publish([
      { name: 'gateway-2.bin', data: data['gateway-2.bin'], hardwareIds: ['gateway'], releaseCounter: 2 },
      { name: 'brake-2.bin', data: data['brake-2.bin'], hardwareIds: ['brake'], releaseCounter: 2 },
      { name: 'camera-2.bin', data: data['camera-2.bin'], hardwareIds: ['camera'], releaseCounter: 2 },
    ]);
    const a = await w.admin('POST', '/api/v1/admin/devices/vehicle-1/assignments', {
      ecus: [
        { ecuSerial: 'brake-1', image: 'brake-2.bin' },
        { ecuSerial: 'camera-1', image: 'camera-2.bin' },
        { ecuSerial: 'primary-1', image: 'gateway-2.bin' },
      ],
    });
    assert.equal(a.status, 201, JSON.stringify(a.json));
    const out = await agent.checkOnce();
    assert.equal(out.result, 'success', JSON.stringify(out.failure));
    assert.equal(out.undelivered, 0);

    const device = await w.device();
    const installed = Object.fromEntries(device.ecus.map((e: { serial: string; installed: { filename: string } | null }) => [e.serial, e.installed?.filename]));
    assert.deepEqual(installed, { 'primary-1': 'gateway-2.bin', 'brake-1': 'brake-2.bin', 'camera-1': 'camera-2.bin' });
    assert.equal(device.assignments.at(-1).status, 'succeeded');
    assert.deepEqual(readFileSync(join(w.dir, 'slot-b')), data['gateway-2.bin']);
    for (const s of w.secondaries) assert.equal(s.sim.info.installed?.filename, `${s.hardwareId}-2.bin`);
    assert.ok(progress.some((p) => p.state === 'installing' && p.ecuSerial === 'brake-1' && p.done === p.total));
    assert.ok(progress.some((p) => p.state === 'downloading' && p.ecuSerial === 'primary-1'));

    const status = await agent.status();
    assert.equal(status.state, 'idle');
    assert.equal(status.lastResult?.result.success, true);
    assert.deepEqual(status.outbox, { manifest: 0, progress: 0, rejected: 0 });
  });

  it('then has nothing new to do', async () => {
    assert.equal((await agent.checkOnce()).result, 'noUpdate');
  });
});

describe('refusals reported to the real director', () => {
  let w: RealWorld;
  let agent: Agent;
  const installedOf = async () =>
    Object.fromEntries((await w.device()).ecus.map((e: { serial: string; installed: { filename: string } | null }) => [e.serial, e.installed?.filename ?? null]));

  before(async () => {
    w = await realWorld({ deviceId: 'vehicle-refusals', secondaries: [{ serial: 'brake-r', hardwareId: 'brake', verification: 'partial' }] });
    agent = await createAgent(w.config, { logger: pino({ level: 'silent' }) });
    await agent.provision();
    assert.equal((await agent.checkOnce()).result, 'noUpdate');
  });
  after(async () => {
    await agent?.close();
    await w?.close();
  });

  it('refuses a tampered image from the image repository and installs nothing', async () => {
    const t = await w.publish([
      { name: 'gateway-t.bin', data: randomBytes(30_000), hardwareIds: ['gateway'] },
      { name: 'brake-t.bin', data: randomBytes(20_000), hardwareIds: ['brake'] },
    ]);
    const sha = t['brake-t.bin']!.hashes.sha256!;
    const blob = join(w.dir, 'image-repo', 'server', 'blobs', sha.slice(0, 2), sha);
    const bytes = readFileSync(blob);
    bytes[100] ^= 0xff;
    writeFileSync(blob, bytes);
    const before = await installedOf();
    const a = await w.admin('POST', '/api/v1/admin/devices/vehicle-refusals/assignments', {
      ecus: [{ ecuSerial: 'primary-1', image: 'gateway-t.bin' }, { ecuSerial: 'brake-r', image: 'brake-t.bin' }],
    });
    assert.equal(a.status, 201, JSON.stringify(a.json));
    const out = await agent.checkOnce();
    assert.equal(out.result, 'failure');
    assert.equal(out.failure?.code, 'LENGTH_OR_HASH_MISMATCH');
    assert.equal(out.undelivered, 0);
    assert.deepEqual(await installedOf(), before, 'no ECU changed');
    const device = await w.device();
    assert.equal(device.assignments.at(-1).status, 'failed');
    assert.equal(device.assignments.at(-1).errorCode, 'ARBITRARY_SOFTWARE');
  });

  it('refuses a director target the image repository no longer backs (mismatch) and reports it', async () => {
    const t = await w.publish([{ name: 'gateway-m.bin', data: randomBytes(25_000), hardwareIds: ['gateway'] }]);
    const a = await w.admin('POST', '/api/v1/admin/devices/vehicle-refusals/assignments', { ecus: [{ ecuSerial: 'primary-1', image: 'gateway-m.bin' }] });
    assert.equal(a.status, 201, JSON.stringify(a.json));
    // The image repository now lists the name for another hardware ID only: the repositories disagree.
    await w.retarget('gateway-m.bin', { ...t['gateway-m.bin']!.custom, hardwareIds: ['other-hw'] });
    const before = await installedOf();
    const out = await agent.checkOnce();
    assert.equal(out.result, 'failure');
    assert.equal(out.failure?.name, 'TargetMismatchError');
    assert.equal(out.failure?.fields.field, 'hardwareId');
    assert.deepEqual(await installedOf(), before);
    const device = await w.device();
    assert.equal(device.assignments.at(-1).status, 'failed');
    assert.ok(device.events.some((e: { kind: string; code: string }) => e.kind === 'attack' && e.code === 'WRONG_HARDWARE'));
  });

  it('refuses expired director metadata and reports it', async () => {
    await agent.close(); // one agent per storage directory and serial port
    const late = await createAgent(w.config, { logger: pino({ level: 'silent' }), now: () => new Date(Date.now() + 30 * 86400_000) });
    try {
      const events = (await w.device()).events.length;
      const out = await late.checkOnce();
      assert.equal(out.result, 'failure');
      assert.equal(out.failure?.code, 'EXPIRED_METADATA');
      assert.equal(out.failure?.state, 'checkingDirector');
      assert.equal(out.undelivered, 0);
      assert.ok((await w.device()).events.slice(events).some((e: { kind: string; code: string }) => e.kind === 'attack' && e.code === 'FREEZE'), 'the director recorded the freeze');
    } finally {
      await late.close();
    }
  });
});

describe('the daemon woken by the director over MQTT', () => {
  let w: RealWorld;
  let agent: Agent;
  before(async () => {
    w = await realWorld({ deviceId: 'vehicle-mqtt', mqtt: true });
    // A poll interval far beyond the test: only a notify can start the second cycle.
    agent = await createAgent({ ...w.config, pollIntervalSeconds: 3600 }, { logger: pino({ level: process.env.LOG ?? 'silent' }, pino.destination(process.env.LOG_FILE ?? 2)) });
    await agent.provision();
  });
  after(async () => {
    await agent?.close();
    await w?.close();
  });

  it('installs an assignment within seconds of the notify, reporting over MQTT', async () => {
    assert.ok(w.config.mqttUrl, 'the director runs its embedded broker');
    const running = agent.run();
    await waitFor(async () => (await agent.status()).lastCycle !== null);
    const t = await w.publish([{ name: 'gateway-q.bin', data: randomBytes(40_000), hardwareIds: ['gateway'] }]);
    const a = await w.admin('POST', '/api/v1/admin/devices/vehicle-mqtt/assignments', { ecus: [{ ecuSerial: 'primary-1', image: 'gateway-q.bin' }] });
    assert.equal(a.status, 201, JSON.stringify(a.json));
    await waitFor(async () => (await w.device()).assignments.at(-1).status === 'succeeded', 20_000).catch(async () => {
      const d = await w.device();
      const m = (await w.admin('GET', '/api/v1/admin/devices/vehicle-mqtt/manifests')).json;
      throw new Error(`assignment not succeeded: ${JSON.stringify({ assignments: d.assignments, ecus: d.ecus, events: d.events, manifests: m }).slice(0, 4000)}`);
    });
    const device = await w.device();
    assert.equal(device.ecus.find((e: { serial: string }) => e.serial === 'primary-1').installed.filename, 'gateway-q.bin');
    assert.equal(device.ecus.find((e: { serial: string }) => e.serial === 'primary-1').installed.length, t['gateway-q.bin']!.length);
    const manifests = (await w.admin('GET', '/api/v1/admin/devices/vehicle-mqtt/manifests')).json;
    const list = (manifests.manifests ?? manifests) as Array<{ via: string }>;
    assert.ok(list.some((m) => m.via === 'mqtt'), 'manifests went over MQTT');
    await agent.close();
    await running;
  });
});

async function waitFor(cond: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 50));
  }
}
