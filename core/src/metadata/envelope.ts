/**
 * The signed envelope: `{ signed, signatures }`. Signatures are over the OLPC
 * canonical JSON of `signed`; since the models keep unknown fields,
 * re-serialising reproduces the signed bytes exactly.
 */
import { canonicalize } from '../canonical-json.ts';
import { fromHex, toHex, utf8 } from '../bytes.ts';
import { MalformedMetadataError, UnsignedMetadataError } from '../errors.ts';
import type { Key, Signer } from '../keys.ts';
import { expectObject, expectString, parseJsonBytes, splitFields, type JsonObject } from './guard.ts';
import { Root } from './root.ts';
import { Snapshot } from './snapshot.ts';
import { Targets } from './targets.ts';
import { Timestamp } from './timestamp.ts';
import type { RoleType } from './signed.ts';

export interface Signature {
  keyid: string;
  sig: string;
  unrecognizedFields?: JsonObject;
}

export type AnySigned = Root | Timestamp | Snapshot | Targets;

type SignedClass<T extends AnySigned> = { fromJSON(json: unknown, path?: string): T };

const CLASSES: Record<RoleType, SignedClass<AnySigned>> = { root: Root, timestamp: Timestamp, snapshot: Snapshot, targets: Targets };

export class Metadata<T extends AnySigned = AnySigned> {
  constructor(
    public signed: T,
    /** keyid -> signature, in the order they were listed. */
    public signatures: Map<string, Signature> = new Map(),
    public unrecognizedFields: JsonObject = {},
  ) {}

  /**
   * Parses metadata bytes; with `type`, refuses any other role.
   * @throws MalformedMetadataError
   */
  static fromBytes<R extends RoleType = RoleType>(bytes: Uint8Array, type?: R, path?: string): Metadata<RoleMap[R]> {
    return Metadata.fromJSON(parseJsonBytes(bytes, path ?? type ?? 'metadata'), type, path);
  }

  static fromJSON<R extends RoleType = RoleType>(json: unknown, type?: R, path?: string): Metadata<RoleMap[R]> {
    const where = path ?? type ?? 'metadata';
    const obj = expectObject(json, where);
    const signed = expectObject(obj.signed, `${where}.signed`);
    const actual = expectString(signed._type, `${where}.signed._type`);
    if (type !== undefined && actual !== type) {
      throw new MalformedMetadataError(`${where}.signed._type`, `is ${actual}, expected ${type}`);
    }
    const cls = CLASSES[actual as RoleType];
    if (!cls) throw new MalformedMetadataError(`${where}.signed._type`, `unknown type ${actual}`);
    if (!Array.isArray(obj.signatures)) throw new MalformedMetadataError(`${where}.signatures`, 'not an array');
    const signatures = new Map<string, Signature>();
    obj.signatures.forEach((s, i) => {
      const sigObj = expectObject(s, `${where}.signatures[${i}]`);
      const keyid = expectString(sigObj.keyid, `${where}.signatures[${i}].keyid`);
      const sig = expectString(sigObj.sig, `${where}.signatures[${i}].sig`);
      if (signatures.has(keyid)) throw new MalformedMetadataError(`${where}.signatures`, `two signatures by ${keyid}`);
      signatures.set(keyid, { keyid, sig, unrecognizedFields: splitFields(sigObj, ['keyid', 'sig']) });
    });
    const parsed = cls.fromJSON(signed, `${where}.signed`) as RoleMap[R];
    return new Metadata(parsed, signatures, splitFields(obj, ['signed', 'signatures']));
  }

  toJSON(): JsonObject {
    return {
      signatures: [...this.signatures.values()].map((s) => ({ keyid: s.keyid, sig: s.sig, ...s.unrecognizedFields })),
      signed: this.signed.toJSON(),
      ...this.unrecognizedFields,
    };
  }

  /** Serialised for publishing: canonical JSON, so the bytes are stable. */
  toBytes(): Uint8Array {
    return canonicalize(this.toJSON());
  }

  /** Pretty JSON for files people read; any JSON form verifies the same. */
  toPrettyBytes(): Uint8Array {
    return utf8(JSON.stringify(this.toJSON(), null, 1) + '\n');
  }

  /** The bytes signatures cover. */
  signedBytes(): Uint8Array {
    return canonicalize(this.signed.toJSON());
  }

  /** Adds (or replaces) the signer's signature; `append: false` drops all others first. */
  sign(signer: Signer, append = true): Signature {
    if (!append) this.signatures.clear();
    const keyid = signer.key.keyid;
    const signature = { keyid, sig: toHex(signer.sign(this.signedBytes())) };
    this.signatures.set(keyid, signature);
    return signature;
  }

  /**
   * Counts distinct authorised keys with a valid signature (TUF 5.3.4 and after):
   * unknown keyids, unsupported key types and bad signatures count for nothing.
   * Keys are distinct by material (Key.materialId), not by keyid: a repository may
   * list one key under several keyids (keyids need not be the sha256 of the key,
   * and the TUF conformance suite has such metadata), and that key signs once
   * (the TUF conformance suite checks this rule in test_duplicate_keys_root).
   * `message` defaults to the canonical bytes of the model; a caller that has just
   * parsed the envelope may pass the canonical bytes of the raw `signed` object.
   * @throws UnsignedMetadataError below `threshold`.
   */
  verifyThreshold(
    roleName: string,
    keys: Readonly<Record<string, Key>>,
    keyids: readonly string[],
    threshold: number,
    message: Uint8Array = this.signedBytes(),
  ): void {
    const signedBy = new Set<string>();
    for (const keyid of new Set(keyids)) {
      const key = keys[keyid];
      const signature = this.signatures.get(keyid);
      if (!key || !signature || !key.isSupported) continue;
      const material = key.materialId;
      if (material === undefined || signedBy.has(material)) continue;
      const sigBytes = fromHex(signature.sig);
      if (sigBytes && key.verify(sigBytes, message)) signedBy.add(material);
    }
    if (signedBy.size < threshold) throw new UnsignedMetadataError(roleName, threshold, signedBy.size);
  }
}

export interface RoleMap {
  root: Root;
  timestamp: Timestamp;
  snapshot: Snapshot;
  targets: Targets;
}
