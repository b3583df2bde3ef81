/**
 * Keys and signatures. Verification never throws for a bad signature: it
 * returns false, and only malformed key *descriptions* raise errors.
 *
 * ed25519 has two interchangeable providers, node:crypto (OpenSSL, ~13x faster
 * here, the default) and @noble/ed25519 (pure JS, in noble-ed25519.ts). Both apply
 * one strict rule set, so a signature valid for one is valid for the other:
 * - lengths: a 32-byte key and a 64-byte signature;
 * - S canonical (S < L), R and A canonical encodings (y < p, no "negative zero");
 * - A not of small order;
 * - the cofactorless equation [S]B = R + [k]A, compared on the encoding of R.
 * OpenSSL alone accepts small-order and non-canonical A, so the node provider
 * refuses those first; noble (zip215: false) alone uses the cofactored equation,
 * so the noble provider also checks the cofactorless one.
 * rsassa-pss-sha256 and ecdsa-sha2-nistp256 keys verify through node:crypto.
 *
 * A key's scheme is bound to its material: an ecdsa-sha2-nistp256 key must be
 * a P-256 key and an rsassa-pss-sha256 key an RSA key of at least 2048 bits.
 * Key.fromJSON refuses a mismatch (KeyMaterialError); a Key built otherwise with
 * one verifies nothing. Material that does not decode at all (not PEM, not 32-byte
 * hex) is kept, as before, and verifies nothing: such a key counts for nothing,
 * and refusing it would refuse metadata whose threshold other keys meet.
 *
 * Keys are told apart by material, not keyid: `materialId` names the public key
 * whatever its encoding, so one key listed under two keyids (or two PEM spellings)
 * counts once toward a threshold.
 */
import {
  createPrivateKey,
  createPublicKey,
  randomBytes,
  sign as nodeSign,
  verify as nodeVerify,
  constants,
  type KeyObject,
} from 'node:crypto';
import { canonicalize } from './canonical-json.ts';
import { digestHex } from './hash.ts';
import { concatBytes, fromHex, toHex } from './bytes.ts';
import { KeyMaterialError, MalformedMetadataError, UnsupportedKeyError } from './errors.ts';
import { P, littleEndian } from './ed25519-numbers.ts';

/** The ed25519 primitive, so the two implementations can be swapped and compared. */
export interface Ed25519Provider {
  readonly name: string;
  publicKey(seed: Uint8Array): Uint8Array;
  sign(seed: Uint8Array, message: Uint8Array): Uint8Array;
  verify(publicKey: Uint8Array, signature: Uint8Array, message: Uint8Array): boolean;
}

const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

/**
 * `make()` for `id`, remembered in `cache`: node:crypto's key objects are immutable and costly
 * to build. Emptied past 10,000 entries, so keys from hostile metadata cannot grow it without bound.
 */
function remembered<T>(cache: Map<string, T>, id: string, make: () => T): T {
  let value = cache.get(id);
  if (value === undefined) {
    value = make();
    if (cache.size > 10_000) cache.clear();
    cache.set(id, value);
  }
  return value;
}

/** Public key (hex) -> its KeyObject, or null for a key strict verification refuses (isWeakPublicKey). */
const nodeKeyCache = new Map<string, KeyObject | null>();
function nodePublicKey(publicKey: Uint8Array): KeyObject | null {
  // As a JWK: the same key as its SPKI DER, built about 7x faster (OpenSSL 3's DER decoders
  // cost as much as a verification, and each verify worker meets every ECU key once).
  return remembered(nodeKeyCache, toHex(publicKey), () =>
    isWeakPublicKey(publicKey) ? null : createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(publicKey).toString('base64url') }, format: 'jwk' }));
}

function nodePrivateKey(seed: Uint8Array): KeyObject {
  return createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]), format: 'der', type: 'pkcs8' });
}

/**
 * The y coordinates of the eight small-order points: 1 (identity), p-1 (order 2),
 * 0 (order 4) and the two of order 8. Every x for these y is small-order.
 */
const SMALL_ORDER_Y = new Set([
  0n,
  1n,
  P - 1n,
  0x7a03ac9277fdc74ec6cc392cfa53202a0f67100d760b3cba4fd84d3d706a17c7n,
  P - 0x7a03ac9277fdc74ec6cc392cfa53202a0f67100d760b3cba4fd84d3d706a17c7n,
]);

/** A public key OpenSSL would accept but strict verification refuses: y >= p, or small order. */
function isWeakPublicKey(publicKey: Uint8Array): boolean {
  const y = littleEndian(publicKey) & ((1n << 255n) - 1n);
  return y >= P || SMALL_ORDER_Y.has(y);
}

