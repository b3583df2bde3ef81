/**
 * RepositoryBuilder: creates and signs the metadata of a TUF repository (used by
 * the image repository, the director, and every test that needs a repository).
 * Sans-I/O: it returns files as `path -> bytes`; the caller stores or serves them.
 *
 * Usage:
 * ```ts
 * const repo = new RepositoryBuilder({ now });            // fresh keys, threshold 1
 * repo.addTarget('fw.bin', bytes, { custom: { hardwareIds: ['ecu'], releaseCounter: 1, version: '1.0' } });
 * repo.delegate('targets', { name: 'supplier', paths: ['supplier/*'] });
 * repo.addTarget('supplier/a.bin', other, { role: 'supplier' });
 * const files = repo.commit();                            // every file of the repository so far
 * repo.rotateKeys('root', [Ed25519Signer.generate()]);   // next root signed by old and new keys
 * repo.commit();
 * ```
 *
 * Invariants:
 * - Every change marks roles dirty; `commit()` bumps the version of each dirty role
 *   (a role's first commit keeps version 1), sets its expiry from `now`, signs it
 *   with the role's current signers, and cascades: a changed targets role changes
 *   snapshot, a changed snapshot changes timestamp.
 * - A new root is signed by the keys of the new root AND of the previous root.
 * - Files follow the consistent-snapshot layout: `metadata/N.root.json` (and
 *   `metadata/root.json`, the newest), `metadata/timestamp.json`, `metadata/N.snapshot.json`,
 *   `metadata/N.<role>.json` (role names unencoded; servers decode URL paths),
 *   and `targets/<dir/><sha256>.<basename>`. Old versions stay in the file set.
 * - Models are reachable (`root`, `timestamp`, `snapshot`, `targetsOf(role)`) so tests
 *   can tamper with them; call `touch(role)` to have a hand-edited role re-signed.
 */
import { Ed25519Signer, type Key, type Signer } from './keys.ts';
import { TargetFile, MetaFile } from './metadata/file-info.ts';
import { Metadata, type AnySigned } from './metadata/envelope.ts';
import { Root } from './metadata/root.ts';
import { Role } from './metadata/role.ts';
import { Timestamp } from './metadata/timestamp.ts';
import { Snapshot } from './metadata/snapshot.ts';
import { Targets } from './metadata/targets.ts';
import { DelegatedRole, Delegations } from './metadata/delegations.ts';
import { expiresIn, TOP_LEVEL_ROLES, type RoleType } from './metadata/signed.ts';
import type { JsonObject } from './metadata/guard.ts';
import { digestHex } from './hash.ts';
import { UsageError } from './errors.ts';

/** Default lifetimes in seconds: root a year, targets three months, snapshot a week, timestamp a day. */
export const DEFAULT_EXPIRY: Readonly<Record<string, number>> = {
  root: 365 * 86400,
  targets: 90 * 86400,
  snapshot: 7 * 86400,
  timestamp: 86400,
};

export interface RepositoryOptions {
  /** The reference time for expiries; change it later with `builder.now = ...`. */
  now: Date;
  /** Signers per top-level role; one fresh ed25519 key for each role not given. */
  signers?: Partial<Record<RoleType, Signer[]>>;
  /** Thresholds per top-level role; default 1. */
  thresholds?: Partial<Record<RoleType, number>>;
  /** Lifetimes in seconds per role name (delegated roles fall back to `targets`). */
  expiry?: Record<string, number>;
  /** List length and sha256 of each file in snapshot and timestamp meta (default true). */
  metaHashes?: boolean;
}

export interface DelegationOptions {
  name: string;
  /** Path patterns; `*` does not cross `/`. Default `['*']` (top-level names) unless pathHashPrefixes is given. */
  paths?: string[];
  pathHashPrefixes?: string[];
  terminating?: boolean;
  /** Uptane hardware-ID filter. */
  hardwareIds?: string[];
  signers?: Signer[];
  threshold?: number;
}

export interface AddTargetOptions {
  /** The targets role that lists the target (default `targets`). */
  role?: string;
  custom?: JsonObject;
}

export class RepositoryBuilder {
  now: Date;
  readonly expiry: Record<string, number>;
  readonly metaHashes: boolean;

  #root: Metadata<Root>;
  #timestamp: Metadata<Timestamp>;
  #snapshot: Metadata<Snapshot>;
  #targets = new Map<string, Metadata<Targets>>();
  #signers = new Map<string, Signer[]>();
  /** Signers of the last committed root, who must also sign the next one. */
  #previousRootSigners: Signer[] = [];
  #dirty = new Set<string>();
  #committed = new Set<string>();
  #files = new Map<string, Uint8Array>();
  #bytes = new Map<string, Uint8Array>();

