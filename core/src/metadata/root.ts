import { MalformedMetadataError } from '../errors.ts';
import type { Key } from '../keys.ts';
import { asNameMap, expectBoolean, expectObject, splitFields, type JsonObject } from './guard.ts';
import { keysToJSON, parseKeys } from './keys-map.ts';
import { Role } from './role.ts';
import { COMMON_FIELDS, parseCommon, Signed, TOP_LEVEL_ROLES, type RoleType } from './signed.ts';

export class Root extends Signed {
  readonly type = 'root' as const;

  constructor(
    version: number,
    expires: string,
    public keys: Record<string, Key>,
    public roles: Record<RoleType, Role>,
    /** Undefined when the field is absent, so re-serialising reproduces the signed bytes. */
    public consistentSnapshot: boolean | undefined,
    specVersion?: string,
    unrecognizedFields: JsonObject = {},
  ) {
    super(version, expires, specVersion, unrecognizedFields);
    this.keys = asNameMap(keys);
  }

  static fromJSON(json: unknown, path = 'root'): Root {
    const obj = expectObject(json, path);
    const { version, expires, specVersion } = parseCommon(obj, 'root', path);
    const keys = parseKeys(obj.keys, `${path}.keys`);
    const rolesObj = expectObject(obj.roles, `${path}.roles`);
    const roles = {} as Record<RoleType, Role>;
    for (const name of TOP_LEVEL_ROLES) {
      if (!Object.hasOwn(rolesObj, name)) throw new MalformedMetadataError(`${path}.roles`, `missing role ${name}`);
      roles[name] = Role.fromJSON(rolesObj[name], `${path}.roles.${name}`);
    }
    const extra = Object.keys(rolesObj).filter((r) => !(TOP_LEVEL_ROLES as readonly string[]).includes(r));
    if (extra.length > 0) throw new MalformedMetadataError(`${path}.roles`, `unknown role ${extra[0]}`);
    const consistentSnapshot =
      obj.consistent_snapshot === undefined ? undefined : expectBoolean(obj.consistent_snapshot, `${path}.consistent_snapshot`);
    return new Root(version, expires, keys, roles, consistentSnapshot, specVersion,
      splitFields(obj, [...COMMON_FIELDS, 'keys', 'roles', 'consistent_snapshot']));
  }

  toJSON(): JsonObject {
    return {
      ...this.commonJSON(),
      keys: keysToJSON(this.keys),
      roles: Object.fromEntries(TOP_LEVEL_ROLES.map((r) => [r, this.roles[r].toJSON()])),
      ...(this.consistentSnapshot !== undefined && { consistent_snapshot: this.consistentSnapshot }),
      ...this.unrecognizedFields,
    };
  }

  /** Adds a key to a role (and to `keys`), unless the role has it already. */
  addKey(role: RoleType, key: Key): void {
    const keyid = key.keyid;
    this.keys[keyid] = key;
    if (!this.roles[role].keyids.includes(keyid)) this.roles[role].keyids.push(keyid);
  }

  /** Removes a key from a role, and from `keys` when no other role uses it. */
  revokeKey(role: RoleType, keyid: string): void {
    this.roles[role].keyids = this.roles[role].keyids.filter((k) => k !== keyid);
    if (!TOP_LEVEL_ROLES.some((r) => this.roles[r].keyids.includes(keyid))) delete this.keys[keyid];
  }
}
