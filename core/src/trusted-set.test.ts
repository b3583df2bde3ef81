import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { TrustedMetadataSet } from './trusted-set.ts';
import { fixture, assertThrowsWith, NOW, SIGNED_AT, type Fixture } from './testing/fixtures.ts';
import { Ed25519Signer } from './keys.ts';
import { Metadata } from './metadata/envelope.ts';
import { MetaFile } from './metadata/file-info.ts';
import type { Root } from './metadata/root.ts';
import type { Timestamp } from './metadata/timestamp.ts';
import type { Snapshot } from './metadata/snapshot.ts';
import type { Targets } from './metadata/targets.ts';
import { UnsupportedHashError } from './metadata/file-info.ts';
import {
  BadVersionError,
  DroppedRoleError,
  EqualVersionError,
  ExpiredMetadataError,
  LengthOrHashMismatchError,
  MalformedMetadataError,
  MetadataTooLargeError,
  RootRotationLimitError,
  UndelegatedRoleError,
  UnlistedRoleError,
  UnsignedMetadataError,
  UsageError,
} from './errors.ts';
import { utf8 } from './bytes.ts';
import { RepositoryBuilder } from './repository.ts';
import { DelegatedRole, Delegations } from './metadata/delegations.ts';

const LATER = new Date('2031-06-01T00:00:00Z');
const PAST = '2029-01-01T00:00:00Z';

type Step = 'timestamp' | 'snapshot' | 'targets' | 'role1';

/** A trusted set loaded from the fixture up to and including `upTo`. */
function loaded(f: Fixture, upTo?: Step, now = NOW): TrustedMetadataSet {
  const set = new TrustedMetadataSet(f.repo.files.get('metadata/1.root.json')!, now);
  const steps: Step[] = ['timestamp', 'snapshot', 'targets', 'role1'];
  if (upTo === undefined) return set;
  for (const step of steps.slice(0, steps.indexOf(upTo) + 1)) {
    if (step === 'timestamp') set.updateTimestamp(f.bytes('timestamp'));
    if (step === 'snapshot') set.updateSnapshot(f.bytes('snapshot'));
    if (step === 'targets') set.updateTargets(f.bytes('targets'));
    if (step === 'role1') set.updateDelegatedTargets(f.bytes('role1'), 'role1', 'targets');
  }
  return set;
}

/** A root signed by every signer given (version and keys as the builder makes them). */
function nextRoot(f: Fixture, mutate: (root: Root) => void = () => {}): { bytes: Uint8Array; md: Metadata<Root> } {
  const bytes = f.resign('root', (s) => {
    (s as Root).version++;
    mutate(s as Root);
  });
  return { bytes, md: Metadata.fromBytes(bytes, 'root') };
}

