import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes, sign as nodeSign, verify as nodeVerify, createPublicKey, constants, type KeyObject } from 'node:crypto';
import * as noble from '@noble/ed25519';
import { Ed25519Signer, Key, nodeEd25519, ed25519Provider, type Ed25519Provider } from './keys.ts';
import { nobleEd25519 } from './noble-ed25519.ts';
import { compressedP256Pem } from './testing/fixtures.ts';
import { canonicalize } from './canonical-json.ts';
import { digest, digestHex } from './hash.ts';
import { concatBytes, fromHex, toHex, utf8 } from './bytes.ts';
import { KeyMaterialError, MalformedMetadataError, UnsupportedKeyError } from './errors.ts';

const hex = (s: string): Uint8Array => fromHex(s)!;
const PROVIDERS: Ed25519Provider[] = [nodeEd25519, nobleEd25519];
const P = 2n ** 255n - 19n;
const L = 2n ** 252n + 27742317777372353535851937790883648493n;

function le(n: bigint, length = 32): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) {
    out[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  return out;
}
function fromLe(b: Uint8Array): bigint {
  let n = 0n;
  for (let i = b.byteLength - 1; i >= 0; i--) n = (n << 8n) | BigInt(b[i]!);
  return n;
}

/** RFC 8032 section 7.1, tests 1 and 2. */
const RFC8032 = [
  {
    seed: '9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60',
    publicKey: 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a',
    message: '',
    signature:
      'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b',
  },
  {
    seed: '4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb',
    publicKey: '3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c',
    message: '72',
    signature:
      '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00',
  },
];

const IDENTITY = hex(`01${'00'.repeat(31)}`);
/** Encodings of small-order points, canonical and with the sign bit set. */
const SMALL_ORDER = [
  `01${'00'.repeat(31)}`, // identity
  `ec${'ff'.repeat(30)}7f`, // order 2 (y = -1)
  '00'.repeat(32), // order 4 (y = 0)
  `${'00'.repeat(31)}80`,
  'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a', // order 8
  'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa',
  '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05',
  '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85',
];

/** Asserts both providers give `expected` for the same inputs. */
function agree(publicKey: Uint8Array, signature: Uint8Array, message: Uint8Array, expected: boolean): void {
  for (const p of PROVIDERS) assert.equal(p.verify(publicKey, signature, message), expected, p.name);
}

describe('ed25519 providers', () => {
  it('uses node:crypto by default', () => {
    assert.equal(ed25519Provider(), nodeEd25519);
  });

  describe('on the RFC 8032 vectors', () => {
    for (const [i, v] of RFC8032.entries()) {
      it(`derive the key, sign exactly and verify (test ${i + 1})`, () => {
        for (const p of PROVIDERS) {
          assert.equal(toHex(p.publicKey(hex(v.seed))), v.publicKey, p.name);
          assert.equal(toHex(p.sign(hex(v.seed), hex(v.message))), v.signature, p.name);
        }
        agree(hex(v.publicKey), hex(v.signature), hex(v.message), true);
      });
    }
  });

  const v = RFC8032[1]!;
  const [pub, sig, msg] = [hex(v.publicKey), hex(v.signature), hex(v.message)];

  describe('when the message differs', () => {
    it('both refuse', () => agree(pub, sig, utf8('other'), false));
  });

  describe('when S is not canonical (S + L)', () => {
    it('both refuse', () => {
      const s = fromLe(sig.subarray(32)) + L;
      assert.ok(s < 2n ** 256n);
      agree(pub, concatBytes([sig.subarray(0, 32), le(s)]), msg, false);
    });
  });

  describe('when R is not a canonical encoding (y >= p)', () => {
    it('both refuse', () => agree(pub, concatBytes([le(P + 1n), sig.subarray(32)]), msg, false));
  });

  describe('when A is not a canonical encoding (y >= p)', () => {
    it('both refuse', () => {
      for (const y of [P, P + 1n, P + 5n]) agree(le(y), sig, msg, false);
    });
  });

  describe('when A has small order', () => {
    it('both refuse the signature (R = identity, S = 0) that satisfies the equation for any message', () => {
      const trivial = concatBytes([IDENTITY, new Uint8Array(32)]);
      // OpenSSL on its own accepts it: the reason for the guard.
      const spki = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), IDENTITY]);
      assert.equal(nodeVerify(null, msg, createPublicKey({ key: spki, format: 'der', type: 'spki' }), trivial), true);
      for (const a of SMALL_ORDER) agree(hex(a), trivial, msg, false);
    });
  });

  describe('when R has a small-order component (cofactored-only forgery)', () => {
    it('both refuse, though the cofactored equation holds', () => {
      const seed = hex(v.seed);
      const { scalar, pointBytes } = noble.utils.getExtendedPublicKey(seed);
      const torsion = noble.Point.fromBytes(hex(SMALL_ORDER[4]!));
      const r = 123456789n;
      const R = noble.Point.BASE.multiply(r).add(torsion).toBytes();
      const k = fromLe(digest('sha512', concatBytes([R, pointBytes, msg]))) % L;
      const forged = concatBytes([R, le((r + k * scalar) % L)]);
      assert.equal(noble.verify(forged, msg, pointBytes, { zip215: false }), true);
      agree(pointBytes, forged, msg, false);
    });
  });

  describe('when lengths are wrong', () => {
    it('both refuse', () => {
      agree(pub.subarray(0, 31), sig, msg, false);
      agree(concatBytes([pub, new Uint8Array(1)]), sig, msg, false);
      agree(pub, sig.subarray(0, 63), msg, false);
      agree(pub, concatBytes([sig, new Uint8Array(1)]), msg, false);
      agree(new Uint8Array(0), new Uint8Array(0), msg, false);
    });
  });

  describe('on random keys, messages and bit flips', () => {
    it('both give the same answer, and each verifies the other\'s signatures', () => {
      for (let i = 0; i < 20; i++) {
        const seed = new Uint8Array(randomBytes(32));
        const message = new Uint8Array(randomBytes(i * 7));
        const publicKey = nodeEd25519.publicKey(seed);
        const signature = (i % 2 ? nodeEd25519 : nobleEd25519).sign(seed, message);
        agree(publicKey, signature, message, true);
        const flipped = new Uint8Array(signature);
        flipped[i % 64]! ^= 1 << (i % 8);
        agree(publicKey, flipped, message, false);
      }
    });
  });
});

