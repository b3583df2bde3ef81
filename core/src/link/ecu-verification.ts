/**
 * What a secondary ECU checks before it accepts an image, pure and clock-free
 * (Uptane 5.4.4.3 partial verification, 5.4.4.4 full verification). The ECU
 * trusts nothing the primary says: only metadata that verifies against the roots
 * the ECU pinned, and only the target that names this ECU.
 *
 * Partial: director root rotation (each new root signed by the old and the new
 * root keys, version N+1), then the director targets signed by a threshold of
 * the director targets keys, not expired, version not below the last one this
 * ECU accepted, with an entry whose custom.ecuIdentifiers maps this ECU's serial
 * to its hardware ID.
 * Full: the whole TUF sequence (root*, timestamp, snapshot, targets) of the
 * director and of the image repository through TrustedMetadataSet, the same ECU
 * entry, then the director-to-image cross-check (matchDirectorTarget).
 * After either, the image itself is checked against the returned target's
 * length and hashes (verifyImage) once it has been received.
 */
import { ExpiredMetadataError, BadVersionError, MalformedMetadataError, RepositoryError } from '../errors.ts';
import { isSupportedHash, MultiHasher, type HashAlgorithm } from '../hash.ts';
import { Metadata } from '../metadata/envelope.ts';
import type { TargetFile } from '../metadata/file-info.ts';
import type { Targets } from '../metadata/targets.ts';
import { TrustedMetadataSet } from '../trusted-set.ts';
import { ecuIdentifiers, imageCustom, matchDirectorTarget } from '../uptane/matching.ts';
import type { ErrorCodeName, Verification } from './events.ts';

/** Role file name -> exact bytes, as the primary relays them. */
export type RoleFiles = Readonly<Record<string, Uint8Array>>;

export interface EcuTrust {
  /** The director root this ECU pinned (latest it verified). */
  directorRoot: Uint8Array;
  /** The image repository root it pinned (full verification only). */
  imageRoot?: Uint8Array;
  /** The highest director targets version it accepted (rollback guard). */
  directorTargetsVersion: number;
}

export interface VerifyInput {
  mode: Verification;
  ecuSerial: string;
  hardwareId: string;
  trust: EcuTrust;
  director: RoleFiles;
  image?: RoleFiles;
  now: Date;
  /** Release counter of the installed image (full mode refuses lower ones). */
  installedReleaseCounter: number;
}

export interface VerifiedTarget {
  name: string;
  length: number;
  hashes: Record<string, string>;
  releaseCounter: number;
}

export interface Verified {
  target: VerifiedTarget;
  /** The trust to persist: rotated roots and the accepted targets version. */
  trust: EcuTrust;
}

/** The director names no target for this ECU, or names it with another hardware ID. */
export class EcuTargetError extends RepositoryError {
  override name = 'EcuTargetError';
  override readonly code = 'ECU_TARGET';
  constructor(readonly ecuSerial: string, readonly reason: 'none' | 'several' | 'hardwareId', readonly detail: string) {
    super(`ECU ${ecuSerial}: ${detail}`);
  }
}

/** The received image differs from the verified target. */
export class ImageVerificationError extends RepositoryError {
  override name = 'ImageVerificationError';
  override readonly code = 'IMAGE_VERIFICATION';
  constructor(readonly target: string, readonly field: 'length' | 'hashes', readonly expected: string | number, readonly actual: string | number) {
    super(`${target}: ${field} is ${actual}, signed metadata says ${expected}`);
  }
}

/** A bundle without a file the mode needs. */
export class IncompleteBundleError extends RepositoryError {
  override name = 'IncompleteBundleError';
  override readonly code = 'INCOMPLETE_BUNDLE';
  constructor(readonly repo: string, readonly file: string) {
    super(`metadata bundle lacks ${repo} ${file}`);
  }
}

function need(files: RoleFiles | undefined, repo: string, name: string): Uint8Array {
  const b = files?.[name];
  if (!b) throw new IncompleteBundleError(repo, name);
  return b;
}

