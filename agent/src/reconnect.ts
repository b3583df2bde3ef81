/**
 * How the agent retries a lost link (the MQTT broker, the director over HTTP):
 * exponential backoff with full jitter, and one warning per outage.
 *
 * Invariants:
 * - The n-th delay of an outage (n = 0, 1, ...) is uniform in
 *   [0, min(cap, base * factor^n)) ("full jitter"), so a fleet that lost the
 *   same server does not come back in lock step; a success resets n.
 * - An outage logs exactly one warning (its first failure, naming the error);
 *   later failures of the same outage log at debug; the first success after it
 *   logs one info line with the outage's length and attempt count.
 * - The random source and the clock are injected, so tests are deterministic.
 */

export interface BackoffPolicy {
  baseMs: number;
  factor: number;
  capMs: number;
}

/** 1 s, doubling, at most 5 minutes. */
export const RECONNECT_POLICY: BackoffPolicy = Object.freeze({ baseMs: 1000, factor: 2, capMs: 5 * 60 * 1000 });

/** The delay before retry number `attempt` (0-based) of an outage: full jitter over the capped exponential. */
export function backoffDelay(policy: BackoffPolicy, attempt: number, random: () => number): number {
  const ceiling = Math.min(policy.capMs, policy.baseMs * policy.factor ** attempt);
  return Math.floor(random() * ceiling);
}

/** The part of a pino logger the tracker uses. */
export interface OutageLog {
  warn(fields: Record<string, unknown>, msg: string): void;
  debug(fields: Record<string, unknown>, msg: string): void;
  info(fields: Record<string, unknown>, msg: string): void;
}

export interface ReconnectOptions {
  /** What is reached, for the log lines ("mqtt broker", "director"). */
  link: string;
  log: OutageLog;
  policy?: BackoffPolicy;
  random?: () => number;
  /** Milliseconds clock for the outage's length. */
  now?: () => number;
}

/** The backoff and log state of one link. */
export class Reconnect {
  readonly #o: Required<ReconnectOptions>;
  #failures = 0;
  #since: number | undefined;

  constructor(options: ReconnectOptions) {
    this.#o = { policy: RECONNECT_POLICY, random: Math.random, now: Date.now, ...options };
  }

  /** Whether the link is down (a failure since the last success). */
  get down(): boolean {
    return this.#since !== undefined;
  }

  /** Records a failed attempt; returns how long to wait before the next one (ms). */
  failed(error: Error): number {
    const delayMs = backoffDelay(this.#o.policy, this.#failures, this.#o.random);
    this.#failures++;
    const fields = { link: this.#o.link, error: error.message, code: (error as { code?: unknown }).code, attempt: this.#failures, delayMs };
    if (this.#since === undefined) {
      this.#since = this.#o.now();
      this.#o.log.warn(fields, `${this.#o.link} unreachable; retrying with backoff`);
    } else {
      this.#o.log.debug(fields, `${this.#o.link} still unreachable`);
    }
    return delayMs;
  }

  /** Records a success: ends the outage (one info line) and resets the backoff. */
  succeeded(): void {
    if (this.#since !== undefined) {
      const outageMs = this.#o.now() - this.#since;
      this.#o.log.info({ link: this.#o.link, outageMs, attempts: this.#failures }, `${this.#o.link} reachable again after ${(outageMs / 1000).toFixed(1)} s`);
    }
    this.#since = undefined;
    this.#failures = 0;
  }
}
