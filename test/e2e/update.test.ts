/**
 * The whole system on loopback, end to end: the real image repository and
 * director, one vehicle whose two secondaries are simulated ECUs behind the
 * link emulator at 115200 baud (one with full verification), firmware for all
 * three ECUs (one signed by a supplier delegation), one assignment, one agent
 * cycle. The director must then hold a verified manifest in which every ECU
 * reports its assigned image.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Stack } from '../support/stack.ts';
import { Vehicle } from '../support/vehicle.ts';
import { publishDemoFirmware, assignDemoFirmware, DEMO_SECONDARIES } from '../support/firmware.ts';
import { createPtyPair } from '@upfleet/device-sim/src/index.ts';

/** Whether socat can make pty pairs here (ensureSystemTools installs it when root). */
async function ptysWork(): Promise<boolean> {
  const tools = (await import('../../scripts/system-tools.mjs' as string)) as { ensureSystemTools(o?: { quiet?: boolean }): string[] };
  if (tools.ensureSystemTools({ quiet: true }).length > 0) return false;
  try {
    await (await createPtyPair({ timeoutMs: 3000 })).close();
    return true;
  } catch {
    return false;
  }
}

for (const link of ['emulated', 'pty'] as const) describe(`end to end: one vehicle, three ECUs, ${link} serial links`, async () => {
  const skip = link === 'pty' && !(await ptysWork()) ? 'socat cannot make pty pairs on this machine' : false;
  let stack: Stack;
  let vehicle: Vehicle;
  before(async () => {
    if (skip) return;
    stack = await Stack.start({ mqtt: 'none' });
    vehicle = await Vehicle.create(stack, { deviceId: `e2e-car-${link}`, secondaries: DEMO_SECONDARIES(`e2e-car-${link}`), link, baud: 115200 });
  });
  after(async () => {
    await vehicle?.close();
    await stack?.close();
  });

  it('installs every assigned image and the director verifies the manifest', { skip }, async () => {
    const fw = await publishDemoFirmware(stack, { sizes: { gateway: 48_000, brake: 8_000, door: 6_000 }, data: (n) => randomBytes(n) });
    await assignDemoFirmware(stack, vehicle, fw);
    const out = await vehicle.agent!.checkOnce();
    assert.equal(out.result, 'success', JSON.stringify(out.failure));
    assert.equal(out.undelivered, 0);
    const installed = vehicle.installed();
    for (const [serial, image] of Object.entries(fw.byEcu(vehicle))) {
      assert.equal(installed[serial]?.filename, image.name, serial);
      assert.equal(installed[serial]?.hashes.sha256, image.sha256, serial);
    }
    const view = await stack.device(vehicle.deviceId);
    for (const ecu of view.ecus) assert.equal(ecu.installed?.filename, fw.byEcu(vehicle)[ecu.serial]!.name, ecu.serial);
    // Every ECU, the partial-verification door ECU too, reports the image's release counter.
    for (const ecu of view.ecus) assert.equal(ecu.releaseCounter, fw.byEcu(vehicle)[ecu.serial]!.releaseCounter, ecu.serial);
    assert.deepEqual(view.assignments.map((a: { status: string }) => a.status), ['succeeded']);
    assert.deepEqual(view.events, []);
  });
});