  constructor(options: RepositoryOptions) {
    this.now = options.now;
    this.expiry = { ...DEFAULT_EXPIRY, ...options.expiry };
    this.metaHashes = options.metaHashes ?? true;
    const roles = {} as Record<RoleType, Role>;
    const keys: Record<string, Key> = {};
    for (const role of TOP_LEVEL_ROLES) {
      const signers = options.signers?.[role] ?? [Ed25519Signer.generate()];
      this.#signers.set(role, signers);
      for (const s of signers) keys[s.key.keyid] = s.key;
      roles[role] = new Role(signers.map((s) => s.key.keyid), options.thresholds?.[role] ?? 1);
    }
    this.#root = new Metadata(new Root(1, this.#expires('root'), keys, roles, true));
    this.#timestamp = new Metadata(new Timestamp(1, this.#expires('timestamp'), new MetaFile(1)));
    this.#snapshot = new Metadata(new Snapshot(1, this.#expires('snapshot'), { 'targets.json': new MetaFile(1) }));
    this.#targets.set('targets', new Metadata(new Targets(1, this.#expires('targets'))));
    for (const role of TOP_LEVEL_ROLES) this.#dirty.add(role);
  }

  get root(): Root {
    return this.#root.signed;
  }
  get timestamp(): Timestamp {
    return this.#timestamp.signed;
  }
  get snapshot(): Snapshot {
    return this.#snapshot.signed;
  }
  get targets(): Targets {
    return this.targetsOf('targets');
  }

  /** The targets model of `role` (`targets` or a delegated role). @throws UsageError */
  targetsOf(role: string): Targets {
    const md = this.#targets.get(role);
    if (!md) throw new UsageError(`no targets role ${role}`);
    return md.signed;
  }

