/**
 * The agent's own failure kinds. Remote-caused failures keep core's classes
 * (RepositoryError, DownloadError); these cover configuration, local state and
 * installation. Each carries the fields a test or an operator needs.
 */
import { DownloadError, RepositoryError, UpfleetError } from '@upfleet/core';

/** A configuration value that is missing or wrong; `field` is its JSON path. */
export class ConfigError extends UpfleetError {
  override name = 'ConfigError';
  override readonly code = 'CONFIG';
  constructor(readonly field: string, readonly reason: string) {
    super(`config ${field}: ${reason}`);
  }
}

/** The device has not been provisioned (no key or no pinned roots). */
export class NotProvisionedError extends UpfleetError {
  override name = 'NotProvisionedError';
  override readonly code = 'NOT_PROVISIONED';
  constructor(readonly missing: string) {
    super(`device is not provisioned: ${missing} missing (run "upfleet-agent provision")`);
  }
}

/** An ECU's install handler or driver failed; `phase` says where. */
export class InstallError extends UpfleetError {
  override name = 'InstallError';
  override readonly code = 'INSTALL';
  constructor(readonly ecuSerial: string, readonly phase: string, reason: string, options?: ErrorOptions) {
    super(`ECU ${ecuSerial} ${phase}: ${reason}`, options);
  }
}

/**
 * The primary's new slot failed its health check after the restart into it;
 * the installer marks it bad and restarts into `fallbackSlot`, which still runs
 * the old image (result code HEALTH_CHECK_FAILED).
 */
export class HealthCheckError extends UpfleetError {
  override name = 'HealthCheckError';
  override readonly code = 'HEALTH_CHECK_FAILED';
  constructor(readonly ecuSerial: string, readonly slot: string, readonly fallbackSlot: string, reason: string, options?: ErrorOptions) {
    super(`ECU ${ecuSerial}: slot ${slot} is not healthy (${reason}); rolling back to ${fallbackSlot}`, options);
  }
}

/**
 * After the restart into `slot`, the machine came up in `bootedSlot` instead:
 * the bootloader fell back on its own (the new slot did not boot). The old
 * image still runs (result code BOOT_FALLBACK).
 */
export class BootFallbackError extends UpfleetError {
  override name = 'BootFallbackError';
  override readonly code = 'BOOT_FALLBACK';
  constructor(readonly ecuSerial: string, readonly slot: string, readonly bootedSlot: string) {
    super(`ECU ${ecuSerial}: installed into slot ${slot}, but the bootloader started ${bootedSlot} (the new slot did not boot)`);
  }
}

/** Failures after which the primary runs its old image again: reported with their own code (not INSTALL_FAILED). */
export const ROLLBACK_RESULT_CODES: readonly string[] = ['HEALTH_CHECK_FAILED', 'BOOT_FALLBACK'];

/**
 * The director refused a request (registration, manifest) for a reason other than transport.
 * `errorCode` and `errorMessage` come from its `{ error: { code, message } }` answer, when it is one.
 */
export class DirectorRequestError extends UpfleetError {
  override name = 'DirectorRequestError';
  override readonly code = 'DIRECTOR_REQUEST';
  readonly errorCode: string | undefined;
  readonly errorMessage: string | undefined;
  constructor(readonly url: string, readonly status: number, readonly body: string) {
    const error = directorError(body);
    super(error ? `the director refused ${url}: ${error.message} (${error.code}, HTTP ${status})` : `${url}: HTTP ${status} ${body.slice(0, 200)}`);
    this.errorCode = error?.code;
    this.errorMessage = error?.message;
  }
}

function directorError(body: string): { code: string; message: string } | undefined {
  try {
    const e = (JSON.parse(body) as { error?: { code?: unknown; message?: unknown } } | null)?.error;
    return typeof e?.code === 'string' && typeof e.message === 'string' ? { code: e.code, message: e.message.slice(0, 300) } : undefined;
  } catch {
    return undefined;
  }
}

