import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { RepositoryBuilder, targetFilePath } from './repository.ts';
import { Ed25519Signer } from './keys.ts';
import { Metadata } from './metadata/envelope.ts';
import { UnsignedMetadataError, UsageError } from './errors.ts';
import { digestHex } from './hash.ts';
import { utf8 } from './bytes.ts';

const now = new Date('2030-01-01T00:00:00Z');

function parse<R extends 'root' | 'timestamp' | 'snapshot' | 'targets'>(files: Map<string, Uint8Array>, path: string, type: R) {
  const bytes = files.get(path);
  assert.ok(bytes, `${path} is published`);
  return Metadata.fromBytes(bytes, type);
}

describe('RepositoryBuilder', () => {
  describe('commit', () => {
    describe('on a new repository', () => {
      it('publishes version 1 of every top-level role in the consistent-snapshot layout', () => {
        const files = new RepositoryBuilder({ now }).commit();
        assert.deepEqual([...files.keys()].sort(), [
          'metadata/1.root.json',
          'metadata/1.snapshot.json',
          'metadata/1.targets.json',
          'metadata/root.json',
          'metadata/timestamp.json',
        ]);
        for (const [path, type] of [['metadata/1.root.json', 'root'], ['metadata/1.snapshot.json', 'snapshot'], ['metadata/1.targets.json', 'targets'], ['metadata/timestamp.json', 'timestamp']] as const) {
          assert.equal(parse(files, path, type).signed.version, 1);
        }
      });

      it('signs each role with the keys root lists for it', () => {
        const repo = new RepositoryBuilder({ now });
        const files = repo.commit();
        const root = parse(files, 'metadata/1.root.json', 'root').signed;
        for (const [path, type] of [['metadata/1.root.json', 'root'], ['metadata/1.snapshot.json', 'snapshot'], ['metadata/1.targets.json', 'targets'], ['metadata/timestamp.json', 'timestamp']] as const) {
          const md = parse(files, path, type);
          md.verifyThreshold(type, root.keys, root.roles[type].keyids, root.roles[type].threshold);
        }
      });

      it('sets expiries from now and the role lifetime', () => {
        const repo = new RepositoryBuilder({ now, expiry: { timestamp: 60 } });
        repo.commit();
        assert.equal(repo.timestamp.expires, '2030-01-01T00:01:00Z');
        assert.equal(repo.root.expires, '2031-01-01T00:00:00Z');
      });

      it('lists the length and sha256 of snapshot in timestamp and of targets in snapshot', () => {
        const repo = new RepositoryBuilder({ now });
        const files = repo.commit();
        const snapshotBytes = files.get('metadata/1.snapshot.json')!;
        assert.deepEqual(repo.timestamp.snapshotMeta.hashes, { sha256: digestHex('sha256', snapshotBytes) });
        assert.equal(repo.timestamp.snapshotMeta.length, snapshotBytes.byteLength);
        assert.equal(repo.snapshot.meta['targets.json']!.length, files.get('metadata/1.targets.json')!.byteLength);
      });

      it('lists versions only when metaHashes is false', () => {
        const repo = new RepositoryBuilder({ now, metaHashes: false });
        repo.commit();
        assert.deepEqual(repo.timestamp.snapshotMeta.toJSON(), { version: 1 });
      });

      it('applies the given thresholds and signers', () => {
        const signers = [Ed25519Signer.generate(), Ed25519Signer.generate()];
        const repo = new RepositoryBuilder({ now, signers: { targets: signers }, thresholds: { targets: 2 } });
        const files = repo.commit();
        const md = parse(files, 'metadata/1.targets.json', 'targets');
        assert.equal(md.signatures.size, 2);
        assert.equal(repo.root.roles.targets.threshold, 2);
        md.verifyThreshold('targets', repo.root.keys, repo.root.roles.targets.keyids, 2);
      });
    });

    describe('after a target is added', () => {
      it('bumps targets, snapshot and timestamp, and not root', () => {
        const repo = new RepositoryBuilder({ now });
        repo.commit();
        repo.addTarget('fw.bin', utf8('firmware'));
        const files = repo.commit();
        assert.equal(parse(files, 'metadata/2.targets.json', 'targets').signed.targets['fw.bin']!.length, 8);
        assert.equal(parse(files, 'metadata/2.snapshot.json', 'snapshot').signed.meta['targets.json']!.version, 2);
        assert.equal(parse(files, 'metadata/timestamp.json', 'timestamp').signed.version, 2);
        assert.ok(!files.has('metadata/2.root.json'));
        assert.ok(files.has('metadata/1.targets.json'), 'old versions stay');
      });

      it('publishes the bytes under targets/<sha256>.<name>, keeping directories', () => {
        const repo = new RepositoryBuilder({ now });
        const data = utf8('image');
        const info = repo.addTarget('dir/sub/fw.bin', data, { custom: { version: '1' } });
        const files = repo.commit();
        assert.equal(targetFilePath('dir/sub/fw.bin', info.hashes.sha256!), `targets/dir/sub/${digestHex('sha256', data)}.fw.bin`);
        assert.deepEqual(files.get(targetFilePath('dir/sub/fw.bin', info.hashes.sha256!)), data);
        assert.deepEqual(Object.keys(info.hashes), ['sha256', 'sha512']);
        assert.deepEqual(repo.targets.targets['dir/sub/fw.bin']!.custom, { version: '1' });
      });
    });

    describe('when nothing changed', () => {
      it('publishes nothing new', () => {
        const repo = new RepositoryBuilder({ now });
        const before = repo.commit();
        const after = repo.commit();
        assert.deepEqual([...after.keys()].sort(), [...before.keys()].sort());
        assert.equal(repo.timestamp.version, 1);
      });
    });

    describe('after touch(timestamp)', () => {
      it('bumps only the timestamp', () => {
        const repo = new RepositoryBuilder({ now });
        repo.commit();
        repo.touch('timestamp');
        repo.commit();
        assert.equal(repo.timestamp.version, 2);
        assert.equal(repo.snapshot.version, 1);
      });
    });
  });

  describe('rotateKeys', () => {
    describe('for root', () => {
      it('signs the new root with the old and the new root keys', () => {
        const repo = new RepositoryBuilder({ now });
        repo.commit();
        const oldRoot = repo.root.toJSON();
        const oldKeyids = [...repo.root.roles.root.keyids];
        const newSigner = Ed25519Signer.generate();
        repo.rotateKeys('root', [newSigner]);
        const files = repo.commit();
        const v2 = parse(files, 'metadata/2.root.json', 'root');
        assert.deepEqual(v2.signed.roles.root.keyids, [newSigner.keyid]);
        const old = parse(files, 'metadata/1.root.json', 'root').signed;
        v2.verifyThreshold('root', old.keys, oldKeyids, 1);
        v2.verifyThreshold('root', v2.signed.keys, v2.signed.roles.root.keyids, 1);
        assert.equal(oldRoot.version, 1);
        assert.deepEqual(files.get('metadata/root.json'), files.get('metadata/2.root.json'));
      });

      it('signs the root after that with the new keys only', () => {
        const repo = new RepositoryBuilder({ now });
        repo.commit();
        const oldKeyid = repo.root.roles.root.keyids[0]!;
        repo.rotateKeys('root', [Ed25519Signer.generate()]);
        repo.commit();
        repo.touch('root');
        const v3 = parse(repo.commit(), 'metadata/3.root.json', 'root');
        assert.ok(!v3.signatures.has(oldKeyid));
      });
    });

    describe('for timestamp', () => {
      it('changes root and re-signs timestamp with the new key', () => {
        const repo = new RepositoryBuilder({ now });
        repo.commit();
        const signer = Ed25519Signer.generate();
        repo.rotateKeys('timestamp', [signer]);
        const files = repo.commit();
        const root = parse(files, 'metadata/2.root.json', 'root').signed;
        assert.deepEqual(root.roles.timestamp.keyids, [signer.keyid]);
        const ts = parse(files, 'metadata/timestamp.json', 'timestamp');
        assert.equal(ts.signed.version, 2);
        ts.verifyThreshold('timestamp', root.keys, root.roles.timestamp.keyids, 1);
      });
    });

    describe('for a delegated role', () => {
      it('changes the delegator and re-signs the role', () => {
        const repo = new RepositoryBuilder({ now });
        repo.delegate('targets', { name: 'a', paths: ['a/*'] });
        repo.commit();
        const signer = Ed25519Signer.generate();
        repo.rotateKeys('a', [signer]);
        const files = repo.commit();
        const targets = parse(files, 'metadata/2.targets.json', 'targets').signed;
        assert.deepEqual(targets.delegations!.roles![0]!.keyids, [signer.keyid]);
        parse(files, 'metadata/2.a.json', 'targets').verifyThreshold('a', targets.delegations!.keys, [signer.keyid], 1);
      });
    });
  });

  describe('delegate', () => {
    it('adds the role to the delegator, lists it in snapshot, and signs it with its key', () => {
      const repo = new RepositoryBuilder({ now });
      const role = repo.delegate('targets', { name: 'supplier', paths: ['supplier/*'], terminating: true, hardwareIds: ['ecu-a'] });
      repo.addTarget('supplier/x.bin', utf8('x'), { role: 'supplier' });
      const files = repo.commit();
      const targets = parse(files, 'metadata/1.targets.json', 'targets').signed;
      assert.deepEqual(targets.delegations!.roles![0]!.toJSON(), role.toJSON());
      assert.equal(role.terminating, true);
      assert.deepEqual(role.hardwareIds, ['ecu-a']);
      assert.equal(repo.snapshot.meta['supplier.json']!.version, 1);
      const delegated = parse(files, 'metadata/1.supplier.json', 'targets');
      delegated.verifyThreshold('supplier', targets.delegations!.keys, role.keyids, 1);
      assert.ok(delegated.signed.targets['supplier/x.bin']);
    });

    it('nests delegations', () => {
      const repo = new RepositoryBuilder({ now });
      repo.delegate('targets', { name: 'a' });
      repo.delegate('a', { name: 'b', pathHashPrefixes: ['0', '8'] });
      const files = repo.commit();
      assert.deepEqual(parse(files, 'metadata/1.a.json', 'targets').signed.delegations!.roles![0]!.pathHashPrefixes, ['0', '8']);
      assert.ok(files.has('metadata/1.b.json'));
      assert.deepEqual(repo.targetsRoles, ['targets', 'a', 'b']);
    });

    describe('when the role exists', () => {
      it('throws UsageError', () => {
        const repo = new RepositoryBuilder({ now });
        repo.delegate('targets', { name: 'a' });
        assert.throws(() => repo.delegate('targets', { name: 'a' }), UsageError);
        assert.throws(() => repo.delegate('targets', { name: 'snapshot' }), UsageError);
      });
    });
  });

  describe('touch', () => {
    it('re-signs a hand-edited role so its signatures verify', () => {
      const repo = new RepositoryBuilder({ now });
      repo.commit();
      repo.targets.unrecognizedFields.deviceId = 'vehicle-1';
      repo.touch('targets');
      const md = parse(repo.commit(), 'metadata/2.targets.json', 'targets');
      assert.equal(md.signed.unrecognizedFields.deviceId, 'vehicle-1');
      md.verifyThreshold('targets', repo.root.keys, repo.root.roles.targets.keyids, 1);
    });

    it('setSignedField puts a field into timestamp, snapshot and targets, signed and kept byte for byte', () => {
      const repo = new RepositoryBuilder({ now });
      repo.commit();
      for (const role of ['timestamp', 'snapshot', 'targets']) repo.setSignedField(role, 'deviceId', 'vehicle-1');
      const files = repo.commit();
      const timestamp = parse(files, 'metadata/timestamp.json', 'timestamp');
      const snapshot = parse(files, 'metadata/2.snapshot.json', 'snapshot');
      const targets = parse(files, 'metadata/2.targets.json', 'targets');
      for (const [role, md, path] of [['timestamp', timestamp, 'metadata/timestamp.json'], ['snapshot', snapshot, 'metadata/2.snapshot.json'], ['targets', targets, 'metadata/2.targets.json']] as const) {
        assert.equal(md.signed.unrecognizedFields.deviceId, 'vehicle-1', role);
        assert.deepEqual(md.toBytes(), files.get(path), `${role} re-serialises to the signed bytes`);
        md.verifyThreshold(role, repo.root.keys, repo.root.roles[role].keyids, 1);
      }
      // Kept by later commits of the same role.
      repo.touch('timestamp');
      assert.equal(parse(repo.commit(), 'metadata/timestamp.json', 'timestamp').signed.unrecognizedFields.deviceId, 'vehicle-1');
      assert.throws(() => repo.setSignedField('timestamp', 'meta', {}), UsageError);
    });

    it('leaves an edit without touch unsigned (the stored envelope no longer verifies)', () => {
      const repo = new RepositoryBuilder({ now });
      repo.commit();
      repo.targets.version = 7;
      const md = repo.metadata('targets');
      assert.throws(
        () => md.verifyThreshold('targets', repo.root.keys, repo.root.roles.targets.keyids, 1),
        (e: unknown) => e instanceof UnsignedMetadataError && e.validSignatures === 0,
      );
    });
  });
});
