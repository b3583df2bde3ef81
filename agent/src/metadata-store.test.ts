import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ed25519Signer, RepositoryBuilder, Updater, UnsignedMetadataError, utf8 } from '@upfleet/core';
import { verifyForEcu } from '@upfleet/core';
import { MemoryStore, METADATA_URL, SimulatorFetcher } from '@upfleet/core/testing/simulator.ts';
import { openDb } from './db.ts';
import { SqliteMetadataStore } from './metadata-store.ts';

const NOW = new Date('2030-01-01T00:00:00Z');
const dir = mkdtempSync(join(tmpdir(), 'upfleet-mdstore-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A director repository for one ECU whose root was rotated twice after the ECU pinned version 1. */
function rotatedDirector() {
  const repo = new RepositoryBuilder({ now: NOW });
  repo.addTarget('fw.bin', utf8('firmware'), { custom: { ecuIdentifiers: { 'ecu-1': { hardwareId: 'hw-1' } }, releaseCounter: 1 } });
  repo.commit();
  const pinnedRoot = repo.bytes('root');
  repo.rotateKeys('root', [Ed25519Signer.generate()]);
  repo.commit();
  repo.rotateKeys('root', [Ed25519Signer.generate()]);
  repo.rotateKeys('targets', [Ed25519Signer.generate()]);
  repo.commit();
  return { repo, pinnedRoot };
}

describe('SqliteMetadataStore', () => {
  describe('when the updater follows a root rotation', () => {
    it('keeps every root version, so a secondary pinned at an older root can follow the chain', async () => {
      const { repo, pinnedRoot } = rotatedDirector();
      const store = new SqliteMetadataStore(openDb(join(dir, 'a')), 'director');
      store.writeSync('root.json', pinnedRoot);
      await new Updater({ metadataBaseUrl: METADATA_URL, fetcher: new SimulatorFetcher(repo), store, now: NOW }).refresh();

      assert.deepEqual(store.names().filter((n) => n.endsWith('root.json')).sort(), ['1.root.json', '2.root.json', '3.root.json', 'root.json']);

      const bundle = new Map(store.names().map((n) => [n, store.readSync(n)!]));
      const ecuStore = new MemoryStore();
      await ecuStore.writeAtomic('root.json', pinnedRoot);
      const verified = await verifyForEcu({
        mode: 'partial', ecuSerial: 'ecu-1', hardwareId: 'hw-1', now: NOW, installedReleaseCounter: 0,
        stores: { director: ecuStore }, director: bundle,
      });
      assert.equal(verified.name, 'fw.bin');
      assert.deepEqual(ecuStore.files.get('root.json'), repo.bytes('root'));
    });

    it('without version 2, root 3 is not signed by the pinned root 1 keys (what the chain is for)', async () => {
      const { repo, pinnedRoot } = rotatedDirector();
      const store = new SqliteMetadataStore(openDb(join(dir, 'b')), 'director');
      store.writeSync('root.json', pinnedRoot);
      await new Updater({ metadataBaseUrl: METADATA_URL, fetcher: new SimulatorFetcher(repo), store, now: NOW }).refresh();

      // The chain ends where a version is missing: the ECU stays at root 1, whose keys did not sign these targets.
      const bundle = new Map(store.names().filter((n) => n !== '2.root.json').map((n) => [n, store.readSync(n)!]));
      const ecuStore = new MemoryStore();
      await ecuStore.writeAtomic('root.json', pinnedRoot);
      await assert.rejects(
        verifyForEcu({
          mode: 'partial', ecuSerial: 'ecu-1', hardwareId: 'hw-1', now: NOW, installedReleaseCounter: 0,
          stores: { director: ecuStore }, director: bundle,
        }),
        (e: unknown) => e instanceof UnsignedMetadataError && e.role === 'targets' && e.validSignatures === 0,
      );
      assert.deepEqual(ecuStore.files.get('root.json'), pinnedRoot);
    });
  });

  describe('for a write the updater marks durable: false (a targets role)', () => {
    const FULL = 2;

    it('commits it (another connection reads the bytes) and leaves the connection at synchronous=FULL', () => {
      const db = openDb(join(dir, 'c'));
      const store = new SqliteMetadataStore(db, 'image');
      store.writeSync('supplier.json', utf8('cached role'), { durable: false });
      assert.equal(db.pragma('synchronous', { simple: true }), FULL);
      const other = new SqliteMetadataStore(openDb(join(dir, 'c')), 'image');
      assert.deepEqual(other.readSync('supplier.json'), utf8('cached role'));
    });

    it('leaves the connection at synchronous=FULL when the write fails', () => {
      const db = openDb(join(dir, 'd'));
      db.exec("CREATE TRIGGER refuse BEFORE INSERT ON metadata WHEN NEW.name = 'refused.json' BEGIN SELECT RAISE(ABORT, 'refused'); END");
      const store = new SqliteMetadataStore(db, 'image');
      assert.throws(() => store.writeSync('refused.json', utf8('x'), { durable: false }), /refused/);
      assert.equal(db.pragma('synchronous', { simple: true }), FULL);
      assert.equal(store.readSync('refused.json'), undefined);
    });

    it('gets it from the updater for delegated roles only: root, timestamp and snapshot stay durable', async () => {
      const repo = new RepositoryBuilder({ now: NOW });
      repo.delegate('targets', { name: 'supplier', paths: ['*'] });
      repo.addTarget('fw.bin', utf8('firmware'), { role: 'supplier' });
      repo.commit();
      const store = new SqliteMetadataStore(openDb(join(dir, 'e')), 'image');
      store.writeSync('root.json', repo.bytes('root'));
      const writes: Array<[string, boolean]> = [];
      const recording = {
        read: (name: string) => store.read(name),
        remove: (name: string) => store.remove(name),
        writeAtomic: (name: string, bytes: Uint8Array, options?: { durable: boolean }) => {
          writes.push([name, options?.durable ?? true]);
          return store.writeAtomic(name, bytes, options);
        },
      };
      const found = await new Updater({ metadataBaseUrl: METADATA_URL, fetcher: new SimulatorFetcher(repo), store: recording, now: NOW }).findTarget('fw.bin');
      assert.equal(found?.role, 'supplier');
      assert.deepEqual(writes.sort(), [['snapshot.json', true], ['supplier.json', false], ['targets.json', false], ['timestamp.json', true]]);
      assert.deepEqual(store.readSync('supplier.json'), repo.bytes('supplier'));
    });
  });
});
