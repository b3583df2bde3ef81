/**
 * What the server checks before it publishes, as pure functions over parsed
 * metadata (no I/O: images are looked up through a callback).
 *
 * A proposal (new roots, a new top-level targets, new delegated roles) is
 * applied to the current state and the result must be a repository a TUF
 * client would accept: every new root signed by the threshold of the previous
 * root and of itself with version + 1 (TUF 5.3.4-5.3.5); targets signed by the
 * root's targets keys; each delegated role signed by the threshold of the keys
 * its delegator lists; versions strictly increasing; nothing expired; every
 * target of a changed role inside its delegation's paths and hardware IDs,
 * shaped by the image repository contract, and backed by an uploaded image of
 * the same length and hashes. Any failure throws and nothing is applied.
 */
import {
  BadVersionError,
  ExpiredMetadataError,
  LengthOrHashMismatchError,
  type DelegatedRole,
  type Key,
  type Metadata,
  type Root,
  type TargetFile,
  type Targets,
} from '@upfleet/core';
import { BadTargetError, DelegationViolationError, MissingImageError } from './errors.ts';
import { checkRoleName, checkTargetName } from './names.ts';
import type { BlobInfo } from './blob-store.ts';

export interface RepoState {
  root: Metadata<Root>;
  targets: Metadata<Targets>;
  /** Every delegated role ever published, by name. */
  delegated: Map<string, Metadata<Targets>>;
}

export interface Proposal {
  roots: Metadata<Root>[];
  targets?: Metadata<Targets>;
  delegated: Map<string, Metadata<Targets>>;
}

/** Finds an uploaded image; `undefined` as the whole lookup skips image checks (a client verifying a fetched state). */
export type ImageLookup = (sha256: string) => BlobInfo | undefined;

export interface Applied {
  state: RepoState;
  /** Delegated roles that no longer verify under their delegator (a key was rotated). */
  warnings: string[];
}

/**
 * @throws UnsignedMetadataError, BadVersionError, ExpiredMetadataError, DelegationViolationError,
 *   BadTargetError, BadNameError, MissingImageError, LengthOrHashMismatchError
 */
export function applyProposal(current: RepoState | undefined, proposal: Proposal, now: Date, images: ImageLookup | undefined): Applied {
  let root = current?.root;
  for (const next of proposal.roots) {
    verifyNextRoot(root, next, now);
    root = next;
  }
  if (!root) throw new BadVersionError('root', 1, 0, 'a new repository needs root version 1');

  const targets = proposal.targets ?? current?.targets;
  if (!targets) throw new BadVersionError('targets', 1, 0, 'a new repository needs targets metadata');
  if (proposal.targets) {
    if (current && proposal.targets.signed.version <= current.targets.signed.version) {
      throw new BadVersionError('targets', `> ${current.targets.signed.version}`, proposal.targets.signed.version);
    }
    notExpired('targets', proposal.targets, now);
    for (const [name, info] of Object.entries(proposal.targets.signed.targets)) checkTarget(name, info, images);
  }
  // Also when only the root changed: the published targets must still verify.
  const rootRole = root.signed.roles.targets;
  targets.verifyThreshold('targets', root.signed.keys, rootRole.keyids, rootRole.threshold);

  const delegated = new Map(current?.delegated ?? []);
  for (const [name, md] of proposal.delegated) delegated.set(name, md);
  const state: RepoState = { root, targets, delegated };

  for (const [name, md] of proposal.delegated) {
    checkRoleName(name);
    const previous = current?.delegated.get(name);
    if (previous && md.signed.version <= previous.signed.version) {
      throw new BadVersionError(name, `> ${previous.signed.version}`, md.signed.version);
    }
    notExpired(name, md, now);
    const found = findDelegation(state, name);
    if (!found) throw new DelegationViolationError(name, undefined, 'no role delegates it');
    md.verifyThreshold(name, found.keys, found.entry.keyids, found.entry.threshold);
    for (const [target, info] of Object.entries(md.signed.targets)) {
      checkTarget(target, info, images);
      checkDelegatedTarget(name, target, info, found.chain);
    }
  }

  const warnings: string[] = [];
  for (const [name, md] of delegated) {
    if (proposal.delegated.has(name)) continue;
    const found = findDelegation(state, name);
    try {
      if (!found) throw new DelegationViolationError(name, undefined, 'no longer delegated');
      md.verifyThreshold(name, found.keys, found.entry.keyids, found.entry.threshold);
    } catch (error) {
      warnings.push(`${name}: ${(error as Error).message}; the role must be re-signed`);
    }
  }
  return { state, warnings };
}

