/**
 * Power-loss tests: a child `upfleet-agent check --once` SIGKILLs itself on
 * entering each persisted state (UPFLEET_TEST_CRASH_AT, honoured only with
 * NODE_ENV=test), then a fresh child resumes. Every ECU must end on a verified
 * image (the new one, or the old one after a rollback), and the director must
 * have the result: no report is lost.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { realWorld, type RealWorld } from './testing/real-world.ts';
import { runAgentCli, startAgentCli } from './testing/agent-cli.ts';
import { storedState } from './testing/stored-state.ts';
import type { StateName } from './machine/states.ts';

/** `upfleet-agent ARGS` on the world's config; with `crashAt`, it SIGKILLs itself on entering that state. */
const agent = (w: RealWorld, args: string[], crashAt?: StateName) =>
  runAgentCli([...args, '--config', w.configPath], { NODE_ENV: 'test', ...(crashAt && { UPFLEET_TEST_CRASH_AT: crashAt }) });

describe('kill -9 in every persisted state, then restart', () => {
  let w: RealWorld;
  let release = 1;

  before(async () => {
    w = await realWorld({
      deviceId: 'vehicle-kill',
      secondaries: [{ serial: 'brake-k', hardwareId: 'brake', verification: 'partial' }],
      handler: '', // replaced below: needs w.dir
    });
    const installer = w.config.ecus.primary.installer;
    assert.equal(installer.type, 'handler');
    writeFileSync(
      installer.command,
      `#!/bin/sh\n[ "$UPFLEET_PHASE" != health ] || [ ! -e "${w.dir}/FAIL_HEALTH" ]\n`,
    );
    const p = await agent(w, ['provision']);
    assert.equal(p.code, 0, p.stderr);
  });
  after(async () => {
    await w?.close();
  });

  /** Publishes and assigns release N to both ECUs. */
  async function assignRelease(brakeBytes = 20_000): Promise<{ gateway: string; brake: string }> {
    release++;
    const names = { gateway: `gateway-${release}.bin`, brake: `brake-${release}.bin` };
    await w.publish([
      { name: names.gateway, data: randomBytes(30_000), hardwareIds: ['gateway'], releaseCounter: release },
      { name: names.brake, data: randomBytes(brakeBytes), hardwareIds: ['brake'], releaseCounter: release },
    ]);
    const a = await w.admin('POST', '/api/v1/admin/devices/vehicle-kill/assignments', {
      ecus: [
        { ecuSerial: 'primary-1', image: names.gateway },
        { ecuSerial: 'brake-k', image: names.brake },
      ],
    });
    assert.equal(a.status, 201, JSON.stringify(a.json));
    return names;
  }

  const states: StateName[] = ['sendingManifest', 'checkingDirector', 'checkingImages', 'downloading', 'installing', 'activating', 'reporting', 'idle'];
  for (const state of states) {
    it(`completes the update after a kill in ${state}`, async () => {
      const names = await assignRelease();
      const crashed = await agent(w, ['check', '--once'], state);
      assert.equal(crashed.signal, 'SIGKILL', `exit ${crashed.code}: ${crashed.stderr}`);
      assert.equal(storedState(w.config.storageDir), state);
      const resumed = await agent(w, ['check', '--once']);
      assert.equal(resumed.code, 0, resumed.stderr);
      assert.equal(storedState(w.config.storageDir), 'idle');
      const device = await w.device();
      const installed = Object.fromEntries(device.ecus.map((e: { serial: string; installed: { filename: string } | null }) => [e.serial, e.installed?.filename]));
      assert.deepEqual(installed, { 'primary-1': names.gateway, 'brake-k': names.brake });
      assert.equal(device.assignments.at(-1).status, 'succeeded');
    });
  }

  it('after a kill in checkingImages, plans from the director metadata it had stored, not from a new answer (finding 1)', async () => {
    const first = await assignRelease();
    const crashed = await agent(w, ['check', '--once'], 'checkingImages');
    assert.equal(crashed.signal, 'SIGKILL', `exit ${crashed.code}: ${crashed.stderr}`);
    // While the agent is down the director's answer changes.
    const second = await assignRelease();
    const resumed = await agent(w, ['check', '--once']);
    assert.equal(resumed.code, 0, resumed.stderr);
    const installed = async () =>
      Object.fromEntries((await w.device()).ecus.map((e: { serial: string; installed: { filename: string } | null }) => [e.serial, e.installed?.filename]));
    assert.deepEqual(await installed(), { 'primary-1': first.gateway, 'brake-k': first.brake }, 'the plan verified before the kill');
    const next = await agent(w, ['check', '--once']);
    assert.equal(next.code, 0, next.stderr);
    assert.deepEqual(await installed(), { 'primary-1': second.gateway, 'brake-k': second.brake }, 'the new answer, in a cycle of its own');
    assert.equal((await w.device()).assignments.at(-1).status, 'succeeded', 'the newer assignment stayed open through the older cycle\'s result');
  });

  it('resumes a serial transfer killed midway from the offset the ECU holds', async () => {
    const names = await assignRelease(1_500_000);
    const sim = w.secondaries[0]!.sim;
    const { child, exit: exited } = startAgentCli(['check', '--once', '--config', w.configPath]);
    const deadline = Date.now() + 30_000;
    while (sim.store.inactiveLength() < 100_000 || sim.store.inactiveLength() >= 1_400_000) {
      if (Date.now() > deadline) assert.fail(`transfer not observed midway (${sim.store.inactiveLength()} bytes)`);
      await new Promise((r) => setTimeout(r, 5));
    }
    child.kill('SIGKILL');
    await exited;
    assert.equal(storedState(w.config.storageDir), 'installing');
    const held = sim.store.inactiveLength();
    const begins: number[] = [];
    const onBegin = (offset: number) => begins.push(offset);
    sim.on('begin', onBegin);
    try {
      const resumed = await agent(w, ['check', '--once']);
      assert.equal(resumed.code, 0, resumed.stderr);
    } finally {
      sim.off('begin', onBegin);
    }
    // The ECU may still store a chunk or two that was in the pty when the agent died.
    assert.ok(begins.some((o) => o >= held && o < 1_500_000), `resumed from ${begins.join(',')} (held ${held} at the kill)`);
    const device = await w.device();
    assert.equal(device.ecus.find((e: { serial: string }) => e.serial === 'brake-k').installed.filename, names.brake);
    assert.equal(device.assignments.at(-1).status, 'succeeded');
  });

  it('rolls back and reports the failure after a kill in rollingBack', async () => {
    const before = Object.fromEntries((await w.device()).ecus.map((e: { serial: string; installed: { filename: string } | null }) => [e.serial, e.installed?.filename]));
    await assignRelease();
    writeFileSync(join(w.dir, 'FAIL_HEALTH'), '');
    try {
      const crashed = await agent(w, ['check', '--once'], 'rollingBack');
      assert.equal(crashed.signal, 'SIGKILL', crashed.stderr);
      assert.equal(storedState(w.config.storageDir), 'rollingBack');
      const resumed = await agent(w, ['check', '--once']);
      assert.equal(resumed.code, 1);
      assert.match(resumed.stderr, /cycle failure: InstallError/);
    } finally {
      rmSync(join(w.dir, 'FAIL_HEALTH'), { force: true });
    }
    assert.equal(storedState(w.config.storageDir), 'idle');
    const device = await w.device();
    const after = Object.fromEntries(device.ecus.map((e: { serial: string; installed: { filename: string } | null }) => [e.serial, e.installed?.filename]));
    // The primary failed its health check and kept its image; the secondary activated before it or was aborted:
    // either way each ECU runs a verified image, and the director knows the assignment failed.
    assert.equal(after['primary-1'], before['primary-1']);
    assert.equal(device.assignments.at(-1).status, 'failed');
  });
});
