/**
 * What a secondary ECU checks before it accepts an image (Uptane 2.1.0 5.4.4.3
 * partial verification, 5.4.4.4 full verification), on the one verification
 * engine (the Updater) over the primary's bundle. The ECU trusts nothing the
 * primary says: only metadata that verifies against what the ECU itself stored,
 * and only the target that names this ECU.
 *
 * Invariants:
 * - The ECU's own stores hold its trusted metadata (roots pinned at manufacture,
 *   then timestamp, snapshot and targets of each repository it verifies), so
 *   every rollback check compares against what it accepted before a reboot
 *   (5.4.2.6). The engine persists a role only after it passed every check,
 *   the Uptane director-targets checks (DirectorTargets) included.
 * - A role missing from the bundle is an IncompleteBundleError, never a skip;
 *   the delegation search is the engine's (terminating roles, hardware-ID
 *   filter, succinct roles, nested delegations, a cap on roles visited).
 * - Partial: the director root chain, then director targets against the final
 *   root alone. Full: both repositories in full, then the director-to-image
 *   cross-check (matchDirectorTarget). Both refuse a release counter below the
 *   installed one.
 * After either, the received image is checked against the returned target
 * (ImageVerifier).
 */
import { MalformedMetadataError, RepositoryError, UsageError } from '../errors.ts';
import { isSupportedHash, MultiHasher, type HashAlgorithm } from '../hash.ts';
import type { AnySigned } from '../metadata/envelope.ts';
import type { Targets } from '../metadata/targets.ts';
import { bundleSource, Updater, type MetadataStore } from '../updater.ts';
import type { Verification } from '../link/events.ts';
import { DirectorTargets, type DirectorImage } from './director-targets.ts';
import { matchDirectorTarget, TargetMismatchError } from './matching.ts';

/** Role file name (`<role>.json`, `N.root.json`) -> exact bytes, as the primary relays them. */
export type RoleFiles = ReadonlyMap<string, Uint8Array>;

export interface VerifyInput {
  mode: Verification;
  ecuSerial: string;
  hardwareId: string;
  /** The ECU's trusted metadata, per repository (image: full verification only). */
  stores: { director: MetadataStore; image?: MetadataStore };
  director: RoleFiles;
  image?: RoleFiles;
  now: Date;
  /** Release counter of the installed image: a lower one is refused. */
  installedReleaseCounter: number;
}

export interface VerifiedTarget {
  name: string;
  length: number;
  hashes: Record<string, string>;
  releaseCounter: number;
}

/** The director names no target for this ECU, or names it with another hardware ID. */
export class EcuTargetError extends RepositoryError {
  override name = 'EcuTargetError';
  override readonly code = 'ECU_TARGET';
  constructor(readonly ecuSerial: string, readonly reason: 'none' | 'hardwareId', readonly detail: string) {
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

/** The engine's acceptRole for a director repository: its targets must be well-formed Uptane director targets. */
export function checkDirectorRole(role: string, signed: AnySigned): void {
  if (role === 'targets') DirectorTargets.from(signed as Targets);
}

/** The director's image for this ECU. @throws EcuTargetError */
function imageForEcu(director: DirectorTargets, ecuSerial: string, hardwareId: string): DirectorImage {
  const mine = director.forEcu(ecuSerial);
  if (!mine) throw new EcuTargetError(ecuSerial, 'none', 'no director target for this ECU');
  if (mine.hardwareId !== hardwareId) throw new EcuTargetError(ecuSerial, 'hardwareId', `target ${mine.name} is for hardware ${mine.hardwareId}, this ECU is ${hardwareId}`);
  return mine;
}

async function partial(input: VerifyInput): Promise<VerifiedTarget> {
  const updater = new Updater({ source: bundleSource('director', input.director), store: input.stores.director, now: input.now, acceptRole: checkDirectorRole });
  const mine = imageForEcu(DirectorTargets.from(await updater.refreshPartial()), input.ecuSerial, input.hardwareId);
  // The director's copy of the release counter is all a partial ECU can see (5.4.4.3).
  if (mine.releaseCounter < input.installedReleaseCounter) {
    throw new TargetMismatchError(mine.name, 'releaseCounter', `>= ${input.installedReleaseCounter}`, mine.releaseCounter);
  }
  return { name: mine.name, length: mine.target.length, hashes: { ...mine.target.hashes }, releaseCounter: mine.releaseCounter };
}

async function full(input: VerifyInput): Promise<VerifiedTarget> {
  if (!input.stores.image) throw new UsageError('full verification needs the image repository root pinned');
  const director = new Updater({ source: bundleSource('director', input.director), store: input.stores.director, now: input.now, acceptRole: checkDirectorRole });
  await director.refresh();
  const mine = imageForEcu(DirectorTargets.from(director.trustedSet.targets!), input.ecuSerial, input.hardwareId);
  const image = new Updater({ source: bundleSource('image', input.image ?? new Map()), store: input.stores.image, now: input.now });
  const found = await image.findTarget(mine.name, { hardwareId: input.hardwareId });
  const custom = matchDirectorTarget({ director: mine, imageTarget: found?.info, hardwareId: input.hardwareId, installedReleaseCounter: input.installedReleaseCounter });
  return { name: mine.name, length: mine.target.length, hashes: { ...mine.target.hashes }, releaseCounter: custom.releaseCounter };
}

/**
 * Verifies a metadata bundle for this ECU; the stores keep what was accepted.
 * @throws MalformedMetadataError, UnsignedMetadataError, ExpiredMetadataError, BadVersionError,
 *   EcuTargetError, IncompleteBundleError, TargetMismatchError, and the engine's other RepositoryErrors
 */
export function verifyForEcu(input: VerifyInput): Promise<VerifiedTarget> {
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