function verifyNextRoot(trusted: Metadata<Root> | undefined, next: Metadata<Root>, now: Date): void {
  const expected = (trusted?.signed.version ?? 0) + 1;
  if (next.signed.version !== expected) throw new BadVersionError('root', expected, next.signed.version);
  if (trusted) {
    const old = trusted.signed.roles.root;
    next.verifyThreshold('root', trusted.signed.keys, old.keyids, old.threshold);
  }
  const own = next.signed.roles.root;
  next.verifyThreshold('root', next.signed.keys, own.keyids, own.threshold);
  notExpired('root', next, now);
}

function notExpired(role: string, md: Metadata, now: Date): void {
  if (md.signed.isExpired(now)) throw new ExpiredMetadataError(role, md.signed.expires, now);
}

export interface FoundDelegation {
  delegator: string;
  entry: DelegatedRole;
  keys: Record<string, Key>;
  /** The delegation entries from the top-level targets down to this role. */
  chain: DelegatedRole[];
}

/** Breadth-first from `targets`, the first role that delegates `name`. */
export function findDelegation(state: RepoState, name: string): FoundDelegation | undefined {
  const queue: Array<{ role: string; md: Metadata<Targets>; chain: DelegatedRole[] }> = [{ role: 'targets', md: state.targets, chain: [] }];
  const seen = new Set<string>(['targets']);
  while (queue.length > 0) {
    const { role, md, chain } = queue.shift()!;
    const delegations = md.signed.delegations;
    for (const entry of delegations?.roles ?? []) {
      if (entry.name === name) return { delegator: role, entry, keys: delegations!.keys, chain: [...chain, entry] };
      const child = state.delegated.get(entry.name);
      if (child && !seen.has(entry.name)) {
        seen.add(entry.name);
        queue.push({ role: entry.name, md: child, chain: [...chain, entry] });
      }
    }
  }
  return undefined;
}

/** The contract: custom `{ hardwareIds: string[] (non-empty), releaseCounter: integer >= 0, version: string }`. */
export function checkTargetCustom(name: string, info: TargetFile): { hardwareIds: string[]; releaseCounter: number; version: string } {
  const custom = info.custom;
  if (!custom) throw new BadTargetError(name, 'custom fields are missing');
  const { hardwareIds, releaseCounter, version } = custom;
  if (!Array.isArray(hardwareIds) || hardwareIds.length === 0 || hardwareIds.some((h) => typeof h !== 'string' || h === '')) {
    throw new BadTargetError(name, 'custom.hardwareIds must be a non-empty array of strings');
  }
  if (typeof releaseCounter !== 'number' || !Number.isSafeInteger(releaseCounter) || releaseCounter < 0) {
    throw new BadTargetError(name, 'custom.releaseCounter must be an integer >= 0');
  }
  if (typeof version !== 'string' || version === '') throw new BadTargetError(name, 'custom.version must be a string');
  return { hardwareIds: hardwareIds as string[], releaseCounter, version };
}

function checkTarget(name: string, info: TargetFile, images: ImageLookup | undefined): void {
  checkTargetName(name);
  checkTargetCustom(name, info);
  const sha256 = info.hashes.sha256;
  if (!sha256) throw new BadTargetError(name, 'hashes must include sha256');
  for (const algorithm of Object.keys(info.hashes)) {
    if (algorithm !== 'sha256' && algorithm !== 'sha512') throw new BadTargetError(name, `unsupported hash algorithm ${algorithm}`);
  }
  if (!images) return;
  const image = images(sha256.toLowerCase());
  if (!image) throw new MissingImageError(name, sha256);
  if (image.length !== info.length) throw new LengthOrHashMismatchError(name, 'length', info.length, image.length);
  const sha512 = info.hashes.sha512;
  if (sha512 !== undefined && sha512.toLowerCase() !== image.sha512) {
    throw new LengthOrHashMismatchError(name, 'sha512', sha512, image.sha512);
  }
}

function checkDelegatedTarget(role: string, target: string, info: TargetFile, chain: DelegatedRole[]): void {
  const { hardwareIds } = checkTargetCustom(target, info);
  for (const entry of chain) {
    if (!entry.isDelegatedPath(target)) {
      throw new DelegationViolationError(role, target, `outside the paths delegated to ${entry.name} (${(entry.paths ?? []).join(', ')})`);
    }
    const refused = hardwareIds.find((h) => !entry.allowsHardwareId(h));
    if (refused !== undefined) {
      throw new DelegationViolationError(role, target, `hardware ID ${refused} is not delegated to ${entry.name} (${(entry.hardwareIds ?? []).join(', ')})`);
    }
  }
}
