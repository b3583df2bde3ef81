/**
 * Attacks through the director side and the supply chain, on the real servers
 * and agent: delegation abuse (a supplier signing outside its paths or
 * hardware IDs), director compromise (targets the image repository does not
 * back), replay (director metadata of another device, an old manifest), and a
 * secondary lying in its version report.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, createHash } from 'node:crypto';
import { Ed25519Signer, TargetFile, signEcuReport, type SignedEcuReport } from '@upfleet/core';
import type { Secondary } from '@upfleet/agent';
import { assign, attackWorldForFile, expectInstalled, expectLogged, expectRefused, freshVehicle } from '../support/attack-kit.ts';
import { compromisedDirectorPublish, forgeDelegated, stealSupplierKey } from '../support/forge.ts';
import { SUPPLIER_ROLE } from '../support/firmware.ts';

const w = attackWorldForFile();

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('delegation abuse', () => {
  /** The supplier signs `name` for `hardwareId`, a compromised director points `ecuSerial` at it. */
  async function supplierSigns(name: string, hardwareId: string, ecuSerial: string, deviceId: string) {
    const evil = randomBytes(4000);
    const info = new TargetFile(evil.length, { sha256: sha256(evil) }, { hardwareIds: [hardwareId], releaseCounter: 9, version: '9.9.9' });
    const forged = await forgeDelegated(w.stack, SUPPLIER_ROLE, [stealSupplierKey(w.supplierKeyFile)], { [name]: info });
    for (const [path, body] of Object.entries(forged)) w.imageProxy.on(path, { kind: 'serve', body });
    await compromisedDirectorPublish(w.stack, deviceId, { [name]: { ecuSerial, hardwareId, length: evil.length, hashes: { sha256: sha256(evil) } } });
  }

  it('ignores a target a supplier signed outside its delegated paths', async () => {
    const v = await freshVehicle(w);
    const door = `${v.deviceId}-door`;
    await supplierSigns('door-evil.bin', 'door-ecu', door, v.deviceId);
    await expectRefused(w, v, { code: 'TARGET_MISMATCH', field: 'missing', ecuSerial: door, resultCode: 'ARBITRARY_SOFTWARE' });
  });

  it('ignores a target a supplier signed for hardware outside its delegation', async () => {
    const v = await freshVehicle(w);
    await supplierSigns('brakes/gateway-evil.bin', 'gateway', v.primarySerial, v.deviceId);
    await expectRefused(w, v, { code: 'TARGET_MISMATCH', field: 'missing', ecuSerial: v.primarySerial, resultCode: 'ARBITRARY_SOFTWARE' });
  });
});

describe('director compromise', () => {
  it('refuses an image the image repository does not have', async () => {
    const v = await freshVehicle(w);
    const evil = randomBytes(5000);
    await compromisedDirectorPublish(w.stack, v.deviceId, {
      'gateway-6.6.6.bin': { ecuSerial: v.primarySerial, hardwareId: 'gateway', length: evil.length, hashes: { sha256: sha256(evil) } },
    });
    await expectRefused(w, v, { code: 'TARGET_MISMATCH', field: 'missing', ecuSerial: v.primarySerial, resultCode: 'ARBITRARY_SOFTWARE' });
    assert.ok(!w.imageProxy.requests.some((r) => r.path.startsWith('/targets/')), 'no image was downloaded');
  });

  it('refuses an image with a hash other than the image repository lists', async () => {
    const v = await freshVehicle(w);
    const gw = w.v2.byEcu(v)[v.primarySerial]!;
    await compromisedDirectorPublish(w.stack, v.deviceId, {
      [gw.name]: { ecuSerial: v.primarySerial, hardwareId: 'gateway', length: gw.length, hashes: { sha256: sha256(randomBytes(32)) } },
    });
    await expectRefused(w, v, { code: 'TARGET_MISMATCH', field: 'hashes', ecuSerial: v.primarySerial, resultCode: 'ARBITRARY_SOFTWARE' });
  });

  it('refuses an image built for other hardware', async () => {
    const v = await freshVehicle(w);
    const gw = w.v2.byEcu(v)[v.primarySerial]!;
    const door = `${v.deviceId}-door`;
    await compromisedDirectorPublish(w.stack, v.deviceId, {
      [gw.name]: { ecuSerial: door, hardwareId: 'door-ecu', length: gw.length, hashes: { sha256: gw.sha256 } },
    });
    await expectRefused(w, v, { code: 'TARGET_MISMATCH', field: 'hardwareId', ecuSerial: door, resultCode: 'WRONG_HARDWARE' });
  });
});

