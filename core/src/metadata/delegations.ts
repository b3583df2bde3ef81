/**
 * Delegations: the keys and roles a targets role hands parts of its namespace to.
 * A role covers a target by `paths` (shell-style patterns matched segment by
 * segment, so `*` never crosses a `/`) or by `path_hash_prefixes`; `succinct_roles`
 * spreads targets over hash bins. Uptane adds an optional `hardwareIds` filter.
 */
import { MalformedMetadataError } from '../errors.ts';
import { digestHex } from '../hash.ts';
import { utf8 } from '../bytes.ts';
import type { Key } from '../keys.ts';
import {
  asNameMap,
  expectBoolean,
  expectInteger,
  expectObject,
  expectString,
  expectStringArray,
  expectUniqueStrings,
  splitFields,
  type JsonObject,
} from './guard.ts';
import { keysToJSON, parseKeys } from './keys-map.ts';
import { TOP_LEVEL_ROLES } from './signed.ts';

const patternCache = new Map<string, RegExp>();

/** fnmatch-style segment pattern: `*`, `?`, `[seq]`, `[!seq]`; everything else literal. */
function segmentRegExp(pattern: string): RegExp {
  let re = patternCache.get(pattern);
  if (re) return re;
  let src = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*') src += '.*';
    else if (c === '?') src += '.';
    else if (c === '[') {
      const close = pattern.indexOf(']', i + 2);
      if (close === -1) src += '\\[';
      else {
        let body = pattern.slice(i + 1, close);
        const negate = body.startsWith('!');
        if (negate) body = body.slice(1);
        src += `[${negate ? '^' : ''}${body.replace(/[\\\]^]/g, '\\$&')}]`;
        i = close;
      }
    } else src += c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  }
  re = new RegExp(`^${src}$`, 's');
  patternCache.set(pattern, re);
  return re;
}

export function matchesPathPattern(target: string, pattern: string): boolean {
  const targetParts = target.split('/');
  const patternParts = pattern.split('/');
  if (targetParts.length !== patternParts.length) return false;
  return patternParts.every((p, i) => segmentRegExp(p).test(targetParts[i]!));
}

export class DelegatedRole {
  constructor(
    public name: string,
    public keyids: string[],
    public threshold: number,
    public terminating: boolean,
    public paths?: string[],
    public pathHashPrefixes?: string[],
    /** Uptane: only targets for these hardware IDs may come through this role. */
    public hardwareIds?: string[],
    public unrecognizedFields: JsonObject = {},
  ) {}

  static fromJSON(json: unknown, path: string): DelegatedRole {
    const obj = expectObject(json, path);
    const name = expectString(obj.name, `${path}.name`);
    if ((TOP_LEVEL_ROLES as readonly string[]).includes(name)) {
      throw new MalformedMetadataError(`${path}.name`, `${name} is a top-level role name`);
    }
    const paths = obj.paths === undefined ? undefined : expectStringArray(obj.paths, `${path}.paths`);
    const prefixes =
      obj.path_hash_prefixes === undefined ? undefined : expectStringArray(obj.path_hash_prefixes, `${path}.path_hash_prefixes`);
    if ((paths === undefined) === (prefixes === undefined)) {
      throw new MalformedMetadataError(path, 'needs exactly one of paths and path_hash_prefixes');
    }
    return new DelegatedRole(
      name,
      expectUniqueStrings(obj.keyids, `${path}.keyids`),
      expectInteger(obj.threshold, `${path}.threshold`, 1),
      expectBoolean(obj.terminating, `${path}.terminating`),
      paths,
      prefixes,
      obj.hardwareIds === undefined ? undefined : expectStringArray(obj.hardwareIds, `${path}.hardwareIds`),
      splitFields(obj, ['name', 'keyids', 'threshold', 'terminating', 'paths', 'path_hash_prefixes', 'hardwareIds']),
    );
  }

  toJSON(): JsonObject {
    return {
      name: this.name,
      keyids: [...this.keyids],
      threshold: this.threshold,
      terminating: this.terminating,
      ...(this.paths !== undefined && { paths: [...this.paths] }),
      ...(this.pathHashPrefixes !== undefined && { path_hash_prefixes: [...this.pathHashPrefixes] }),
      ...(this.hardwareIds !== undefined && { hardwareIds: [...this.hardwareIds] }),
      ...this.unrecognizedFields,
    };
  }

  /** Whether this role is trusted for `targetPath` (TUF 5.6.7.2). */
  isDelegatedPath(targetPath: string): boolean {
    if (this.paths !== undefined) return this.paths.some((p) => matchesPathPattern(targetPath, p));
    if (this.pathHashPrefixes !== undefined) {
      const hash = digestHex('sha256', utf8(targetPath));
      return this.pathHashPrefixes.some((p) => hash.startsWith(p));
    }
    return false;
  }

  /** Whether the Uptane hardware-ID filter lets a target for `hardwareId` through. */
  allowsHardwareId(hardwareId: string): boolean {
    return this.hardwareIds === undefined || this.hardwareIds.includes(hardwareId);
  }
}