/** Applies every newer root in the bundle ('N.root.json' in order, then 'root.json'); returns the final root bytes. */
function rotateRoots(set: TrustedMetadataSet, pinned: Uint8Array, files: RoleFiles): Uint8Array {
  let current = pinned;
  const numbered = Object.keys(files)
    .map((n) => /^(\d+)\.root\.json$/.exec(n))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ version: Number(m[1]), name: m[0] }))
    .sort((a, b) => a.version - b.version);
  const candidates = [...numbered.map((n) => files[n.name]!), ...(files['root.json'] ? [files['root.json']] : [])];
  for (const bytes of candidates) {
    const version = Metadata.fromBytes(bytes, 'root').signed.version;
    if (version <= set.root.version) continue;
    set.updateRoot(bytes);
    current = bytes;
  }
  return current;
}

/** The one target of `targets` that names this ECU. @throws EcuTargetError */
function targetForEcu(targets: Targets, ecuSerial: string, hardwareId: string): [string, TargetFile] {
  const mine = Object.entries(targets.targets).filter(([, t]) => ecuSerial in ecuIdentifiers(t));
  if (mine.length === 0) throw new EcuTargetError(ecuSerial, 'none', 'no director target for this ECU');
  if (mine.length > 1) throw new EcuTargetError(ecuSerial, 'several', `${mine.length} director targets for this ECU`);
  const [name, t] = mine[0]!;
  const hw = ecuIdentifiers(t)[ecuSerial];
  if (hw !== hardwareId) throw new EcuTargetError(ecuSerial, 'hardwareId', `target ${name} is for hardware ${hw}, this ECU is ${hardwareId}`);
  return [name, t];
}

function checkTargetsVersion(targets: Targets, trust: EcuTrust): void {
  if (targets.version < trust.directorTargetsVersion) {
    throw new BadVersionError('targets', `>= ${trust.directorTargetsVersion}`, targets.version, `director targets version ${targets.version} is below ${trust.directorTargetsVersion}, already accepted`);
  }
}

function partial(input: VerifyInput): Verified {
  const set = new TrustedMetadataSet(input.trust.directorRoot, input.now);
  const directorRoot = rotateRoots(set, input.trust.directorRoot, input.director);
  const md = Metadata.fromBytes(need(input.director, 'director', 'targets.json'), 'targets', 'director targets');
  const role = set.root.roles.targets;
  md.verifyThreshold('targets', set.root.keys, role.keyids, role.threshold);
  if (md.signed.isExpired(input.now)) throw new ExpiredMetadataError('targets', md.signed.expires, input.now);
  checkTargetsVersion(md.signed, input.trust);
  const [name, t] = targetForEcu(md.signed, input.ecuSerial, input.hardwareId);
  const releaseCounter = imageCustom(t).releaseCounter;
  return {
    target: { name, length: t.length, hashes: { ...t.hashes }, releaseCounter },
    trust: { ...input.trust, directorRoot, directorTargetsVersion: md.signed.version },
  };
}

/** The full TUF sequence for one repository; returns the set and the final root bytes. */
function loadRepository(pinned: Uint8Array, files: RoleFiles, repo: string, now: Date): { set: TrustedMetadataSet; root: Uint8Array } {
  const set = new TrustedMetadataSet(pinned, now);
  const root = rotateRoots(set, pinned, files);
  set.updateTimestamp(need(files, repo, 'timestamp.json'));
  set.updateSnapshot(need(files, repo, 'snapshot.json'));
  set.updateTargets(need(files, repo, 'targets.json'));
  return { set, root };
}

/** The image repository's target `name`: top-level, or in a delegated role the bundle carries. */
function findImageTarget(set: TrustedMetadataSet, files: RoleFiles, name: string): TargetFile | undefined {
  const top = set.targets!;
  if (top.targets[name]) return top.targets[name];
  for (const d of top.delegations?.roles ?? []) {
    const bytes = files[`${d.name}.json`];
    if (!bytes || !d.isDelegatedPath(name)) continue;
    const delegated = set.updateDelegatedTargets(bytes, d.name, 'targets');
    if (delegated.targets[name]) return delegated.targets[name];
    if (d.terminating) break;
  }
  return undefined;
}

