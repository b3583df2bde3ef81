import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Metadata } from './envelope.ts';
import { DelegatedRole, Delegations, SuccinctRoles, matchesPathPattern } from './delegations.ts';
import { Root } from './root.ts';
import { Targets } from './targets.ts';
import { Snapshot } from './snapshot.ts';
import { MetaFile, TargetFile } from './file-info.ts';
import { Ed25519Signer, Key } from '../keys.ts';
import { generateKeyPairSync, sign as nodeSign } from 'node:crypto';
import { canonicalize } from '../canonical-json.ts';
import { digestHex } from '../hash.ts';
import { toHex, utf8 } from '../bytes.ts';
import { compressedP256Pem } from '../testing/fixtures.ts';
import { MalformedMetadataError, UnsignedMetadataError } from '../errors.ts';
import type { JsonObject } from './guard.ts';

const signer = Ed25519Signer.generate();
const KEY = signer.key.toJSON();
const KEYID = signer.keyid;

function rootJson(): JsonObject {
  const role = { keyids: [KEYID], threshold: 1, x_role: 'kept' };
  return {
    _type: 'root',
    spec_version: '1.0.31',
    version: 1,
    expires: '2030-01-01T00:00:00Z',
    keys: { [KEYID]: { ...KEY, x_key: 'kept' } },
    roles: { root: role, timestamp: role, snapshot: role, targets: role },
    x_root: { nested: [1, 'two'] },
  };
}

function targetsJson(): JsonObject {
  return {
    _type: 'targets',
    spec_version: '1.0',
    version: 3,
    expires: '2030-01-01T00:00:00Z',
    deviceId: 'vehicle-7',
    targets: { 'fw.bin': { length: 3, hashes: { sha256: 'ab' }, custom: { hardwareIds: ['ecu'] }, x_target: true } },
    delegations: {
      keys: { [KEYID]: KEY },
      roles: [{ name: 'a', keyids: [KEYID], threshold: 1, terminating: false, paths: ['a/*'], hardwareIds: ['ecu'], x_delegated: 1 }],
      x_delegations: 'kept',
    },
  };
}

/** Bytes of an envelope signed over the canonical raw `signed`, with extra envelope fields. */
function signedBytes(signed: JsonObject): Uint8Array {
  const sig = toHex(signer.sign(canonicalize(signed)));
  return canonicalize({ signed, signatures: [{ keyid: KEYID, sig, x_sig: 1 }], x_envelope: 'kept' });
}