export const nodeEd25519: Ed25519Provider = {
  name: 'node:crypto',
  publicKey(seed) {
    const der = createPublicKey(nodePrivateKey(seed)).export({ format: 'der', type: 'spki' });
    return new Uint8Array(der.subarray(SPKI_ED25519_PREFIX.length));
  },
  sign(seed, message) {
    return new Uint8Array(nodeSign(null, message, nodePrivateKey(seed)));
  },
  verify(publicKey, signature, message) {
    if (publicKey.byteLength !== 32 || signature.byteLength !== 64) return false;
    try {
      const key = nodePublicKey(publicKey);
      return key !== null && nodeVerify(null, message, key, signature);
    } catch {
      return false;
    }
  },
};

let activeEd25519: Ed25519Provider = nodeEd25519;

/** The provider used by Key and Ed25519Signer unless one is passed explicitly. */
export function setEd25519Provider(provider: Ed25519Provider): void {
  activeEd25519 = provider;
}
export function ed25519Provider(): Ed25519Provider {
  return activeEd25519;
}

export const ED25519 = 'ed25519';
export const ECDSA_SCHEME = 'ecdsa-sha2-nistp256';
export const RSA_PSS_SCHEME = 'rsassa-pss-sha256';

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The smallest RSA modulus accepted (NIST SP 800-57: 1024-bit RSA is no longer acceptable). */
const MIN_RSA_BITS = 2048;

/** A public key decoded for verification, and the identity of its material. */
type Material =
  | { kind: 'ed25519'; raw: Uint8Array; id: string }
  | { kind: 'node'; key: KeyObject; id: string };

/** What `scheme` requires of a parsed key, and what `key` is, when they differ. */
function mismatch(scheme: string, key: KeyObject): { expected: string; actual: string } | undefined {
  const type = key.asymmetricKeyType ?? 'unknown';
  const details = key.asymmetricKeyDetails ?? {};
  if (scheme === ECDSA_SCHEME) {
    const actual = type === 'ec' ? `an EC key on ${details.namedCurve ?? 'an unnamed curve'}` : `an ${type} key`;
    return type === 'ec' && details.namedCurve === 'prime256v1' ? undefined : { expected: 'an EC key on P-256 (prime256v1)', actual };
  }
  if (scheme === RSA_PSS_SCHEME) {
    const bits = details.modulusLength ?? 0;
    const expected = `an RSA key of at least ${MIN_RSA_BITS} bits`;
    if (type !== 'rsa') return { expected, actual: `an ${type} key` };
    return bits >= MIN_RSA_BITS ? undefined : { expected, actual: `an RSA key of ${bits} bits` };
  }
  return undefined;
}

/** A key for node:crypto decoded for a scheme: its material, why it does not fit, or null when it does not decode. */
type NodeDecoded = Extract<Material, { kind: 'node' }> | { wrong: { expected: string; actual: string } } | null;

/**
 * Scheme and key text -> NodeDecoded. One key is met again in each root version, delegation and
 * Key copy of a refresh, and OpenSSL 3's PEM decoder costs about 200 µs a key.
 */
const nodeDecodedCache = new Map<string, NodeDecoded>();
function decodeNodeKey(scheme: string, text: string): NodeDecoded {
  return remembered(nodeDecodedCache, `${scheme}\n${text}`, () => decodeNodeKeyUncached(scheme, text));
}

function decodeNodeKeyUncached(scheme: string, text: string): NodeDecoded {
  let key: KeyObject;
  try {
    key = createPublicKey(text);
  } catch {
    return null;
  }
  const wrong = mismatch(scheme, key);
  if (wrong) return { wrong };
  // The JWK members name the public key whatever its encoding (PEM spelling, compressed or
  // uncompressed EC point); exporting them costs about 7 µs, SPKI DER about 150.
  const jwk = key.export({ format: 'jwk' });
  const id = jwk.kty === 'EC' ? `ec:${jwk.crv}:${jwk.x}:${jwk.y}` : `rsa:${jwk.n}:${jwk.e}`;
  return { kind: 'node', key, id };
}

/** A public key as TUF metadata describes it: keytype, scheme, keyval. Unknown fields are kept. */
export class Key {
  /** Decoded once: the material, null when it does not decode or fit the scheme. */
  #material: Material | null | undefined;

  constructor(
    readonly keytype: string,
    readonly scheme: string,
    readonly keyval: Readonly<Record<string, string>>,
    readonly unrecognizedFields: Readonly<Record<string, unknown>> = {},
  ) {}

  static ed25519(publicKey: Uint8Array): Key {
    return new Key(ED25519, ED25519, { public: toHex(publicKey) });
  }

