/**
 * The director-to-image-repository cross-check (Uptane 5.4.4.2 step 5): a
 * director target is installable only if the image repository lists the same
 * name with the same length and every hash the director lists (same algorithm,
 * same digest), for the ECU's hardware ID,
 * with a release counter not lower than the one installed. Pure function.
 */
import { RepositoryError } from '../errors.ts';
import type { TargetFile } from '../metadata/file-info.ts';

/** Why a director target was refused; `field` says which check fired. */
export class TargetMismatchError extends RepositoryError {
  override name = 'TargetMismatchError';
  override readonly code = 'TARGET_MISMATCH';
  constructor(
    readonly target: string,
    readonly field: 'missing' | 'length' | 'hashes' | 'hardwareId' | 'releaseCounter' | 'ecu',
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

export function imageCustom(target: TargetFile): ImageTargetCustom {
  const c = target.custom ?? {};
  const hardwareIds = Array.isArray(c.hardwareIds) ? c.hardwareIds.filter((h): h is string => typeof h === 'string') : [];
  const releaseCounter = typeof c.releaseCounter === 'number' && Number.isSafeInteger(c.releaseCounter) ? c.releaseCounter : 0;
  return { hardwareIds, releaseCounter, ...(typeof c.version === 'string' && { version: c.version }) };
}

/** ECU serial -> hardware ID, from a director target's `custom.ecuIdentifiers`. */
export function ecuIdentifiers(target: TargetFile): Record<string, string> {
  const ids = target.custom?.ecuIdentifiers;
  const out: Record<string, string> = {};
  if (typeof ids !== 'object' || ids === null) return out;
  for (const [serial, v] of Object.entries(ids as Record<string, unknown>)) {
    const hw = (v as { hardwareId?: unknown })?.hardwareId;
    if (typeof hw === 'string') out[serial] = hw;
  }
  return out;
}

export interface MatchInput {
  name: string;
  directorTarget: TargetFile;
  /** The image repository's target of the same name, if any. */
  imageTarget: TargetFile | undefined;
  ecuSerial: string;
  /** The hardware ID the device's inventory has for that ECU. */
  hardwareId: string;
  /** Release counter of the image the ECU runs now. */
  installedReleaseCounter: number;
}

/** @throws TargetMismatchError naming the first check that fails. */
export function matchDirectorTarget(input: MatchInput): ImageTargetCustom {
  const { name, directorTarget, imageTarget, ecuSerial, hardwareId } = input;
  if (!imageTarget) throw new TargetMismatchError(name, 'missing', 'an image repository target', 'none');
  const forEcu = ecuIdentifiers(directorTarget)[ecuSerial];
  if (forEcu !== hardwareId) throw new TargetMismatchError(name, 'ecu', hardwareId, forEcu ?? 'none');
  if (directorTarget.length !== imageTarget.length) {
    throw new TargetMismatchError(name, 'length', imageTarget.length, directorTarget.length);
  }
  // Every hash the director lists must be one the image repository lists, and equal.
  for (const [alg, digest] of Object.entries(directorTarget.hashes)) {
    const d = digest.toLowerCase();
    const i = imageTarget.hashes[alg]?.toLowerCase();
    if (d !== i) throw new TargetMismatchError(name, 'hashes', i === undefined ? `no ${alg}` : `${alg}:${i}`, `${alg}:${d}`);
  }
  const custom = imageCustom(imageTarget);
  if (!custom.hardwareIds.includes(hardwareId)) {
    throw new TargetMismatchError(name, 'hardwareId', custom.hardwareIds.join(',') || 'none', hardwareId);
  }
  if (custom.releaseCounter < input.installedReleaseCounter) {
    throw new TargetMismatchError(name, 'releaseCounter', `>= ${input.installedReleaseCounter}`, custom.releaseCounter);
  }
  return custom;
}
