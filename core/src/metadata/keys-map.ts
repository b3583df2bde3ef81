import { Key } from '../keys.ts';
import { expectObject, nameMap, type JsonObject } from './guard.ts';

/** keyid -> Key, as root and delegations list them (a nameMap: keyids come from outside). */
export function parseKeys(json: unknown, path: string): Record<string, Key> {
  const obj = expectObject(json, path);
  return nameMap(Object.entries(obj).map(([keyid, key]) => [keyid, Key.fromJSON(key, `${path}.${keyid}`)]));
}

export function keysToJSON(keys: Record<string, Key>): JsonObject {
  return nameMap(Object.entries(keys).map(([id, k]) => [id, k.toJSON()]));
}
