/**
 * What timestamp and snapshot say about a metadata file (MetaFile) and what
 * targets say about a target (TargetFile), with the length and hash checks
 * the client runs on downloaded bytes.
 */
import { LengthOrHashMismatchError, RepositoryError } from '../errors.ts';
import { digestHex, isSupportedHash, MultiHasher, type HashAlgorithm } from '../hash.ts';
import { expectHashes, expectInteger, expectObject, nameMap, splitFields, type JsonObject } from './guard.ts';

/** Parsed hashes as a nameMap: the algorithm names come from outside and are looked up by name. */
function parseHashes(json: unknown, path: string): Record<string, string> {
  return nameMap(Object.entries(expectHashes(json, path)));
}

/** Checks bytes against a length and hashes. Unknown hash algorithms are refused, not skipped. */
export function verifyLengthAndHashes(
  subject: string,
  data: Uint8Array,
  length: number | undefined,
  hashes: Readonly<Record<string, string>> | undefined,
): void {
  if (length !== undefined && data.byteLength !== length) {
    throw new LengthOrHashMismatchError(subject, 'length', length, data.byteLength);
  }
  for (const [algorithm, expected] of Object.entries(hashes ?? {})) {
    if (!isSupportedHash(algorithm)) throw new UnsupportedHashError(subject, algorithm);
    const actual = digestHex(algorithm, data);
    if (actual !== expected.toLowerCase()) throw new LengthOrHashMismatchError(subject, algorithm, expected, actual);
  }
}

export class UnsupportedHashError extends RepositoryError {
  override name = 'UnsupportedHashError';
  constructor(readonly subject: string, readonly algorithm: string) {
    super(`${subject}: unsupported hash algorithm ${algorithm}`);
  }
}

export class MetaFile {
  constructor(
    public version: number,
    public length?: number,
    public hashes?: Record<string, string>,
    public unrecognizedFields: JsonObject = {},
  ) {}

  static fromJSON(json: unknown, path: string): MetaFile {
    const obj = expectObject(json, path);
    const version = expectInteger(obj.version, `${path}.version`, 1);
    const length = obj.length === undefined ? undefined : expectInteger(obj.length, `${path}.length`, 0);
    const hashes = obj.hashes === undefined ? undefined : parseHashes(obj.hashes, `${path}.hashes`);
    return new MetaFile(version, length, hashes, splitFields(obj, ['version', 'length', 'hashes']));
  }

  toJSON(): JsonObject {
    return {
      version: this.version,
      ...(this.length !== undefined && { length: this.length }),
      ...(this.hashes !== undefined && { hashes: { ...this.hashes } }),
      ...this.unrecognizedFields,
    };
  }

  /** @throws LengthOrHashMismatchError, UnsupportedHashError */
  verify(subject: string, data: Uint8Array): void {
    verifyLengthAndHashes(subject, data, this.length, this.hashes);
  }
}

export class TargetFile {
  constructor(
    public length: number,
    public hashes: Record<string, string>,
    /** Uptane custom fields: hardwareIds, releaseCounter, version, ecuIdentifiers... */
    public custom?: JsonObject,
    public unrecognizedFields: JsonObject = {},
  ) {}

  static fromJSON(json: unknown, path: string): TargetFile {
    const obj = expectObject(json, path);
    const length = expectInteger(obj.length, `${path}.length`, 0);
    const hashes = parseHashes(obj.hashes, `${path}.hashes`);
    const custom = obj.custom === undefined ? undefined : expectObject(obj.custom, `${path}.custom`);
    return new TargetFile(length, hashes, custom, splitFields(obj, ['length', 'hashes', 'custom']));
  }

  /** Hashes and length of `data`, as a repository would list them. */
  static fromData(data: Uint8Array, algorithms: readonly HashAlgorithm[] = ['sha256', 'sha512'], custom?: JsonObject): TargetFile {
    const hasher = new MultiHasher(algorithms);
    hasher.update(data);
    return new TargetFile(data.byteLength, hasher.digestHex(), custom);
  }

  toJSON(): JsonObject {
    return {
      length: this.length,
      hashes: { ...this.hashes },
      ...(this.custom !== undefined && { custom: this.custom }),
      ...this.unrecognizedFields,
    };
  }

  /** The listed hash algorithms, all of which must be supported to download the target. */
  hashAlgorithms(subject: string): HashAlgorithm[] {
    return Object.keys(this.hashes).map((a) => {
      if (!isSupportedHash(a)) throw new UnsupportedHashError(subject, a);
      return a;
    });
  }

  /** @throws LengthOrHashMismatchError, UnsupportedHashError */
  verify(subject: string, data: Uint8Array): void {
    verifyLengthAndHashes(subject, data, this.length, this.hashes);
  }
}
