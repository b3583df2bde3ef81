/**
 * Signed metadata for simulations, tests and benchmarks: an image repository and
 * a director repository (core RepositoryBuilder) with one image per ECU, and the
 * bundles a primary relays to each ECU. Keys are fresh per call.
 */
import { RepositoryBuilder, TargetFile } from '@upfleet/core';

export interface FixtureImage {
  ecuSerial: string;
  hardwareId: string;
  name: string;
  bytes: Uint8Array;
  releaseCounter?: number;
}

export type RoleFiles = Record<string, Uint8Array>;

export interface UpdateFixture {
  director: RepositoryBuilder;
  image: RepositoryBuilder;
  /** Version-1 roots, to pin in ECUs at "manufacture". */
  directorRoot: Uint8Array;
  imageRoot: Uint8Array;
  /** The current metadata of both repositories, as a primary relays it. */
  bundle(): { director: RoleFiles; image: RoleFiles };
  /** Re-targets `ecuSerial` to a new image (name, bytes); commits both repositories. */
  assign(img: FixtureImage): TargetFile;
}

/** What a primary relays: every root version (an ECU follows the chain from the one it pinned), then the current roles. */
function roleFiles(repo: RepositoryBuilder): RoleFiles {
  const out: RoleFiles = {};
  for (const [path, bytes] of repo.files) {
    const root = /^metadata\/(\d+\.root\.json)$/.exec(path);
    if (root) out[root[1]!] = bytes;
  }
  for (const role of ['root', 'timestamp', 'snapshot', 'targets']) out[`${role}.json`] = repo.bytes(role);
  for (const role of repo.targetsRoles.filter((r) => r !== 'targets')) out[`${role}.json`] = repo.bytes(role);
  return out;
}

/** Builds both repositories with `images` assigned, metadata valid at `now`. */
export function makeUpdateFixture(options: { now: Date; deviceId?: string; images: FixtureImage[] }): UpdateFixture {
  const image = new RepositoryBuilder({ now: options.now });
  const director = new RepositoryBuilder({ now: options.now });
  // Uptane: every director role but root names the device.
  for (const role of ['timestamp', 'snapshot', 'targets']) director.setSignedField(role, 'deviceId', options.deviceId ?? 'vehicle-1');
  const assign = (img: FixtureImage): TargetFile => {
    const t = image.addTarget(img.name, img.bytes, {
      custom: { hardwareIds: [img.hardwareId], releaseCounter: img.releaseCounter ?? 1, version: '1.0.0' },
    });
    for (const [name, info] of Object.entries(director.targets.targets)) {
      if (img.ecuSerial in ((info.custom?.ecuIdentifiers as object | undefined) ?? {})) director.removeTarget(name);
    }
    const d = new TargetFile(t.length, { ...t.hashes }, { ecuIdentifiers: { [img.ecuSerial]: { hardwareId: img.hardwareId } }, releaseCounter: img.releaseCounter ?? 1 });
    director.setTarget(img.name, d);
    image.commit();
    director.commit();
    return d;
  };
  image.commit();
  director.commit();
  const directorRoot = director.bytes('root');
  const imageRoot = image.bytes('root');
  for (const img of options.images) assign(img);
  return { director, image, directorRoot, imageRoot, bundle: () => ({ director: roleFiles(director), image: roleFiles(image) }), assign };
}
