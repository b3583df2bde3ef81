/**
 * The trusted metadata set: the TUF 1.0.x client workflow (spec section 5),
 * one method per step, bytes in, verified models out. Model: python-tuf
 * ngclient `trusted_metadata_set.py`. The caller does all the I/O.
 *
 * Theory of operation:
 * - Construction loads the initial trusted root (verified by itself only).
 * - Roles are then updated strictly in order: root* -> timestamp -> snapshot
 *   -> targets -> delegated targets. Each method starts with an order guard
 *   (UsageError) and stores its payload only after every check has passed,
 *   so a failed update changes nothing...
 * - ...except an expired (or, for snapshot, version-mismatched) timestamp or
 *   snapshot: it is stored before the error, so it still guards the next
 *   update against rollback, and the expiry blocks the next step
 *   ("final" checks run again at the start of the next step).
 * - All expiry checks use the reference time given to the constructor.
 * - A delegated role is trusted per delegator: reaching a role through a
 *   delegator it was not verified against verifies it again against that one.
 * - Every metadata file is refused above a per-role size cap.
 */
import { Metadata, type AnySigned, type RoleMap } from './metadata/envelope.ts';
import { parseJsonBytes } from './metadata/guard.ts';
import { canonicalize } from './canonical-json.ts';
import type { Root } from './metadata/root.ts';
import type { Timestamp } from './metadata/timestamp.ts';
import type { Snapshot } from './metadata/snapshot.ts';
import type { Targets } from './metadata/targets.ts';
import type { RoleType } from './metadata/signed.ts';
import type { Key } from './keys.ts';
import { bytesEqual } from './bytes.ts';
import {
  BadVersionError,
  DroppedRoleError,
  EqualVersionError,
  ExpiredMetadataError,
  MalformedMetadataError,
  MetadataTooLargeError,
  RootRotationLimitError,
  UndelegatedRoleError,
  UnlistedRoleError,
  UsageError,
} from './errors.ts';

/** Size caps in bytes; python-tuf's defaults. Delegated roles use the `targets` cap. */
export const DEFAULT_MAX_LENGTH: Readonly<Record<RoleType, number>> = {
  root: 512_000,
  timestamp: 16_384,
  snapshot: 2_000_000,
  targets: 5_000_000,
};

export interface TrustedSetOptions {
  maxLength?: Partial<Record<RoleType, number>>;
  /** Most root updates accepted by one set (python-tuf: 256). */
  maxRootRotations?: number;
}

interface TrustedDelegate {
  signed: Targets;
  bytes: Uint8Array;
  /** Delegators this exact file has been verified against. */
  delegators: Set<string>;
}

export class TrustedMetadataSet {
  readonly #now: Date;
  readonly #maxLength: Record<RoleType, number>;
  readonly #maxRootRotations: number;
  #rootRotations = 0;
  #root: Root;
  #timestamp: Timestamp | undefined;
  #snapshot: Snapshot | undefined;
  #delegates = new Map<string, TrustedDelegate>();

  /**
   * Loads the initial trusted root; it is verified only by itself, and its expiry
   * is checked later, on the final root (5.3.10).
   * @throws MalformedMetadataError, UnsignedMetadataError, MetadataTooLargeError
   */
  constructor(rootBytes: Uint8Array, now: Date, options: TrustedSetOptions = {}) {
    this.#now = now;
    this.#maxLength = { ...DEFAULT_MAX_LENGTH, ...options.maxLength };
    this.#maxRootRotations = options.maxRootRotations ?? 256;
    const { md, message } = this.#parse(rootBytes, 'root', 'root');
    // 5.2: the trusted root is signed by a threshold of its own root keys.
    verifyRole(md, message, 'root', md.signed.keys, md.signed.roles.root);
    this.#root = md.signed;
  }

  /** The reference time every expiry is checked against. */
  get now(): Date {
    return this.#now;
  }
  get root(): Root {
    return this.#root;
  }
  get timestamp(): Timestamp | undefined {
    return this.#timestamp;
  }
  get snapshot(): Snapshot | undefined {
    return this.#snapshot;
  }
  get targets(): Targets | undefined {
    return this.#delegates.get('targets')?.signed;
  }

