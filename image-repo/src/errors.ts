/**
 * Image repository errors. Each class carries the fields that say what failed
 * and an HTTP status, so the server answers `{ error: { code, message } }`
 * with the right status and a test can assert the exact check that fired.
 * Core errors (signatures, versions, hashes) keep their own classes; their
 * statuses are mapped in `httpStatusOf`.
 */
import {
  BadVersionError,
  ExpiredMetadataError,
  KeyFileError,
  LengthOrHashMismatchError,
  MalformedMetadataError,
  UnsignedMetadataError,
  UpfleetError,
  UsageError,
} from '@upfleet/core';

export class ImageRepoError extends UpfleetError {
  override name = 'ImageRepoError';
  override readonly code: string = 'IMAGE_REPO';
  readonly status: number = 500;
}

/** A --version that is not a Semantic Versioning 2.0.0 version: a caller's mistake (exit 2). */
export class InvalidVersionError extends UsageError {
  override name = 'InvalidVersionError';
  constructor(readonly value: string, readonly reason: string) {
    super(`--version ${JSON.stringify(value)} is not a semantic version (SemVer 2.0.0): ${reason}`);
  }
}

/** The server's port is taken; names the option that picks another (the director's PortInUseError, same shape). */
export class PortInUseError extends UpfleetError {
  override name = 'PortInUseError';
  override readonly code = 'PORT_IN_USE';
  constructor(readonly what: string, readonly host: string, readonly port: number, readonly option: string, advice: string, options?: ErrorOptions) {
    super(`${what} cannot listen on ${host}:${port}: the port is in use; ${advice}`, options);
  }
}

/** A target or role name that could escape its directory or is not allowed. */
export class BadNameError extends ImageRepoError {
  override name = 'BadNameError';
  override readonly code = 'BAD_NAME';
  override readonly status = 400;
  constructor(readonly kind: 'target' | 'role', readonly value: string, reason: string) {
    super(`bad ${kind} name ${JSON.stringify(value)}: ${reason}`);
  }
}

/** A target entry whose custom fields break the image repository contract. */
export class BadTargetError extends ImageRepoError {
  override name = 'BadTargetError';
  override readonly code = 'BAD_TARGET';
  override readonly status = 400;
  constructor(readonly target: string, readonly reason: string) {
    super(`target ${target}: ${reason}`);
  }
}

/** A delegated role listing a target outside its paths or hardware IDs, or a role nobody delegates. */
export class DelegationViolationError extends ImageRepoError {
  override name = 'DelegationViolationError';
  override readonly code = 'DELEGATION_VIOLATION';
  override readonly status = 403;
  constructor(readonly role: string, readonly target: string | undefined, readonly reason: string) {
    super(`${role}${target === undefined ? '' : ` target ${target}`}: ${reason}`);
  }
}

/** Metadata lists a target whose image was never uploaded. */
export class MissingImageError extends ImageRepoError {
  override name = 'MissingImageError';
  override readonly code = 'MISSING_IMAGE';
  override readonly status = 409;
  constructor(readonly target: string, readonly sha256: string) {
    super(`target ${target}: no uploaded image with sha256 ${sha256}`);
  }
}

/** A new root names snapshot/timestamp keys the server does not hold. */
export class OnlineKeyMissingError extends ImageRepoError {
  override name = 'OnlineKeyMissingError';
  override readonly code = 'ONLINE_KEY_MISSING';
  override readonly status = 409;
  constructor(readonly role: string, readonly threshold: number, readonly available: number) {
    super(`the server holds ${available} of the ${threshold} ${role} key(s) the root requires; install the key file in the server's keys/online/ first`);
  }
}

export class UploadTooLargeError extends ImageRepoError {
  override name = 'UploadTooLargeError';
  override readonly code = 'UPLOAD_TOO_LARGE';
  override readonly status = 413;
  constructor(readonly limit: number) {
    super(`upload larger than the limit of ${limit} bytes`);
  }
}

export class UnauthorizedError extends ImageRepoError {
  override name = 'UnauthorizedError';
  override readonly code = 'UNAUTHORIZED';
  override readonly status = 401;
  constructor() {
    super('a valid bearer token is required');
  }
}

export class NotFoundError extends ImageRepoError {
  override name = 'NotFoundError';
  override readonly code = 'NOT_FOUND';
  override readonly status = 404;
  constructor(readonly path: string) {
    super(`${path} not found`);
  }
}

export class RangeNotSatisfiableError extends ImageRepoError {
  override name = 'RangeNotSatisfiableError';
  override readonly code = 'RANGE_NOT_SATISFIABLE';
  override readonly status = 416;
  constructor(readonly range: string, readonly size: number) {
    super(`range ${range} is outside the file of ${size} bytes`);
  }
}

/** A request the API cannot parse: bad JSON, wrong shape, wrong method. */
export class BadRequestError extends ImageRepoError {
  override name = 'BadRequestError';
  override readonly code: string = 'BAD_REQUEST';
  override readonly status: number = 400;
}

export class MethodNotAllowedError extends BadRequestError {
  override name = 'MethodNotAllowedError';
  override readonly code = 'METHOD_NOT_ALLOWED';
  override readonly status = 405;
}

/** The working directory is missing pieces (not initialised, no key for a role...). */
export class WorkspaceError extends ImageRepoError {
  override name = 'WorkspaceError';
  override readonly code: string = 'WORKSPACE';
}

/**
 * Key files directly in DIR/keys: the layout in which one passphrase protected the offline and
 * the online keys alike. Nothing reads them until `upfleet-repo migrate-keys` has split them.
 */
export class OldKeyLayoutError extends WorkspaceError {
  override name = 'OldKeyLayoutError';
  override readonly code = 'OLD_KEY_LAYOUT';
  constructor(readonly keysDir: string, readonly files: readonly string[]) {
    super(`${keysDir} holds key files of the old layout (${files.join(', ')}): run upfleet-repo migrate-keys --dir DIR ` +
      'to move root and targets keys to keys/offline/ and re-encrypt snapshot and timestamp keys into keys/online/ with the online passphrase');
  }
}

/** A remote server refused a request, or could not be reached (status 0); carries its status and error code. */
export class RemoteError extends ImageRepoError {
  override name = 'RemoteError';
  override readonly code: string;
  override readonly status: number;
  constructor(readonly url: string, status: number, code: string, message: string) {
    super(`${message} (${status ? `HTTP ${status} ` : ''}from ${url})`);
    this.status = status;
    this.code = code;
  }
}

/** HTTP status for any error the API may raise; unknown errors are 500. */
export function httpStatusOf(error: unknown): number {
  if (error instanceof ImageRepoError) return error.status;
  if (error instanceof BadVersionError) return 409;
  if (
    error instanceof MalformedMetadataError ||
    error instanceof UnsignedMetadataError ||
    error instanceof ExpiredMetadataError ||
    error instanceof LengthOrHashMismatchError ||
    error instanceof UsageError
  ) {
    return 400;
  }
  if (error instanceof UpfleetError && error.code !== 'UPFLEET_ERROR' && !(error instanceof KeyFileError)) return 400;
  return 500;
}
