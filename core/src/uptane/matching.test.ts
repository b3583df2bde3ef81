import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { matchDirectorTarget, TargetMismatchError, imageCustom, type MatchInput } from './matching.ts';
import { MalformedMetadataError } from '../errors.ts';
import { TargetFile } from '../metadata/file-info.ts';
import { utf8 } from '../bytes.ts';

const image = TargetFile.fromData(utf8('firmware 2.1'), ['sha256', 'sha512'], { hardwareIds: ['ecu-brake'], releaseCounter: 5, version: '2.1.0' });

function input(change: (i: MatchInput) => void = () => {}): MatchInput {
  const i: MatchInput = {
    director: {
      name: 'fw.bin', ecuSerial: 'ecu-1', hardwareId: 'ecu-brake', releaseCounter: 5,
      target: new TargetFile(image.length, { ...image.hashes }, { ecuIdentifiers: { 'ecu-1': { hardwareId: 'ecu-brake' } }, releaseCounter: 5 }),
    },
    imageTarget: image,
    hardwareId: 'ecu-brake',
    installedReleaseCounter: 4,
  };
  change(i);
  return i;
}

function refuses(i: MatchInput, field: TargetMismatchError['field']): void {
  assert.throws(() => matchDirectorTarget(i), (e: unknown) => e instanceof TargetMismatchError && e.field === field && e.target === 'fw.bin');
}

describe('matchDirectorTarget', () => {
  it('accepts a target that matches in every way and returns the image custom', () => {
    assert.deepEqual(matchDirectorTarget(input()), { hardwareIds: ['ecu-brake'], releaseCounter: 5, version: '2.1.0' });
  });

  it('accepts an equal release counter', () => {
    matchDirectorTarget(input((i) => (i.installedReleaseCounter = 5)));
  });

  it('accepts a director listing a subset of the image hashes', () => {
    matchDirectorTarget(input((i) => (i.director.target.hashes = { sha256: image.hashes.sha256! })));
  });

  describe('when the image repository has no such target', () => {
    it('refuses with field missing', () => refuses(input((i) => (i.imageTarget = undefined)), 'missing'));
  });
  describe('when the director target is not for this ECU (or another hardware ID)', () => {
    it('refuses with field ecu', () => {
      refuses(input((i) => (i.director.hardwareId = 'ecu-door')), 'ecu');
    });
  });
  describe('when the length differs', () => {
    it('refuses with field length', () => refuses(input((i) => (i.director.target.length = image.length + 1)), 'length'));
  });
  describe('when a hash differs', () => {
    it('refuses with field hashes', () => refuses(input((i) => (i.director.target.hashes = { ...image.hashes, sha512: '00' })), 'hashes'));
  });
  describe('when the director lists an algorithm the image repository does not', () => {
    it('refuses with field hashes', () => refuses(input((i) => (i.director.target.hashes = { ...image.hashes, sha384: 'aa' })), 'hashes'));
  });
  describe('when the image is not for the ECU hardware (wrong hardware)', () => {
    it('refuses with field hardwareId', () =>
      refuses(input((i) => {
        i.hardwareId = 'ecu-door';
        i.director.hardwareId = 'ecu-door';
      }), 'hardwareId'));
  });
  describe('when the director copied another release counter than the image repository lists', () => {
    it('refuses with field directorReleaseCounter', () => refuses(input((i) => (i.director.releaseCounter = 9)), 'directorReleaseCounter'));
  });
  describe('when the release counter is lower than installed (image rollback)', () => {
    it('refuses with field releaseCounter', () => refuses(input((i) => (i.installedReleaseCounter = 6)), 'releaseCounter'));
  });
});

describe('imageCustom', () => {
  it('reads well-formed fields; absent ones are no hardware and release 0', () => {
    assert.deepEqual(imageCustom(new TargetFile(1, { sha256: 'a' }, { hardwareIds: ['x'], releaseCounter: 2, version: '1.0.0' })), { hardwareIds: ['x'], releaseCounter: 2, version: '1.0.0' });
    assert.deepEqual(imageCustom(new TargetFile(1, { sha256: 'a' })), { hardwareIds: [], releaseCounter: 0 });
  });
  for (const [what, custom] of [
    ['a non-string hardware ID', { hardwareIds: ['x', 3] }],
    ['a fractional release counter', { hardwareIds: ['x'], releaseCounter: 1.5 }],
    ['a negative release counter', { hardwareIds: ['x'], releaseCounter: -1 }],
    ['a numeric version', { hardwareIds: ['x'], version: 2 }],
  ] as const) {
    it(`refuses ${what} (it was read as 0 or dropped before)`, () => {
      assert.throws(() => imageCustom(new TargetFile(1, { sha256: 'a' }, custom as never), 'fw.bin'), (e: unknown) => e instanceof MalformedMetadataError && e.path.startsWith('image targets.fw.bin.custom'));
    });
  }
});
