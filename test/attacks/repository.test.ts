/**
 * Attacks on the image repository path (Uptane/TUF threat model), each on the
 * real image repository, director and agent with a loopback proxy between the
 * agent and the servers: arbitrary software, rollback, mix-and-match, endless
 * data, slow retrieval, key compromise. Each test asserts that the agent
 * refuses with the intended check, that nothing is installed, and that the
 * director records it from the next manifest (see test/support/attack-kit.ts).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Ed25519Signer, Metadata } from '@upfleet/core';
import { assign, attackWorldForFile, expectInstalled, expectRefused, flipByte, freshVehicle } from '../support/attack-kit.ts';
import { compromisedDirectorPublish, currentImageState, fetchImageMetadata, forgeRoot, forgeSnapshot, stealImageRepoKeys } from '../support/forge.ts';

const w = attackWorldForFile();

describe('arbitrary software', () => {
  it('refuses an image with one byte flipped in transit', async () => {
    const v = await freshVehicle(w);
    await assign(w, v, w.v2);
    w.imageProxy.on(/^\/targets\/.*door-2\.0\.0\.bin$/, { kind: 'rewrite', fn: flipByte });
    await expectRefused(w, v, { code: 'LENGTH_OR_HASH_MISMATCH', ecuSerial: `${v.deviceId}-door`, resultCode: 'ARBITRARY_SOFTWARE' });
    assert.ok(w.imageProxy.requests.some((r) => r.action === 'rewrite'), 'the proxy did flip the image');
  });

  it('refuses image repository metadata with a bad signature', async () => {
    const v = await freshVehicle(w);
    await assign(w, v, w.v2);
    w.imageProxy.on('/metadata/timestamp.json', {
      kind: 'rewrite',
      fn: (body) => {
        const json = JSON.parse(body.toString('utf8'));
        const sig: string = json.signatures[0].sig;
        json.signatures[0].sig = (sig[0] === '0' ? '1' : '0') + sig.slice(1);
        return Buffer.from(JSON.stringify(json));
      },
    });
    await expectRefused(w, v, { code: 'UNSIGNED_METADATA', resultCode: 'ARBITRARY_SOFTWARE' });
  });

  it('refuses metadata signed by a key the root does not list for the role', async () => {
    const v = await freshVehicle(w);
    await assign(w, v, w.v2);
    const { timestamp } = await currentImageState(w.stack);
    timestamp.signatures.clear();
    timestamp.signed.version += 1;
    timestamp.sign(Ed25519Signer.generate());
    w.imageProxy.on('/metadata/timestamp.json', { kind: 'serve', body: timestamp.toBytes() });
    await expectRefused(w, v, { code: 'UNSIGNED_METADATA', resultCode: 'ARBITRARY_SOFTWARE' });
  });
});

describe('rollback', () => {
  it('refuses an image repository timestamp older than the one it trusts', async () => {
    const v = await freshVehicle(w);
    const old = await currentImageState(w.stack);
    await assign(w, v, w.v1, ['gateway']);
    // Something newer is published, and the agent sees it while installing v1.
    await w.stack.publish({ name: 'extra-1.bin', data: new Uint8Array(10), hardwareIds: ['gateway'], version: '0.0.0', releaseCounter: 0 });
    await expectInstalled(v);
    await assign(w, v, w.v2, ['gateway']);
    w.imageProxy.on('/metadata/timestamp.json', { kind: 'serve', body: old.timestamp.toBytes() });
    await expectRefused(w, v, { code: 'BAD_VERSION', name: 'BadVersionError', resultCode: 'METADATA_ROLLBACK' });
  });

  it('refuses director metadata older than the one it trusts', async () => {
    const v = await freshVehicle(w);
    await v.agent!.checkOnce();
    const old = (await w.stack.director.services.store.getMetadataFile(v.deviceId, 'timestamp.json'))!;
    await assign(w, v, w.v1, ['door-ecu']);
    await expectInstalled(v);
    await assign(w, v, w.v2, ['door-ecu']);
    w.directorProxy.on(`/devices/${v.deviceId}/metadata/timestamp.json`, { kind: 'serve', body: old });
    await expectRefused(w, v, { code: 'BAD_VERSION', name: 'BadVersionError', resultCode: 'METADATA_ROLLBACK' });
  });

  it('refuses an image with a lower release counter than the ECU runs', async () => {
    const v = await freshVehicle(w);
    await assign(w, v, w.v2, ['gateway']);
    await expectInstalled(v);
    // The director will not assign a downgrade; a compromised one signs it anyway.
    const gw1 = w.v1.byEcu(v)[v.primarySerial]!;
    await compromisedDirectorPublish(w.stack, v.deviceId, {
      [gw1.name]: { ecuSerial: v.primarySerial, hardwareId: 'gateway', length: gw1.length, hashes: { sha256: gw1.sha256 }, releaseCounter: gw1.releaseCounter },
    });
    await expectRefused(w, v, { code: 'TARGET_MISMATCH', field: 'releaseCounter', ecuSerial: v.primarySerial, resultCode: 'IMAGE_ROLLBACK' });
  });
});

describe('mix-and-match', () => {
  it('refuses a snapshot whose hash differs from what the timestamp says', async () => {
    const v = await freshVehicle(w);
    await assign(w, v, w.v2);
    const { timestamp } = await currentImageState(w.stack);
    const n = timestamp.signed.snapshotMeta.version;
    const older = await fetchImageMetadata(w.stack, `${n - 1}.snapshot.json`);
    w.imageProxy.on(`/metadata/${n}.snapshot.json`, { kind: 'serve', body: older });
    await expectRefused(w, v, { code: 'LENGTH_OR_HASH_MISMATCH', resultCode: 'MIX_AND_MATCH' });
  });

  it('refuses targets whose version differs from what the snapshot says', async () => {
    const v = await freshVehicle(w);
    await assign(w, v, w.v2);
    // A compromised server (online keys) lists targets v+5 and serves v under that name.
    const { snapshot } = await currentImageState(w.stack);
    const current = snapshot.signed.meta['targets.json']!.version;
    const bytes = await fetchImageMetadata(w.stack, `${current}.targets.json`);
    const forged = await forgeSnapshot(w.stack, { targets: { version: current + 5, bytes } });
    for (const [path, body] of Object.entries(forged)) w.imageProxy.on(path, { kind: 'serve', body });
    const out = await expectRefused(w, v, { code: 'BAD_VERSION', resultCode: 'MIX_AND_MATCH' });
    assert.match(out.failure!.message, /targets/);
  });
});

describe('endless data', () => {
  it('stops reading metadata at the size cap', async () => {
    const v = await freshVehicle(w);
    await assign(w, v, w.v2);
    w.imageProxy.on('/metadata/timestamp.json', { kind: 'endless' });
    // Endless data is an attack (Uptane, TUF): the agent reports ENDLESS_DATA and the director records an attack.
    const out = await expectRefused(w, v, { code: 'LENGTH_LIMIT', kind: 'attack', resultCode: 'ENDLESS_DATA' });
    const limit = (out.failure!.fields as { limit?: number }).limit;
    assert.ok(typeof limit === 'number' && limit <= 256 * 1024, `stopped at a cap no larger than the configured one (${limit})`);
  });

  it('stops reading an image at the length the targets metadata gives', async () => {
    const v = await freshVehicle(w);
    await assign(w, v, w.v2);
    w.imageProxy.on(/^\/targets\/.*gateway-2\.0\.0\.bin$/, { kind: 'endless' });
    await expectRefused(w, v, { code: 'LENGTH_LIMIT', ecuSerial: v.primarySerial, kind: 'attack', resultCode: 'ENDLESS_DATA' });
  });
});

describe('slow retrieval', () => {
  it('gives up on a server that trickles an image', async () => {
    const v = await freshVehicle(w, { limits: { minBytesPerSecond: 2000, slowWindowSeconds: 0.5 } });
    await assign(w, v, w.v2);
    w.imageProxy.on(/^\/targets\/.*gateway-2\.0\.0\.bin$/, { kind: 'trickle', bytesPerSecond: 200 });
    const t0 = Date.now();
    await expectRefused(w, v, { code: 'SLOW_RETRIEVAL', ecuSerial: v.primarySerial, kind: 'attack', resultCode: 'SLOW_RETRIEVAL' });
    assert.ok(Date.now() - t0 < 20_000, 'the slow download was cut off early');
  });

  it('keeps the assignment pending through a trickled cycle; the next honest cycle installs and completes it', async () => {
    const v = await freshVehicle(w, { limits: { minBytesPerSecond: 2000, slowWindowSeconds: 0.5 } });
    await assign(w, v, w.v2);
    const assignmentId = (await w.stack.device(v.deviceId)).assignments.at(-1).id as string;
    const status = async () => (await w.stack.admin('GET', `/assignments/${assignmentId}`)).json.status as string;
    w.imageProxy.on(/^\/targets\/.*gateway-2\.0\.0\.bin$/, { kind: 'trickle', bytesPerSecond: 200 });
    await expectRefused(w, v, { code: 'SLOW_RETRIEVAL', ecuSerial: v.primarySerial, kind: 'attack', resultCode: 'SLOW_RETRIEVAL' });
    assert.ok(['pending', 'downloading'].includes(await status()), `the director keeps the assignment open (${await status()})`);
    w.imageProxy.clear(); // the network turns honest
    await expectInstalled(v);
    for (const [serial, image] of Object.entries(w.v2.byEcu(v))) assert.equal(v.installed()[serial]?.filename, image.name, serial);
    assert.equal(await status(), 'succeeded');
    const view = await w.stack.device(v.deviceId);
    assert.equal(view.assignments.length, 1, 'no second assignment was needed');
  });
});

describe('key compromise', () => {
  it('refuses a new root signed by fewer root keys than the threshold', async () => {
    const v = await freshVehicle(w);
    await assign(w, v, w.v2);
    const [stolen] = stealImageRepoKeys(w.stack, 'root', 1);
    const attacker = Ed25519Signer.generate();
    const root = await forgeRoot(w.stack, [stolen!, attacker], (r) => {
      for (const id of [...r.roles.timestamp.keyids]) r.revokeKey('timestamp', id);
      r.addKey('timestamp', attacker.key);
    });
    w.imageProxy.on(`/metadata/${root.signed.version}.root.json`, { kind: 'serve', body: root.toBytes() });
    const out = await expectRefused(w, v, { code: 'UNSIGNED_METADATA', resultCode: 'ARBITRARY_SOFTWARE' });
    assert.match(out.failure!.message, /root/);
  });

  it('refuses a root rotation chain with a missing version', async () => {
    const v = await freshVehicle(w);
    await assign(w, v, w.v2);
    const signers = stealImageRepoKeys(w.stack, 'root', 2);
    const published = Metadata.fromBytes(await fetchImageMetadata(w.stack, 'root.json'), 'root').signed.version;
    const skipped = await forgeRoot(w.stack, signers, () => {}, 1);
    assert.equal(skipped.signed.version, published + 2);
    w.imageProxy.on(`/metadata/${published + 1}.root.json`, { kind: 'serve', body: skipped.toBytes() });
    await expectRefused(w, v, { code: 'BAD_VERSION', name: 'BadVersionError', resultCode: 'METADATA_ROLLBACK' });
  });
});
