/**
 * The fleet simulator against the real director and image repository: several
 * vehicles in one process (agent logic + simulated ECUs each, distinct keys)
 * register, take an assignment each and install it; and its CLI
 * (`upfleet-sim fleet`) starts vehicles that register with the director.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Stack, PROVISIONING_TOKEN } from '../support/stack.ts';
import { publishDemoFirmware } from '../support/firmware.ts';
import { startFleet, type Fleet } from '../../device-sim/src/fleet.ts';

const SIM_BIN = join(import.meta.dirname, '..', '..', 'device-sim', 'bin', 'upfleet-sim');

describe('fleet simulator', () => {
  let stack: Stack;
  let fleet: Fleet | undefined;
  before(async () => {
    stack = await Stack.start({ mqtt: 'embedded' });
  });
  after(async () => {
    await fleet?.close();
    await stack?.close();
  });

  it('runs three vehicles that each install their assignment', async () => {
    const fw = await publishDemoFirmware(stack, { sizes: { gateway: 8000, brake: 3000, door: 2000 } });
    fleet = await startFleet({
      devices: 3, ecus: 2, directorUrl: stack.director.url, imageRepoUrl: stack.imageRepo.url, mqttUrl: stack.director.mqttUrl!,
      directorRoot: stack.directorRootBytes, imageRoot: stack.imageRootBytes, provisioningToken: PROVISIONING_TOKEN,
      dir: join(stack.dir, 'fleet'), baud: 460800, hardwareIds: { primary: 'gateway', secondaries: ['brake-ecu', 'door-ecu'] },
    });
    const keys = new Set<string>();
    for (const v of fleet.vehicles) {
      const view = await stack.device(v.deviceId);
      assert.equal(view.ecus.length, 3);
      for (const e of view.ecus) keys.add(JSON.stringify(e.publicKey));
      await stack.assign(v.deviceId, view.ecus.map((e: { serial: string; hardwareId: string }) => ({ ecuSerial: e.serial, image: fw.images.find((i) => i.hardwareId === e.hardwareId)!.name })));
    }
    assert.equal(keys.size, 9, 'every ECU has its own key');
    const done = await fleet.done(60_000);
    assert.deepEqual(done, { ok: 3, failed: [] });
    // Manifests over MQTT are acknowledged on PUBACK and applied right after: allow a moment.
    for (const v of fleet.vehicles) {
      let statuses: string[] = [];
      for (let i = 0; i < 50; i++) {
        statuses = (await stack.device(v.deviceId)).assignments.map((a: { status: string }) => a.status);
        if (statuses[0] === 'succeeded') break;
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.deepEqual(statuses, ['succeeded'], v.deviceId);
    }
  });

  it('upfleet-sim fleet registers its vehicles with the director', async () => {
    const rootFile = join(stack.dir, 'director-root-for-cli.json');
    writeFileSync(rootFile, stack.directorRootBytes);
    const child = spawn(process.execPath, [SIM_BIN, 'fleet', '--devices', '2', '--ecus', '1', '--director', stack.director.url,
      '--image-repo', stack.imageRepo.url, '--director-root', rootFile, '--prefix', 'cli-car', '--dir', join(stack.dir, 'cli-fleet'), '--interval', '1'],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, UPFLEET_PROVISIONING_TOKEN: PROVISIONING_TOKEN } });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    try {
      const deadline = Date.now() + 30_000;
      while (!out.includes('"devices":2') && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 100));
      assert.match(out, /"devices":2/, err);
      for (const id of ['cli-car-1', 'cli-car-2']) assert.equal((await stack.device(id)).ecus.length, 2, id);
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
  });

  it('upfleet-sim fleet refuses missing arguments with exit code 2', async () => {
    const child = spawn(process.execPath, [SIM_BIN, 'fleet', '--devices', '2'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise((r) => child.once('exit', r));
    assert.equal(code, 2);
    assert.match(err, /--director/);
  });
});