  /** @throws MalformedMetadataError when a field is missing or of the wrong type. */
  static fromJSON(json: unknown, path = 'key'): Key {
    if (!isRecord(json)) throw new MalformedMetadataError(path, 'not an object');
    const { keytype, scheme, keyval, ...rest } = json;
    if (typeof keytype !== 'string') throw new MalformedMetadataError(`${path}.keytype`, 'not a string');
    if (typeof scheme !== 'string') throw new MalformedMetadataError(`${path}.scheme`, 'not a string');
    if (!isRecord(keyval) || typeof keyval.public !== 'string') {
      throw new MalformedMetadataError(`${path}.keyval`, 'needs a string "public"');
    }
    for (const [k, v] of Object.entries(keyval)) {
      if (typeof v !== 'string') throw new MalformedMetadataError(`${path}.keyval.${k}`, 'not a string');
    }
    // Copies: the caller's JSON may change later, this key (and its cached keyid) may not.
    const key = new Key(keytype, scheme, { ...(keyval as Record<string, string>) }, structuredClone(rest));
    if (key.isSupported) key.#decode(`${path}.keyval.public`);
    return key;
  }

  /**
   * Decodes the material for the scheme and caches it (null: it cannot verify).
   * @throws KeyMaterialError when the material decodes but does not fit the scheme.
   */
  #decode(path: string): Material | null {
    this.#material = null;
    if (this.scheme === ED25519) {
      const raw = fromHex(this.keyval.public);
      if (raw?.byteLength === 32) this.#material = { kind: 'ed25519', raw, id: toHex(concatBytes([SPKI_ED25519_PREFIX, raw])) };
      return this.#material;
    }
    const decoded = decodeNodeKey(this.scheme, this.keyval.public);
    if (decoded && 'wrong' in decoded) throw new KeyMaterialError(path, this.scheme, decoded.wrong.expected, decoded.wrong.actual);
    this.#material = decoded;
    return this.#material;
  }

  /** The decoded material, or null when this key cannot verify (never throws). */
  #usable(): Material | null {
    if (this.#material !== undefined) return this.#material;
    try {
      return this.#decode('key.keyval.public');
    } catch {
      return null;
    }
  }

  /**
   * The identity of the key material (ed25519: hex SPKI DER of the public key; EC and
   * RSA: their JWK members), the same for one key under any keyid or PEM spelling;
   * undefined when it cannot verify.
   */
  get materialId(): string | undefined {
    return this.isSupported ? this.#usable()?.id : undefined;
  }

  toJSON(): Record<string, unknown> {
    return { keytype: this.keytype, scheme: this.scheme, keyval: { ...this.keyval }, ...this.unrecognizedFields };
  }

  /**
   * sha256 of the canonical key, the keyid a repository assigns to it. Computed once: a Key
   * does not change (readonly fields; fromJSON copies what it keeps), and every signature
   * check of a document asks for it.
   */
  get keyid(): string {
    this.#keyid ??= digestHex('sha256', canonicalize(this.toJSON()));
    return this.#keyid;
  }
  #keyid: string | undefined;

  /** Whether this key can verify at all here (known keytype and scheme). */
  get isSupported(): boolean {
    return (
      (this.keytype === ED25519 && this.scheme === ED25519) ||
      (this.scheme === ECDSA_SCHEME && (this.keytype === 'ecdsa' || this.keytype === ECDSA_SCHEME)) ||
      (this.scheme === RSA_PSS_SCHEME && this.keytype === 'rsa')
    );
  }

  /**
   * True only for a valid signature over `message`.
   * @throws UnsupportedKeyError for a keytype/scheme this library cannot verify.
   */
  verify(signature: Uint8Array, message: Uint8Array, provider: Ed25519Provider = activeEd25519): boolean {
    if (!this.isSupported) throw new UnsupportedKeyError(this.keytype, this.scheme);
    const material = this.#usable();
    if (!material) return false;
    if (material.kind === 'ed25519') return provider.verify(material.raw, signature, message);
    try {
      if (this.scheme === ECDSA_SCHEME) {
        return nodeVerify('sha256', message, { key: material.key, dsaEncoding: 'der' }, signature);
      }
      return nodeVerify(
        'sha256',
        message,
        { key: material.key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_AUTO },
        signature,
      );
    } catch {
      return false;
    }
  }
}

/** Anything that can sign for a key: a key in memory, or later an HSM. */
export interface Signer {
  readonly key: Key;
  sign(message: Uint8Array): Uint8Array;
}

export class Ed25519Signer implements Signer {
  readonly key: Key;

  private constructor(
    readonly seed: Uint8Array,
    private readonly provider: Ed25519Provider,
  ) {
    this.key = Key.ed25519(provider.publicKey(seed));
  }

  static generate(provider: Ed25519Provider = activeEd25519): Ed25519Signer {
    return new Ed25519Signer(new Uint8Array(randomBytes(32)), provider);
  }

  static fromSeed(seed: Uint8Array, provider: Ed25519Provider = activeEd25519): Ed25519Signer {
    if (seed.byteLength !== 32) throw new RangeError('an ed25519 seed is 32 bytes');
    return new Ed25519Signer(seed, provider);
  }

  get keyid(): string {
    return this.key.keyid;
  }

  sign(message: Uint8Array): Uint8Array {
    return this.provider.sign(this.seed, message);
  }
}
