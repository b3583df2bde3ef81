import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { BadVersionError, ExpiredMetadataError, IncompleteBundleError, MalformedMetadataError, UnsignedMetadataError } from '../errors.ts';
import { Ed25519Signer } from '../keys.ts';
import { TargetFile } from '../metadata/file-info.ts';
import { RepositoryBuilder } from '../repository.ts';
import { MemoryStore } from '../testing/simulator.ts';
import { refusalCodeFor } from '../link/refusal-codes.ts';
import { TargetMismatchError } from './matching.ts';
import { EcuTargetError, ImageVerificationError, ImageVerifier, verifyForEcu, type RoleFiles, type VerifyInput } from './ecu-verification.ts';

const NOW = new Date('2030-01-01T00:00:00Z');
const IMAGE = new Uint8Array(1000).map((_, i) => (i * 7) & 0xff);
const EVIL = new Uint8Array(1000).fill(0xee);

/** Every root version, then the current roles: what a primary relays. */
function files(r: RepositoryBuilder): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  for (const [path, bytes] of r.files) {
    const root = /^metadata\/(\d+\.root\.json)$/.exec(path);
    if (root) out.set(root[1]!, bytes);
  }
  for (const role of r.targetsRoles) out.set(`${role}.json`, r.bytes(role));
  for (const role of ['root', 'timestamp', 'snapshot']) out.set(`${role}.json`, r.bytes(role));
  return out;
}

function without(bundle: RoleFiles, ...names: string[]): Map<string, Uint8Array> {
  const out = new Map(bundle);
  for (const n of names) out.delete(n);
  return out;
}

/** An image repository and a director assigning IMAGE (release 4) to ECU brake-1 (hardware `brake`); the ECU's stores pin both roots. */
async function repos() {
  const image = new RepositoryBuilder({ now: NOW });
  const director = new RepositoryBuilder({ now: NOW });
  image.commit();
  director.commit();
  const stores = { director: new MemoryStore(), image: new MemoryStore() };
  await stores.director.writeAtomic('root.json', director.bytes('root'));
  await stores.image.writeAtomic('root.json', image.bytes('root'));
  const t = image.addTarget('fw.bin', IMAGE, { custom: { hardwareIds: ['brake'], releaseCounter: 4 } });
  const assign = (info: TargetFile, releaseCounter = 4) =>
    director.setTarget('fw.bin', new TargetFile(info.length, { ...info.hashes }, { ecuIdentifiers: { 'brake-1': { hardwareId: 'brake' } }, releaseCounter }));
  assign(t);
  image.commit();
  director.commit();
  const input = (over: Partial<VerifyInput> = {}): VerifyInput => ({
    mode: 'partial', ecuSerial: 'brake-1', hardwareId: 'brake', stores, director: files(director), image: files(image),
    now: NOW, installedReleaseCounter: 0, ...over,
  });
  return { image, director, stores, input, assign };
}

const rejects = (p: Promise<unknown>, check: (e: any) => boolean) => assert.rejects(p, (e: unknown) => check(e));

