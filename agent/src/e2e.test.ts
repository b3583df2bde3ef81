/**
 * End to end on loopback: the real director and image repository servers,
 * two simulated secondaries on real pty pairs (one partial, one full
 * verification) and the primary's install handler. Every ECU must end on its
 * assigned image as the director records it from the manifests.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
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