describe('Metadata', () => {
  describe('fromBytes then toBytes', () => {
    for (const [name, make] of [['root', rootJson], ['targets', targetsJson]] as const) {
      it(`keeps every unrecognised field of ${name}, so the signature still verifies over the model`, () => {
        const bytes = signedBytes(make());
        const md = Metadata.fromBytes(bytes);
        assert.deepEqual(md.toBytes(), bytes);
        md.verifyThreshold(name, { [KEYID]: signer.key }, [KEYID], 1);
      });
    }

    it('keeps an absent consistent_snapshot absent', () => {
      const md = Metadata.fromBytes(signedBytes(rootJson()), 'root');
      assert.equal(md.signed.consistentSnapshot, undefined);
      assert.ok(!('consistent_snapshot' in md.signed.toJSON()));
    });

    it('exposes the director deviceId as an unrecognised field', () => {
      const md = Metadata.fromBytes(signedBytes(targetsJson()), 'targets');
      assert.equal(md.signed.unrecognizedFields.deviceId, 'vehicle-7');
    });
  });

  describe('sign then verifyThreshold', () => {
    it('verifies a model changed and signed again, and refuses one changed without signing', () => {
      const md = Metadata.fromBytes(signedBytes(targetsJson()), 'targets');
      md.signed.version = 4;
      assert.throws(() => md.verifyThreshold('targets', { [KEYID]: signer.key }, [KEYID], 1), UnsignedMetadataError);
      md.sign(signer);
      md.verifyThreshold('targets', { [KEYID]: signer.key }, [KEYID], 1);
      assert.equal(Metadata.fromBytes(md.toBytes(), 'targets').signed.version, 4);
    });

    it('counts a key once even if listed twice, and ignores keyids without keys', () => {
      const md = Metadata.fromBytes(signedBytes(targetsJson()), 'targets');
      assert.throws(
        () => md.verifyThreshold('targets', { [KEYID]: signer.key }, [KEYID, KEYID, 'unknown'], 2),
        (e: unknown) => e instanceof UnsignedMetadataError && e.validSignatures === 1 && e.threshold === 2,
      );
    });
  });

  describe('verifyThreshold when one key is listed under two keyids', () => {
    const ALIAS = 'f'.repeat(64);
    /** A root of threshold 2 listing `keys` under `keyids`, with one signature per keyid by `sign`. */
    function twoKeyidRoot(keys: Record<string, JsonObject>, sign: (message: Uint8Array) => Uint8Array): Metadata<Root> {
      const signed = rootJson();
      signed.keys = keys;
      (signed.roles as Record<string, JsonObject>).root = { keyids: Object.keys(keys), threshold: 2 };
      const sig = toHex(sign(canonicalize(signed)));
      // JSON.stringify, not canonical JSON: a PEM's newlines must be escaped in the file.
      const bytes = utf8(JSON.stringify({ signed, signatures: Object.keys(keys).map((keyid) => ({ keyid, sig })) }));
      return Metadata.fromBytes(bytes, 'root');
    }
    const verify = (md: Metadata<Root>) => md.verifyThreshold('root', md.signed.keys, md.signed.roles.root.keyids, md.signed.roles.root.threshold);
    const refused = (e: unknown) => e instanceof UnsignedMetadataError && e.role === 'root' && e.threshold === 2 && e.validSignatures === 1;

    it('counts one ed25519 key once, though two keyids carry its signature', () => {
      const md = twoKeyidRoot({ [KEYID]: KEY, [ALIAS]: KEY }, (m) => signer.sign(m));
      assert.throws(() => verify(md), refused);
    });

    it('counts one ecdsa key once under two PEM spellings (two keyids a repository may compute)', () => {
      const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const pem = publicKey.export({ format: 'pem', type: 'spki' }).toString();
      const a = new Key('ecdsa', 'ecdsa-sha2-nistp256', { public: pem });
      const b = new Key('ecdsa', 'ecdsa-sha2-nistp256', { public: pem.trimEnd() });
      assert.notEqual(a.keyid, b.keyid);
      const md = twoKeyidRoot({ [a.keyid]: a.toJSON(), [b.keyid]: b.toJSON() }, (m) => new Uint8Array(nodeSign('sha256', m, privateKey)));
      assert.throws(() => verify(md), refused);
    });

    it('counts one ecdsa key once with its point compressed under one keyid and not under the other', () => {
      const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const a = new Key('ecdsa', 'ecdsa-sha2-nistp256', { public: publicKey.export({ format: 'pem', type: 'spki' }).toString() });
      const b = new Key('ecdsa', 'ecdsa-sha2-nistp256', { public: compressedP256Pem(publicKey) });
      const md = twoKeyidRoot({ [a.keyid]: a.toJSON(), [b.keyid]: b.toJSON() }, (m) => new Uint8Array(nodeSign('sha256', m, privateKey)));
      assert.throws(() => verify(md), refused);
    });

    it('still counts two different keys twice', () => {
      const other = Ed25519Signer.generate();
      const signed = rootJson();
      signed.keys = { [KEYID]: KEY, [other.keyid]: other.key.toJSON() };
      (signed.roles as Record<string, JsonObject>).root = { keyids: [KEYID, other.keyid], threshold: 2 };
      const message = canonicalize(signed);
      const bytes = canonicalize({ signed, signatures: [signer, other].map((s) => ({ keyid: s.keyid, sig: toHex(s.sign(message)) })) });
      verify(Metadata.fromBytes(bytes, 'root'));
    });
  });

  describe('strict parsing', () => {
    const cases: Array<[string, (j: JsonObject) => void, string]> = [
      ['_type of another role', (j) => (j._type = 'snapshot'), 'targets.signed._type'],
      ['spec_version not a version', (j) => (j.spec_version = '1.x'), 'targets.signed.spec_version'],
      ['spec_version of another major', (j) => (j.spec_version = '2.0.0'), 'targets.signed.spec_version'],
      ['version zero', (j) => (j.version = 0), 'targets.signed.version'],
      ['version a string', (j) => (j.version = '3'), 'targets.signed.version'],
      ['expires with a fraction', (j) => (j.expires = '2030-01-01T00:00:00.5Z'), 'targets.signed.expires'],
      ...(
        [
          ['on 30 February', '2030-02-30T00:00:00Z'],
          ['on 29 February of a common year', '2029-02-29T00:00:00Z'],
          ['on 29 February 2100 (not a leap year)', '2100-02-29T00:00:00Z'],
          ['on 31 April', '2030-04-31T00:00:00Z'],
          ['in month 13', '2030-13-01T00:00:00Z'],
          ['in month 00', '2030-00-10T00:00:00Z'],
          ['on day 00', '2030-01-00T00:00:00Z'],
          ['at hour 24', '2030-01-01T24:00:00Z'],
          ['at minute 60', '2030-01-01T23:60:00Z'],
          ['at second 60 (a leap second)', '2030-06-30T23:59:60Z'],
          ['in year 0000', '0000-01-01T00:00:00Z'],
        ] as const
      ).map(([when, expires]): [string, (j: JsonObject) => void, string] => [`expires ${when}`, (j) => (j.expires = expires), 'targets.signed.expires']),
      ['targets not an object', (j) => (j.targets = []), 'targets.signed.targets'],
      ['a negative target length', (j) => ((j.targets as JsonObject)['fw.bin'] = { length: -1, hashes: { sha256: 'ab' } }), 'targets.signed.targets.fw.bin.length'],
      ['a target without hashes', (j) => ((j.targets as JsonObject)['fw.bin'] = { length: 1, hashes: {} }), 'targets.signed.targets.fw.bin.hashes'],
      ['custom not an object', (j) => ((j.targets as JsonObject)['fw.bin'] = { length: 1, hashes: { sha256: 'a' }, custom: 1 }), 'targets.signed.targets.fw.bin.custom'],
      ['delegations without roles', (j) => delete (j.delegations as JsonObject).roles, 'targets.signed.delegations'],
      ['a delegated role named like a top-level role', (j) => (((j.delegations as JsonObject).roles as JsonObject[])[0]!.name = 'root'), 'targets.signed.delegations.roles[0].name'],
      ['a delegated role without terminating', (j) => delete ((j.delegations as JsonObject).roles as JsonObject[])[0]!.terminating, 'targets.signed.delegations.roles[0].terminating'],
      ['a delegated role with both paths and prefixes', (j) => (((j.delegations as JsonObject).roles as JsonObject[])[0]!.path_hash_prefixes = ['ab']), 'targets.signed.delegations.roles[0]'],
      ['a delegated role with neither paths nor prefixes', (j) => delete ((j.delegations as JsonObject).roles as JsonObject[])[0]!.paths, 'targets.signed.delegations.roles[0]'],
      ['duplicate keyids in a role', (j) => (((j.delegations as JsonObject).roles as JsonObject[])[0]!.keyids = [KEYID, KEYID]), 'targets.signed.delegations.roles[0].keyids'],
      ['a zero threshold', (j) => (((j.delegations as JsonObject).roles as JsonObject[])[0]!.threshold = 0), 'targets.signed.delegations.roles[0].threshold'],
      ['duplicate delegated role names', (j) => ((j.delegations as JsonObject).roles = [...((j.delegations as JsonObject).roles as JsonObject[]), ...((j.delegations as JsonObject).roles as JsonObject[])]), 'targets.signed.delegations.roles'],
    ];
    for (const [name, mutate, path] of cases) {
      describe(`when ${name}`, () => {
        it(`throws MalformedMetadataError at ${path}`, () => {
          const signed = targetsJson();
          mutate(signed);
          const bytes = canonicalize({ signed, signatures: [] });
          assert.throws(() => Metadata.fromBytes(bytes, 'targets'), (e: unknown) => e instanceof MalformedMetadataError && e.path === path);
        });
      });
    }

    describe('when two signatures share a keyid', () => {
      it('throws MalformedMetadataError', () => {
        const bytes = canonicalize({ signed: targetsJson(), signatures: [{ keyid: 'a', sig: '00' }, { keyid: 'a', sig: '11' }] });
        assert.throws(() => Metadata.fromBytes(bytes), (e: unknown) => e instanceof MalformedMetadataError && e.path === 'metadata.signatures');
      });
    });

    describe('when root lacks a top-level role or has an extra one', () => {
      it('throws MalformedMetadataError at root.roles', () => {
        const missing = rootJson();
        delete (missing.roles as JsonObject).snapshot;
        assert.throws(() => Root.fromJSON(missing), (e: unknown) => e instanceof MalformedMetadataError && e.path === 'root.roles');
        const extra = rootJson();
        (extra.roles as JsonObject).mirrors = { keyids: [], threshold: 1 };
        assert.throws(() => Root.fromJSON(extra), (e: unknown) => e instanceof MalformedMetadataError && e.path === 'root.roles');
      });
    });

    describe('when the bytes are not UTF-8 JSON', () => {
      it('throws MalformedMetadataError', () => {
        assert.throws(() => Metadata.fromBytes(new Uint8Array([0xff, 0xfe])), MalformedMetadataError);
        assert.throws(() => Metadata.fromBytes(utf8('[1,')), MalformedMetadataError);
      });
    });
  });

  describe('isExpired', () => {
    it('is expired at and after the expiry instant, not before', () => {
      const md = Metadata.fromBytes(signedBytes(targetsJson()), 'targets');
      assert.equal(md.signed.isExpired(new Date('2029-12-31T23:59:59Z')), false);
      assert.equal(md.signed.isExpired(new Date('2030-01-01T00:00:00Z')), true);
    });

    it('accepts real leap days and the last second of a day', () => {
      for (const expires of ['2028-02-29T23:59:59Z', '2000-02-29T00:00:00Z']) {
        const signed = { ...targetsJson(), expires };
        const md = Metadata.fromBytes(canonicalize({ signed, signatures: [] }), 'targets');
        assert.equal(md.signed.isExpired(new Date(Date.parse(expires) - 1000)), false);
        assert.equal(md.signed.isExpired(new Date(Date.parse(expires))), true);
      }
    });

    it('follows a changed expires (the parsed instant is kept only for the text it came from)', () => {
      const md = Metadata.fromBytes(signedBytes(targetsJson()), 'targets');
      const now = new Date('2029-06-01T00:00:00Z');
      assert.equal(md.signed.isExpired(now), false);
      md.signed.expires = '2029-05-31T23:59:59Z';
      assert.equal(md.signed.isExpired(now), true);
      md.signed.expires = '2030-01-01T00:00:00Z';
      assert.equal(md.signed.isExpired(now), false);
    });

    it('counts an expires set to something that is not a valid instant as expired', () => {
      const md = Metadata.fromBytes(signedBytes(targetsJson()), 'targets');
      for (const expires of ['never', '2030-02-30T00:00:00Z']) {
        md.signed.expires = expires;
        assert.equal(md.signed.isExpired(new Date('2029-01-01T00:00:00Z')), true, expires);
      }
    });
  });
});

