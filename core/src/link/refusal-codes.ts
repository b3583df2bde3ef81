/** How an ECU puts a verification failure on the wire: the typed error's class (and field) -> a Refusal code. */
import { RepositoryError } from '../errors.ts';
import type { EcuTargetError, ImageVerificationError } from '../uptane/ecu-verification.ts';
import type { TargetMismatchError } from '../uptane/matching.ts';
import type { ErrorCodeName } from './events.ts';

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
    case 'TargetMismatchError': return (e as TargetMismatchError).field === 'releaseCounter' ? 'IMAGE_ROLLBACK' : 'TARGET_MISMATCH';
    case 'ImageVerificationError': return (e as ImageVerificationError).field === 'length' ? 'LENGTH_MISMATCH' : 'HASH_MISMATCH';
    default: return e instanceof RepositoryError ? 'METADATA_MALFORMED' : 'REFUSED';
  }
}