  /** Any trusted role by name: top-level or delegated. */
  get(role: string): AnySigned | undefined {
    if (role === 'root') return this.#root;
    if (role === 'timestamp') return this.#timestamp;
    if (role === 'snapshot') return this.#snapshot;
    return this.#delegates.get(role)?.signed;
  }

  /** Whether `role` is trusted as delegated by `delegator` (top-level targets: by root). */
  isTrustedVia(role: string, delegator: string): boolean {
    return this.#delegates.get(role)?.delegators.has(delegator) ?? false;
  }

  /**
   * 5.3: the next root, N+1. An expired intermediate root is fine; only the final
   * root's expiry counts (checked in updateTimestamp).
   * @throws UsageError after a timestamp is trusted; RootRotationLimitError past the cap;
   *   MetadataTooLargeError, MalformedMetadataError, UnsignedMetadataError, BadVersionError
   */
  updateRoot(bytes: Uint8Array): Root {
    if (this.#timestamp) throw new UsageError('cannot update root after timestamp');
    // 5.3.2: a cap on the root files fetched in one update.
    if (this.#rootRotations >= this.#maxRootRotations) throw new RootRotationLimitError(this.#maxRootRotations);
    const { md, message } = this.#parse(bytes, 'root', 'root');
    // 5.3.3: signed by a threshold of the trusted root's root keys...
    verifyRole(md, message, 'root', this.#root.keys, this.#root.roles.root);
    // 5.3.3: ...and by a threshold of its own root keys.
    verifyRole(md, message, 'root', md.signed.keys, md.signed.roles.root);
    // 5.3.4: exactly the next version (no rollback, no skipping).
    const expected = this.#root.version + 1;
    if (md.signed.version !== expected) throw new BadVersionError('root', expected, md.signed.version);
    this.#root = md.signed;
    this.#rootRotations++;
    return md.signed;
  }

  /**
   * 5.4: timestamp. An expired timestamp is stored, then ExpiredMetadataError is
   * thrown; an equal version raises EqualVersionError and keeps the trusted one.
   * @throws UsageError after snapshot; ExpiredMetadataError (final root or timestamp);
   *   MetadataTooLargeError, MalformedMetadataError, UnsignedMetadataError,
   *   BadVersionError, EqualVersionError
   */
  updateTimestamp(bytes: Uint8Array): Timestamp {
    if (this.#snapshot) throw new UsageError('cannot update timestamp after snapshot');
    // 5.3.10: the final root must not be expired.
    if (this.#root.isExpired(this.#now)) throw new ExpiredMetadataError('root', this.#root.expires, this.#now);
    const { md, message } = this.#parse(bytes, 'timestamp', 'timestamp');
    // 5.4.2: signed by a threshold of the root's timestamp keys.
    verifyRole(md, message, 'timestamp', this.#root.keys, this.#root.roles.timestamp);
    const timestamp = md.signed;
    if (this.#timestamp) {
      // 5.4.3.1: timestamp rollback.
      if (timestamp.version < this.#timestamp.version) {
        throw new BadVersionError('timestamp', `>= ${this.#timestamp.version}`, timestamp.version);
      }
      if (timestamp.version === this.#timestamp.version) throw new EqualVersionError('timestamp', timestamp.version);
      // 5.4.3.2: snapshot rollback, as the timestamp lists it.
      const trusted = this.#timestamp.snapshotMeta.version;
      if (timestamp.snapshotMeta.version < trusted) {
        throw new BadVersionError('snapshot', `>= ${trusted}`, timestamp.snapshotMeta.version);
      }
    }
    // Stored before the expiry check: an expired timestamp still guards against rollback.
    this.#timestamp = timestamp;
    this.#checkFinalTimestamp();
    return timestamp;
  }

  /**
   * 5.5: snapshot. `trusted: true` skips the hash check against timestamp, for a
   * local copy verified in an earlier session. An expired snapshot, or one whose
   * version differs from the timestamp's, is stored before the error.
   * @throws UsageError before timestamp or after targets; ExpiredMetadataError
   *   (timestamp or snapshot); MetadataTooLargeError, LengthOrHashMismatchError,
   *   UnsupportedHashError, MalformedMetadataError, UnsignedMetadataError,
   *   DroppedRoleError, BadVersionError
   */
  updateSnapshot(bytes: Uint8Array, options: { trusted?: boolean } = {}): Snapshot {
    if (!this.#timestamp) throw new UsageError('cannot update snapshot before timestamp');
    if (this.#delegates.has('targets')) throw new UsageError('cannot update snapshot after targets');
    this.#checkFinalTimestamp();
    this.#checkSize('snapshot', 'snapshot', bytes);
    // 5.5.2: length and hashes as the timestamp lists them.
    if (!options.trusted) this.#timestamp.snapshotMeta.verify('snapshot', bytes);
    const { md, message } = this.#parse(bytes, 'snapshot', 'snapshot');
    // 5.5.3: signed by a threshold of the root's snapshot keys.
    verifyRole(md, message, 'snapshot', this.#root.keys, this.#root.roles.snapshot);
    const snapshot = md.signed;
    if (this.#snapshot) {
      for (const [file, trusted] of Object.entries(this.#snapshot.meta)) {
        const next = snapshot.meta[file];
        // 5.5.5: no targets role may disappear...
        if (!next) throw new DroppedRoleError(file);
        // ...nor roll back.
        if (next.version < trusted.version) {
          throw new BadVersionError(file.replace(/\.json$/, ''), `>= ${trusted.version}`, next.version);
        }
      }
    }
    // Stored before the final checks: it still guards the next snapshot against rollback.
    this.#snapshot = snapshot;
    this.#checkFinalSnapshot();
    return snapshot;
  }

  /**
   * 5.6: top-level targets, delegated by root.
   * @throws as updateDelegatedTargets
   */
  updateTargets(bytes: Uint8Array): Targets {
    return this.updateDelegatedTargets(bytes, 'targets', 'root');
  }

  /**
   * Uptane 5.4.4.3 partial verification: top-level targets checked against the
   * final root alone, with no timestamp or snapshot. `trusted: true` loads a copy
   * verified in an earlier session (its expiry no longer matters; it only sets the
   * version floor). A later copy must not be older than the one trusted.
   * @throws UsageError once a timestamp is trusted; ExpiredMetadataError (final root,
   *   or targets); MetadataTooLargeError, MalformedMetadataError, UnsignedMetadataError,
   *   BadVersionError
   */
  updatePartialTargets(bytes: Uint8Array, options: { trusted?: boolean } = {}): Targets {
    if (this.#timestamp) throw new UsageError('partial verification uses no timestamp');
    // 5.3.10: the final root must not be expired.
    if (this.#root.isExpired(this.#now)) throw new ExpiredMetadataError('root', this.#root.expires, this.#now);
    const { md, message } = this.#parse(bytes, 'targets', 'targets');
    verifyRole(md, message, 'targets', this.#root.keys, this.#root.roles.targets);
    const targets = md.signed;
    if (!options.trusted && targets.isExpired(this.#now)) throw new ExpiredMetadataError('targets', targets.expires, this.#now);
    const floor = this.#delegates.get('targets')?.signed.version;
    if (floor !== undefined && targets.version < floor) throw new BadVersionError('targets', `>= ${floor}`, targets.version);
    this.#delegates.set('targets', { signed: targets, bytes, delegators: new Set(['root']) });
    return targets;
  }

  /**
   * 5.6 (and 5.6.7 for delegated roles): a targets role, verified against `delegator` (which must be trusted).
   * @throws UsageError before snapshot or before the delegator; ExpiredMetadataError
   *   (snapshot or the role); BadVersionError (snapshot vs timestamp, or the role vs
   *   snapshot); UnlistedRoleError, MetadataTooLargeError, LengthOrHashMismatchError,
   *   UnsupportedHashError, MalformedMetadataError, UndelegatedRoleError, UnsignedMetadataError
   */
  updateDelegatedTargets(bytes: Uint8Array, role: string, delegator: string): Targets {
    if (!this.#snapshot) throw new UsageError('cannot update targets before snapshot');
    this.#checkFinalSnapshot();
    const parent = this.get(delegator);
    if (!parent || (parent.type !== 'root' && parent.type !== 'targets')) {
      throw new UsageError(`cannot update ${role} before its delegator ${delegator}`);
    }
    // 5.6.1: snapshot lists the role...
    const meta = this.#snapshot.meta[`${role}.json`];
    if (!meta) throw new UnlistedRoleError(role);
    this.#checkSize(role, 'targets', bytes);
    // 5.6.2: ...with the length and hashes of these bytes.
    meta.verify(role, bytes);
    const { md, message } = this.#parse(bytes, 'targets', role);
    // 5.6.3: signed by a threshold of the keys the delegator gives the role.
    const delegation = delegationOf(parent, role);
    if (!delegation) throw new UndelegatedRoleError(role, delegator);
    verifyRole(md, message, role, delegation.keys, delegation);
    // 5.6.4: the version snapshot lists.
    if (md.signed.version !== meta.version) throw new BadVersionError(role, meta.version, md.signed.version);
    // 5.6.5: not expired.
    if (md.signed.isExpired(this.#now)) throw new ExpiredMetadataError(role, md.signed.expires, this.#now);
    const existing = this.#delegates.get(role);
    const delegators = existing && bytesEqual(existing.bytes, bytes) ? existing.delegators : new Set<string>();
    delegators.add(delegator);
    this.#delegates.set(role, { signed: md.signed, bytes, delegators });
    return md.signed;
  }

  /** 5.4.4: the trusted timestamp is the final one only if not expired. */
  #checkFinalTimestamp(): void {
    const timestamp = this.#timestamp!;
    if (timestamp.isExpired(this.#now)) throw new ExpiredMetadataError('timestamp', timestamp.expires, this.#now);
  }

  /** 5.5.6 and 5.5.4: not expired, and the version the timestamp lists. */
  #checkFinalSnapshot(): void {
    const snapshot = this.#snapshot!;
    if (snapshot.isExpired(this.#now)) throw new ExpiredMetadataError('snapshot', snapshot.expires, this.#now);
    const expected = this.#timestamp!.snapshotMeta.version;
    if (snapshot.version !== expected) throw new BadVersionError('snapshot', expected, snapshot.version);
  }

  #checkSize(role: string, type: RoleType, bytes: Uint8Array): void {
    const limit = this.#maxLength[type];
    if (bytes.byteLength > limit) throw new MetadataTooLargeError(role, limit, bytes.byteLength);
  }

  /**
   * Parses once and returns the model with the bytes its signatures cover: the
   * canonical JSON of the raw `signed` object just parsed (the model keeps every
   * field, so this equals re-serialising it, without building a second copy).
   */
  #parse<R extends RoleType>(bytes: Uint8Array, type: R, role: string): { md: Metadata<RoleMap[R]>; message: Uint8Array } {
    this.#checkSize(role, type, bytes);
    const json = parseJsonBytes(bytes, role);
    const md = Metadata.fromJSON(json, type, role);
    try {
      return { md, message: canonicalize((json as { signed: unknown }).signed) };
    } catch (cause) {
      // e.g. a float in an unrecognised field: nothing TUF can have signed.
      throw new MalformedMetadataError(`${role}.signed`, (cause as Error).message, { cause });
    }
  }
}

interface Delegation {
  keys: Readonly<Record<string, Key>>;
  keyids: readonly string[];
  threshold: number;
}

function verifyRole(md: Metadata<AnySigned>, message: Uint8Array, role: string, keys: Readonly<Record<string, Key>>, delegation: { keyids: readonly string[]; threshold: number }): void {
  md.verifyThreshold(role, keys, delegation.keyids, delegation.threshold, message);
}

/** The keys and threshold `parent` gives `role`, if it delegates to it. */
function delegationOf(parent: Root | Targets, role: string): Delegation | undefined {
  if (parent.type === 'root') return role === 'targets' ? { keys: parent.keys, ...parent.roles.targets } : undefined;
  const delegations = parent.delegations;
  const found = delegations?.roleKeys(role);
  return found && delegations ? { keys: delegations.keys, keyids: found.keyids, threshold: found.threshold } : undefined;
}