/** Sets `name` as an own enumerable property, as JSON.parse does (a literal `__proto__:` would set the prototype). */
function withOwn<T extends object>(obj: T, name: string, value: unknown): T {
  Object.defineProperty(obj, name, { value, enumerable: true, writable: true, configurable: true });
  return obj;
}

describe('names from outside', () => {
  const INHERITED = ['constructor', 'toString', 'hasOwnProperty', 'valueOf', '__proto__'];

  describe('a target named __proto__', () => {
    it('is an ordinary entry, and the model re-serialises to the signed bytes', () => {
      const signed = targetsJson();
      withOwn(signed.targets as JsonObject, '__proto__', { length: 1, hashes: { sha256: 'cd' } });
      const bytes = signedBytes(signed);
      const md = Metadata.fromBytes(bytes, 'targets');
      assert.deepEqual(Object.keys(md.signed.targets).sort(), ['__proto__', 'fw.bin']);
      assert.ok(md.signed.targets['__proto__'] instanceof TargetFile);
      assert.equal(md.signed.targets['__proto__'].length, 1);
      assert.deepEqual(md.toBytes(), bytes);
      md.verifyThreshold('targets', { [KEYID]: signer.key }, [KEYID], 1);
    });
  });

  describe('an unrecognised field named __proto__', () => {
    it('is kept, in signed and in a target, so the signature still verifies over the model', () => {
      const signed = withOwn(targetsJson(), '__proto__', { x: 1 });
      withOwn((signed.targets as Record<string, JsonObject>)['fw.bin']!, '__proto__', 'kept');
      const bytes = signedBytes(signed);
      const md = Metadata.fromBytes(bytes, 'targets');
      assert.deepEqual(md.toBytes(), bytes);
      md.verifyThreshold('targets', { [KEYID]: signer.key }, [KEYID], 1);
    });
  });

  describe('names an object inherits (constructor, toString...)', () => {
    it('are absent from parsed targets, hashes, delegation keys, root keys and snapshot meta', () => {
      const targets = Metadata.fromBytes(signedBytes(targetsJson()), 'targets').signed;
      const root = Metadata.fromBytes(signedBytes(rootJson()), 'root').signed;
      const snapshot = Snapshot.fromJSON({ _type: 'snapshot', spec_version: '1.0.31', version: 1, expires: '2030-01-01T00:00:00Z', meta: { 'targets.json': { version: 1 } } });
      const maps: Record<string, Record<string, unknown>> = {
        targets: targets.targets,
        hashes: targets.targets['fw.bin']!.hashes,
        'delegation keys': targets.delegations!.keys,
        'root keys': root.keys,
        'snapshot meta': snapshot.meta,
      };
      for (const [what, map] of Object.entries(maps)) {
        for (const name of INHERITED) assert.equal(map[name], undefined, `${what}[${name}]`);
      }
    });

    it('are absent from the maps of models callers build, which keep a __proto__ entry they add', () => {
      const t = new Targets(1, '2030-01-01T00:00:00Z', { 'a.bin': new TargetFile(1, { sha256: 'ab' }) });
      const s = new Snapshot(1, '2030-01-01T00:00:00Z', { 'targets.json': new MetaFile(1) });
      for (const name of INHERITED) {
        assert.equal(t.targets[name], undefined, `targets[${name}]`);
        assert.equal(s.meta[name], undefined, `meta[${name}]`);
      }
      t.targets['__proto__'] = new TargetFile(2, { sha256: 'cd' });
      assert.deepEqual(Object.keys(t.toJSON().targets as JsonObject).sort(), ['__proto__', 'a.bin']);
    });
  });
});

