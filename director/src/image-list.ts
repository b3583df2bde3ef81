/**
 * The image repository's targets as the admin API lists them
 * (GET /api/v1/admin/images): name, length, hashes, the Upfleet custom fields
 * (hardware IDs, version, release counter) and the role that signed the entry
 * (`targets`, or a supplier's delegated role). Only what verified is listed.
 */
import type { ImageRepository } from './context.ts';
import type { ImageView } from './admin-records.ts';

/** @throws RepositoryError, DownloadError when the image repository cannot be verified or reached */
export async function listImages(imageRepo: ImageRepository): Promise<ImageView[]> {
  return (await imageRepo.listTargets()).map(({ path, info, role }) => {
    const custom = info.custom ?? {};
    return {
      name: path,
      length: info.length,
      hashes: { ...info.hashes },
      hardwareIds: Array.isArray(custom.hardwareIds) ? custom.hardwareIds.filter((h): h is string => typeof h === 'string') : [],
      version: typeof custom.version === 'string' ? custom.version : null,
      releaseCounter: typeof custom.releaseCounter === 'number' ? custom.releaseCounter : null,
      role,
    };
  });
}