  /** The names of `targets` and every delegated role, in creation order. */
  get targetsRoles(): string[] {
    return [...this.#targets.keys()];
  }

  /** The current signers of a role. */
  signersOf(role: string): Signer[] {
    return [...(this.#signers.get(role) ?? [])];
  }

  /** The signed envelope of a role as last committed (or as being built). */
  metadata(role: string): Metadata<AnySigned> {
    if (role === 'root') return this.#root;
    if (role === 'timestamp') return this.#timestamp;
    if (role === 'snapshot') return this.#snapshot;
    const md = this.#targets.get(role);
    if (!md) throw new UsageError(`no role ${role}`);
    return md;
  }

  /** The bytes of the newest committed version of a role. @throws UsageError before its first commit */
  bytes(role: string): Uint8Array {
    const b = this.#bytes.get(role);
    if (!b) throw new UsageError(`${role} has not been committed`);
    return b;
  }

  /** Every file committed so far: path -> bytes (a copy of the map). */
  get files(): Map<string, Uint8Array> {
    return new Map(this.#files);
  }

  /** Marks a role changed: at the next commit it gets a new version and new signatures. */
  touch(role: string): void {
    this.metadata(role);
    this.#dirty.add(role);
  }

  /**
   * Puts an extra field into a role's `signed` part (an unrecognised field, kept
   * through parse and re-serialisation), e.g. the director's `deviceId` in its
   * timestamp, snapshot and targets; the role is re-signed at the next commit.
   * @throws UsageError for a name the role's format defines itself
   */
  setSignedField(role: string, name: string, value: unknown): void {
    const signed = this.metadata(role).signed;
    if (name in signed.toJSON() && !(name in signed.unrecognizedFields)) throw new UsageError(`${name} is a field of ${role} itself`);
    signed.unrecognizedFields[name] = value;
    this.#dirty.add(role);
  }

  /** Adds (or replaces) a target with its bytes; the bytes are published under targets/. */
  addTarget(path: string, data: Uint8Array, options: AddTargetOptions = {}): TargetFile {
    const info = TargetFile.fromData(data, ['sha256', 'sha512'], options.custom);
    this.setTarget(path, info, options.role);
    this.#files.set(targetFilePath(path, info.hashes.sha256!), data);
    return info;
  }

  /** Lists a target without publishing bytes (a director lists images the image repository holds). */
  setTarget(path: string, info: TargetFile, role = 'targets'): void {
    this.targetsOf(role).targets[path] = info;
    this.#dirty.add(role);
  }

  removeTarget(path: string, role = 'targets'): void {
    delete this.targetsOf(role).targets[path];
    this.#dirty.add(role);
  }

  /**
   * Delegates from `delegator` to a new targets role (fresh key unless signers are given).
   * Roles are searched in the order they are delegated.
   * @throws UsageError if the role exists already
   */
  delegate(delegator: string, options: DelegationOptions): DelegatedRole {
    const parent = this.targetsOf(delegator);
    if (this.#targets.has(options.name) || (TOP_LEVEL_ROLES as readonly string[]).includes(options.name)) {
      throw new UsageError(`role ${options.name} exists already`);
    }
    const signers = options.signers ?? [Ed25519Signer.generate()];
    parent.delegations ??= new Delegations({}, []);
    for (const s of signers) parent.delegations.keys[s.key.keyid] = s.key;
    const role = new DelegatedRole(
      options.name,
      signers.map((s) => s.key.keyid),
      options.threshold ?? 1,
      options.terminating ?? false,
      options.paths ?? (options.pathHashPrefixes ? undefined : ['*']),
      options.pathHashPrefixes,
      options.hardwareIds,
    );
    (parent.delegations.roles ??= []).push(role);
    this.#signers.set(options.name, signers);
    this.#targets.set(options.name, new Metadata(new Targets(1, this.#expires(options.name))));
    this.#dirty.add(delegator);
    this.#dirty.add(options.name);
    return role;
  }

  /**
   * Replaces the keys of a role. For a top-level role this changes root (so the next
   * root is signed by the old and the new root keys); for a delegated role it changes
   * the delegator's metadata. The role itself is re-signed with the new keys.
   */
  rotateKeys(role: string, signers: Signer[], threshold = 1): void {
    if ((TOP_LEVEL_ROLES as readonly string[]).includes(role)) {
      const root = this.root;
      for (const keyid of [...root.roles[role as RoleType].keyids]) root.revokeKey(role as RoleType, keyid);
      for (const s of signers) root.addKey(role as RoleType, s.key);
      root.roles[role as RoleType].threshold = threshold;
      this.#dirty.add('root');
    } else {
      const [delegator, delegated] = this.#findDelegator(role);
      for (const s of signers) delegator.signed.delegations!.keys[s.key.keyid] = s.key;
      delegated.keyids = signers.map((s) => s.key.keyid);
      delegated.threshold = threshold;
      this.#dirty.add(this.#nameOf(delegator));
    }
    this.#signers.set(role, signers);
    this.#dirty.add(role);
  }

  /**
   * Versions, expires and signs every dirty role, then snapshot and timestamp if
   * they changed, and returns every file of the repository so far.
   */
  commit(): Map<string, Uint8Array> {
    if (this.#dirty.has('root')) this.#commitRoot();
    let snapshotChanged = this.#dirty.has('snapshot');
    for (const [name, md] of this.#targets) {
      if (!this.#dirty.has(name)) continue;
      const bytes = this.#signRole(name, md);
      this.snapshot.meta[`${name}.json`] = this.#metaFile(md.signed.version, bytes);
      this.#publish(name, `metadata/${md.signed.version}.${name}.json`, bytes);
      snapshotChanged = true;
    }
    if (snapshotChanged) {
      const bytes = this.#signRole('snapshot', this.#snapshot);
      this.timestamp.snapshotMeta = this.#metaFile(this.snapshot.version, bytes);
      this.#publish('snapshot', `metadata/${this.snapshot.version}.snapshot.json`, bytes);
      this.#dirty.add('timestamp');
    }
    if (this.#dirty.has('timestamp')) {
      this.#publish('timestamp', 'metadata/timestamp.json', this.#signRole('timestamp', this.#timestamp));
    }
    this.#dirty.clear();
    return this.files;
  }

  #commitRoot(): void {
    const signers = this.#signers.get('root')!;
    const bytes = this.#signRole('root', this.#root, [...this.#previousRootSigners, ...signers]);
    this.#previousRootSigners = signers;
    this.#publish('root', `metadata/${this.root.version}.root.json`, bytes);
    this.#files.set('metadata/root.json', bytes);
  }

  /** Bumps the version after the first commit, sets expiry, re-signs from scratch. */
  #signRole(name: string, md: Metadata<AnySigned>, signers = this.#signers.get(name)!): Uint8Array {
    if (this.#committed.has(name)) md.signed.version++;
    this.#committed.add(name);
    md.signed.expires = this.#expires(name);
    md.signatures.clear();
    for (const s of signers) md.sign(s);
    return md.toBytes();
  }

  #publish(role: string, path: string, bytes: Uint8Array): void {
    this.#bytes.set(role, bytes);
    this.#files.set(path, bytes);
  }

  #metaFile(version: number, bytes: Uint8Array): MetaFile {
    return this.metaHashes ? new MetaFile(version, bytes.byteLength, { sha256: digestHex('sha256', bytes) }) : new MetaFile(version);
  }

  #expires(role: string): string {
    return expiresIn(this.now, this.expiry[role] ?? this.expiry.targets!);
  }

  #findDelegator(role: string): [Metadata<Targets>, DelegatedRole] {
    for (const md of this.#targets.values()) {
      const found = md.signed.delegations?.roles?.find((r) => r.name === role);
      if (found) return [md, found];
    }
    throw new UsageError(`no delegated role ${role}`);
  }

  #nameOf(md: Metadata<Targets>): string {
    for (const [name, m] of this.#targets) if (m === md) return name;
    throw new UsageError('unknown targets metadata');
  }
}

/** Where a consistent-snapshot repository serves a target: `<dir/><hash>.<basename>` under targets/. */
export function targetFilePath(path: string, hash: string): string {
  const slash = path.lastIndexOf('/');
  return `targets/${path.slice(0, slash + 1)}${hash}.${path.slice(slash + 1)}`;
}
