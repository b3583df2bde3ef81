/**
 * Typed errors, split by who is to blame (STYLE.md section 4):
 * - RepositoryError: anything a remote party can cause, parse failures included;
 * - DownloadError: the transport;
 * - UsageError: a caller calling out of order or with bad arguments.
 * Each class carries the fields a test or an operator needs, not only text.
 */

export class UpfleetError extends Error {
  override name = 'UpfleetError';
  /** Stable machine-readable code, e.g. for reports and exit messages. */
  readonly code: string = 'UPFLEET_ERROR';
}

export class UsageError extends UpfleetError {
  override name = 'UsageError';
  override readonly code = 'USAGE';
}

export class RepositoryError extends UpfleetError {
  override name = 'RepositoryError';
  override readonly code: string = 'REPOSITORY';
}

/** Bytes that are not valid metadata: bad JSON, a missing or mistyped field. */
export class MalformedMetadataError extends RepositoryError {
  override name = 'MalformedMetadataError';
  override readonly code = 'MALFORMED_METADATA';
  constructor(readonly path: string, readonly reason: string, options?: ErrorOptions) {
    super(`malformed metadata at ${path}: ${reason}`, options);
  }
}

/**
 * Key material that does not fit its declared scheme: another algorithm, another
 * curve, or an RSA modulus under 2048 bits. The scheme names what the signature
 * means, so a key must not verify under a scheme its material was not made for.
 */
export class KeyMaterialError extends MalformedMetadataError {
  override name = 'KeyMaterialError';
  constructor(path: string, readonly scheme: string, readonly expected: string, readonly actual: string) {
    super(path, `${scheme} needs ${expected}, the key is ${actual}`);
  }
}

export class UnsupportedKeyError extends RepositoryError {
  override name = 'UnsupportedKeyError';
  override readonly code = 'UNSUPPORTED_KEY';
  constructor(readonly keytype: string, readonly scheme: string, options?: ErrorOptions) {
    super(`unsupported key type/scheme ${keytype}/${scheme}`, options);
  }
}

export class UnsignedMetadataError extends RepositoryError {
  override name = 'UnsignedMetadataError';
  override readonly code = 'UNSIGNED_METADATA';
  constructor(readonly role: string, readonly threshold: number, readonly validSignatures: number) {
    super(`${role} has ${validSignatures} valid signature(s), threshold is ${threshold}`);
  }
}

export class BadVersionError extends RepositoryError {
  override name = 'BadVersionError';
  override readonly code = 'BAD_VERSION';
  constructor(readonly role: string, readonly expected: string | number, readonly actual: number, message?: string) {
    super(message ?? `${role} version ${actual}, expected ${expected}`);
  }
}

export class ExpiredMetadataError extends RepositoryError {
  override name = 'ExpiredMetadataError';
  override readonly code = 'EXPIRED_METADATA';
  constructor(readonly role: string, readonly expires: string, readonly now: Date) {
    super(`${role} expired at ${expires} (now ${now.toISOString()})`);
  }
}

/** A length or hash that differs from what trusted metadata says. */
export class LengthOrHashMismatchError extends RepositoryError {
  override name = 'LengthOrHashMismatchError';
  override readonly code = 'LENGTH_OR_HASH_MISMATCH';
  constructor(readonly subject: string, readonly field: string, readonly expected: string | number, readonly actual: string | number) {
    super(`${subject}: ${field} is ${actual}, expected ${expected}`);
  }
}

/** A metadata file of the wrong role, or a role/target the repository must not name. */
export class BadRoleError extends RepositoryError {
  override name = 'BadRoleError';
  override readonly code = 'BAD_ROLE';
  constructor(readonly role: string, reason: string) {
    super(`${role}: ${reason}`);
  }
}

export class DownloadError extends UpfleetError {
  override name = 'DownloadError';
  override readonly code: string = 'DOWNLOAD';
}

export class HttpError extends DownloadError {
  override name = 'HttpError';
  override readonly code = 'HTTP';
  constructor(readonly url: string, readonly status: number) {
    super(`GET ${url}: HTTP ${status}`);
  }
}

