/**
 * Names and strings from a hostile repository, end to end through the Updater
 * and the in-memory simulator (issue 11): target names an object inherits, a
 * target named `__proto__`, and a target name with a lone surrogate (which UTF-8
 * would turn into U+FFFD, so it would verify under a signature over other text),
 * and a director hash algorithm named `constructor` meeting parsed image hashes.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Updater } from './updater.ts';
import { RepositoryBuilder } from './repository.ts';
import { SimulatorFetcher, MemoryStore, METADATA_URL, TARGETS_URL } from './testing/simulator.ts';
import { assertRejectsWith, NOW, SIGNED_AT } from './testing/fixtures.ts';
import { fromUtf8, utf8 } from './bytes.ts';
import { MalformedMetadataError } from './errors.ts';
import { TargetFile } from './metadata/file-info.ts';
import { matchDirectorTarget, TargetMismatchError } from './uptane/matching.ts';

function client(
  build: (repo: RepositoryBuilder) => void,
  metaHashes = true,
): { repo: RepositoryBuilder; fetcher: SimulatorFetcher; store: MemoryStore; updater: () => Updater } {
  const repo = new RepositoryBuilder({ now: SIGNED_AT, metaHashes });
  build(repo);
  repo.commit();
  const fetcher = new SimulatorFetcher(repo);
  const store = new MemoryStore();
  store.files.set('root.json', repo.files.get('metadata/1.root.json')!);
  return { repo, fetcher, store, updater: () => new Updater({ metadataBaseUrl: METADATA_URL, targetBaseUrl: TARGETS_URL, fetcher, store, now: NOW }) };
}

describe('Updater with hostile names', () => {
  describe('findTarget of a name every object inherits', () => {
    for (const name of ['constructor', 'toString', 'hasOwnProperty', '__proto__']) {
      it(`finds no target ${name}`, async () => {
        const c = client((repo) => repo.addTarget('fw.bin', utf8('firmware')));
        assert.equal(await c.updater().findTarget(name), undefined);
      });
    }
  });

  describe('a target named __proto__', () => {
    it('is listed, found and downloaded like any other', async () => {
      const data = utf8('proto firmware');
      const c = client((repo) => repo.addTarget('__proto__', data));
      const updater = c.updater();
      const found = await updater.findTarget('__proto__');
      assert.ok(found);
      assert.equal(found.info.length, data.byteLength);
      assert.deepEqual(await updater.downloadTarget(found), data);
    });
  });

  describe('a targets file whose name has a lone surrogate', () => {
    it('is refused with MalformedMetadataError and not stored, though signed over the U+FFFD text', async () => {
      // Snapshot without lengths and hashes, so only the signature guards targets.json.
      const c = client((repo) => repo.addTarget('fw\uFFFD.bin', utf8('firmware')), false);
      // The same signed targets, but the JSON text names `fw\ud800.bin`: UTF-8 would make it U+FFFD again.
      const signed = fromUtf8(c.repo.bytes('targets'));
      assert.ok(signed.includes('fw\uFFFD.bin'));
      const forged = utf8(signed.replace('fw\uFFFD.bin', 'fw\\ud800.bin'));
      c.fetcher.overrides.set('metadata/1.targets.json', forged);
      const before = c.store.snapshot();
      await assertRejectsWith(() => c.updater().refresh(), MalformedMetadataError, { path: 'targets.signed' });
      assert.equal(c.store.files.get('targets.json'), before.get('targets.json'));
    });
  });

  describe('a director target listing a hash algorithm named constructor', () => {
    it('is a TargetMismatchError on hashes against a parsed image target, not a TypeError', () => {
      const image = TargetFile.fromJSON({ length: 3, hashes: { sha256: 'ab' } }, 'image.targets.fw.bin');
      const director = TargetFile.fromJSON(
        { length: 3, hashes: { sha256: 'ab', constructor: 'cd' }, custom: { ecuIdentifiers: { 'ecu-1': { hardwareId: 'hw' } } } },
        'director.targets.fw.bin',
      );
      const input = { director: { name: 'fw.bin', target: director, ecuSerial: 'ecu-1', hardwareId: 'hw', releaseCounter: 0 }, imageTarget: image, hardwareId: 'hw', installedReleaseCounter: 0 };
      assert.throws(
        () => matchDirectorTarget(input),
        (e: unknown) => e instanceof TargetMismatchError && e.field === 'hashes' && e.expected === 'no constructor',
      );
    });
  });
});
