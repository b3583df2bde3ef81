/**
 * Uptane documents (ECU version reports, vehicle version manifests) use the same
 * envelope as TUF metadata: `{ signed, signatures: [{ keyid, sig }] }`, signed
 * over the canonical JSON of `signed`.
 */
import { canonicalize } from '../canonical-json.ts';
import { fromHex, toHex } from '../bytes.ts';
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
 * Canonical bytes of documents' `signed` objects, by identity of the object: documents
 * encoded together (vehicle-manifest.ts canonicalManifest). An object that is not in it
 * is encoded where it is verified.
 */
export type CanonicalBytes = ReadonlyMap<object, Uint8Array>;

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