const P256 = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const RSA_2048 = generateKeyPairSync('rsa', { modulusLength: 2048 });

describe('Key', () => {
  describe('keyid', () => {
    it('is the sha256 of the canonical key, unknown fields included', () => {
      const json = { keytype: 'ed25519', scheme: 'ed25519', keyval: { public: RFC8032[0]!.publicKey }, x_extra: 1 };
      const key = Key.fromJSON(json);
      assert.equal(key.keyid, digestHex('sha256', canonicalize(json)));
      assert.deepEqual(key.toJSON(), json);
    });
  });

  describe('fromJSON', () => {
    for (const [name, json, path] of [
      ['not an object', 'x', 'key'],
      ['keytype missing', { scheme: 'ed25519', keyval: { public: 'aa' } }, 'key.keytype'],
      ['scheme not a string', { keytype: 'ed25519', scheme: 1, keyval: { public: 'aa' } }, 'key.scheme'],
      ['keyval without public', { keytype: 'ed25519', scheme: 'ed25519', keyval: {} }, 'key.keyval'],
      ['keyval with a non-string', { keytype: 'ed25519', scheme: 'ed25519', keyval: { public: 'aa', private: 1 } }, 'key.keyval.private'],
    ] as const) {
      describe(`when ${name}`, () => {
        it('throws MalformedMetadataError naming the path', () => {
          assert.throws(() => Key.fromJSON(json), (e: unknown) => e instanceof MalformedMetadataError && e.path === path);
        });
      });
    }
  });

  describe('fromJSON when the material does not fit the scheme', () => {
    const pem = (key: KeyObject) => key.export({ format: 'pem', type: 'spki' }).toString();
    const rsa1024 = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey;
    const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey;
    const ed = generateKeyPairSync('ed25519').publicKey;
    for (const [name, keytype, scheme, key, actual] of [
      ['an ecdsa-sha2-nistp256 key that is RSA', 'ecdsa', 'ecdsa-sha2-nistp256', RSA_2048.publicKey, 'an rsa key'],
      ['an ecdsa-sha2-nistp256 key on P-384', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp256', p384, 'an EC key on secp384r1'],
      ['an ecdsa-sha2-nistp256 key that is ed25519', 'ecdsa', 'ecdsa-sha2-nistp256', ed, 'an ed25519 key'],
      ['an rsassa-pss-sha256 key of 1024 bits', 'rsa', 'rsassa-pss-sha256', rsa1024, 'an RSA key of 1024 bits'],
      ['an rsassa-pss-sha256 key that is EC', 'rsa', 'rsassa-pss-sha256', P256.publicKey, 'an ec key'],
    ] as const) {
      describe(`when ${name}`, () => {
        it('throws KeyMaterialError naming the scheme and both key kinds', () => {
          const json = { keytype, scheme, keyval: { public: pem(key) } };
          assert.throws(
            () => Key.fromJSON(json, 'root.keys.k'),
            (e: unknown) =>
              e instanceof KeyMaterialError && e instanceof MalformedMetadataError &&
              e.path === 'root.keys.k.keyval.public' && e.scheme === scheme && e.actual === actual,
          );
        });
      });
    }

    it('accepts P-256 ecdsa and 2048-bit RSA keys', () => {
      assert.equal(Key.fromJSON({ keytype: 'ecdsa', scheme: 'ecdsa-sha2-nistp256', keyval: { public: pem(P256.publicKey) } }).isSupported, true);
      assert.equal(Key.fromJSON({ keytype: 'rsa', scheme: 'rsassa-pss-sha256', keyval: { public: pem(RSA_2048.publicKey) } }).isSupported, true);
    });

    it('keeps material that does not decode at all (it verifies nothing), as before', () => {
      const key = Key.fromJSON({ keytype: 'ecdsa', scheme: 'ecdsa-sha2-nistp256', keyval: { public: '04abcdef' } });
      assert.equal(key.verify(new Uint8Array(70), utf8('m')), false);
      assert.equal(key.materialId, undefined);
    });
  });

  describe('materialId', () => {
    it('is one identity for one key, whatever the PEM spelling or hex case', () => {
      const pemText = P256.publicKey.export({ format: 'pem', type: 'spki' }).toString();
      const a = new Key('ecdsa', 'ecdsa-sha2-nistp256', { public: pemText });
      const b = new Key('ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp256', { public: pemText.trimEnd().replace(/\n/g, '\r\n') });
      assert.notEqual(a.keyid, b.keyid);
      assert.equal(a.materialId, b.materialId);
      const lower = RFC8032[0]!.publicKey;
      assert.equal(Key.fromJSON({ keytype: 'ed25519', scheme: 'ed25519', keyval: { public: lower.toUpperCase() } }).materialId, Key.ed25519(hex(lower)).materialId);
      assert.notEqual(a.materialId, Key.ed25519(hex(lower)).materialId);
    });

    it('is one identity for a P-256 key whether its point is compressed or not', () => {
      const pemText = compressedP256Pem(P256.publicKey);
      const uncompressed = new Key('ecdsa', 'ecdsa-sha2-nistp256', { public: P256.publicKey.export({ format: 'pem', type: 'spki' }).toString() });
      const c = new Key('ecdsa', 'ecdsa-sha2-nistp256', { public: pemText });
      assert.equal(createPublicKey(pemText).equals(P256.publicKey), true);
      assert.notEqual(c.keyval.public, uncompressed.keyval.public);
      assert.equal(c.materialId, uncompressed.materialId);
    });
  });

  describe('decoded material, shared by keys of the same text', () => {
    it('refuses a mismatch on every decode, each error naming its own path', () => {
      const json = { keytype: 'rsa', scheme: 'rsassa-pss-sha256', keyval: { public: P256.publicKey.export({ format: 'pem', type: 'spki' }).toString() } };
      for (const path of ['root.keys.a', 'targets.delegations.keys.b']) {
        assert.throws(() => Key.fromJSON(json, path), (e: unknown) => e instanceof KeyMaterialError && e.path === `${path}.keyval.public`);
      }
      // The same text under the scheme it fits decodes, whatever was decoded for the other scheme.
      assert.equal(Key.fromJSON({ ...json, keytype: 'ecdsa', scheme: 'ecdsa-sha2-nistp256' }).materialId?.startsWith('ec:P-256:'), true);
    });
  });

  describe('verify', () => {
    it('verifies ed25519 with the signer that made it', () => {
      const signer = Ed25519Signer.generate();
      const message = utf8('hello');
      assert.equal(signer.key.verify(signer.sign(message), message), true);
      assert.equal(signer.key.verify(signer.sign(message), utf8('hellp')), false);
    });

    it('verifies ecdsa-sha2-nistp256 through node:crypto', () => {
      const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const key = new Key('ecdsa', 'ecdsa-sha2-nistp256', { public: publicKey.export({ format: 'pem', type: 'spki' }).toString() });
      const message = utf8('payload');
      const signature = new Uint8Array(nodeSign('sha256', message, privateKey));
      assert.equal(key.verify(signature, message), true);
      assert.equal(key.verify(signature, utf8('other')), false);
    });

    it('verifies rsassa-pss-sha256 through node:crypto', () => {
      const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
      const key = new Key('rsa', 'rsassa-pss-sha256', { public: publicKey.export({ format: 'pem', type: 'spki' }).toString() });
      const message = utf8('payload');
      const signature = new Uint8Array(
        nodeSign('sha256', message, { key: privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }),
      );
      assert.equal(key.verify(signature, message), true);
      assert.equal(key.verify(signature, utf8('other')), false);
    });

    describe('when a key built by hand has material of another scheme', () => {
      it('verifies nothing, though the signature is good for that material', () => {
        const message = utf8('payload');
        const pem = (key: KeyObject) => key.export({ format: 'pem', type: 'spki' }).toString();
        // An RSA PKCS#1 v1.5 signature: node:crypto would check it against an RSA key given for ecdsa.
        const rsaSig = new Uint8Array(nodeSign('sha256', message, RSA_2048.privateKey));
        assert.equal(nodeVerify('sha256', message, RSA_2048.publicKey, rsaSig), true);
        assert.equal(new Key('ecdsa', 'ecdsa-sha2-nistp256', { public: pem(RSA_2048.publicKey) }).verify(rsaSig, message), false);
        const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' });
        const p384Sig = new Uint8Array(nodeSign('sha256', message, p384.privateKey));
        assert.equal(new Key('ecdsa', 'ecdsa-sha2-nistp256', { public: pem(p384.publicKey) }).verify(p384Sig, message), false);
        const rsa1024 = generateKeyPairSync('rsa', { modulusLength: 1024 });
        const pssSig = new Uint8Array(nodeSign('sha256', message, { key: rsa1024.privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }));
        assert.equal(new Key('rsa', 'rsassa-pss-sha256', { public: pem(rsa1024.publicKey) }).verify(pssSig, message), false);
      });
    });

    describe('when the key material is garbage', () => {
      it('returns false', () => {
        assert.equal(new Key('rsa', 'rsassa-pss-sha256', { public: 'not a pem' }).verify(new Uint8Array(8), utf8('m')), false);
        assert.equal(new Key('ed25519', 'ed25519', { public: 'zz' }).verify(new Uint8Array(64), utf8('m')), false);
      });
    });

    describe('when the keytype/scheme is unsupported', () => {
      it('throws UnsupportedKeyError', () => {
        const key = new Key('dsa', 'dsa-sha1', { public: 'x' });
        assert.equal(key.isSupported, false);
        assert.throws(() => key.verify(new Uint8Array(1), utf8('m')), (e: unknown) => e instanceof UnsupportedKeyError && e.keytype === 'dsa');
      });
    });
  });
});