describe('TrustedMetadataSet', () => {
  describe('constructor', () => {
    it('trusts a root signed by its own threshold', () => {
      const f = fixture();
      const set = loaded(f);
      assert.equal(set.root.version, 1);
      assert.equal(set.timestamp, undefined);
    });

    describe('when the root is not signed by its keys', () => {
      it('throws UnsignedMetadataError', () => {
        const f = fixture();
        const forged = f.resign('root', () => {}, [Ed25519Signer.generate()]);
        assertThrowsWith(() => new TrustedMetadataSet(forged, NOW), UnsignedMetadataError, { role: 'root', threshold: 1, validSignatures: 0 });
      });
    });

    describe('when the bytes are not JSON', () => {
      it('throws MalformedMetadataError', () => {
        assertThrowsWith(() => new TrustedMetadataSet(utf8('{"signed":'), NOW), MalformedMetadataError, { path: 'root' });
      });
    });

    describe('when the bytes are another role', () => {
      it('throws MalformedMetadataError naming _type', () => {
        const f = fixture();
        assertThrowsWith(() => new TrustedMetadataSet(f.bytes('timestamp'), NOW), MalformedMetadataError, { path: 'root.signed._type' });
      });
    });

    describe('when the signed part holds a value canonical JSON cannot encode', () => {
      it('throws MalformedMetadataError (the repository is to blame)', () => {
        const f = fixture();
        const text = new TextDecoder().decode(f.bytes('root')).replace('"_type":"root"', '"_type":"root","x-float":1.5');
        assertThrowsWith(() => new TrustedMetadataSet(utf8(text), NOW), MalformedMetadataError, { path: 'root.signed' });
      });
    });

    describe('when the root is larger than the cap', () => {
      it('throws MetadataTooLargeError', () => {
        const f = fixture();
        const bytes = f.bytes('root');
        assertThrowsWith(() => new TrustedMetadataSet(bytes, NOW, { maxLength: { root: 100 } }), MetadataTooLargeError, {
          role: 'root',
          limit: 100,
          length: bytes.byteLength,
        });
      });
    });
  });

  describe('updateRoot', () => {
    it('trusts version N+1 signed by the old and the new keys', () => {
      const f = fixture();
      const set = loaded(f);
      f.repo.rotateKeys('root', [Ed25519Signer.generate()]);
      f.repo.commit();
      const root = set.updateRoot(f.bytes('root'));
      assert.equal(root.version, 2);
      assert.equal(set.root, root);
    });

    it('trusts an expired intermediate root', () => {
      const f = fixture();
      const set = loaded(f);
      set.updateRoot(nextRoot(f, (r) => (r.expires = PAST)).bytes);
      assert.equal(set.root.version, 2);
    });

    describe('when not signed by the trusted root keys (5.3.3)', () => {
      it('throws UnsignedMetadataError and keeps the trusted root', () => {
        const f = fixture();
        const set = loaded(f);
        const newSigner = Ed25519Signer.generate();
        f.repo.rotateKeys('root', [newSigner]);
        f.repo.commit();
        const md = Metadata.fromBytes(f.bytes('root'), 'root');
        for (const keyid of [...md.signatures.keys()]) if (keyid !== newSigner.keyid) md.signatures.delete(keyid);
        assertThrowsWith(() => set.updateRoot(md.toBytes()), UnsignedMetadataError, { role: 'root', threshold: 1, validSignatures: 0 });
        assert.equal(set.root.version, 1);
      });
    });

    describe('when not signed by its own new keys (5.3.3)', () => {
      it('throws UnsignedMetadataError and keeps the trusted root', () => {
        const f = fixture();
        const set = loaded(f);
        const newSigner = Ed25519Signer.generate();
        f.repo.rotateKeys('root', [newSigner]);
        f.repo.commit();
        const md = Metadata.fromBytes(f.bytes('root'), 'root');
        md.signatures.delete(newSigner.keyid);
        assertThrowsWith(() => set.updateRoot(md.toBytes()), UnsignedMetadataError, { role: 'root', threshold: 1, validSignatures: 0 });
        assert.equal(set.root.version, 1);
      });
    });

    describe('when the new root raises its threshold above its signatures', () => {
      it('throws UnsignedMetadataError for the new threshold', () => {
        const f = fixture();
        const set = loaded(f);
        const { bytes } = nextRoot(f, (r) => {
          const extra = Ed25519Signer.generate();
          r.addKey('root', extra.key);
          r.roles.root.threshold = 2;
        });
        assertThrowsWith(() => set.updateRoot(bytes), UnsignedMetadataError, { role: 'root', threshold: 2, validSignatures: 1 });
        assert.equal(set.root.version, 1);
      });
    });

    describe('when the version skips ahead (5.3.4)', () => {
      it('throws BadVersionError and keeps the trusted root', () => {
        const f = fixture();
        const set = loaded(f);
        const { bytes } = nextRoot(f, (r) => (r.version = 3));
        assertThrowsWith(() => set.updateRoot(bytes), BadVersionError, { role: 'root', expected: 2, actual: 3 });
        assert.equal(set.root.version, 1);
      });
    });

    describe('when the version is the trusted one (rollback/replay)', () => {
      it('throws BadVersionError', () => {
        const f = fixture();
        const set = loaded(f);
        assertThrowsWith(() => set.updateRoot(f.bytes('root')), BadVersionError, { role: 'root', expected: 2, actual: 1 });
      });
    });

    describe('past the rotation cap', () => {
      it('throws RootRotationLimitError and keeps the last root', () => {
        const f = fixture();
        const set = new TrustedMetadataSet(f.repo.files.get('metadata/1.root.json')!, NOW, { maxRootRotations: 1 });
        f.repo.touch('root');
        f.repo.commit();
        set.updateRoot(f.bytes('root'));
        f.repo.touch('root');
        f.repo.commit();
        assertThrowsWith(() => set.updateRoot(f.bytes('root')), RootRotationLimitError, { limit: 1 });
        assert.equal(set.root.version, 2);
      });
    });

    describe('after a timestamp is trusted', () => {
      it('throws UsageError', () => {
        const f = fixture();
        const set = loaded(f, 'timestamp');
        assertThrowsWith(() => set.updateRoot(nextRoot(f).bytes), UsageError);
        assert.equal(set.root.version, 1);
      });
    });
  });

  describe('updateTimestamp', () => {
    it('trusts a valid timestamp', () => {
      const f = fixture();
      const set = loaded(f);
      assert.equal(set.updateTimestamp(f.bytes('timestamp')).version, 1);
      assert.equal(set.timestamp?.version, 1);
    });

    describe('when the final root is expired (5.3.10, freeze attack)', () => {
      it('throws ExpiredMetadataError for root and trusts no timestamp', () => {
        const f = fixture();
        const set = loaded(f, undefined, LATER);
        assertThrowsWith(() => set.updateTimestamp(f.bytes('timestamp')), ExpiredMetadataError, { role: 'root', now: LATER });
        assert.equal(set.timestamp, undefined);
      });
    });

    describe('when signed by a key root does not list for timestamp (arbitrary metadata)', () => {
      it('throws UnsignedMetadataError', () => {
        const f = fixture();
        const set = loaded(f);
        const forged = f.resign('timestamp', () => {}, f.repo.signersOf('snapshot'));
        assertThrowsWith(() => set.updateTimestamp(forged), UnsignedMetadataError, { role: 'timestamp', validSignatures: 0 });
        assert.equal(set.timestamp, undefined);
      });
    });

    describe('when the version rolls back (5.4.3.1)', () => {
      it('throws BadVersionError and keeps the trusted timestamp', () => {
        const f = fixture();
        const set = loaded(f);
        set.updateTimestamp(f.resign('timestamp', (s) => (s.version = 5)));
        const older = f.resign('timestamp', (s) => (s.version = 4));
        assertThrowsWith(() => set.updateTimestamp(older), BadVersionError, { role: 'timestamp', expected: '>= 5', actual: 4 });
        assert.equal(set.timestamp?.version, 5);
      });
    });

    describe('when the version equals the trusted one', () => {
      it('throws EqualVersionError and keeps the trusted timestamp', () => {
        const f = fixture();
        const set = loaded(f, 'timestamp');
        const trusted = set.timestamp;
        assertThrowsWith(() => set.updateTimestamp(f.resign('timestamp', () => {})), EqualVersionError, { role: 'timestamp', actual: 1 });
        assert.equal(set.timestamp, trusted);
      });
    });

    describe('when the snapshot version it lists rolls back (5.4.3.2)', () => {
      it('throws BadVersionError for snapshot and keeps the trusted timestamp', () => {
        const f = fixture();
        const set = loaded(f);
        set.updateTimestamp(f.resign('timestamp', (s) => ((s as Timestamp).snapshotMeta = new MetaFile(3))));
        const rolledBack = f.resign('timestamp', (s) => {
          s.version = 2;
          (s as Timestamp).snapshotMeta = new MetaFile(2);
        });
        assertThrowsWith(() => set.updateTimestamp(rolledBack), BadVersionError, { role: 'snapshot', expected: '>= 3', actual: 2 });
        assert.equal(set.timestamp?.version, 1);
      });
    });

    describe('when the timestamp is expired (5.4.4, freeze attack)', () => {
      it('stores it for rollback protection, then throws ExpiredMetadataError', () => {
        const f = fixture();
        const set = loaded(f);
        const expired = f.resign('timestamp', (s) => (s.expires = PAST));
        assertThrowsWith(() => set.updateTimestamp(expired), ExpiredMetadataError, { role: 'timestamp', expires: PAST });
        assert.equal(set.timestamp?.expires, PAST);
      });
    });

    describe('when larger than the cap (endless data)', () => {
      it('throws MetadataTooLargeError', () => {
        const f = fixture();
        const set = new TrustedMetadataSet(f.bytes('root'), NOW, { maxLength: { timestamp: 10 } });
        assertThrowsWith(() => set.updateTimestamp(f.bytes('timestamp')), MetadataTooLargeError, { role: 'timestamp', limit: 10 });
        assert.equal(set.timestamp, undefined);
      });
    });

    describe('after snapshot', () => {
      it('throws UsageError', () => {
        const f = fixture();
        const set = loaded(f, 'snapshot');
        assertThrowsWith(() => set.updateTimestamp(f.bytes('timestamp')), UsageError);
      });
    });
  });

  describe('updateSnapshot', () => {
    it('trusts the snapshot the timestamp lists', () => {
      const f = fixture();
      const set = loaded(f, 'timestamp');
      assert.equal(set.updateSnapshot(f.bytes('snapshot')).version, 1);
    });

    describe('before timestamp', () => {
      it('throws UsageError', () => {
        const f = fixture();
        assertThrowsWith(() => loaded(f).updateSnapshot(f.bytes('snapshot')), UsageError);
      });
    });

    describe('after targets', () => {
      it('throws UsageError', () => {
        const f = fixture();
        assertThrowsWith(() => loaded(f, 'targets').updateSnapshot(f.bytes('snapshot')), UsageError);
      });
    });

    describe('when the trusted timestamp is expired', () => {
      it('throws ExpiredMetadataError for timestamp and trusts no snapshot', () => {
        const f = fixture();
        const set = loaded(f);
        assert.throws(() => set.updateTimestamp(f.resign('timestamp', (s) => (s.expires = PAST))), ExpiredMetadataError);
        assertThrowsWith(() => set.updateSnapshot(f.bytes('snapshot')), ExpiredMetadataError, { role: 'timestamp' });
        assert.equal(set.snapshot, undefined);
      });
    });

    describe('when the length differs from the timestamp (5.5.2)', () => {
      it('throws LengthOrHashMismatchError', () => {
        const f = fixture();
        const set = loaded(f, 'timestamp');
        const bytes = f.resign('snapshot', (s) => (s.unrecognizedFields.padding = 'x'));
        assertThrowsWith(() => set.updateSnapshot(bytes), LengthOrHashMismatchError, { subject: 'snapshot', field: 'length', actual: bytes.byteLength });
        assert.equal(set.snapshot, undefined);
      });
    });

    describe('when the hash differs from the timestamp (mix-and-match)', () => {
      it('throws LengthOrHashMismatchError', () => {
        const f = fixture();
        const set = loaded(f, 'timestamp');
        const original = f.bytes('snapshot');
        const bytes = f.resign('snapshot', (s) => (s.expires = s.expires.replace('2030', '2031')));
        assert.equal(bytes.byteLength, original.byteLength);
        assertThrowsWith(() => set.updateSnapshot(bytes), LengthOrHashMismatchError, { subject: 'snapshot', field: 'sha256' });
        assert.equal(set.snapshot, undefined);
      });
    });

    describe('when the timestamp lists an unknown hash algorithm', () => {
      it('throws UnsupportedHashError', () => {
        const f = fixture();
        const set = loaded(f);
        set.updateTimestamp(f.resign('timestamp', (s) => ((s as Timestamp).snapshotMeta = new MetaFile(1, undefined, { md5: 'aa' }))));
        assertThrowsWith(() => set.updateSnapshot(f.bytes('snapshot')), UnsupportedHashError, { algorithm: 'md5' });
      });
    });

    describe('when signed by the wrong key', () => {
      it('throws UnsignedMetadataError', () => {
        const f = fixture();
        const forged = f.resign('snapshot', () => {}, f.repo.signersOf('timestamp'));
        const set = loaded(f);
        set.updateTimestamp(f.resign('timestamp', (s) => ((s as Timestamp).snapshotMeta = new MetaFile(1))));
        assertThrowsWith(() => set.updateSnapshot(forged), UnsignedMetadataError, { role: 'snapshot', validSignatures: 0 });
        assert.equal(set.snapshot, undefined);
      });
    });

    describe('with trusted: true', () => {
      it('skips the hash check for a copy verified earlier', () => {
        const f = fixture();
        const set = loaded(f);
        set.updateTimestamp(f.resign('timestamp', (s) => ((s as Timestamp).snapshotMeta = new MetaFile(1, 1, { sha256: '00' }))));
        assert.equal(set.updateSnapshot(f.bytes('snapshot'), { trusted: true }).version, 1);
      });
    });

    describe('when it replaces a trusted snapshot', () => {
      /** A set with an intermediate (version-mismatched) snapshot v1 trusted, and a timestamp listing v2. */
      function withIntermediate(f: Fixture): TrustedMetadataSet {
        const set = loaded(f);
        set.updateTimestamp(f.resign('timestamp', (s) => ((s as Timestamp).snapshotMeta = new MetaFile(2))));
        assert.throws(() => set.updateSnapshot(f.bytes('snapshot'), { trusted: true }), BadVersionError);
        return set;
      }

      describe('and drops a targets role (5.5.5)', () => {
        it('throws DroppedRoleError and keeps the trusted snapshot', () => {
          const f = fixture();
          const set = withIntermediate(f);
          const bytes = f.resign('snapshot', (s) => {
            s.version = 2;
            delete (s as Snapshot).meta['role2.json'];
          });
          assertThrowsWith(() => set.updateSnapshot(bytes), DroppedRoleError, { file: 'role2.json' });
          assert.equal(set.snapshot?.version, 1);
        });
      });

      describe('and rolls a targets role back (5.5.5)', () => {
        it('throws BadVersionError for the role and keeps the trusted snapshot', () => {
          const f = fixture();
          const set = loaded(f);
          set.updateTimestamp(f.resign('timestamp', (s) => ((s as Timestamp).snapshotMeta = new MetaFile(2))));
          const v1 = f.resign('snapshot', (s) => ((s as Snapshot).meta['role1.json'] = new MetaFile(5)));
          assert.throws(() => set.updateSnapshot(v1, { trusted: true }), BadVersionError);
          const v2 = f.resign('snapshot', (s) => {
            s.version = 2;
            (s as Snapshot).meta['role1.json'] = new MetaFile(4);
          });
          assertThrowsWith(() => set.updateSnapshot(v2), BadVersionError, { role: 'role1', expected: '>= 5', actual: 4 });
          assert.equal(set.snapshot?.version, 1);
        });
      });
    });

    describe('when its version differs from the timestamp (5.5.4)', () => {
      it('stores it as intermediate, then throws BadVersionError', () => {
        const f = fixture();
        const set = loaded(f);
        set.updateTimestamp(f.resign('timestamp', (s) => ((s as Timestamp).snapshotMeta = new MetaFile(2))));
        assertThrowsWith(() => set.updateSnapshot(f.bytes('snapshot'), { trusted: true }), BadVersionError, { role: 'snapshot', expected: 2, actual: 1 });
        assert.equal(set.snapshot?.version, 1);
      });
    });

    describe('when expired (5.5.6, freeze attack)', () => {
      it('stores it for rollback protection, then throws ExpiredMetadataError', () => {
        const f = fixture();
        const set = loaded(f);
        const expired = f.resign('snapshot', (s) => (s.expires = PAST));
        set.updateTimestamp(f.resign('timestamp', (s) => ((s as Timestamp).snapshotMeta = new MetaFile(1))));
        assertThrowsWith(() => set.updateSnapshot(expired), ExpiredMetadataError, { role: 'snapshot', expires: PAST });
        assert.equal(set.snapshot?.expires, PAST);
      });
    });
  });

  describe('updateTargets', () => {
    it('trusts the targets snapshot lists', () => {
      const f = fixture();
      const set = loaded(f, 'snapshot');
      const targets = set.updateTargets(f.bytes('targets'));
      assert.ok(targets.targets['top.bin']);
      assert.equal(set.targets, targets);
      assert.ok(set.isTrustedVia('targets', 'root'));
    });

    describe('before snapshot', () => {
      it('throws UsageError', () => {
        const f = fixture();
        assertThrowsWith(() => loaded(f, 'timestamp').updateTargets(f.bytes('targets')), UsageError);
      });
    });

    describe('when the trusted snapshot is expired', () => {
      it('throws ExpiredMetadataError for snapshot', () => {
        const f = fixture();
        const set = loaded(f);
        set.updateTimestamp(f.resign('timestamp', (s) => ((s as Timestamp).snapshotMeta = new MetaFile(1))));
        assert.throws(() => set.updateSnapshot(f.resign('snapshot', (s) => (s.expires = PAST))), ExpiredMetadataError);
        assertThrowsWith(() => set.updateTargets(f.bytes('targets')), ExpiredMetadataError, { role: 'snapshot' });
        assert.equal(set.targets, undefined);
      });
    });

    describe('when the trusted snapshot is not the version timestamp lists', () => {
      it('throws BadVersionError for snapshot', () => {
        const f = fixture();
        const set = loaded(f);
        set.updateTimestamp(f.resign('timestamp', (s) => ((s as Timestamp).snapshotMeta = new MetaFile(2))));
        assert.throws(() => set.updateSnapshot(f.bytes('snapshot'), { trusted: true }), BadVersionError);
        assertThrowsWith(() => set.updateTargets(f.bytes('targets')), BadVersionError, { role: 'snapshot', expected: 2, actual: 1 });
        assert.equal(set.targets, undefined);
      });
    });

    describe('when the hash differs from the snapshot (5.6.2)', () => {
      it('throws LengthOrHashMismatchError', () => {
        const f = fixture();
        const set = loaded(f, 'snapshot');
        const bytes = f.resign('targets', (s) => (s.expires = s.expires.replace('2030', '2031')));
        assertThrowsWith(() => set.updateTargets(bytes), LengthOrHashMismatchError, { subject: 'targets', field: 'sha256' });
        assert.equal(set.targets, undefined);
      });
    });

    describe('when signed by the wrong key (arbitrary software)', () => {
      it('throws UnsignedMetadataError', () => {
        const f = fixture();
        const forged = f.resign('targets', () => {}, [Ed25519Signer.generate()]);
        const set = loaded(f);
        set.updateTimestamp(f.resign('timestamp', (s) => ((s as Timestamp).snapshotMeta = new MetaFile(1))));
        set.updateSnapshot(f.resign('snapshot', (s) => ((s as Snapshot).meta['targets.json'] = new MetaFile(1))), { trusted: true });
        assertThrowsWith(() => set.updateTargets(forged), UnsignedMetadataError, { role: 'targets', validSignatures: 0 });
        assert.equal(set.targets, undefined);
      });
    });

    describe('when its version differs from the snapshot (5.6.4, rollback)', () => {
      it('throws BadVersionError', () => {
        const f = fixture();
        const bytes = f.resign('targets', (s) => (s.version = 2));
        const set = loaded(f);
        set.updateTimestamp(f.resign('timestamp', (s) => ((s as Timestamp).snapshotMeta = new MetaFile(1))));
        set.updateSnapshot(f.resign('snapshot', (s) => ((s as Snapshot).meta['targets.json'] = new MetaFile(1))), { trusted: true });
        assertThrowsWith(() => set.updateTargets(bytes), BadVersionError, { role: 'targets', expected: 1, actual: 2 });
        assert.equal(set.targets, undefined);
      });
    });

    describe('when expired (5.6.5)', () => {
      it('throws ExpiredMetadataError and trusts nothing', () => {
        const f = fixture();
        const bytes = f.resign('targets', (s) => (s.expires = PAST));
        const set = loaded(f);
        set.updateTimestamp(f.resign('timestamp', (s) => ((s as Timestamp).snapshotMeta = new MetaFile(1))));
        set.updateSnapshot(f.resign('snapshot', (s) => ((s as Snapshot).meta['targets.json'] = new MetaFile(1))), { trusted: true });
        assertThrowsWith(() => set.updateTargets(bytes), ExpiredMetadataError, { role: 'targets', expires: PAST });
        assert.equal(set.targets, undefined);
      });
    });

    describe('when larger than the cap', () => {
      it('throws MetadataTooLargeError', () => {
        const f = fixture();
        const set = new TrustedMetadataSet(f.bytes('root'), NOW, { maxLength: { targets: 50 } });
        set.updateTimestamp(f.bytes('timestamp'));
        set.updateSnapshot(f.bytes('snapshot'));
        assertThrowsWith(() => set.updateTargets(f.bytes('targets')), MetadataTooLargeError, { role: 'targets', limit: 50 });
      });
    });
  });

  describe('updateDelegatedTargets', () => {
    it('trusts a role verified against its delegator', () => {
      const f = fixture();
      const set = loaded(f, 'role1');
      assert.ok((set.get('role1') as Targets).targets['a/one.bin']);
      const role2 = set.updateDelegatedTargets(f.bytes('role2'), 'role2', 'role1');
      assert.ok(role2.targets['a/deep/two.bin']);
      assert.ok(set.isTrustedVia('role2', 'role1'));
    });

    describe('before the delegator is trusted', () => {
      it('throws UsageError', () => {
        const f = fixture();
        assertThrowsWith(() => loaded(f, 'targets').updateDelegatedTargets(f.bytes('role2'), 'role2', 'role1'), UsageError);
      });
    });

    describe('when snapshot does not list the role (5.6.1)', () => {
      it('throws UnlistedRoleError', () => {
        const f = fixture();
        const set = loaded(f, 'targets');
        assertThrowsWith(() => set.updateDelegatedTargets(f.bytes('role1'), 'ghost', 'targets'), UnlistedRoleError, { role: 'ghost' });
        assert.equal(set.get('ghost'), undefined);
      });
    });

    describe('when the delegator does not delegate the role', () => {
      it('throws UndelegatedRoleError', () => {
        const f = fixture();
        const set = loaded(f, 'targets');
        assertThrowsWith(() => set.updateDelegatedTargets(f.bytes('role2'), 'role2', 'targets'), UndelegatedRoleError, {
          role: 'role2',
          delegator: 'targets',
        });
        assert.equal(set.get('role2'), undefined);
      });
    });

    describe('when signed by a key of another delegation (delegation abuse)', () => {
      it('throws UnsignedMetadataError', () => {
        const f = fixture();
        const set = loaded(f);
        const forged = f.resign('role2', () => {}, f.repo.signersOf('role1'));
        set.updateTimestamp(f.resign('timestamp', (s) => ((s as Timestamp).snapshotMeta = new MetaFile(1))));
        set.updateSnapshot(f.resign('snapshot', (s) => ((s as Snapshot).meta['role2.json'] = new MetaFile(1))), { trusted: true });
        set.updateTargets(f.bytes('targets'));
        set.updateDelegatedTargets(f.bytes('role1'), 'role1', 'targets');
        assertThrowsWith(() => set.updateDelegatedTargets(forged, 'role2', 'role1'), UnsignedMetadataError, { role: 'role2', validSignatures: 0 });
        assert.equal(set.get('role2'), undefined);
      });
    });

    describe('when a trusted role is reached through another delegator (diamond)', () => {
      it('verifies it again against that delegator, refuses a key only the first one gave, and keeps the first trust', () => {
        const repo = new RepositoryBuilder({ now: SIGNED_AT });
        repo.delegate('targets', { name: 'parent-a' });
        repo.delegate('targets', { name: 'parent-b' });
        repo.delegate('parent-a', { name: 'release' });
        const otherKey = Ed25519Signer.generate().key;
        const parentB = repo.targetsOf('parent-b');
        parentB.delegations = new Delegations({ [otherKey.keyid]: otherKey }, [new DelegatedRole('release', [otherKey.keyid], 1, false, ['*'])]);
        repo.touch('parent-b');
        repo.commit();
        const set = new TrustedMetadataSet(repo.files.get('metadata/1.root.json')!, NOW);
        set.updateTimestamp(repo.bytes('timestamp'));
        set.updateSnapshot(repo.bytes('snapshot'));
        set.updateTargets(repo.bytes('targets'));
        set.updateDelegatedTargets(repo.bytes('parent-a'), 'parent-a', 'targets');
        set.updateDelegatedTargets(repo.bytes('parent-b'), 'parent-b', 'targets');
        const viaA = set.updateDelegatedTargets(repo.bytes('release'), 'release', 'parent-a');
        assertThrowsWith(() => set.updateDelegatedTargets(repo.bytes('release'), 'release', 'parent-b'), UnsignedMetadataError, {
          role: 'release',
          validSignatures: 0,
        });
        assert.ok(set.isTrustedVia('release', 'parent-a'));
        assert.ok(!set.isTrustedVia('release', 'parent-b'));
        assert.equal(set.get('release'), viaA);
      });
    });
  });
});
