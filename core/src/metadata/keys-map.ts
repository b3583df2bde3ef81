import { Key } from '../keys.ts';
import { expectObject, type JsonObject } from './guard.ts';

/** keyid -> Key, as root and delegations list them. */
export function parseKeys(json: unknown, path: string): Record<string, Key> {
  const obj = expectObject(json, path);
  const keys: Record<string, Key> = {};
  for (const [keyid, key] of Object.entries(obj)) keys[keyid] = Key.fromJSON(key, `${path}.${keyid}`);
  return keys;
}

export function keysToJSON(keys: Record<string, Key>): JsonObject {
  return Object.fromEntries(Object.entries(keys).map(([id, k]) => [id, k.toJSON()]));
}
