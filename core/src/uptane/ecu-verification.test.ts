import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { BadVersionError, ExpiredMetadataError, UnsignedMetadataError } from '../errors.ts';
import { Ed25519Signer } from '../keys.ts';
import { TargetFile } from '../metadata/file-info.ts';
import { RepositoryBuilder } from '../repository.ts';
import { TargetMismatchError } from '../uptane/matching.ts';
import { EcuTargetError, ImageVerificationError, ImageVerifier, IncompleteBundleError, refusalCodeFor, verifyForEcu, type VerifyInput } from './ecu-verification.ts';

const NOW = new Date('2030-01-01T00:00:00Z');
const IMAGE = new Uint8Array(1000).map((_, i) => (i * 7) & 0xff);

/** An image repository and a director assigning IMAGE to ECU brake-1 (hardware `brake`). */
function repos() {
  const image = new RepositoryBuilder({ now: NOW });
  const director = new RepositoryBuilder({ now: NOW });
  image.commit();
  director.commit();
  const pinned = { directorRoot: director.bytes('root'), imageRoot: image.bytes('root'), directorTargetsVersion: 0 };
  const t = image.addTarget('fw.bin', IMAGE, { custom: { hardwareIds: ['brake'], releaseCounter: 4 } });
  director.setTarget('fw.bin', new TargetFile(t.length, { ...t.hashes }, { ecuIdentifiers: { 'brake-1': { hardwareId: 'brake' } } }));
  image.commit();
  director.commit();
  const files = (r: RepositoryBuilder) => Object.fromEntries(['root', 'timestamp', 'snapshot', 'targets'].map((n) => [`${n}.json`, r.bytes(n)]));
  const input = (over: Partial<VerifyInput> = {}): VerifyInput => ({
    mode: 'partial', ecuSerial: 'brake-1', hardwareId: 'brake', trust: pinned, director: files(director), image: files(image),
    now: NOW, installedReleaseCounter: 0, ...over,
  });
  return { image, director, pinned, files, input };
}

describe('verifyForEcu', () => {
  describe('partial', () => {
    it('returns the target for this ECU and the accepted targets version', () => {
      const { input, director } = repos();
      const v = verifyForEcu(input());
      assert.equal(v.target.name, 'fw.bin');
      assert.equal(v.target.length, IMAGE.length);
      assert.equal(v.trust.directorTargetsVersion, director.targets.version);
    });
    it('refuses targets signed by a key outside the pinned root', () => {
      const { input, director, files } = repos();
      director.rotateKeys('targets', [Ed25519Signer.generate()]);
      director.commit();
      // The new targets key came with root v2; without it the ECU still trusts only the old key.
      const { 'root.json': _, ...withoutRoot } = files(director);
      assert.throws(() => verifyForEcu(input({ director: withoutRoot })), (e: unknown) => e instanceof UnsignedMetadataError && e.role === 'targets');
    });
    it('follows a root rotation and pins the new root', () => {
      const { input, director, files } = repos();
      director.rotateKeys('targets', [Ed25519Signer.generate()]);
      director.commit();
      const v = verifyForEcu(input({ director: files(director) }));
      assert.deepEqual(v.trust.directorRoot, director.bytes('root'));
    });
    it('refuses a root that skips a version', () => {
      const { input, director, files } = repos();
      director.rotateKeys('targets', [Ed25519Signer.generate()]);
      director.commit();
      director.rotateKeys('targets', [Ed25519Signer.generate()]);
      director.commit();
      assert.throws(() => verifyForEcu(input({ director: files(director) })), (e: unknown) => e instanceof BadVersionError && e.role === 'root');
    });
    it('refuses expired targets', () => {
      const { input } = repos();
      const later = new Date(NOW.getTime() + 100 * 86400_000);
      assert.throws(() => verifyForEcu(input({ now: later })), (e: unknown) => e instanceof ExpiredMetadataError && e.role === 'targets');
    });
    it('refuses a targets version below the one accepted before (rollback)', () => {
      const { input, pinned } = repos();
      assert.throws(() => verifyForEcu(input({ trust: { ...pinned, directorTargetsVersion: 99 } })), (e: unknown) => e instanceof BadVersionError && e.role === 'targets');
    });
    it('refuses when no target names this ECU', () => {
      const { input } = repos();
      assert.throws(() => verifyForEcu(input({ ecuSerial: 'brake-2' })), (e: unknown) => e instanceof EcuTargetError && e.reason === 'none');
    });
    it('refuses a target for another hardware ID', () => {
      const { input } = repos();
      assert.throws(() => verifyForEcu(input({ hardwareId: 'tcu' })), (e: unknown) => e instanceof EcuTargetError && e.reason === 'hardwareId');
    });
  });

  describe('full', () => {
    it('checks both repositories and takes the release counter from the image repository', () => {
      const { input } = repos();
      const v = verifyForEcu(input({ mode: 'full' }));
      assert.equal(v.target.releaseCounter, 4);
    });
    it('refuses a director target whose hashes the image repository does not list', () => {
      const { input, director, files } = repos();
      const t = director.targets.targets['fw.bin']!;
      director.setTarget('fw.bin', new TargetFile(t.length, { sha256: '00'.repeat(32) }, t.custom));
      director.commit();
      assert.throws(() => verifyForEcu(input({ mode: 'full', director: files(director) })), (e: unknown) => e instanceof TargetMismatchError && e.field === 'hashes');
      assert.doesNotThrow(() => verifyForEcu(input({ mode: 'partial', director: files(director) })), 'partial trusts the director alone');
    });
    it('refuses a release counter below the installed one', () => {
      const { input } = repos();
      assert.throws(() => verifyForEcu(input({ mode: 'full', installedReleaseCounter: 5 })), (e: unknown) => e instanceof TargetMismatchError && e.field === 'releaseCounter');
    });
    it('needs the image repository metadata', () => {
      const { input } = repos();
      assert.throws(() => verifyForEcu(input({ mode: 'full', image: {} })), (e: unknown) => e instanceof IncompleteBundleError && e.repo === 'image');
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