describe('verifyForEcu', () => {
  describe('partial', () => {
    it('returns the target for this ECU with the director release counter, and keeps the targets durably', async () => {
      const { input, director, stores } = await repos();
      const v = await verifyForEcu(input());
      assert.deepEqual(v, { name: 'fw.bin', length: IMAGE.length, hashes: { ...director.targets.targets['fw.bin']!.hashes }, releaseCounter: 4 });
      assert.deepEqual(stores.director.files.get('targets.json'), director.bytes('targets'));
      assert.equal(stores.director.durable.get('targets.json'), true, 'the partial rollback floor survives a power cut');
    });
    it('refuses targets signed by a key outside the pinned root', async () => {
      const { input, director } = await repos();
      director.rotateKeys('targets', [Ed25519Signer.generate()]);
      director.commit();
      // Without root 2 the chain ends at the pinned root, whose targets key did not sign these.
      await rejects(verifyForEcu(input({ director: without(files(director), '2.root.json') })), (e) => e instanceof UnsignedMetadataError && e.role === 'targets');
    });
    it('follows a root rotation and stores the new root', async () => {
      const { input, director, stores } = await repos();
      director.rotateKeys('targets', [Ed25519Signer.generate()]);
      director.commit();
      await verifyForEcu(input());
      assert.deepEqual(stores.director.files.get('root.json'), director.bytes('root'));
    });
    it('refuses a root that skips a version', async () => {
      const { input, director } = await repos();
      director.rotateKeys('targets', [Ed25519Signer.generate()]);
      director.commit();
      director.rotateKeys('targets', [Ed25519Signer.generate()]);
      director.commit();
      const bundle = without(files(director), '3.root.json');
      bundle.set('2.root.json', director.bytes('root'));
      await rejects(verifyForEcu(input({ director: bundle })), (e) => e instanceof BadVersionError && e.role === 'root');
    });
    it('refuses a new root that has expired (finding 4), and stores nothing', async () => {
      const { input, director, stores } = await repos();
      director.expiry.root = 60;
      director.rotateKeys('targets', [Ed25519Signer.generate()]);
      director.commit();
      const before = stores.director.snapshot();
      await rejects(verifyForEcu(input({ now: new Date(NOW.getTime() + 120_000) })), (e) => e instanceof ExpiredMetadataError && e.role === 'root');
      assert.deepEqual(stores.director.files.get('targets.json'), before.get('targets.json'));
    });
    it('refuses director targets that delegate (finding 4), and stores nothing', async () => {
      const { input, director, stores } = await repos();
      director.delegate('targets', { name: 'supplier' });
      director.commit();
      await rejects(verifyForEcu(input()), (e) => e instanceof MalformedMetadataError && /delegates nothing/.test(e.reason));
      assert.equal(stores.director.files.has('targets.json'), false);
    });
    it('refuses expired targets', async () => {
      const { input } = await repos();
      await rejects(verifyForEcu(input({ now: new Date(NOW.getTime() + 100 * 86400_000) })), (e) => e instanceof ExpiredMetadataError && e.role === 'targets');
    });
    it('refuses director targets older than the ones it accepted before, after a reboot (rollback)', async () => {
      const { input, director, assign, image } = await repos();
      const old = files(director);
      assign(image.targets.targets['fw.bin']!);
      director.commit();
      await verifyForEcu(input());
      // A new verification over the same stores: what a rebooted ECU has.
      await rejects(verifyForEcu(input({ director: old })), (e) => e instanceof BadVersionError && e.role === 'targets');
    });
    it('refuses an image whose release counter is below the installed one (finding 3: a compromised director sends an old image)', async () => {
      const { input } = await repos();
      await rejects(
        verifyForEcu(input({ installedReleaseCounter: 5 })),
        (e) => e instanceof TargetMismatchError && e.field === 'releaseCounter' && refusalCodeFor(e) === 'IMAGE_ROLLBACK',
      );
    });
    it('refuses director targets without a release counter', async () => {
      const { input, director, image } = await repos();
      const t = image.targets.targets['fw.bin']!;
      director.setTarget('fw.bin', new TargetFile(t.length, { ...t.hashes }, { ecuIdentifiers: { 'brake-1': { hardwareId: 'brake' } } }));
      director.commit();
      await rejects(verifyForEcu(input()), (e) => e instanceof MalformedMetadataError && e.path.endsWith('releaseCounter'));
    });
    it('refuses director targets naming this ECU twice (finding 12)', async () => {
      const { input, director } = await repos();
      director.setTarget('other.bin', new TargetFile(3, { sha256: 'ab'.repeat(32) }, { ecuIdentifiers: { 'brake-1': { hardwareId: 'brake' } }, releaseCounter: 4 }));
      director.commit();
      await rejects(verifyForEcu(input()), (e) => e instanceof MalformedMetadataError && /two targets/.test(e.reason));
    });
    it('refuses when no target names this ECU', async () => {
      const { input } = await repos();
      await rejects(verifyForEcu(input({ ecuSerial: 'brake-2' })), (e) => e instanceof EcuTargetError && e.reason === 'none');
    });
    it('refuses a target for another hardware ID', async () => {
      const { input } = await repos();
      await rejects(verifyForEcu(input({ hardwareId: 'tcu' })), (e) => e instanceof EcuTargetError && e.reason === 'hardwareId');
    });
  });

  describe('full', () => {
    it('checks both repositories and takes the release counter from the image repository', async () => {
      const { input } = await repos();
      assert.equal((await verifyForEcu(input({ mode: 'full' }))).releaseCounter, 4);
    });
    it('refuses a director target whose hashes the image repository does not list', async () => {
      const { input, director } = await repos();
      const t = director.targets.targets['fw.bin']!;
      director.setTarget('fw.bin', new TargetFile(t.length, { sha256: '00'.repeat(32) }, t.custom));
      director.commit();
      await rejects(verifyForEcu(input({ mode: 'full' })), (e) => e instanceof TargetMismatchError && e.field === 'hashes');
    });
    it('refuses a release counter below the installed one', async () => {
      const { input } = await repos();
      await rejects(verifyForEcu(input({ mode: 'full', installedReleaseCounter: 5 })), (e) => e instanceof TargetMismatchError && e.field === 'releaseCounter');
    });
    it('needs the image repository metadata', async () => {
      const { input } = await repos();
      await rejects(verifyForEcu(input({ mode: 'full', image: new Map() })), (e) => e instanceof IncompleteBundleError && e.repo === 'image');
    });
    it('keeps the timestamp and snapshot of both repositories, so a rebooted ECU refuses older ones (finding 6)', async () => {
      const { input, director, image, stores } = await repos();
      const oldDirector = files(director);
      const oldImage = files(image);
      director.touch('timestamp');
      director.commit();
      image.touch('snapshot');
      image.commit();
      await verifyForEcu(input({ mode: 'full' }));
      assert.ok(stores.director.files.has('timestamp.json') && stores.image.files.has('snapshot.json'));
      await rejects(verifyForEcu(input({ mode: 'full', director: oldDirector })), (e) => e instanceof BadVersionError && e.role === 'timestamp');
      await rejects(verifyForEcu(input({ mode: 'full', image: oldImage })), (e) => e instanceof BadVersionError && e.role === 'timestamp');
    });

    describe('the delegation search is the engine\'s (finding 2)', () => {
      /** A compromised director and supplier key name EVIL; the terminating role the image repository trusts for fw.bin lists IMAGE. */
      async function shadowed() {
        const r = await repos();
        r.image.removeTarget('fw.bin');
        r.image.delegate('targets', { name: 'brake-supplier', paths: ['fw.bin'], terminating: true });
        r.image.delegate('targets', { name: 'rogue', paths: ['*'] });
        r.image.addTarget('fw.bin', IMAGE, { custom: { hardwareIds: ['brake'], releaseCounter: 4 }, role: 'brake-supplier' });
        const evil = r.image.addTarget('fw.bin', EVIL, { custom: { hardwareIds: ['brake'], releaseCounter: 4 }, role: 'rogue' });
        r.image.commit();
        r.assign(evil);
        r.director.commit();
        return r;
      }
      it('a terminating role the bundle lacks is an error, not a skip to a less trusted role', async () => {
        const { input, image } = await shadowed();
        await rejects(
          verifyForEcu(input({ mode: 'full', image: without(files(image), 'brake-supplier.json') })),
          (e) => e instanceof IncompleteBundleError && e.file === 'brake-supplier.json',
        );
      });
      it('with the whole bundle, the terminating role answers and the director is refused', async () => {
        const { input } = await shadowed();
        await rejects(verifyForEcu(input({ mode: 'full' })), (e) => e instanceof TargetMismatchError && e.field === 'hashes');
      });
      it('follows nested delegations', async () => {
        const { input, image, director, assign } = await repos();
        image.removeTarget('fw.bin');
        image.delegate('targets', { name: 'tier-1', paths: ['*'] });
        image.delegate('tier-1', { name: 'tier-2', paths: ['*'] });
        assign(image.addTarget('fw.bin', IMAGE, { custom: { hardwareIds: ['brake'], releaseCounter: 4 }, role: 'tier-2' }));
        image.commit();
        director.commit();
        assert.equal((await verifyForEcu(input({ mode: 'full' }))).name, 'fw.bin');
      });
      it('honours the delegation hardware-ID filter', async () => {
        const { input, image, director, assign } = await repos();
        image.removeTarget('fw.bin');
        image.delegate('targets', { name: 'camera-supplier', paths: ['*'], hardwareIds: ['camera'] });
        assign(image.addTarget('fw.bin', IMAGE, { custom: { hardwareIds: ['brake'], releaseCounter: 4 }, role: 'camera-supplier' }));
        image.commit();
        director.commit();
        await rejects(verifyForEcu(input({ mode: 'full' })), (e) => e instanceof TargetMismatchError && e.field === 'missing');
      });
    });
  });
});

describe('ImageVerifier', () => {
  const target = { name: 'fw.bin', length: 3, hashes: { sha256: '039058c6f2c0cb492c533b0a4d14ef77cc0f78abccced5287d84a1a2011cfb81' }, releaseCounter: 0 };
  it('accepts the signed bytes', () => {
    const v = new ImageVerifier(target);
    v.update(Uint8Array.of(1, 2));
    v.update(Uint8Array.of(3));
    assert.doesNotThrow(() => v.finish());
  });
  it('refuses other bytes of the same length (HASH_MISMATCH)', () => {
    const v = new ImageVerifier(target);
    v.update(Uint8Array.of(1, 2, 4));
    assert.throws(() => v.finish(), (e: unknown) => e instanceof ImageVerificationError && e.field === 'hashes' && refusalCodeFor(e) === 'HASH_MISMATCH');
  });
  it('refuses a different length (LENGTH_MISMATCH)', () => {
    const v = new ImageVerifier(target);
    v.update(Uint8Array.of(1, 2, 3, 4));
    assert.throws(() => v.finish(), (e: unknown) => e instanceof ImageVerificationError && e.field === 'length' && refusalCodeFor(e) === 'LENGTH_MISMATCH');
  });
});
