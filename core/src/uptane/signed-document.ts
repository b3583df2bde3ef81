/**
 * Uptane documents (ECU version reports, vehicle version manifests) use the same
 * envelope as TUF metadata: `{ signed, signatures: [{ keyid, sig }] }`, signed
 * over the canonical JSON of `signed`.
 */
import { canonicalize, canonicalStringWithParts } from '../canonical-json.ts';
import { fromHex, toHex, utf8 } from '../bytes.ts';
import { MalformedMetadataError, RepositoryError } from '../errors.ts';
import type { Key, Signer } from '../keys.ts';
import { expectObject, expectString, type JsonObject } from '../metadata/guard.ts';

export interface SignedDocument<T> {
  signed: T;
  signatures: Array<{ keyid: string; sig: string }>;
}

/** A report or manifest whose signature does not verify against the expected key. */
export class BadDocumentSignatureError extends RepositoryError {
  override name = 'BadDocumentSignatureError';
  override readonly code = 'BAD_DOCUMENT_SIGNATURE';
  constructor(readonly document: string, readonly keyid: string) {
    super(`${document}: no valid signature by key ${keyid}`);
  }
}

export function signDocument<T extends object>(signed: T, signer: Signer): SignedDocument<T> {
  return { signed, signatures: [{ keyid: signer.key.keyid, sig: toHex(signer.sign(canonicalize(signed))) }] };
}

/**
 * Canonical bytes of documents' `signed` objects, by identity of the object, from one
 * encoding of a document and the documents inside it (vehicle-manifest.ts canonicalManifest).
 * Only `encodeTogether` makes one, so the bytes a signature is checked against are always
 * an encoding of that object, never bytes a caller put in a map. An object that is not in
 * it is encoded where it is verified.
 */
export class CanonicalBytes {
  readonly #bytes: Map<object, Uint8Array>;

  private constructor(bytes: Map<object, Uint8Array>) {
    this.#bytes = bytes;
  }

  /** Encodes `outer` once, keeping the canonical bytes of each of `inner` (objects inside it) too. @throws CanonicalJsonError */
  static encodeTogether(outer: object, inner: Iterable<object>): CanonicalBytes {
    const { text, parts } = canonicalStringWithParts(outer, inner);
    const bytes = new Map<object, Uint8Array>([[outer, utf8(text)]]);
    for (const [part, partText] of parts) bytes.set(part, utf8(partText));
    return new CanonicalBytes(bytes);
  }

  get(signed: object): Uint8Array | undefined {
    return this.#bytes.get(signed);
  }

  /** How many documents were encoded together. */
  get size(): number {
    return this.#bytes.size;
  }
}

/** @throws BadDocumentSignatureError unless `key` signed `doc.signed`. */
export function verifyDocument(document: string, doc: SignedDocument<unknown>, key: Key, known?: CanonicalBytes): void {
  const keyid = key.keyid;
  const message = (typeof doc.signed === 'object' && doc.signed !== null && known?.get(doc.signed)) || canonicalize(doc.signed);
  const ok = doc.signatures.some((s) => {
    if (s.keyid !== keyid) return false;
    const sig = fromHex(s.sig);
    return sig !== undefined && key.verify(sig, message);
  });
  if (!ok) throw new BadDocumentSignatureError(document, keyid);
}

/** Parses the envelope only; the caller parses `signed`. @throws MalformedMetadataError */
export function parseEnvelope(json: unknown, path: string): SignedDocument<JsonObject> {
  const obj = expectObject(json, path);
  const signed = expectObject(obj.signed, `${path}.signed`);
  if (!Array.isArray(obj.signatures)) throw new MalformedMetadataError(`${path}.signatures`, 'not an array');
  const signatures = obj.signatures.map((s, i) => {
    const sObj = expectObject(s, `${path}.signatures[${i}]`);
    return { keyid: expectString(sObj.keyid, `${path}.signatures[${i}].keyid`), sig: expectString(sObj.sig, `${path}.signatures[${i}].sig`) };
  });
  return { signed, signatures };
}

export { parseJsonBytes } from '../metadata/guard.ts';