describe('replay', () => {
  it('refuses director metadata replayed from another device, keeps none of it, and updates from its own director afterwards (finding 16)', async () => {
    const a = await freshVehicle(w);
    // Two assignments put A's timestamp and snapshot versions above what B's director will publish next.
    await assign(w, a, w.v1);
    await assign(w, a, w.v2);
    const b = await freshVehicle(w);
    const store = w.stack.director.services.store;
    // Every director file B asks for is answered with A's file of the same name (same director keys).
    const state = (await store.getRepoState(a.deviceId))!;
    const names = ['timestamp.json', ...Array.from({ length: Math.max(state.targetsVersion, state.snapshotVersion) }, (_, i) => [`${i + 1}.snapshot.json`, `${i + 1}.targets.json`]).flat()];
    const filesOfA = new Map<string, Uint8Array>();
    for (const name of names) {
      const bytes = await store.getMetadataFile(a.deviceId, name);
      if (bytes) filesOfA.set(name, bytes);
    }
    w.directorProxy.on(new RegExp(`/devices/${b.deviceId}/metadata/(timestamp|\\d+\\.snapshot|\\d+\\.targets)\\.json$`), (req) => {
      const body = filesOfA.get(req.path.split('/').pop()!);
      return body ? { kind: 'serve', body } : undefined;
    });
    await expectRefused(w, b, { code: 'DEVICE_MISMATCH', resultCode: 'DEVICE_MISMATCH' });
    // A's timestamp is the first file refused: B stored nothing of A's, so its own next versions are not "rollbacks".
    w.directorProxy.clear();
    await assign(w, b, w.v2);
    await expectInstalled(b);
  });

  it('the director refuses a replayed manifest and changes nothing', async () => {
    const v = await freshVehicle(w);
    await assign(w, v, w.v2, ['door-ecu']);
    await expectInstalled(v);
    const sent = w.directorProxy.posts.filter((p) => p.path.endsWith('/manifest'));
    assert.ok(sent.length >= 2, 'the agent sent manifests through the proxy');
    const old = sent[0]!;
    const manifestsBefore = (await w.stack.manifests(v.deviceId)).length;
    const viewBefore = await w.stack.device(v.deviceId);
    const rejectedBefore = await w.stack.metric('upfleet_director_manifests_rejected_total', { code: 'MANIFEST_REPLAY' });
    const eventsBefore = (await w.stack.events(v.deviceId)).length;
    // The attacker replays the first manifest, with a valid device token (it sniffed one).
    const res = await fetch(`${w.stack.director.url}/api/v1/devices/${v.deviceId}/manifest`, {
      method: 'POST', body: old.body, headers: { 'content-type': 'application/json', authorization: old.headers.authorization as string },
    });
    const json = (await res.json()) as { error: { code: string } };
    assert.equal(res.status, 409);
    assert.equal(json.error.code, 'MANIFEST_REPLAY');
    assert.equal((await w.stack.manifests(v.deviceId)).length, manifestsBefore, 'no manifest was recorded');
    assert.deepEqual((await w.stack.device(v.deviceId)).ecus, viewBefore.ecus, 'the inventory did not change');
    assert.equal(await w.stack.metric('upfleet_director_manifests_rejected_total', { code: 'MANIFEST_REPLAY' }), rejectedBefore + 1, 'the director counted the replay');
    const event = await expectLogged(w, v, eventsBefore, { kind: 'manifest_refused', code: 'MANIFEST_REPLAY' });
    assert.equal(event.ecuSerial, null);
    assert.match(event.detail, /counter \d+ is not above \d+/);
    assert.equal((await w.stack.events(v.deviceId)).length, eventsBefore + 1, 'one event for one replay');
  });
});

