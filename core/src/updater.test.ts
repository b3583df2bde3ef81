import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Updater, quoteRoleName, metadataFileName, storeSource, type UpdaterOptions } from './updater.ts';
import { RepositoryBuilder } from './repository.ts';
import { SimulatorFetcher, MemoryStore, METADATA_URL, TARGETS_URL } from './testing/simulator.ts';
import { assertRejectsWith, NOW, SIGNED_AT } from './testing/fixtures.ts';
import { Ed25519Signer } from './keys.ts';
import { Metadata } from './metadata/envelope.ts';
import { MetaFile, TargetFile, UnsupportedHashError } from './metadata/file-info.ts';
import { utf8, fromUtf8 } from './bytes.ts';
import { DelegatedRole, Delegations } from './metadata/delegations.ts';
import type { Snapshot } from './metadata/snapshot.ts';
import type { Timestamp } from './metadata/timestamp.ts';
import {
  BadVersionError,
  ExpiredMetadataError,
  HttpError,
  LengthLimitError,
  LengthOrHashMismatchError,
  UnlistedRoleError,
  UnsignedMetadataError,
  UsageError,
} from './errors.ts';

const LATER = new Date('2031-06-01T00:00:00Z');

interface Client {
  repo: RepositoryBuilder;
  fetcher: SimulatorFetcher;
  store: MemoryStore;
  updater(options?: Partial<UpdaterOptions>): Updater;
}

/** A committed repository and a client store holding its root v1. */
function setup(build: (repo: RepositoryBuilder) => void = () => {}): Client {
  const repo = new RepositoryBuilder({ now: SIGNED_AT });
  build(repo);
  repo.commit();
  const fetcher = new SimulatorFetcher(repo);
  const store = new MemoryStore();
  store.files.set('root.json', repo.files.get('metadata/1.root.json')!);
  return {
    repo,
    fetcher,
    store,
    updater: (options = {}) =>
      new Updater({ metadataBaseUrl: METADATA_URL, targetBaseUrl: TARGETS_URL, fetcher, store, now: NOW, ...options }),
  };
}

/** Serves a forged, properly signed variant of the committed `role` at `path`. */
function serveResigned(c: Client, path: string, role: string, mutate: (md: Metadata) => void, signers = c.repo.signersOf(role)): void {
  const md = Metadata.fromBytes(c.repo.bytes(role));
  mutate(md);
  md.signatures.clear();
  for (const s of signers) md.sign(s);
  c.fetcher.overrides.set(path, md.toBytes());
}

function storedVersion(store: MemoryStore, role: string): number | undefined {
  const bytes = store.files.get(metadataFileName(role));
  return bytes && Metadata.fromBytes(bytes).signed.version;
}