/** A secondary's serial port (config `field`) that cannot be opened. */
export class SerialPortError extends UpfleetError {
  override name = 'SerialPortError';
  override readonly code = 'SERIAL_PORT';
  constructor(readonly ecuSerial: string, readonly field: string, readonly path: string, options: { cause: unknown }) {
    super(`ECU ${ecuSerial}: cannot open serial port ${path} (${field}): ${(options.cause as Error)?.message ?? String(options.cause)}`, options);
  }
}

/** The persisted state machine hit a state/event pair the table does not have: a bug. */
export class TransitionError extends UpfleetError {
  override name = 'TransitionError';
  override readonly code = 'TRANSITION';
  constructor(readonly state: string, readonly event: string) {
    super(`no transition from state "${state}" on event "${event}"`);
  }
}

/** More transitions in one cycle than any legal path takes: a state loop. */
export class StateLoopError extends UpfleetError {
  override name = 'StateLoopError';
  override readonly code = 'STATE_LOOP';
  constructor(readonly limit: number, readonly trace: readonly string[]) {
    super(`more than ${limit} transitions in one cycle: ${trace.slice(-6).join(' -> ')}`);
  }
}

/**
 * The agent cut its cycle short (Agent.close with `abandonCycle`) in `state`: nothing after
 * that state was persisted, as after a power loss during its step.
 */
export class CycleAbandonedError extends UpfleetError {
  override name = 'CycleAbandonedError';
  override readonly code = 'CYCLE_ABANDONED';
  constructor(readonly state: string) {
    super(`cycle abandoned in state ${state}`);
  }
}

/**
 * A request ended because the agent abandoned its cycle. A transport failure like any other,
 * so an image download keeps its partial file for the next start to resume.
 */
export class RequestAbandonedError extends DownloadError {
  override name = 'RequestAbandonedError';
  override readonly code = 'REQUEST_ABANDONED';
  constructor(readonly url: string) {
    super(`${url}: abandoned (the agent is closing)`);
  }
}

/** A target larger than the device accepts (`limits.maxImageBytes`): refused before any download. */
export class ImageTooLargeError extends RepositoryError {
  override name = 'ImageTooLargeError';
  override readonly code = 'IMAGE_TOO_LARGE';
  constructor(readonly target: string, readonly length: number, readonly limit: number) {
    super(`${target} is ${length} bytes, the device accepts at most ${limit}`);
  }
}

/** Another agent daemon runs for this storage directory: its control socket (`socketPath`) answers. */
export class AgentRunningError extends UpfleetError {
  override name = 'AgentRunningError';
  override readonly code = 'AGENT_RUNNING';
  constructor(readonly socketPath: string) {
    super(`another upfleet-agent daemon runs for this device: ${socketPath} answers (one agent per device)`);
  }
}

/** The daemon's control socket (`socketPath`) cannot be bound or used, or answered nothing usable. */
export class ControlSocketError extends UpfleetError {
  override name = 'ControlSocketError';
  override readonly code = 'CONTROL_SOCKET';
  constructor(readonly socketPath: string, readonly reason: string, options?: ErrorOptions) {
    super(`control socket ${socketPath}: ${reason}`, options);
  }
}

/**
 * A command the daemon ran for this process failed there. It keeps the name,
 * code, message and config field of the daemon's typed error (the class itself
 * cannot cross the socket), so the CLI reports it as if it had run here.
 */
export class DaemonError extends UpfleetError {
  override name: string;
  override readonly code: string;
  readonly field: string | undefined;
  constructor(remote: { name?: unknown; code?: unknown; message?: unknown; field?: unknown }) {
    super(typeof remote.message === 'string' ? remote.message : 'the daemon reported an error');
    this.name = typeof remote.name === 'string' ? remote.name : 'DaemonError';
    this.code = typeof remote.code === 'string' ? remote.code : 'DAEMON';
    this.field = typeof remote.field === 'string' ? remote.field : undefined;
  }
}