function full(input: VerifyInput): Verified {
  if (!input.trust.imageRoot) throw new IncompleteBundleError('image', 'pinned root (ECU configuration)');
  const director = loadRepository(input.trust.directorRoot, input.director, 'director', input.now);
  const targets = director.set.targets!;
  checkTargetsVersion(targets, input.trust);
  const [name, directorTarget] = targetForEcu(targets, input.ecuSerial, input.hardwareId);
  const image = loadRepository(input.trust.imageRoot, input.image ?? {}, 'image', input.now);
  const imageTarget = findImageTarget(image.set, input.image ?? {}, name);
  const custom = matchDirectorTarget({
    name, directorTarget, imageTarget, ecuSerial: input.ecuSerial, hardwareId: input.hardwareId,
    installedReleaseCounter: input.installedReleaseCounter,
  });
  return {
    target: { name, length: directorTarget.length, hashes: { ...directorTarget.hashes }, releaseCounter: custom.releaseCounter },
    trust: { directorRoot: director.root, imageRoot: image.root, directorTargetsVersion: targets.version },
  };
}

/**
 * Verifies a metadata bundle for this ECU.
 * @throws MalformedMetadataError, UnsignedMetadataError, ExpiredMetadataError, BadVersionError,
 *   EcuTargetError, IncompleteBundleError, TargetMismatchError (full), and the other
 *   RepositoryError subclasses of TrustedMetadataSet.
 */
export function verifyForEcu(input: VerifyInput): Verified {
  return input.mode === 'full' ? full(input) : partial(input);
}

/**
 * Streams an image through the target's hash algorithms.
 * @throws ImageVerificationError on a length or hash difference; MalformedMetadataError for an unsupported algorithm.
 */
export class ImageVerifier {
  readonly #hasher: MultiHasher;
  constructor(readonly target: VerifiedTarget) {
    const algorithms = Object.keys(target.hashes);
    if (algorithms.length === 0 || !algorithms.every(isSupportedHash)) {
      throw new MalformedMetadataError(`targets.${target.name}.hashes`, 'no supported hash algorithm');
    }
    this.#hasher = new MultiHasher(algorithms as HashAlgorithm[]);
  }
  update(chunk: Uint8Array): void {
    this.#hasher.update(chunk);
  }
  finish(): void {
    const { target } = this;
    if (this.#hasher.length !== target.length) throw new ImageVerificationError(target.name, 'length', target.length, this.#hasher.length);
    const actual = this.#hasher.digestHex();
    for (const [alg, expected] of Object.entries(target.hashes)) {
      if (actual[alg] !== expected) throw new ImageVerificationError(target.name, 'hashes', `${alg}:${expected}`, `${alg}:${actual[alg]}`);
    }
  }
}

/** The wire error code an ECU reports for a verification failure. */
export function refusalCodeFor(e: unknown): ErrorCodeName {
  if (!(e instanceof Error)) return 'REFUSED';
  switch (e.name) {
    case 'MalformedMetadataError': case 'MetadataTooLargeError': return 'METADATA_MALFORMED';
    case 'UnsignedMetadataError': return 'METADATA_UNSIGNED';
    case 'ExpiredMetadataError': return 'METADATA_EXPIRED';
    case 'BadVersionError': case 'EqualVersionError': return 'METADATA_ROLLBACK';
    case 'IncompleteBundleError': return 'METADATA_INCOMPLETE';
    case 'EcuTargetError': return (e as EcuTargetError).reason === 'hardwareId' ? 'HARDWARE_ID_MISMATCH' : 'NO_TARGET_FOR_ECU';
    case 'TargetMismatchError': return 'TARGET_MISMATCH';
    case 'ImageVerificationError': return (e as ImageVerificationError).field === 'length' ? 'LENGTH_MISMATCH' : 'HASH_MISMATCH';
    default: return e instanceof RepositoryError ? 'METADATA_MALFORMED' : 'REFUSED';
  }
}
