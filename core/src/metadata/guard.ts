/**
 * Type guards for strict parsing: each failure names the JSON path that broke.
 * Maps keyed by names from outside (target paths, role files, keyids, hash
 * algorithms, unknown fields) are null-prototype objects (see nameMap).
 */
import { MalformedMetadataError } from '../errors.ts';
import { fromUtf8 } from '../bytes.ts';

export type JsonObject = Record<string, unknown>;

/**
 * A record for names that come from outside: it has no prototype, so a lookup of
 * `constructor` or `toString` finds nothing, and `__proto__` is an ordinary own
 * key (plain assignment on a null-prototype object creates it, where on `{}` it
 * would replace the prototype and the entry would vanish from the signed bytes).
 */
export function nameMap<T>(entries: Iterable<readonly [string, T]> = []): Record<string, T> {
  const map = Object.create(null) as Record<string, T>;
  for (const [name, value] of entries) map[name] = value;
  return map;
}

/** `record` itself if it is already a nameMap, else a nameMap copy of its own entries. */
export function asNameMap<T>(record: Record<string, T>): Record<string, T> {
  return Object.getPrototypeOf(record) === null ? record : nameMap(Object.entries(record));
}

export function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function expectObject(v: unknown, path: string): JsonObject {
  if (!isObject(v)) throw new MalformedMetadataError(path, 'not an object');
  return v;
}

export function expectString(v: unknown, path: string): string {
  if (typeof v !== 'string') throw new MalformedMetadataError(path, 'not a string');
  return v;
}

export function expectBoolean(v: unknown, path: string): boolean {
  if (typeof v !== 'boolean') throw new MalformedMetadataError(path, 'not a boolean');
  return v;
}

/** A safe integer of at least `min`. */
export function expectInteger(v: unknown, path: string, min: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw new MalformedMetadataError(path, 'not an integer');
  if (v < min) throw new MalformedMetadataError(path, `must be at least ${min}`);
  return v;
}

const TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$/;

/** An ISO 8601 UTC time (`YYYY-MM-DDTHH:MM:SS[.fff]Z`, what toISOString writes). */
export function expectTime(v: unknown, path: string): string {
  const s = expectString(v, path);
  if (!TIME.test(s) || Number.isNaN(Date.parse(s))) throw new MalformedMetadataError(path, `${s} is not YYYY-MM-DDTHH:MM:SS[.fff]Z`);
  return s;
}

export function expectStringArray(v: unknown, path: string): string[] {
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) {
    throw new MalformedMetadataError(path, 'not an array of strings');
  }
  return v as string[];
}

/** A string array with no repeated entry (keyids of a role, for one). */
export function expectUniqueStrings(v: unknown, path: string): string[] {
  const arr = expectStringArray(v, path);
  if (new Set(arr).size !== arr.length) throw new MalformedMetadataError(path, 'has duplicate entries');
  return arr;
}

/** Hashes: algorithm -> lowercase hex digest; at least one entry. */
export function expectHashes(v: unknown, path: string): Record<string, string> {
  const obj = expectObject(v, path);
  const entries = Object.entries(obj);
  if (entries.length === 0) throw new MalformedMetadataError(path, 'has no hashes');
  for (const [alg, digest] of entries) expectString(digest, `${path}.${alg}`);
  return obj as Record<string, string>;
}

/** Splits the listed fields from the rest, which the model keeps to re-serialise exactly. */
export function splitFields(obj: JsonObject, known: readonly string[]): JsonObject {
  const rest = nameMap<unknown>();
  for (const [k, v] of Object.entries(obj)) if (!known.includes(k)) rest[k] = v;
  return rest;
}

/** JSON.parse of UTF-8 bytes. @throws MalformedMetadataError */
export function parseJsonBytes(bytes: Uint8Array, path: string): unknown {
  try {
    return JSON.parse(fromUtf8(bytes));
  } catch (cause) {
    throw new MalformedMetadataError(path, 'not valid UTF-8 JSON', { cause });
  }
}
