/**
 * The director repository as Uptane reads it (Uptane 2.1.0 5.2.1, 5.4.4.2), typed:
 * every director target names the ECUs it is for in
 * `custom.ecuIdentifiers: { <ecuSerial>: { hardwareId } }` and carries the image's
 * `custom.releaseCounter`; every director role (timestamp, snapshot, targets) names
 * the device in `signed.deviceId`, so one device's metadata cannot be served to another.
 *
 * Invariants:
 * - A director targets role that delegates, lists an ECU twice, or has a malformed
 *   ecuIdentifiers or releaseCounter is refused whole (MalformedMetadataError).
 * - ECU serials come from outside: they are only ever looked up in Maps.
 * - `bindToDevice` refuses a role for another device before the engine stores
 *   anything of it (DeviceMismatchError), so a replay to the wrong device leaves
 *   no trace in the trusted store.
 */
import { MalformedMetadataError, RepositoryError } from '../errors.ts';
import type { AnySigned } from '../metadata/envelope.ts';
import type { TargetFile } from '../metadata/file-info.ts';
import type { Targets } from '../metadata/targets.ts';

/** One director target bound to one ECU. */
export interface DirectorImage {
  /** Target path, the same in both repositories. */
  name: string;
  target: TargetFile;
  ecuSerial: string;
  hardwareId: string;
  releaseCounter: number;
}

/** Director metadata signed for another device (a replay across devices). */
export class DeviceMismatchError extends RepositoryError {
  override name = 'DeviceMismatchError';
  override readonly code = 'DEVICE_MISMATCH';
  constructor(readonly role: string, readonly expected: string, readonly actual: string) {
    super(`director ${role} is for device ${actual}, this is ${expected}`);
  }
}

/**
 * An `acceptRole` check for the engine: every director role but root (which the
 * fleet shares) must carry `signed.deviceId` equal to `deviceId`.
 */
export function bindToDevice(deviceId: string): (role: string, signed: AnySigned) => void {
  return (role, signed) => {
    if (role === 'root') return;
    const actual = signed.unrecognizedFields.deviceId;
    if (actual !== deviceId) throw new DeviceMismatchError(role, deviceId, typeof actual === 'string' ? actual : 'none');
  };
}

/** A non-negative safe integer, or MalformedMetadataError naming `path`. */
export function releaseCounterOf(value: unknown, path: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new MalformedMetadataError(path, 'releaseCounter must be a non-negative integer');
  }
  return value;
}

function ecuIdentifiersOf(target: TargetFile, path: string): Map<string, string> {
  const ids = target.custom?.ecuIdentifiers;
  if (typeof ids !== 'object' || ids === null || Array.isArray(ids)) throw new MalformedMetadataError(path, 'needs an ecuIdentifiers object');
  const out = new Map<string, string>();
  for (const [serial, value] of Object.entries(ids)) {
    const hardwareId = (value as { hardwareId?: unknown } | null)?.hardwareId;
    if (typeof hardwareId !== 'string' || hardwareId === '') throw new MalformedMetadataError(`${path}.${serial}`, 'needs a hardwareId string');
    out.set(serial, hardwareId);
  }
  if (out.size === 0) throw new MalformedMetadataError(path, 'names no ECU');
  return out;
}

export class DirectorTargets {
  readonly #byEcu: Map<string, DirectorImage>;

  private constructor(
    readonly version: number,
    /** Every ECU's image, in install order: `custom.order` first, then as listed. */
    readonly images: readonly DirectorImage[],
  ) {
    this.#byEcu = new Map(images.map((i) => [i.ecuSerial, i]));
  }

  /** @throws MalformedMetadataError */
  static from(targets: Targets): DirectorTargets {
    if (targets.delegations) throw new MalformedMetadataError('director targets.delegations', 'the director delegates nothing');
    const listed = Object.entries(targets.targets).map(([name, target], i) => ({
      name, target, i, order: typeof target.custom?.order === 'number' ? target.custom.order : Infinity,
    }));
    listed.sort((a, b) => a.order - b.order || a.i - b.i);
    const images: DirectorImage[] = [];
    const seen = new Set<string>();
    for (const { name, target } of listed) {
      const path = `director targets.${name}.custom`;
      const releaseCounter = releaseCounterOf(target.custom?.releaseCounter, `${path}.releaseCounter`);
      for (const [ecuSerial, hardwareId] of ecuIdentifiersOf(target, `${path}.ecuIdentifiers`)) {
        // Two images for one ECU would let the primary pick: the director must name one.
        if (seen.has(ecuSerial)) throw new MalformedMetadataError(`${path}.ecuIdentifiers.${ecuSerial}`, 'ECU listed in two targets');
        seen.add(ecuSerial);
        images.push({ name, target, ecuSerial, hardwareId, releaseCounter });
      }
    }
    return new DirectorTargets(targets.version, images);
  }

  /** The image the director names for this ECU, if any. */
  forEcu(ecuSerial: string): DirectorImage | undefined {
    return this.#byEcu.get(ecuSerial);
  }
}
