/**
 * The director-to-image-repository cross-check (Uptane 5.4.4.2 step 5): a
 * director target is installable only if the image repository lists the same
 * name with the same length and every hash the director lists (same algorithm,
 * same digest), for the ECU's hardware ID, with the release counter the director
 * copied, and not lower than the one installed. Pure function.
 */
import { MalformedMetadataError, RepositoryError } from '../errors.ts';
import type { TargetFile } from '../metadata/file-info.ts';
import { releaseCounterOf, type DirectorImage } from './director-targets.ts';

/** Why a director target was refused; `field` says which check fired. */
export class TargetMismatchError extends RepositoryError {
  override name = 'TargetMismatchError';
  override readonly code = 'TARGET_MISMATCH';
  constructor(
    readonly target: string,
    readonly field: 'missing' | 'length' | 'hashes' | 'hardwareId' | 'releaseCounter' | 'directorReleaseCounter' | 'ecu',
    readonly expected: string | number,
    readonly actual: string | number,
  ) {
    super(
      field === 'missing'
        ? `${target}: the image repository does not list it`
        : `${target}: ${field} is ${actual}, expected ${expected}`,
    );
  }
}

/** The Uptane custom fields of an image repository target. */
export interface ImageTargetCustom {
  hardwareIds: string[];
  releaseCounter: number;
  version?: string;
}

/**
 * The Uptane custom fields of an image repository target, typed. An absent
 * releaseCounter is 0 and absent hardwareIds match no ECU; a present one of the
 * wrong type refuses the target.
 * @throws MalformedMetadataError
 */
export function imageCustom(target: TargetFile, name = 'target'): ImageTargetCustom {
  const c = target.custom ?? {};
  const path = `image targets.${name}.custom`;
  const hardwareIds = c.hardwareIds ?? [];
  if (!Array.isArray(hardwareIds) || !hardwareIds.every((h): h is string => typeof h === 'string')) {
    throw new MalformedMetadataError(`${path}.hardwareIds`, 'must be an array of strings');
  }
  const releaseCounter = c.releaseCounter === undefined ? 0 : releaseCounterOf(c.releaseCounter, `${path}.releaseCounter`);
  if (c.version !== undefined && typeof c.version !== 'string') throw new MalformedMetadataError(`${path}.version`, 'must be a string');
  return { hardwareIds, releaseCounter, ...(c.version !== undefined && { version: c.version }) };
}

export interface MatchInput {
  /** The director's image for the ECU. */
  director: DirectorImage;
  /** The image repository's target of the same name, if any. */
  imageTarget: TargetFile | undefined;
  /** The hardware ID the ECU has (its own configuration, or the inventory's). */
  hardwareId: string;
  /** Release counter of the image the ECU runs now. */
  installedReleaseCounter: number;
}

/** @throws TargetMismatchError naming the first check that fails; MalformedMetadataError */
export function matchDirectorTarget(input: MatchInput): ImageTargetCustom {
  const { director, imageTarget, hardwareId } = input;
  const { name, target: directorTarget } = director;
  if (!imageTarget) throw new TargetMismatchError(name, 'missing', 'an image repository target', 'none');
  if (director.hardwareId !== hardwareId) throw new TargetMismatchError(name, 'ecu', hardwareId, director.hardwareId);
  if (directorTarget.length !== imageTarget.length) {
    throw new TargetMismatchError(name, 'length', imageTarget.length, directorTarget.length);
  }
  // Every hash the director lists must be one the image repository lists, and equal.
  for (const [alg, digest] of Object.entries(directorTarget.hashes)) {
    const d = digest.toLowerCase();
    const i = Object.hasOwn(imageTarget.hashes, alg) ? imageTarget.hashes[alg]!.toLowerCase() : undefined;
    if (d !== i) throw new TargetMismatchError(name, 'hashes', i === undefined ? `no ${alg}` : `${alg}:${i}`, `${alg}:${d}`);
  }
  const custom = imageCustom(imageTarget, name);
  if (!custom.hardwareIds.includes(hardwareId)) {
    throw new TargetMismatchError(name, 'hardwareId', custom.hardwareIds.join(',') || 'none', hardwareId);
  }
  // Partial-verification ECUs see only the director's copy: it must be the image repository's.
  if (director.releaseCounter !== custom.releaseCounter) {
    throw new TargetMismatchError(name, 'directorReleaseCounter', custom.releaseCounter, director.releaseCounter);
  }
  if (custom.releaseCounter < input.installedReleaseCounter) {
    throw new TargetMismatchError(name, 'releaseCounter', `>= ${input.installedReleaseCounter}`, custom.releaseCounter);
  }
  return custom;
}
