/**
 * The verified plan on the real stack (real servers, the in-process agent, ECUs on
 * socat pty pairs): what the primary installs is what both repositories agreed on
 * in one verification, and no ECU, full or partial, goes back to an older release.
 * The attacker holds the director's online keys and sits between the agent and
 * both servers.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { assign, attackWorldForFile, expectInstalled, expectRefused, freshVehicle } from '../support/attack-kit.ts';
import { compromisedDirectorPublish } from '../support/forge.ts';

const w = attackWorldForFile();

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('one verified plan per cycle (finding 1)', () => {
  it('the primary never installs a director target other than the one matched against the image repository, even when the director answers differently between two requests', async () => {
    const v = await freshVehicle(w, { link: 'pty' });
    const gw = w.v2.byEcu(v)[v.primarySerial]!;
    const evil = randomBytes(gw.length);
    const store = w.stack.director.services.store;
    // Answer 1, signed with the director's online keys: the real gateway name, evil bytes.
    await compromisedDirectorPublish(w.stack, v.deviceId, {
      [gw.name]: { ecuSerial: v.primarySerial, hardwareId: 'gateway', length: evil.length, hashes: { sha256: sha256(evil) }, releaseCounter: gw.releaseCounter },
    });
    const state = (await store.getRepoState(v.deviceId))!;
    const evilFiles = new Map<string, Uint8Array>();
    for (const name of ['timestamp.json', `${state.snapshotVersion}.snapshot.json`, `${state.targetsVersion}.targets.json`]) {
      evilFiles.set(name, (await store.getMetadataFile(v.deviceId, name))!);
    }
    // Answer 2, later and higher: the honest assignment the image repository backs.
    await assign(w, v, w.v2, ['gateway']);
    let timestampsServed = 0;
    w.directorProxy.on(new RegExp(`/devices/${v.deviceId}/metadata/([^/]+)$`), (req) => {
      const name = req.path.split('/').pop()!;
      if (name === 'timestamp.json' && timestampsServed++ > 0) return undefined; // later requests: the honest answer
      const body = evilFiles.get(name);
      return body ? { kind: 'serve', body } : undefined;
    });
    // The network attacker also serves the evil bytes where a client would look for them.
    w.imageProxy.on(`/targets/${sha256(evil)}.`, { kind: 'serve', body: evil });

    await expectRefused(w, v, { code: 'TARGET_MISMATCH', field: 'hashes', ecuSerial: v.primarySerial, resultCode: 'ARBITRARY_SOFTWARE' });
    assert.equal(timestampsServed, 1, 'one director refresh in the cycle: the plan comes from one answer');
    assert.ok(!w.imageProxy.requests.some((r) => r.path.includes(sha256(evil))), 'the evil image was never downloaded');
    assert.notDeepEqual(v.primarySlotBytes('a'), evil);
    assert.notDeepEqual(v.primarySlotBytes('b'), evil);
  });
});

describe('release counters on partial-verification ECUs (finding 3)', () => {
  it('a compromised director cannot send the partial door ECU back to an older release', async () => {
    const v = await freshVehicle(w, { link: 'pty' });
    await assign(w, v, w.v2, ['door-ecu']);
    await expectInstalled(v);
    const door = `${v.deviceId}-door`;
    const ecu = v.ecus.find((e) => e.spec.serial === door)!;
    assert.equal(ecu.sim!.store.state.releaseCounter, w.v2.byEcu(v)[door]!.releaseCounter, 'the partial ECU records the director release counter');
    const inventory = await w.stack.device(v.deviceId);
    assert.equal(inventory.ecus.find((e: { serial: string }) => e.serial === door).releaseCounter, 2, 'the director shows what the ECU reports');

    // The director (online key) assigns the older door image, which the image repository still lists.
    const old = w.v1.byEcu(v)[door]!;
    await compromisedDirectorPublish(w.stack, v.deviceId, {
      [old.name]: { ecuSerial: door, hardwareId: 'door-ecu', length: old.length, hashes: { sha256: old.sha256 }, releaseCounter: old.releaseCounter },
    });
    await expectRefused(w, v, { code: 'TARGET_MISMATCH', field: 'releaseCounter', ecuSerial: door, resultCode: 'IMAGE_ROLLBACK' });
    assert.equal(ecu.sim!.store.state.releaseCounter, 2);
  });
});
