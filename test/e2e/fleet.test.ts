/**
 * The fleet simulator against the real director and image repository: several
 * vehicles in one process (agent logic + simulated ECUs each, distinct keys)
 * register, take an assignment each and install it; and its CLI
 * (`upfleet-sim fleet`) starts vehicles that register with the director; the
 * same fleet spread over two child processes (what the demo runs); and light
 * simulated vehicles (bench:fleet's) that verify, install and report through
 * the real servers.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Stack, PROVISIONING_TOKEN } from '../support/stack.ts';
import { publishDemoFirmware, SUPPLIER_ROLE } from '../support/firmware.ts';
import { startFleet, type Fleet } from '../../device-sim/src/fleet.ts';
import { startFleetProcesses } from '../../device-sim/src/fleet-processes.ts';
import { LightVehicle } from '../../device-sim/src/light-vehicle.ts';
import { createLightHttp } from '../../device-sim/src/light-http.ts';

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
  /** Whether an earlier test made the brake supplier's delegation (each test also runs alone). */
  const hasSupplier = () => {
    try {
      return stack.supplierKeyFiles(SUPPLIER_ROLE).length > 0;
    } catch {
      return false;
    }
  };

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

  it('a fleet spread over two processes numbers its vehicles as one process would, and installs', async () => {
    const fw = await publishDemoFirmware(stack, { sizes: { gateway: 4000, brake: 2000, door: 1000 }, version: '3.0.0', releaseCounter: 3, delegated: hasSupplier() });
    const procs = await startFleetProcesses({
      processes: 2, devices: 2, ecus: 1, prefix: 'proc-car', directorUrl: stack.director.url, imageRepoUrl: stack.imageRepo.url, mqttUrl: stack.director.mqttUrl!,
      directorRoot: stack.directorRootBytes, imageRoot: stack.imageRootBytes, provisioningToken: PROVISIONING_TOKEN,
      dir: join(stack.dir, 'proc-fleet'), baud: 460800, hardwareIds: { primary: 'gateway', secondaries: ['door-ecu'] },
    });
    try {
      for (const id of ['proc-car-1', 'proc-car-2']) {
        const view = await stack.device(id);
        await stack.assign(id, view.ecus.map((e: { serial: string; hardwareId: string }) => ({ ecuSerial: e.serial, image: fw.images.find((i) => i.hardwareId === e.hardwareId)!.name })));
      }
      assert.deepEqual(await procs.done(60_000), { ok: 2, failed: [] });
    } finally {
      await procs.close();
    }
  });

  it('light vehicles register, verify both repositories, install and have their result manifest accepted', async () => {
    const fw = await publishDemoFirmware(stack, { sizes: { gateway: 3000, brake: 2000, door: 1000 }, version: '4.0.0', releaseCounter: 4, delegated: hasSupplier() });
    const http = createLightHttp({ maxSockets: 4 });
    try {
      const v = new LightVehicle({
        deviceId: 'light-car-1', directorUrl: stack.director.url, imageRepoUrl: stack.imageRepo.url, directorRoot: stack.directorRootBytes,
        imageRoot: stack.imageRootBytes, hardwareIds: { primary: 'gateway', secondaries: ['brake-ecu', 'door-ecu'] }, http,
      });
      await v.register(PROVISIONING_TOKEN);
      assert.deepEqual(await v.cycle(), { kind: 'noUpdate' });
      const view = await stack.device(v.deviceId);
      assert.equal(new Set(view.ecus.map((e: { publicKey: unknown }) => JSON.stringify(e.publicKey))).size, 3, 'every ECU has its own key');
      await stack.assign(v.deviceId, view.ecus.map((e: { serial: string; hardwareId: string }) => ({ ecuSerial: e.serial, image: fw.images.find((i) => i.hardwareId === e.hardwareId)!.name })));
      const out = await v.cycle();
      assert.equal(out.kind, 'updated');
      const after = await stack.device(v.deviceId);
      assert.deepEqual(after.assignments.map((a: { status: string }) => a.status), ['succeeded']);
      for (const e of after.ecus) assert.equal(e.installed?.hashes.sha256, fw.images.find((i) => i.hardwareId === e.hardwareId)!.sha256, e.serial);
      assert.deepEqual(after.events, []);
    } finally {
      http.close();
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
