/**
 * The gateway updated through RAUC, end to end without a VM: the agent CLI
 * (`check --once`, as a child process) against the real director and image
 * repository, the real rauc service on its test system (testing/rauc-system.ts).
 * The reboot command SIGKILLs the agent (the machine going down); the test
 * then "reboots" the system (the bootloader picks a slot, the rauc service
 * restarts with it, a new boot ID) and starts the agent again. The bootloader
 * skips a slot it started that nobody confirmed: each agent start confirms the
 * booted slot unless it is on trial.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { realWorld, type RealWorld } from './testing/real-world.ts';
import { RaucTestSystem, raucUnavailable } from './testing/rauc-system.ts';
import { runAgentCli } from './testing/agent-cli.ts';

const skip = raucUnavailable() ?? false;

describe('the gateway updated through RAUC (real rauc, real director and image repository)', { skip }, () => {
  let system: RaucTestSystem;
  let w: RealWorld;

  before(async () => {
    system = await RaucTestSystem.create();
    // The reboot command stops the agent the way the machine going down would.
    w = await realWorld({ deviceId: 'vehicle-rauc', primaryInstaller: { type: 'rauc', rebootCommand: 'kill -KILL $PPID', timeoutSeconds: 60, rebootTimeoutSeconds: 30 } });
    const p = await agent(['provision']);
    assert.equal(p.code, 0, p.stderr);
  });
  after(async () => {
    await w?.close();
    await system?.close();
  });

  const agent = (args: string[]) =>
    runAgentCli([...args, '--config', w.configPath], {
      NODE_ENV: 'test',
      UPFLEET_TEST_BOOT_ID: system.bootId,
      DBUS_SESSION_BUS_ADDRESS: system.env.DBUS_SESSION_BUS_ADDRESS,
      DBUS_STARTER_BUS_TYPE: 'session',
    });

  async function assign(name: string, version: string, releaseCounter: number): Promise<void> {
    await w.publish([{ name, data: system.bundle(version, randomBytes(200_000)), hardwareIds: ['gateway'], releaseCounter }]);
    const a = await w.admin('POST', '/api/v1/admin/devices/vehicle-rauc/assignments', { ecus: [{ ecuSerial: 'primary-1', image: name }] });
    assert.equal(a.status, 201, JSON.stringify(a.json));
  }

  /** One `check --once` that ends with the machine going down (the reboot command's SIGKILL). */
  async function untilRestart(): Promise<void> {
    const r = await agent(['check', '--once']);
    assert.equal(r.signal, 'SIGKILL', `the agent was to restart the machine: ${r.code} ${r.stderr}`);
  }

  const primaryInstalled = async () => (await w.device()).ecus.find((e: { serial: string }) => e.serial === 'primary-1').installed?.filename ?? null;

  it('installs the bundle into the other slot, restarts, finds the director (default health check), marks the slot good and reports success', async () => {
    await assign('gateway-1.raucb', '1.0.0', 1);
    await untilRestart();
    assert.equal(system.bootloader().primary, 'B');
    assert.equal(await system.reboot(), 'B');
    const r = await agent(['check', '--once']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /update installed/);
    assert.equal(system.bootloader().B, 'good');
    assert.equal(await primaryInstalled(), 'gateway-1.raucb');
    assert.equal((await w.device()).assignments.at(-1).status, 'succeeded');
  });

  it('confirms the committed slot to the bootloader at every start, so restarts without an update keep it', async () => {
    assert.equal(await system.reboot(), 'B');
    assert.deepEqual(system.tried(), ['B'], 'started by the bootloader, not yet confirmed');
    const r = await agent(['check', '--once']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(system.tried(), [], 'the agent confirmed it at its start');
    assert.equal(await system.reboot(), 'B', 'the bootloader keeps the committed slot');
  });

  it('goes back to the old slot when the new one is unhealthy, and reports HEALTH_CHECK_FAILED with the old image', async () => {
    const config = JSON.parse(readFileSync(w.configPath, 'utf8'));
    config.ecus.primary.installer.healthCheck = `test ! -e ${join(w.dir, 'UNHEALTHY')}`;
    writeFileSync(w.configPath, JSON.stringify(config));
    writeFileSync(join(w.dir, 'UNHEALTHY'), '');
    await assign('gateway-2.raucb', '2.0.0', 2);
    await untilRestart();
    assert.equal(await system.reboot(), 'A');
    await untilRestart(); // health check failed: slot A marked bad, back to B
    assert.deepEqual(system.bootloader(), { primary: 'B', A: 'bad', B: 'good' });
    assert.equal(await system.reboot(), 'B');
    const r = await agent(['check', '--once']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /HealthCheckError/);
    assert.equal(await primaryInstalled(), 'gateway-1.raucb');
    const last = (await w.device()).assignments.at(-1);
    assert.deepEqual([last.status, last.errorCode], ['failed', 'HEALTH_CHECK_FAILED']);
  });
});