describe('delegations', () => {
  describe('matchesPathPattern', () => {
    for (const [target, pattern, expected] of [
      ['a/b.bin', 'a/*', true],
      ['a/b/c.bin', 'a/*', false],
      ['a/b/c.bin', 'a/*/*.bin', true],
      ['file.tgz', '*.tgz', true],
      ['file.tar.gz', 'file.t?z', false],
      ['file.tgz', 'file.t?z', true],
      ['v1.bin', 'v[0-9].bin', true],
      ['va.bin', 'v[!a].bin', false],
      ['a.b', 'a.b', true],
      ['axb', 'a.b', false],
      ['(x)', '(x)', true],
    ] as const) {
      it(`${target} ${expected ? 'matches' : 'does not match'} ${pattern}`, () => {
        assert.equal(matchesPathPattern(target, pattern), expected);
      });
    }
  });

  describe('DelegatedRole.isDelegatedPath with hash prefixes', () => {
    it('matches on a prefix of the sha256 of the target path', () => {
      const hash = digestHex('sha256', utf8('fw.bin'));
      assert.equal(new DelegatedRole('r', [], 1, false, undefined, [hash.slice(0, 2)]).isDelegatedPath('fw.bin'), true);
      const other = hash[0] === '0' ? '1' : '0';
      assert.equal(new DelegatedRole('r', [], 1, false, undefined, [other]).isDelegatedPath('fw.bin'), false);
    });
  });

  describe('Delegations.rolesForTarget', () => {
    const roles = (...rs: DelegatedRole[]) => new Delegations({}, rs);
    it('lists matching roles in order and stops after a terminating one', () => {
      const d = roles(
        new DelegatedRole('a', [], 1, false, ['x/*']),
        new DelegatedRole('skip', [], 1, false, ['y/*']),
        new DelegatedRole('b', [], 1, true, ['x/*']),
        new DelegatedRole('c', [], 1, false, ['x/*']),
      );
      assert.deepEqual(d.rolesForTarget('x/1').map((r) => r.name), ['a', 'b']);
    });

    it('marks roles whose hardware-ID filter excludes the ECU as not allowed, still honouring terminating', () => {
      const d = roles(new DelegatedRole('brake', [], 1, true, ['*'], undefined, ['ecu-brake']), new DelegatedRole('any', [], 1, false, ['*']));
      assert.deepEqual(d.rolesForTarget('fw', 'ecu-door'), [{ name: 'brake', terminating: true, allowed: false }]);
      assert.deepEqual(d.rolesForTarget('fw', 'ecu-brake'), [{ name: 'brake', terminating: true, allowed: true }]);
    });
  });

  describe('SuccinctRoles', () => {
    it('puts a target in the bin of the first bits of its path hash', () => {
      const s = new SuccinctRoles([], 1, 8, 'bin');
      const expected = digestHex('sha256', utf8('fw.bin')).slice(0, 2);
      assert.equal(s.roleForTarget('fw.bin'), `bin-${expected}`);
      assert.equal(s.isDelegatedRole(`bin-${expected}`), true);
      assert.equal(s.isDelegatedRole('bin-100'), false);
      assert.equal(s.isDelegatedRole('bin-0g'), false);
    });
  });
});
