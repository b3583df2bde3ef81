/**
 * Partial bundle: one secondary's image transfer is cut off for good (its
 * serial line goes dead mid-transfer). No ECU may switch to the new images,
 * the ECU whose transfer was cut keeps running its old image, and the director
 * records the failure from the next manifest.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { assign, attackWorld, expectRefused, freshVehicle, type AttackWorld } from '../support/attack-kit.ts';

let w: AttackWorld;
before(async () => {
  w = await attackWorld();
});
after(async () => {
  await w?.close();
});

describe('partial bundle', () => {
  it('activates nothing when one secondary\'s transfer is cut off', async () => {
    const v = await freshVehicle(w, { link: 'emulated', baud: 115200, serial: { rtoMs: 150, maxAttempts: 3, reconnectMs: 500, maxResumes: 1 } });
    const brake = v.ecus.find((e) => e.spec.hardwareId === 'brake-ecu')!;
    await assign(w, v, w.v2);
    let cut = false;
    brake.sim!.once('begin', () => {
      // Let some of the image through, then the line dies for good.
      const poll = setInterval(() => {
        if (brake.sim!.store.inactiveLength() < 1024) return;
        clearInterval(poll);
        cut = true;
        brake.served!.emulator!.disconnect();
      }, 5);
    });
    await expectRefused(w, v, {
      code: 'LINK_TIMEOUT', ecuSerial: brake.spec.serial, kind: 'installation_failure',
      // The brake ECU cannot sign a report while its line is dead: the result goes in the manifest after it is back.
      thenRecover: () => brake.served!.emulator!.reconnect(),
    });
    assert.ok(cut, 'the transfer was cut');
    const partial = brake.sim!.store.inactiveLength();
    assert.ok(partial > 0 && partial < w.v2.byEcu(v)[brake.spec.serial]!.length, `the brake ECU holds a partial image (${partial} bytes) in its inactive slot only`);
    assert.equal(brake.sim!.store.state.pending?.verified ?? false, false);
  });
});
