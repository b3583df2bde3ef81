/**
 * The director's typed errors. Each carries an HTTP status and a stable `code`
 * so the HTTP layer maps it without string matching, plus the structured
 * fields a test or an operator needs. Refusals never change stored state.
 */
import { DownloadError, UpfleetError } from '@upfleet/core';

export class DirectorError extends UpfleetError {
  override name = 'DirectorError';
  override readonly code: string;
  constructor(
    readonly status: number,
    code: string,
    message: string,
    readonly fields: Record<string, unknown> = {},
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.code = code;
  }
}

/** An admin command could not reach the director; `causeCode` is the transport's (ECONNREFUSED, ENOTFOUND...). */
export class DirectorUnreachableError extends DownloadError {
  override name = 'DirectorUnreachableError';
  override readonly code = 'UNREACHABLE';
  constructor(readonly url: string, readonly causeCode: string | undefined, detail: string, options?: ErrorOptions) {
    super(`cannot reach the director at ${url}: ${causeCode ?? 'network error'}${detail && detail !== causeCode ? ` (${detail})` : ''}`, options);
  }
}

/** A request that does not parse or breaks a field rule. */
export class BadRequestError extends DirectorError {
  override name = 'BadRequestError';
  constructor(message: string, fields: Record<string, unknown> = {}, options?: ErrorOptions) {
    super(400, 'BAD_REQUEST', message, fields, options);
  }
}

/** No credentials, or credentials that do not verify. */
export class UnauthenticatedError extends DirectorError {
  override name = 'UnauthenticatedError';
  constructor(readonly reason: string) {
    super(401, 'UNAUTHENTICATED', `not authenticated: ${reason}`, { reason });
  }
}

/** Valid credentials that do not cover the request (another device's data, a pending device...). */
export class ForbiddenError extends DirectorError {
  override name = 'ForbiddenError';
  constructor(code: string, message: string, fields: Record<string, unknown> = {}) {
    super(403, code, message, fields);
  }
}

export class NotFoundError extends DirectorError {
  override name = 'NotFoundError';
  constructor(readonly kind: string, readonly id: string) {
    super(404, 'NOT_FOUND', `no ${kind} ${id}`, { kind, id });
  }
}

/** A request that contradicts the current state (a re-registration with other keys, a bad transition...). */
export class ConflictError extends DirectorError {
  override name = 'ConflictError';
  constructor(code: string, message: string, fields: Record<string, unknown> = {}) {
    super(409, code, message, fields);
  }
}

/** A manifest the director refuses; `code` names the rule (README: manifest rules). */
export class ManifestRejectedError extends DirectorError {
  override name = 'ManifestRejectedError';
  constructor(
    readonly deviceId: string,
    code: string,
    message: string,
    fields: Record<string, unknown> = {},
    status = 422,
    options?: ErrorOptions,
  ) {
    super(status, code, `manifest of ${deviceId} refused: ${message}`, { deviceId, ...fields }, options);
  }
}

/** A listen address that is taken; `option` is the serve option that picks another port. */
export class PortInUseError extends UpfleetError {
  override name = 'PortInUseError';
  override readonly code = 'PORT_IN_USE';
  constructor(readonly what: string, readonly host: string, readonly port: number, readonly option: string, advice: string, options?: ErrorOptions) {
    super(`${what} cannot listen on ${host}:${port}: the port is in use; ${advice}`, options);
  }
}

/** An assignment the image repository does not back (see core matchDirectorTarget). */
export class AssignmentRefusedError extends DirectorError {
  override name = 'AssignmentRefusedError';
  constructor(
    readonly deviceId: string,
    readonly ecuSerial: string,
    readonly image: string,
    readonly field: string,
    message: string,
    options?: ErrorOptions,
  ) {
    super(422, 'ASSIGNMENT_REFUSED', `assignment of ${image} to ${deviceId}/${ecuSerial} refused: ${message}`,
      { deviceId, ecuSerial, image, field }, options);
  }
}

/**
 * The database cannot be reached, or stayed busy (locked by other writers, or
 * losing every retry of a conflicting transaction) past its deadline. Nothing
 * of the failed change was stored: the caller may try again (HTTP 503; an MQTT
 * message is left unacknowledged so the broker delivers it again).
 */
export class StoreUnavailableError extends DirectorError {
  override name = 'StoreUnavailableError';
  constructor(readonly store: 'sqlite' | 'postgres', detail: string, options?: ErrorOptions) {
    super(503, 'STORE_UNAVAILABLE', `the director database (${store}) is unavailable: ${detail}`, { store }, options);
  }
}

/** A --database value that names neither a SQLite file nor a postgres:// URL, or a database whose schema is newer than this director. */
export class DatabaseConfigError extends UpfleetError {
  override name = 'DatabaseConfigError';
  override readonly code = 'BAD_DATABASE';
}

/**
 * The verify pool cannot check a manifest now: its queue is full (back-pressure), or the
 * worker checking it died twice. Nothing was stored; the device may send it again (HTTP 503;
 * an MQTT message is left unacknowledged so the broker delivers it again).
 */
export class VerifierUnavailableError extends DirectorError {
  override name = 'VerifierUnavailableError';
  constructor(reason: 'busy' | 'crashed', detail: string, options?: ErrorOptions) {
    super(503, reason === 'busy' ? 'VERIFIER_BUSY' : 'VERIFIER_UNAVAILABLE', `manifest verification is unavailable: ${detail}`, { reason }, options);
  }
}