describe('Updater', () => {
  describe('refresh', () => {
    describe('on first use', () => {
      it('fetches root N+1, timestamp, snapshot and targets, and stores them byte for byte', async () => {
        const c = setup();
        await c.updater().refresh();
        assert.deepEqual(c.fetcher.metadataRequests, ['2.root.json', 'timestamp.json', '1.snapshot.json', '1.targets.json']);
        assert.deepEqual(c.store.files.get('timestamp.json'), c.repo.bytes('timestamp'));
        assert.deepEqual(c.store.files.get('snapshot.json'), c.repo.bytes('snapshot'));
        assert.deepEqual(c.store.files.get('targets.json'), c.repo.bytes('targets'));
        assert.deepEqual([...c.store.files.keys()].sort(), ['root.json', 'snapshot.json', 'targets.json', 'timestamp.json']);
      });
    });

    describe('without a local root', () => {
      it('throws UsageError and fetches nothing', async () => {
        const c = setup();
        c.store.files.clear();
        await assertRejectsWith(() => c.updater().refresh(), UsageError);
        assert.deepEqual(c.fetcher.requests, []);
      });
    });

    describe('when the store cannot write', () => {
      it('reports the store error', async () => {
        const c = setup();
        c.store.writeAtomic = async () => {
          throw new Error('disk full');
        };
        await assert.rejects(c.updater().refresh(), /disk full/);
      });
    });

    describe('a second time on one Updater', () => {
      it('throws UsageError', async () => {
        const c = setup();
        const updater = c.updater();
        await updater.refresh();
        await assertRejectsWith(() => updater.refresh(), UsageError);
      });
    });

    describe('when the root was rotated twice', () => {
      it('walks the chain and stores the newest root', async () => {
        const c = setup();
        c.repo.rotateKeys('root', [Ed25519Signer.generate()]);
        c.repo.commit();
        c.repo.rotateKeys('root', [Ed25519Signer.generate()]);
        c.repo.commit();
        const updater = c.updater();
        await updater.refresh();
        assert.equal(updater.trustedSet.root.version, 3);
        assert.deepEqual(c.store.files.get('root.json'), c.repo.files.get('metadata/3.root.json'));
        assert.deepEqual(c.fetcher.metadataRequests.slice(0, 3), ['2.root.json', '3.root.json', '4.root.json']);
      });
    });

    describe('when more roots than the rotation cap exist', () => {
      it('stops at the cap', async () => {
        const c = setup();
        for (let i = 0; i < 3; i++) {
          c.repo.touch('root');
          c.repo.commit();
        }
        const updater = c.updater({ maxRootRotations: 2 });
        await updater.refresh();
        assert.equal(updater.trustedSet.root.version, 3);
        assert.ok(!c.fetcher.metadataRequests.includes('4.root.json'));
      });
    });

    describe('when a new root is not signed by the trusted root keys', () => {
      it('throws UnsignedMetadataError and keeps the stored root', async () => {
        const c = setup();
        const before = c.store.snapshot();
        serveResigned(c, 'metadata/2.root.json', 'root', (md) => md.signed.version++, [Ed25519Signer.generate()]);
        await assertRejectsWith(() => c.updater().refresh(), UnsignedMetadataError, { role: 'root', validSignatures: 0 });
        assert.deepEqual(c.store.files, before);
      });
    });

    describe('when file N+1 holds another version', () => {
      it('throws BadVersionError and keeps the stored root', async () => {
        const c = setup();
        const before = c.store.snapshot();
        serveResigned(c, 'metadata/2.root.json', 'root', (md) => (md.signed.version = 3));
        await assertRejectsWith(() => c.updater().refresh(), BadVersionError, { role: 'root', expected: 2, actual: 3 });
        assert.deepEqual(c.store.files, before);
      });
    });

    describe('when the final root is expired (freeze attack)', () => {
      it('throws ExpiredMetadataError for root and stores no timestamp', async () => {
        const c = setup();
        await assertRejectsWith(() => c.updater({ now: LATER }).refresh(), ExpiredMetadataError, { role: 'root' });
        assert.ok(!c.store.files.has('timestamp.json'));
      });
    });

    describe('when the timestamp is expired (freeze attack)', () => {
      it('throws ExpiredMetadataError and stores nothing new', async () => {
        const c = setup();
        serveResigned(c, 'metadata/timestamp.json', 'timestamp', (md) => (md.signed.expires = '2029-01-01T00:00:00Z'));
        await assertRejectsWith(() => c.updater().refresh(), ExpiredMetadataError, { role: 'timestamp' });
        assert.deepEqual([...c.store.files.keys()], ['root.json']);
      });
    });

    describe('when the timestamp rolls back (rollback attack)', () => {
      it('throws BadVersionError and keeps the stored timestamp', async () => {
        const c = setup();
        c.repo.touch('timestamp');
        c.repo.commit();
        await c.updater().refresh();
        const before = c.store.snapshot();
        serveResigned(c, 'metadata/timestamp.json', 'timestamp', (md) => (md.signed.version = 1));
        await assertRejectsWith(() => c.updater().refresh(), BadVersionError, { role: 'timestamp', expected: '>= 2', actual: 1 });
        assert.deepEqual(c.store.files, before);
      });
    });

    describe('when the stored timestamp is expired but newer than the served one (rollback after freeze)', () => {
      it('still refuses the older timestamp with BadVersionError', async () => {
        const c = setup();
        for (let i = 0; i < 4; i++) {
          c.repo.touch('timestamp');
          c.repo.commit();
        }
        await c.updater().refresh();
        const later = new Date(NOW.getTime() + 2 * 86400_000); // stored timestamp v5 has expired
        serveResigned(c, 'metadata/timestamp.json', 'timestamp', (md) => {
          md.signed.version = 4;
          md.signed.expires = '2030-06-01T00:00:00Z';
        });
        await assertRejectsWith(() => c.updater({ now: later }).refresh(), BadVersionError, { role: 'timestamp', expected: '>= 5', actual: 4 });
        assert.equal(storedVersion(c.store, 'timestamp'), 5);
      });
    });

    describe('when targets carries fewer valid signatures than its threshold (key compromise below threshold)', () => {
      it('throws UnsignedMetadataError and stores no targets', async () => {
        const signers = [Ed25519Signer.generate(), Ed25519Signer.generate()];
        const c = setup();
        c.repo.rotateKeys('targets', signers, 2);
        c.repo.commit();
        serveResigned(c, 'metadata/2.targets.json', 'targets', () => {}, [signers[0]!]);
        c.repo.snapshot.meta['targets.json'] = new MetaFile(2);
        c.repo.touch('snapshot');
        c.repo.commit();
        await assertRejectsWith(() => c.updater().refresh(), UnsignedMetadataError, { role: 'targets', threshold: 2, validSignatures: 1 });
        assert.ok(!c.store.files.has('targets.json'));
      });
    });

    describe('when the timestamp has not changed', () => {
      it('keeps the stored one and uses the stored snapshot without fetching it', async () => {
        const c = setup();
        await c.updater().refresh();
        c.fetcher.requests.length = 0;
        await c.updater().refresh();
        assert.deepEqual(c.fetcher.metadataRequests, ['2.root.json', 'timestamp.json']);
      });
    });

    describe('when the timestamp is larger than its cap (endless data)', () => {
      it('throws LengthLimitError from the fetcher', async () => {
        const c = setup();
        await assertRejectsWith(() => c.updater({ maxLength: { timestamp: 100 } }).refresh(), LengthLimitError, { limit: 100 });
        assert.deepEqual([...c.store.files.keys()], ['root.json']);
      });
    });

    describe('when the snapshot does not match the timestamp (mix-and-match)', () => {
      it('throws LengthOrHashMismatchError and stores no snapshot', async () => {
        const c = setup();
        serveResigned(c, 'metadata/1.snapshot.json', 'snapshot', (md) => (md.signed.expires = md.signed.expires.replace('2030', '2031')));
        await assertRejectsWith(() => c.updater().refresh(), LengthOrHashMismatchError, { subject: 'snapshot', field: 'sha256' });
        assert.ok(!c.store.files.has('snapshot.json'));
      });
    });

    describe('when a targets role rolls back in a new snapshot (rollback attack)', () => {
      it('throws BadVersionError and keeps the stored snapshot', async () => {
        const c = setup((repo) => repo.addTarget('a.bin', utf8('a')));
        c.repo.touch('targets');
        c.repo.commit();
        await c.updater().refresh();
        const before = c.store.snapshot();
        serveResigned(c, 'metadata/3.snapshot.json', 'snapshot', (md) => {
          md.signed.version = 3;
          (md.signed as Snapshot).meta['targets.json'] = new MetaFile(1);
        });
        serveResigned(c, 'metadata/timestamp.json', 'timestamp', (md) => {
          md.signed.version = 3;
          (md.signed as Timestamp).snapshotMeta = new MetaFile(3);
        });
        await assertRejectsWith(() => c.updater().refresh(), BadVersionError, { role: 'targets', expected: '>= 2', actual: 1 });
        assert.deepEqual(c.store.files.get('snapshot.json'), before.get('snapshot.json'));
      });
    });

    describe('when the timestamp key was rotated and its version reset (fast-forward recovery)', () => {
      it('drops the stored timestamp that no longer verifies and accepts the new one', async () => {
        const c = setup();
        for (let i = 0; i < 3; i++) {
          c.repo.touch('timestamp');
          c.repo.commit();
        }
        await c.updater().refresh();
        assert.equal(storedVersion(c.store, 'timestamp'), 4);
        c.repo.rotateKeys('timestamp', [Ed25519Signer.generate()]);
        c.repo.timestamp.version = 0; // the next commit publishes version 1
        c.repo.commit();
        await c.updater().refresh();
        assert.equal(storedVersion(c.store, 'timestamp'), 1);
      });
    });

    describe('when only the snapshot key was rotated and its version reset (fast-forward recovery, TUF 5.3.11; finding 8)', () => {
      it('deletes the stored timestamp and snapshot before storing the new root, and accepts the new ones', async () => {
        const c = setup();
        for (let i = 0; i < 3; i++) {
          c.repo.touch('snapshot');
          c.repo.commit();
        }
        await c.updater().refresh();
        assert.equal(storedVersion(c.store, 'snapshot'), 4);
        c.repo.rotateKeys('snapshot', [Ed25519Signer.generate()]);
        c.repo.snapshot.version = 0; // the next commit publishes version 1
        c.repo.commit();
        // The stored timestamp still verifies (its key did not change) and lists snapshot 4.
        await c.updater().refresh();
        assert.equal(storedVersion(c.store, 'snapshot'), 1);
        assert.equal(storedVersion(c.store, 'root'), 2);
      });
      it('leaves no stale timestamp behind when the refresh fails right after the new root', async () => {
        const c = setup();
        await c.updater().refresh();
        c.repo.rotateKeys('snapshot', [Ed25519Signer.generate()]);
        c.repo.commit();
        c.fetcher.overrides.set('metadata/timestamp.json', new Uint8Array([0x7b]));
        await assert.rejects(c.updater().refresh());
        assert.equal(storedVersion(c.store, 'root'), 2);
        assert.equal(c.store.files.has('timestamp.json'), false);
        assert.equal(c.store.files.has('snapshot.json'), false);
      });
    });

    describe('with an acceptRole check (the Uptane layer binds roles to a device here)', () => {
      it('refuses a role before anything of it is stored', async () => {
        const c = setup();
        await c.updater().refresh();
        const before = c.store.snapshot();
        c.repo.touch('timestamp');
        c.repo.commit();
        const refused = new Error('not mine');
        await assert.rejects(c.updater({ acceptRole: (role) => { if (role === 'timestamp') throw refused; } }).refresh(), (e) => e === refused);
        assert.deepEqual(c.store.snapshot(), before);
      });
    });

    describe('over the store itself (offline re-verification)', () => {
      it('re-verifies every stored role and fetches nothing', async () => {
        const c = setup((repo) => repo.delegate('targets', { name: 'a', paths: ['a/*'] }));
        c.repo.addTarget('a/x.bin', utf8('x'), { role: 'a' });
        c.repo.commit();
        const online = c.updater();
        assert.ok(await online.findTarget('a/x.bin'));
        const requests = c.fetcher.requests.length;
        const offline = new Updater({ source: storeSource('test', c.store), store: c.store, now: NOW });
        assert.equal((await offline.findTarget('a/x.bin'))?.role, 'a');
        assert.equal(c.fetcher.requests.length, requests);
      });
      it('refuses a stored role that no longer verifies (expired) rather than trusting it', async () => {
        const c = setup();
        await c.updater().refresh();
        await assert.rejects(new Updater({ source: storeSource('test', c.store), store: c.store, now: LATER }).refresh(), ExpiredMetadataError);
      });
    });

    describe('when the root does not use consistent snapshots', () => {
      it('fetches snapshot.json and targets.json without versions', async () => {
        const c = setup();
        c.repo.root.consistentSnapshot = false;
        c.repo.touch('root');
        c.repo.commit();
        c.fetcher.overrides.set('metadata/snapshot.json', c.repo.bytes('snapshot'));
        c.fetcher.overrides.set('metadata/targets.json', c.repo.bytes('targets'));
        await c.updater().refresh();
        assert.deepEqual(c.fetcher.metadataRequests.slice(2), ['timestamp.json', 'snapshot.json', 'targets.json']);
      });
    });
  });

  describe('findTarget', () => {
    function delegated(): Client {
      return setup((repo) => {
        repo.addTarget('top.bin', utf8('top'));
        repo.delegate('targets', { name: 'a', paths: ['a/*'] });
        repo.delegate('a', { name: 'a-deep', paths: ['a/*'] });
        repo.addTarget('a/x.bin', utf8('deep x'), { role: 'a-deep' });
        repo.delegate('targets', { name: 'b', paths: ['a/*'] });
        repo.addTarget('a/x.bin', utf8('b x'), { role: 'b' });
      });
    }

    it('finds a top-level target', async () => {
      const c = delegated();
      const found = await c.updater().findTarget('top.bin');
      assert.equal(found?.role, 'targets');
    });

    it('searches depth first in listed order and trusts and persists only the roles it reached', async () => {
      const c = delegated();
      const updater = c.updater();
      const found = await updater.findTarget('a/x.bin');
      assert.equal(found?.role, 'a-deep');
      assert.ok(c.store.files.has('a.json') && c.store.files.has('a-deep.json'));
      // b was fetched ahead (it was next on the stack), but the search ended before it.
      assert.ok(c.fetcher.metadataRequests.includes('1.b.json'));
      assert.ok(!c.store.files.has('b.json'));
      assert.equal(updater.trustedSet.get('b'), undefined);
    });

    it('asks for durable writes of the trust state only (root, timestamp, snapshot), not of targets roles', async () => {
      const c = delegated();
      await c.updater().findTarget('a/x.bin');
      assert.deepEqual(Object.fromEntries(c.store.durable), {
        'timestamp.json': true, 'snapshot.json': true, 'targets.json': false, 'a.json': false, 'a-deep.json': false,
      });
    });

    it('re-fetches a targets role whose stored copy was lost to a power cut (an empty file)', async () => {
      const c = delegated();
      await c.updater().findTarget('a/x.bin');
      c.store.files.set('a-deep.json', new Uint8Array(0));
      c.fetcher.requests.length = 0;
      const found = await c.updater().findTarget('a/x.bin');
      assert.equal(found?.role, 'a-deep');
      assert.deepEqual(c.fetcher.metadataRequests.filter((r) => r.endsWith('a-deep.json')), ['1.a-deep.json']);
    });

    it('returns undefined for a target no role lists, after visiting each matching role once', async () => {
      const c = delegated();
      assert.equal(await c.updater().findTarget('a/none.bin'), undefined);
      assert.deepEqual(c.fetcher.metadataRequests.slice(4).sort(), ['1.a-deep.json', '1.a.json', '1.b.json']);
    });

    describe('fetching ahead of the search', () => {
      /** Serves `role` signed by a key no delegator lists. */
      function forge(c: Client, role: string): void {
        serveResigned(c, `metadata/1.${role}.json`, role, () => {}, [Ed25519Signer.generate()]);
        c.repo.snapshot.meta[`${role}.json`] = new MetaFile(1);
        c.repo.touch('snapshot');
        c.repo.commit();
      }

      it('ignores a fetched-ahead role with a bad signature that the search never reaches', async () => {
        const c = delegated();
        forge(c, 'b');
        const updater = c.updater();
        assert.equal((await updater.findTarget('a/x.bin'))?.role, 'a-deep');
        assert.ok(c.fetcher.metadataRequests.includes('1.b.json'));
        assert.equal(updater.trustedSet.get('b'), undefined);
        assert.ok(!c.store.files.has('b.json'));
      });

      it('ignores a fetched-ahead role the source cannot give when the search never reaches it', async () => {
        const c = delegated();
        c.fetcher.missing.add('metadata/1.b.json');
        assert.equal((await c.updater().findTarget('a/x.bin'))?.role, 'a-deep');
        assert.ok(c.fetcher.metadataRequests.includes('1.b.json'));
      });

      it('refuses a fetched-ahead role with a bad signature once the search reaches it, fetching it once', async () => {
        const c = delegated();
        forge(c, 'b');
        await assertRejectsWith(() => c.updater().findTarget('a/none.bin'), UnsignedMetadataError, { role: 'b' });
        assert.equal(c.fetcher.metadataRequests.filter((r) => r === '1.b.json').length, 1);
        assert.ok(!c.store.files.has('b.json'));
      });

      it('reports the failed fetch of a fetched-ahead role once the search reaches it', async () => {
        const c = delegated();
        c.fetcher.missing.add('metadata/1.b.json');
        await assertRejectsWith(() => c.updater().findTarget('a/none.bin'), HttpError, { status: 404 });
      });

      it('verifies a fetched-ahead role against the delegator the search reached it through', async () => {
        // b and c both delegate "shared" with different keys; the copy served is signed by c's key only.
        const c = setup((repo) => {
          repo.delegate('targets', { name: 'b', paths: ['x/*'] });
          repo.delegate('targets', { name: 'c', paths: ['x/*'] });
          repo.delegate('c', { name: 'shared', paths: ['x/*'] });
          repo.addTarget('x/1', utf8('1'), { role: 'shared' });
          const cKey = repo.signersOf('shared')[0]!.key;
          const bKey = Ed25519Signer.generate().key;
          repo.targetsOf('b').delegations = new Delegations({ [bKey.keyid]: bKey }, [new DelegatedRole('shared', [bKey.keyid], 1, false, ['x/*'])]);
          assert.notEqual(cKey.keyid, bKey.keyid);
        });
        const updater = c.updater();
        await assertRejectsWith(() => updater.findTarget('x/1'), UnsignedMetadataError, { role: 'shared' });
        assert.ok(!updater.trustedSet.isTrustedVia('shared', 'b'));
        assert.ok(!c.store.files.has('shared.json'));
      });

      it('with prefetch 0, requests each role only when the search reaches it, in search order', async () => {
        const c = delegated();
        assert.equal((await c.updater({ prefetch: 0 }).findTarget('a/x.bin'))?.role, 'a-deep');
        assert.deepEqual(c.fetcher.metadataRequests.slice(4), ['1.a.json', '1.a-deep.json']);
      });

      it('fetches only roles the snapshot lists', async () => {
        const c = delegated();
        serveResigned(c, 'metadata/1.snapshot.json', 'snapshot', (md) => delete (md.signed as Snapshot).meta['b.json']);
        serveResigned(c, 'metadata/timestamp.json', 'timestamp', (md) => {
          (md.signed as Timestamp).snapshotMeta = new MetaFile(1);
        });
        assert.equal((await c.updater().findTarget('a/x.bin'))?.role, 'a-deep');
        assert.ok(!c.fetcher.metadataRequests.some((r) => r.includes('b.json')));
      });
    });

    describe('listTargets', () => {
      it('lists every trusted target once, with the role findTarget answers from, sorted by path', async () => {
        const c = delegated();
        const listed = await c.updater().listTargets();
        assert.deepEqual(listed.map((f) => [f.path, f.role, f.info.length]), [['a/x.bin', 'a-deep', 6], ['top.bin', 'targets', 3]]);
      });

      it('leaves out a name a delegated role lists outside its delegated paths', async () => {
        const c = setup((repo) => {
          repo.delegate('targets', { name: 'a', paths: ['a/*'] });
          repo.addTarget('a/ok.bin', utf8('ok'), { role: 'a' });
          repo.addTarget('elsewhere.bin', utf8('not a\'s'), { role: 'a' });
        });
        const listed = await c.updater().listTargets();
        assert.deepEqual(listed.map((f) => f.path), ['a/ok.bin']);
      });
    });

    describe('after a failed refresh', () => {
      it('throws UsageError instead of searching half-verified metadata', async () => {
        const c = setup();
        const updater = c.updater({ now: LATER });
        await assert.rejects(updater.refresh(), ExpiredMetadataError);
        await assertRejectsWith(() => updater.findTarget('x'), UsageError);
      });
    });

    describe('when a role is terminating', () => {
      it('does not backtrack to later roles', async () => {
        const c = setup((repo) => {
          repo.delegate('targets', { name: 'a', paths: ['x/*'], terminating: true });
          repo.delegate('targets', { name: 'b', paths: ['x/*'] });
          repo.addTarget('x/1', utf8('1'), { role: 'b' });
        });
        assert.equal(await c.updater().findTarget('x/1'), undefined);
        assert.ok(!c.fetcher.metadataRequests.includes('1.b.json'));
      });
    });

    describe('when delegations form a cycle', () => {
      it('visits each role once and ends', async () => {
        const c = setup((repo) => {
          repo.delegate('targets', { name: 'a' });
          repo.delegate('a', { name: 'b' });
        });
        // b delegates back to a, with a's key.
        const b = c.repo.targetsOf('b');
        const aSigner = c.repo.signersOf('a')[0]!;
        b.delegations = new Delegations({ [aSigner.key.keyid]: aSigner.key }, [new DelegatedRole('a', [aSigner.key.keyid], 1, false, ['*'])]);
        c.repo.touch('b');
        c.repo.commit();
        assert.equal(await c.updater().findTarget('nothing'), undefined);
        assert.deepEqual(c.fetcher.metadataRequests.filter((r) => /^\d+\.[ab]\.json$/.test(r)), ['1.a.json', '2.b.json']);
      });
    });

    describe('when a role is delegated by two delegators with different keys (diamond)', () => {
      it('finds a target through the delegator whose key signed it, and refuses the other path', async () => {
        const c = setup((repo) => {
          repo.delegate('targets', { name: 'parent-a', paths: ['team-a/*'] });
          repo.delegate('targets', { name: 'parent-b', paths: ['team-b/*'] });
          repo.delegate('parent-a', { name: 'release', paths: ['team-a/*'] });
          const otherKey = Ed25519Signer.generate().key;
          repo.targetsOf('parent-b').delegations = new Delegations({ [otherKey.keyid]: otherKey }, [
            new DelegatedRole('release', [otherKey.keyid], 1, false, ['team-b/*']),
          ]);
          repo.addTarget('team-a/x', utf8('trusted A'), { role: 'release' });
          repo.addTarget('team-b/x', utf8('malicious B'), { role: 'release' });
        });
        const updater = c.updater();
        assert.equal((await updater.findTarget('team-a/x'))?.role, 'release');
        await assertRejectsWith(() => updater.findTarget('team-b/x'), UnsignedMetadataError, { role: 'release' });
      });
    });

    describe('with a hardware ID', () => {
      it('skips roles whose hardware-ID filter excludes it', async () => {
        const c = setup((repo) => {
          repo.delegate('targets', { name: 'brake', hardwareIds: ['ecu-brake'] });
          repo.addTarget('fw.bin', utf8('brake fw'), { role: 'brake' });
        });
        assert.equal((await c.updater().findTarget('fw.bin', { hardwareId: 'ecu-brake' }))?.role, 'brake');
        assert.equal(await c.updater().findTarget('fw.bin', { hardwareId: 'ecu-door' }), undefined);
      });
    });

    describe('when more roles match than maxDelegations', () => {
      it('stops searching', async () => {
        const c = setup((repo) => {
          for (let i = 0; i < 4; i++) repo.delegate('targets', { name: `r${i}` });
          repo.addTarget('t', utf8('t'), { role: 'r3' });
        });
        assert.equal(await c.updater({ maxDelegations: 2 }).findTarget('t'), undefined);
        // Not even fetched ahead: the cap bounds what is fetched, not only what is trusted.
        assert.deepEqual(c.fetcher.metadataRequests.filter((r) => /^1\.r\d\.json$/.test(r)).sort(), ['1.r0.json', '1.r1.json']);
        assert.equal((await c.updater().findTarget('t'))?.role, 'r3');
      });
    });

    describe('when snapshot does not list a delegated role', () => {
      it('throws UnlistedRoleError without fetching the role', async () => {
        const c = setup((repo) => repo.delegate('targets', { name: 'ghost' }));
        serveResigned(c, 'metadata/1.snapshot.json', 'snapshot', (md) => delete (md.signed as Snapshot).meta['ghost.json']);
        serveResigned(c, 'metadata/timestamp.json', 'timestamp', (md) => {
          (md.signed as Timestamp).snapshotMeta = new MetaFile(1);
        });
        await assertRejectsWith(() => c.updater().findTarget('x'), UnlistedRoleError, { role: 'ghost' });
        assert.ok(!c.fetcher.metadataRequests.some((r) => r.includes('ghost')));
      });
    });

    describe('when a delegated role is signed by a key its delegator does not list', () => {
      it('throws UnsignedMetadataError and stores no copy', async () => {
        const c = setup((repo) => repo.delegate('targets', { name: 'a' }));
        const forged = Metadata.fromBytes(c.repo.bytes('a'));
        forged.sign(Ed25519Signer.generate(), false);
        c.fetcher.overrides.set('metadata/1.a.json', forged.toBytes());
        c.repo.snapshot.meta['a.json'] = new MetaFile(1);
        c.repo.touch('snapshot');
        c.repo.commit();
        await assertRejectsWith(() => c.updater().findTarget('x'), UnsignedMetadataError, { role: 'a' });
        assert.ok(!c.store.files.has('a.json'));
      });
    });

    describe('for a role name with reserved characters', () => {
      it('percent-encodes it in URLs and file names', async () => {
        const c = setup((repo) => repo.delegate('targets', { name: "../odd name?#!'()*" }));
        await c.updater().findTarget('x');
        const encoded = "..%2Fodd%20name%3F%23%21%27%28%29%2A";
        assert.equal(quoteRoleName("../odd name?#!'()*"), encoded);
        assert.ok(c.fetcher.metadataRequests.includes(`1.${encoded}.json`));
        assert.ok(c.store.files.has(`${encoded}.json`));
      });
    });
  });

  describe('downloadTarget', () => {
    it('returns the bytes from the hash-prefixed URL once they verify', async () => {
      const c = setup((repo) => repo.addTarget('dir/fw.bin', utf8('firmware')));
      const updater = c.updater();
      const found = (await updater.findTarget('dir/fw.bin'))!;
      assert.equal(fromUtf8(await updater.downloadTarget(found)), 'firmware');
      assert.equal(c.fetcher.requests.at(-1), `${TARGETS_URL}dir/${found.info.hashes.sha256}.fw.bin`);
    });

    describe('when the served bytes differ (arbitrary software)', () => {
      it('throws LengthOrHashMismatchError', async () => {
        const c = setup((repo) => repo.addTarget('fw.bin', utf8('firmware')));
        const updater = c.updater();
        const found = (await updater.findTarget('fw.bin'))!;
        c.fetcher.overrides.set(`targets/${found.info.hashes.sha256}.fw.bin`, utf8('malware!'));
        await assertRejectsWith(() => updater.downloadTarget(found), LengthOrHashMismatchError, { subject: 'fw.bin', field: 'sha256' });
      });
    });

    describe('when more bytes are served than the signed length (endless data)', () => {
      it('throws LengthLimitError', async () => {
        const c = setup((repo) => repo.addTarget('fw.bin', utf8('firmware')));
        const updater = c.updater();
        const found = (await updater.findTarget('fw.bin'))!;
        c.fetcher.overrides.set(`targets/${found.info.hashes.sha256}.fw.bin`, utf8('firmware and more'));
        await assertRejectsWith(() => updater.downloadTarget(found), LengthLimitError, { limit: 8 });
      });
    });

    describe('when the target lists an unknown hash algorithm', () => {
      it('throws UnsupportedHashError before fetching', async () => {
        const c = setup((repo) => repo.setTarget('fw.bin', new TargetFile(1, { sha256: 'ab', md5: 'cd' })));
        const updater = c.updater();
        const found = (await updater.findTarget('fw.bin'))!;
        const before = c.fetcher.requests.length;
        await assertRejectsWith(() => updater.downloadTarget(found), UnsupportedHashError, { algorithm: 'md5' });
        assert.equal(c.fetcher.requests.length, before);
      });
    });
  });
});