/** Endless-data defence: more bytes than the cap or the signed length. */
export class LengthLimitError extends DownloadError {
  override name = 'LengthLimitError';
  override readonly code = 'LENGTH_LIMIT';
  constructor(readonly url: string, readonly limit: number, readonly received: number) {
    super(`${url}: more than ${limit} bytes (received ${received})`);
  }
}

/** Slow-retrieval defence: the server sent less than the minimum rate. */
export class SlowRetrievalError extends DownloadError {
  override name = 'SlowRetrievalError';
  override readonly code = 'SLOW_RETRIEVAL';
  constructor(readonly url: string, readonly bytesPerSecond: number, readonly minimum: number) {
    super(`${url}: ${Math.round(bytesPerSecond)} B/s is below the minimum ${minimum} B/s`);
  }
}

/**
 * Slow-retrieval defence over the whole request: the answer was not complete
 * within its deadline, however the bytes were spread over time. A kind of
 * SlowRetrievalError, so it is reported as slow retrieval.
 */
export class DeadlineExceededError extends SlowRetrievalError {
  override name = 'DeadlineExceededError';
  constructor(url: string, readonly deadlineMs: number, readonly received: number) {
    super(url, received / (deadlineMs / 1000), 0);
    this.message = `${url}: not complete within ${deadlineMs} ms (received ${received} bytes)`;
  }
}

/** Canonical JSON cannot encode the value (floats, undefined, cycles...). */
export class CanonicalJsonError extends UsageError {
  override name = 'CanonicalJsonError';
  constructor(readonly path: string, reason: string) {
    super(`cannot canonicalise ${path}: ${reason}`);
  }
}

/** A key file that cannot be opened: wrong passphrase, damaged, or not a key file. */
export class KeyFileError extends UpfleetError {
  override name = 'KeyFileError';
  override readonly code = 'KEY_FILE';
}

/** A metadata file larger than the cap for its role (endless-data defence, TUF 5.2 and after). */
export class MetadataTooLargeError extends RepositoryError {
  override name = 'MetadataTooLargeError';
  override readonly code = 'METADATA_TOO_LARGE';
  constructor(readonly role: string, readonly limit: number, readonly length: number) {
    super(`${role}: ${length} bytes, more than the ${limit}-byte cap`);
  }
}

/** A new timestamp with the version already trusted: nothing new, keep the old one. */
export class EqualVersionError extends BadVersionError {
  override name = 'EqualVersionError';
  constructor(role: string, version: number) {
    super(role, `> ${version}`, version, `${role} version ${version} is the one already trusted`);
  }
}

/** A delegator that does not delegate to the role (or a role that is not delegated at all). */
export class UndelegatedRoleError extends RepositoryError {
  override name = 'UndelegatedRoleError';
  override readonly code = 'UNDELEGATED_ROLE';
  constructor(readonly role: string, readonly delegator: string) {
    super(`${delegator} does not delegate to ${role}`);
  }
}

/** Snapshot has no entry for a targets role the client needs (TUF 5.6.1). */
export class UnlistedRoleError extends RepositoryError {
  override name = 'UnlistedRoleError';
  override readonly code = 'UNLISTED_ROLE';
  constructor(readonly role: string) {
    super(`snapshot does not list ${role}.json`);
  }
}

/** A metadata bundle (what a primary relays to a secondary) without a file the verification needs. */
export class IncompleteBundleError extends RepositoryError {
  override name = 'IncompleteBundleError';
  override readonly code = 'INCOMPLETE_BUNDLE';
  constructor(readonly repo: string, readonly file: string) {
    super(`metadata bundle lacks ${repo} ${file}`);
  }
}

/** A new snapshot that drops a targets role the trusted snapshot lists (TUF 5.5.5). */
export class DroppedRoleError extends RepositoryError {
  override name = 'DroppedRoleError';
  override readonly code = 'DROPPED_ROLE';
  constructor(readonly file: string) {
    super(`new snapshot drops ${file}`);
  }
}

/** More root rotations in one session than the cap allows (a repository walking the client forever). */
export class RootRotationLimitError extends RepositoryError {
  override name = 'RootRotationLimitError';
  override readonly code = 'ROOT_ROTATION_LIMIT';
  constructor(readonly limit: number) {
    super(`more than ${limit} root rotations in one update`);
  }
}
