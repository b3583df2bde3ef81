/**
 * The systemd service protocol (sd_notify) for `upfleet-agent run` under
 * `Type=notify`: READY=1 once the daemon serves, WATCHDOG=1 while its main
 * loop is healthy, STOPPING=1 on the way out.
 *
 * Node cannot send Unix datagrams, so each message is one run of
 * `systemd-notify` (the unit needs `NotifyAccess=all`). `systemd-notify` waits
 * until the manager has processed the message (its BARRIER), so the manager
 * still finds the sender in the service's cgroup: without that wait, a
 * message from a process that already exited can be dropped.
 *
 * Invariants:
 * - Without NOTIFY_SOCKET nothing is run (not under systemd, or not notify).
 * - Messages go out one at a time, in order; a WATCHDOG=1 while one waits is
 *   dropped (the next interval sends another).
 * - The watchdog interval is half of WATCHDOG_USEC, and only when WATCHDOG_PID
 *   is unset or this process.
 * - `Liveness` decides "healthy": the loop is idle between cycles, or a cycle
 *   showed activity (a transition, a progress event) within the stall limit.
 *   A blocked event loop sends nothing at all.
 */
import { spawn } from 'node:child_process';

export interface ServiceNotifier {
  /** Half of WATCHDOG_USEC, when the watchdog is on for this process. */
  readonly watchdogIntervalMs: number | undefined;
  ready(status?: string): void;
  watchdog(): void;
  stopping(): void;
  /** Resolves once every message sent so far went out (or failed). */
  flush(): Promise<void>;
}

export interface NotifyOptions {
  env: NodeJS.ProcessEnv;
  pid: number;
  /** Where a failed `systemd-notify` is reported (once per kind of message). */
  warn: (msg: string, fields: Record<string, unknown>) => void;
}

/** The notifier for this process, or undefined when systemd does not listen. */
export function serviceNotifier(o: NotifyOptions): ServiceNotifier | undefined {
  const socket = o.env.NOTIFY_SOCKET;
  if (!socket) return undefined;
  const usec = Number(o.env.WATCHDOG_USEC);
  const forUs = o.env.WATCHDOG_PID === undefined || Number(o.env.WATCHDOG_PID) === o.pid;
  const watchdogIntervalMs = Number.isFinite(usec) && usec > 0 && forUs ? Math.max(1, Math.floor(usec / 2000)) : undefined;
  let chain: Promise<void> = Promise.resolve();
  let watchdogWaiting = false;
  const warned = new Set<string>();
  const send = (assignments: string[]): Promise<void> =>
    (chain = chain.then(
      () =>
        new Promise<void>((resolve) => {
          const child = spawn('systemd-notify', assignments, { env: { ...o.env, NOTIFY_SOCKET: socket }, stdio: ['ignore', 'ignore', 'pipe'] });
          let stderr = '';
          child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
          const failed = (reason: string) => {
            const kind = assignments[0]!;
            if (!warned.has(kind)) o.warn('systemd-notify failed', { message: kind, reason });
            warned.add(kind);
          };
          child.once('error', (e) => (failed(e.message), resolve()));
          child.once('close', (code) => {
            if (code !== 0) failed(stderr.trim() || `exit ${code}`);
            resolve();
          });
        }),
    ));
  return {
    watchdogIntervalMs,
    ready: (status) => void send(['READY=1', ...(status ? [`STATUS=${status}`] : [])]),
    watchdog: () => {
      if (watchdogWaiting) return;
      watchdogWaiting = true;
      void send(['WATCHDOG=1']).then(() => (watchdogWaiting = false));
    },
    stopping: () => void send(['STOPPING=1']),
    flush: () => chain,
  };
}

/** Whether the run loop is healthy: idle, or busy with activity within `stallMs`. */
export class Liveness {
  #lastBeat: number;
  #idle = true;

  constructor(
    private readonly stallMs: number,
    now: number,
  ) {
    this.#lastBeat = now;
  }

  /** A cycle starts (busy until `idle`). */
  busy(now: number): void {
    this.#idle = false;
    this.#lastBeat = now;
  }

  /** The cycle showed activity. */
  beat(now: number): void {
    this.#lastBeat = now;
  }

  /** Between cycles. */
  idle(): void {
    this.#idle = true;
  }

  healthy(now: number): boolean {
    return this.#idle || now - this.#lastBeat <= this.stallMs;
  }
}