/** Hash-bin delegation (TAP 15): 2^bitLength roles named `<prefix>-<hex bin>`. */
export class SuccinctRoles {
  constructor(
    public keyids: string[],
    public threshold: number,
    public bitLength: number,
    public namePrefix: string,
    public unrecognizedFields: JsonObject = {},
  ) {}

  static fromJSON(json: unknown, path: string): SuccinctRoles {
    const obj = expectObject(json, path);
    const bitLength = expectInteger(obj.bit_length, `${path}.bit_length`, 1);
    if (bitLength > 32) throw new MalformedMetadataError(`${path}.bit_length`, 'must be at most 32');
    return new SuccinctRoles(
      expectUniqueStrings(obj.keyids, `${path}.keyids`),
      expectInteger(obj.threshold, `${path}.threshold`, 1),
      bitLength,
      expectString(obj.name_prefix, `${path}.name_prefix`),
      splitFields(obj, ['keyids', 'threshold', 'bit_length', 'name_prefix']),
    );
  }

  toJSON(): JsonObject {
    return { keyids: [...this.keyids], threshold: this.threshold, bit_length: this.bitLength, name_prefix: this.namePrefix, ...this.unrecognizedFields };
  }

  get suffixLength(): number {
    return Math.ceil((2 ** this.bitLength - 1).toString(16).length);
  }

  roleForTarget(targetPath: string): string {
    const first32 = parseInt(digestHex('sha256', utf8(targetPath)).slice(0, 8), 16);
    const bin = first32 >>> (32 - this.bitLength);
    return `${this.namePrefix}-${bin.toString(16).padStart(this.suffixLength, '0')}`;
  }

  isDelegatedRole(name: string): boolean {
    const prefix = `${this.namePrefix}-`;
    if (!name.startsWith(prefix)) return false;
    const suffix = name.slice(prefix.length);
    if (suffix.length !== this.suffixLength || !/^[0-9a-f]+$/.test(suffix)) return false;
    return parseInt(suffix, 16) < 2 ** this.bitLength;
  }
}

export class Delegations {
  constructor(
    public keys: Record<string, Key>,
    public roles?: DelegatedRole[],
    public succinctRoles?: SuccinctRoles,
    public unrecognizedFields: JsonObject = {},
  ) {
    this.keys = asNameMap(keys);
  }

  static fromJSON(json: unknown, path: string): Delegations {
    const obj = expectObject(json, path);
    const keys = parseKeys(obj.keys, `${path}.keys`);
    if ((obj.roles === undefined) === (obj.succinct_roles === undefined)) {
      throw new MalformedMetadataError(path, 'needs exactly one of roles and succinct_roles');
    }
    let roles: DelegatedRole[] | undefined;
    if (obj.roles !== undefined) {
      if (!Array.isArray(obj.roles)) throw new MalformedMetadataError(`${path}.roles`, 'not an array');
      roles = obj.roles.map((r, i) => DelegatedRole.fromJSON(r, `${path}.roles[${i}]`));
      const names = roles.map((r) => r.name);
      if (new Set(names).size !== names.length) throw new MalformedMetadataError(`${path}.roles`, 'duplicate role names');
    }
    const succinct = obj.succinct_roles === undefined ? undefined : SuccinctRoles.fromJSON(obj.succinct_roles, `${path}.succinct_roles`);
    return new Delegations(keys, roles, succinct, splitFields(obj, ['keys', 'roles', 'succinct_roles']));
  }

  toJSON(): JsonObject {
    return {
      keys: keysToJSON(this.keys),
      ...(this.roles !== undefined && { roles: this.roles.map((r) => r.toJSON()) }),
      ...(this.succinctRoles !== undefined && { succinct_roles: this.succinctRoles.toJSON() }),
      ...this.unrecognizedFields,
    };
  }

  /**
   * The roles trusted for a target, in listed order, up to and including the
   * first terminating one. With `hardwareId`, a role whose Uptane hardware-ID
   * filter excludes it is marked `allowed: false`: the search must not visit it,
   * but if it is terminating it still ends the search (the delegator gave it the
   * path alone, so no later role may answer for it).
   */
  rolesForTarget(targetPath: string, hardwareId?: string): Array<{ name: string; terminating: boolean; allowed: boolean }> {
    if (this.roles) {
      const out: Array<{ name: string; terminating: boolean; allowed: boolean }> = [];
      for (const r of this.roles) {
        if (!r.isDelegatedPath(targetPath)) continue;
        out.push({ name: r.name, terminating: r.terminating, allowed: hardwareId === undefined || r.allowsHardwareId(hardwareId) });
        if (r.terminating) break;
      }
      return out;
    }
    if (this.succinctRoles) return [{ name: this.succinctRoles.roleForTarget(targetPath), terminating: true, allowed: true }];
    return [];
  }

  /** keyids and threshold for a delegated role name, if this delegates it. */
  roleKeys(name: string): { keyids: string[]; threshold: number } | undefined {
    const role = this.roles?.find((r) => r.name === name);
    if (role) return role;
    if (this.succinctRoles?.isDelegatedRole(name)) return this.succinctRoles;
    return undefined;
  }
}