describe('a lying secondary', () => {
  it('the director refuses a manifest whose ECU report is signed with the wrong key', async () => {
    const liar = Ed25519Signer.generate();
    let lies = false;
    const wrap = (s: Secondary): Secondary => {
      if (!s.ecuSerial.endsWith('-door')) return s;
      return new Proxy(s, {
        get(target, prop) {
          if (prop !== 'versionReport') {
            const value = Reflect.get(target, prop, target) as unknown;
            return typeof value === 'function' ? value.bind(target) : value;
          }
          return async (nonce: string): Promise<SignedEcuReport> => {
            const real = await target.versionReport(nonce);
            return lies ? signEcuReport({ ...real.signed, releaseCounter: 99 }, liar) : real;
          };
        },
      });
    };
    const v = await freshVehicle(w, { wrap });
    await v.agent!.checkOnce();
    const manifestsBefore = (await w.stack.manifests(v.deviceId)).length;
    const viewBefore = await w.stack.device(v.deviceId);
    const rejectedBefore = await w.stack.metric('upfleet_director_manifests_rejected_total', { code: 'BAD_ECU_SIGNATURE' });
    const eventsBefore = (await w.stack.events(v.deviceId)).length;
    lies = true;
    const before = v.installed();
    await v.agent!.checkOnce();
    assert.deepEqual(v.installed(), before, 'nothing was installed');
    // The report cannot be verified with the door ECU's registered key: the director refuses the manifest.
    assert.equal(await w.stack.metric('upfleet_director_manifests_rejected_total', { code: 'BAD_ECU_SIGNATURE' }), rejectedBefore + 1);
    // ... and logs it against the lying ECU, so an operator sees which one lies.
    const event = await expectLogged(w, v, eventsBefore, { kind: 'manifest_refused', code: 'BAD_ECU_SIGNATURE' });
    assert.equal(event.ecuSerial, `${v.deviceId}-door`);
    assert.equal((await w.stack.manifests(v.deviceId)).length, manifestsBefore, 'no manifest from the liar was recorded');
    const after = await w.stack.device(v.deviceId);
    const door = after.ecus.find((e: { serial: string }) => e.serial === `${v.deviceId}-door`);
    assert.deepEqual(door, viewBefore.ecus.find((e: { serial: string }) => e.serial === `${v.deviceId}-door`), 'the inventory kept the last verified report');
    assert.ok(door.releaseCounter < 99);
    assert.ok((await v.agent!.status()).outbox.rejected >= 1, 'the agent kept the refused manifest aside');
  });

  /**
   * A vehicle whose door ECU answers report requests with `lie(real driver, nonce, drivers by serial)`
   * once `lying` is set; `last` is its last honest report.
   */
  async function liarVehicle(lie: (door: Secondary, nonce: string, all: Map<string, Secondary>) => Promise<SignedEcuReport>) {
    const all = new Map<string, Secondary>();
    const state: { lying: boolean; last?: SignedEcuReport } = { lying: false };
    const wrap = (s: Secondary): Secondary => {
      all.set(s.ecuSerial, s);
      if (!s.ecuSerial.endsWith('-door')) return s;
      return new Proxy(s, {
        get(target, prop) {
          const value = Reflect.get(target, prop, target) as unknown;
          if (prop === 'versionReport') {
            return async (nonce: string) => (state.lying ? lie(target, nonce, all) : (state.last = await target.versionReport(nonce)));
          }
          return typeof value === 'function' ? value.bind(target) : value;
        },
      });
    };
    const v = await freshVehicle(w, { wrap });
    const honest = await v.agent!.checkOnce(); // nothing assigned: one honest cycle
    assert.notEqual(honest.result, 'failure', JSON.stringify(honest.failure));
    return { v, state };
  }

  /** The cycle fails before any manifest is signed, with the primary's typed error about the door ECU. */
  async function expectReportRefused(v: Awaited<ReturnType<typeof liarVehicle>>['v'], field: string, actual: (door: string) => string) {
    const manifestsBefore = (await w.stack.manifests(v.deviceId)).length;
    const out = await v.agent!.checkOnce();
    const door = `${v.deviceId}-door`;
    assert.equal(out.result, 'aborted', 'the cycle ends before anything is sent or fetched');
    assert.deepEqual([out.failure!.name, out.failure!.code, out.failure!.ecuSerial, out.failure!.state], ['EcuReportMismatchError', 'ECU_REPORT_MISMATCH', door, 'sendingManifest']);
    assert.equal(out.failure!.fields.field, field);
    assert.equal(out.failure!.fields.actual, actual(door));
    assert.equal((await w.stack.manifests(v.deviceId)).length, manifestsBefore, 'no manifest carried the report');
  }

  it('the primary refuses a secondary answering with another ECU\'s report', async () => {
    const { v, state } = await liarVehicle((_door, nonce, all) => all.get(`${v.deviceId}-brake`)!.versionReport(nonce));
    state.lying = true;
    await expectReportRefused(v, 'ecuSerial', () => `${v.deviceId}-brake`);
  });

  it('the primary refuses a secondary answering with an old report (stale nonce)', async () => {
    const { v, state } = await liarVehicle(async () => state.last!);
    const old = state.last!;
    assert.equal(old.signed.ecuSerial, `${v.deviceId}-door`);
    state.lying = true;
    await expectReportRefused(v, 'nonce', () => old.signed.nonce);
  });
});
