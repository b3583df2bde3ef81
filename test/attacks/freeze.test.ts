/**
 * Freeze attacks: the attacker keeps serving metadata that was once valid while
 * time moves on. The stack's clock (image repository server, agent) is moved
 * forward; the system clock is not touched. The director stays on real time
 * (device tokens are signed on real time) with metadata that outlives the
 * moves, so only the image repository's metadata can expire.
 */
import { afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { assign, attackWorldForFile, expectRefused, freshVehicle } from '../support/attack-kit.ts';
import { fetchImageMetadata } from '../support/forge.ts';

const DAY = 86400_000;

const YEAR = 365 * 86400;
const w = attackWorldForFile({ directorClock: 'real', directorExpiries: { targets: YEAR, snapshot: YEAR, timestamp: YEAR } });
afterEach(() => {
  w.stack.clock.reset();
});

describe('freeze', () => {
  it('refuses a timestamp frozen past its expiry', async () => {
    const v = await freshVehicle(w);
    await assign(w, v, w.v2);
    const frozen = await fetchImageMetadata(w.stack, 'timestamp.json');
    w.imageProxy.on('/metadata/timestamp.json', { kind: 'serve', body: frozen });
    w.stack.clock.advance(2 * DAY);
    w.stack.imageRepo.refresh(); // the server re-signs; the attacker keeps the old one
    const out = await expectRefused(w, v, { code: 'EXPIRED_METADATA', resultCode: 'FREEZE' });
    assert.match(out.failure!.message, /timestamp/);
  });

  it("reports a secondary's own freeze refusal as FREEZE (its clock sees the director targets expired)", async () => {
    const v = await freshVehicle(w, { link: 'emulated' });
    const door = v.ecus.find((e) => e.spec.hardwareId === 'door-ecu')!;
    // The primary's clock is right; the door ECU's is 400 days on, past the director targets' year.
    door.sim!.options.now = () => new Date(Date.now() + 400 * DAY);
    await assign(w, v, w.v2, ['door-ecu']);
    const out = await expectRefused(w, v, { code: 'ECU_REFUSED', ecuSerial: door.spec.serial, resultCode: 'FREEZE' });
    assert.equal(out.failure!.fields.ecuCode, 'METADATA_EXPIRED');
  });

  it('refuses targets metadata past its expiry (indefinite freeze of an offline role)', async () => {
    const v = await freshVehicle(w);
    await assign(w, v, w.v2);
    // Nothing re-signs the offline targets role: 91 days on, it has expired (90 days).
    w.stack.clock.advance(91 * DAY);
    w.stack.imageRepo.refresh();
    const out = await expectRefused(w, v, { code: 'EXPIRED_METADATA', resultCode: 'FREEZE' });
    assert.match(out.failure!.message, /targets/);
  });
});
