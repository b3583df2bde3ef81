/**
 * Link errors, split by who is to blame (STYLE.md section 4, h11's split):
 * - LocalProtocolError: this side tried to send something the protocol forbids in
 *   its state (a bug in the caller); the session is unchanged.
 * - RemoteProtocolError: the peer sent something malformed or out of place, or
 *   overflowed the receive buffer; the session enters ERROR until reset.
 * - LinkTimeoutError: the peer stopped answering (retries exhausted); ERROR too.
 * - EcuRefusedError: a well-formed refusal from the ECU, carrying its error code;
 *   the session stays usable.
 * Line noise (bad CRC, bad COBS) is none of these: such frames are dropped and
 * counted, and the retransmission machinery recovers.
 */
import { DownloadError, RepositoryError, UsageError } from '../errors.ts';
import type { ErrorCodeName } from './events.ts';

export class LocalProtocolError extends UsageError {
  override name = 'LocalProtocolError';
  constructor(readonly state: string, readonly reason: string) {
    super(`link: cannot ${reason} in state ${state}`);
  }
}

export class RemoteProtocolError extends RepositoryError {
  override name = 'RemoteProtocolError';
  override readonly code = 'LINK_PROTOCOL';
  constructor(readonly state: string, readonly reason: string, options?: ErrorOptions) {
    super(`link: peer protocol error in state ${state}: ${reason}`, options);
  }
}

export class LinkTimeoutError extends DownloadError {
  override name = 'LinkTimeoutError';
  override readonly code = 'LINK_TIMEOUT';
  constructor(readonly state: string, readonly waitingFor: string, readonly attempts: number) {
    super(`link: no answer to ${waitingFor} after ${attempts} attempt(s) (state ${state})`);
  }
}

/** The ECU refused a request; `ecuCode` is the wire error code's name. */
export class EcuRefusedError extends RepositoryError {
  override name = 'EcuRefusedError';
  override readonly code = 'ECU_REFUSED';
  constructor(
    readonly ecuSerial: string,
    readonly request: string,
    readonly ecuCode: ErrorCodeName,
    readonly detail: string,
    readonly retryAfterMs = 0,
  ) {
    super(`ECU ${ecuSerial} refused ${request}: ${ecuCode}${detail ? ` (${detail})` : ''}`);
  }
}
