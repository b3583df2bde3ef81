import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { matchDirectorTarget, TargetMismatchError, imageCustom, ecuIdentifiers, type MatchInput } from './matching.ts';
import { TargetFile } from '../metadata/file-info.ts';
import { utf8 } from '../bytes.ts';

const image = TargetFile.fromData(utf8('firmware 2.1'), ['sha256', 'sha512'], { hardwareIds: ['ecu-brake'], releaseCounter: 5, version: '2.1.0' });

function input(change: (i: MatchInput) => void = () => {}): MatchInput {
  const i: MatchInput = {
    name: 'fw.bin',
    directorTarget: new TargetFile(image.length, { ...image.hashes }, { ecuIdentifiers: { 'ecu-1': { hardwareId: 'ecu-brake' } } }),
    imageTarget: image,
    ecuSerial: 'ecu-1',
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
    matchDirectorTarget(input((i) => (i.directorTarget.hashes = { sha256: image.hashes.sha256! })));
  });

  describe('when the image repository has no such target', () => {
    it('refuses with field missing', () => refuses(input((i) => (i.imageTarget = undefined)), 'missing'));
  });
  describe('when the director target is not for this ECU (or another hardware ID)', () => {
    it('refuses with field ecu', () => {
      refuses(input((i) => (i.ecuSerial = 'ecu-2')), 'ecu');
      refuses(input((i) => (i.directorTarget.custom = { ecuIdentifiers: { 'ecu-1': { hardwareId: 'ecu-door' } } })), 'ecu');
    });
  });
  describe('when the length differs', () => {
    it('refuses with field length', () => refuses(input((i) => (i.directorTarget.length = image.length + 1)), 'length'));
  });
  describe('when a hash differs', () => {
    it('refuses with field hashes', () => refuses(input((i) => (i.directorTarget.hashes = { ...image.hashes, sha512: '00' })), 'hashes'));
  });
  describe('when the director lists an algorithm the image repository does not', () => {
    it('refuses with field hashes', () => refuses(input((i) => (i.directorTarget.hashes = { ...image.hashes, sha384: 'aa' })), 'hashes'));
  });
  describe('when the image is not for the ECU hardware (wrong hardware)', () => {
    it('refuses with field hardwareId', () =>
      refuses(input((i) => {
        i.hardwareId = 'ecu-door';
        i.directorTarget.custom = { ecuIdentifiers: { 'ecu-1': { hardwareId: 'ecu-door' } } };
      }), 'hardwareId'));
  });
  describe('when the release counter is lower than installed (image rollback)', () => {
    it('refuses with field releaseCounter', () => refuses(input((i) => (i.installedReleaseCounter = 6)), 'releaseCounter'));
  });
});

describe('imageCustom and ecuIdentifiers', () => {
  it('read well-formed fields and ignore malformed ones', () => {
    assert.deepEqual(imageCustom(new TargetFile(1, { sha256: 'a' }, { hardwareIds: ['x', 3], releaseCounter: 1.5 })), { hardwareIds: ['x'], releaseCounter: 0 });
    assert.deepEqual(ecuIdentifiers(new TargetFile(1, { sha256: 'a' }, { ecuIdentifiers: { a: { hardwareId: 'h' }, b: { hardwareId: 1 } } })), { a: 'h' });
  });
});
