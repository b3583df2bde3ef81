/**
 * The verified plan of one update (Uptane 2.1.0 5.4.2.4-5.4.2.5): from one trusted
 * director targets and one image repository trusted set, for every ECU the director
 * names, the director's image matched against the image repository's. What the
 * primary downloads, installs, relays and records (release counters included) is
 * read from this plan and from nothing else.
 *
 * Invariants:
 * - Every image the director lists is matched, whether or not it is new to its ECU
 *   (5.4.2.5: the primary cross-checks every target).
 * - An ECU the vehicle does not have, or with another hardware ID, refuses the plan.
 * - The plan is plain JSON, so the primary's state machine persists it as it is.
 */
import type { TargetFile } from '../metadata/file-info.ts';
import type { DirectorImage, DirectorTargets } from './director-targets.ts';
import { matchDirectorTarget, TargetMismatchError } from './matching.ts';

/** One ECU's image, as both repositories agreed on it. */
export interface PlannedImage {
  ecuSerial: string;
  hardwareId: string;
  /** Target path, the same in both repositories. */
  name: string;
  length: number;
  hashes: Record<string, string>;
  /** From the image repository (and equal to the director's copy). */
  releaseCounter: number;
  version?: string;
}

/** What the primary knows of one of its ECUs. */
export interface EcuState {
  hardwareId: string;
  installed: { length: number; hashes: Readonly<Record<string, string>> } | null;
  releaseCounter: number;
}

export interface PlanInput {
  director: DirectorTargets;
  /** The image repository's target `name` for hardware `hardwareId`, from one trusted set (its delegation search). */
  findImageTarget(name: string, hardwareId: string): Promise<TargetFile | undefined>;
  /** Every ECU of the vehicle, by serial. */
  ecus: ReadonlyMap<string, EcuState>;
}

export interface VerifiedPlan {
  directorTargetsVersion: number;
  /** The ECUs whose image changes, in install order. */
  installs: PlannedImage[];
}

/** Whether `installed` is the image `target` describes: same length, and every common hash equal (at least one). */
export function isInstalled(installed: EcuState['installed'], target: { length: number; hashes: Readonly<Record<string, string>> }): boolean {
  if (!installed || installed.length !== target.length) return false;
  const common = Object.keys(target.hashes).filter((a) => Object.hasOwn(installed.hashes, a));
  return common.length > 0 && common.every((a) => installed.hashes[a]!.toLowerCase() === target.hashes[a]!.toLowerCase());
}

/**
 * The ECUs the director names that run something else, before any image repository
 * check: whether a cycle has work at all.
 * @throws TargetMismatchError (field `ecu`, with `ecuSerial`) for an ECU this vehicle lacks or has with another hardware ID
 */
export function pendingEcus(director: DirectorTargets, ecus: ReadonlyMap<string, EcuState>): string[] {
  return director.images.filter((image) => !isInstalled(ecuOf(ecus, image).installed, image.target)).map((i) => i.ecuSerial);
}

/**
 * Matches every director image against the image repository.
 * @throws TargetMismatchError (with `ecuSerial`), MalformedMetadataError, and what findImageTarget throws
 */
export async function verifyPlan(input: PlanInput): Promise<VerifiedPlan> {
  const installs: PlannedImage[] = [];
  for (const image of input.director.images) {
    const ecu = ecuOf(input.ecus, image);
    let custom;
    try {
      const imageTarget = await input.findImageTarget(image.name, ecu.hardwareId);
      custom = matchDirectorTarget({ director: image, imageTarget, hardwareId: ecu.hardwareId, installedReleaseCounter: ecu.releaseCounter });
    } catch (e) {
      throw concerning(e, image.ecuSerial);
    }
    if (isInstalled(ecu.installed, image.target)) continue;
    installs.push(plannedImage(image, custom));
  }
  return { directorTargetsVersion: input.director.version, installs };
}

/** The plan entry for a director image, with the image repository's fields once matched (the director's copy before). */
export function plannedImage(image: DirectorImage, custom: { releaseCounter: number; version?: string } = image): PlannedImage {
  return {
    ecuSerial: image.ecuSerial,
    hardwareId: image.hardwareId,
    name: image.name,
    length: image.target.length,
    hashes: { ...image.target.hashes },
    releaseCounter: custom.releaseCounter,
    ...(custom.version !== undefined && { version: custom.version }),
  };
}

function ecuOf(ecus: ReadonlyMap<string, EcuState>, image: { name: string; ecuSerial: string; hardwareId: string }): EcuState {
  const ecu = ecus.get(image.ecuSerial);
  if (!ecu || ecu.hardwareId !== image.hardwareId) {
    throw concerning(new TargetMismatchError(image.name, 'ecu', ecu?.hardwareId ?? 'an ECU of this vehicle', image.hardwareId), image.ecuSerial);
  }
  return ecu;
}

/** Tags an error with the ECU it concerns (`ecuSerial`), keeping its class. */
export function concerning(e: unknown, ecuSerial: string): unknown {
  if (e instanceof Error && (e as { ecuSerial?: unknown }).ecuSerial === undefined) Object.assign(e, { ecuSerial });
  return e;
}
