/**
 * Manifest verification on worker threads, so signature checks use every core
 * while the main thread keeps the transports and the store. Each worker runs
 * the one implementation of the rules (manifest-checks.ts via verify-thread.ts);
 * a pool of size 0 runs them inline on the main thread.
 * Invariants:
 * - Bounded: at most `maxQueued` jobs wait or run; one more is refused at once
 *   with VerifierUnavailableError VERIFIER_BUSY (back-pressure: HTTP 503, MQTT
 *   redelivery), never queued without limit.
 * - A worker that dies (crash, terminate) is replaced; the jobs it held run once
 *   more on another worker, and a job whose second worker dies too is refused
 *   with VerifierUnavailableError VERIFIER_UNAVAILABLE. A job is only ever
 *   resolved by a worker's answer for it: nothing is accepted unverified.
 * - Each job carries its own copy of the bytes, never a view of a larger buffer
 *   (structured clone would copy all of that buffer), and of the view only what
 *   the checks read. The checked manifest comes back as a clone: cheaper here than
 *   parsing the bytes again (about 10 µs against 16).
 */
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { VerifierUnavailableError } from './errors.ts';
import { checkManifest, checkViewOf, KeyCache, type CheckedManifest, type IngestionView } from './manifest-checks.ts';
import { fromWire, type Answer, type Job } from './verify-wire.ts';

export interface VerifyPoolOptions {
  /** Worker threads; 0 verifies inline. Default: the machine's cores. */
  size?: number;
  /** Jobs waiting or running at most. */
  maxQueued?: number;
}

/** Jobs a worker holds at once: enough that it never idles waiting for the main thread. */
const PER_WORKER = 16;
const DEFAULT_MAX_QUEUED = 1024;
/** Imported by package name at run time, so the bundle (scripts/launch.mjs) keeps it a file of its own. */
const THREAD_MODULE = ['@upfleet', 'director', 'verify-thread.mjs'].join('/');

interface Pending {
  job: Job;
  attempts: number;
  resolve: (c: CheckedManifest) => void;
  reject: (e: Error) => void;
}

interface Slot {
  worker: Worker;
  ready: Promise<void>;
  isReady: boolean;
  held: Map<number, Pending>;
}

export class VerifyPool {
  readonly size: number;
  readonly #maxQueued: number;
  readonly #inlineKeys = new KeyCache();
  #slots: Slot[] = [];
  #waiting: Pending[] = [];
  #count = 0;
  #nextId = 1;
  #closed = false;
  #threadUrl: URL | undefined;

  private constructor(size: number, maxQueued: number) {
    this.size = size;
    this.#maxQueued = maxQueued;
  }

  /** A pool of size 0: the rules run inline on the calling thread. */
  static inline(): VerifyPool {
    return new VerifyPool(0, DEFAULT_MAX_QUEUED);
  }

  /** Starts the workers and waits until each has loaded the rules. */
  static async start(options: VerifyPoolOptions = {}): Promise<VerifyPool> {
    const pool = new VerifyPool(Math.max(0, options.size ?? availableParallelism()), options.maxQueued ?? DEFAULT_MAX_QUEUED);
    if (pool.size > 0) {
      pool.#threadUrl = ((await import(THREAD_MODULE)) as { threadUrl: URL }).threadUrl;
      for (let i = 0; i < pool.size; i++) pool.#slots.push(pool.#spawn());
      try {
        await Promise.all(pool.#slots.map((s) => s.ready));
      } catch (error) {
        await pool.close();
        throw error;
      }
    }
    return pool;
  }

  /** Workers alive now (one that died while loading is replaced a second later). */
  get workers(): number {
    return this.#slots.length;
  }

  /** Jobs waiting or running now. */
  get queued(): number {
    return this.#count;
  }

  /**
   * Checks a manifest against `view` (manifest-checks.ts checkManifest).
   * @throws ManifestRejectedError, ForbiddenError, NotFoundError (the refusal), VerifierUnavailableError
   */
  check(deviceId: string, bytes: Uint8Array, view: IngestionView): Promise<CheckedManifest> {
    if (this.size === 0) {
      try {
        return Promise.resolve(checkManifest(deviceId, bytes, view, this.#inlineKeys));
      } catch (error) {
        return Promise.reject(error as Error);
      }
    }
    if (this.#closed) return Promise.reject(new VerifierUnavailableError('crashed', 'the verify pool is closed'));
    if (this.#count >= this.#maxQueued) return Promise.reject(new VerifierUnavailableError('busy', `${this.#count} manifests are being verified`));
    this.#count++;
    return new Promise<CheckedManifest>((resolve, reject) => {
      // A copy of exactly these bytes (Buffer#slice would be a view of its whole pool).
      const own = new Uint8Array(bytes);
      const job: Job = { id: this.#nextId++, deviceId, bytes: own, view: checkViewOf(view) };
      this.#waiting.push({ job, attempts: 0, resolve, reject });
      this.#dispatchSoon();
    });
  }

  /** Kills one worker as a crash would (tests; an operator's diagnosis): its jobs go to another. */
  async killWorker(index: number): Promise<void> {
    const slot = this.#slots[index];
    if (slot) await slot.worker.terminate();
  }

  async close(): Promise<void> {
    this.#closed = true;
    const slots = this.#slots;
    this.#slots = [];
    await Promise.all(slots.map((s) => s.worker.terminate()));
    const unanswered = [...this.#waiting.splice(0), ...slots.flatMap((s) => [...s.held.values()])];
    for (const p of unanswered) this.#settle(() => p.reject(new VerifierUnavailableError('crashed', 'the verify pool closed')));
  }

  #spawn(): Slot {
    // No inherited --import flags: the entry loads what it needs (verify-thread.mjs).
    const worker = new Worker(this.#threadUrl!, { workerData: { upfleetVerifyThread: true }, execArgv: [] });
    worker.unref();
    let ready!: () => void;
    let failed!: (e: Error) => void;
    const slot: Slot = { worker, held: new Map(), isReady: false, ready: new Promise<void>((res, rej) => ((ready = res), (failed = rej))) };
    slot.ready.catch(() => {});
    worker.on('message', (m: Answer[] | { ready: true }) => {
      if (!Array.isArray(m)) {
        slot.isReady = true;
        return ready();
      }
      for (const a of m) {
        const p = slot.held.get(a.id);
        if (!p) continue;
        slot.held.delete(a.id);
        this.#settle(() => (a.ok ? p.resolve(a.checked) : p.reject(fromWire(a.error))));
      }
      this.#dispatch();
    });
    worker.on('error', (e) => failed(e));
    worker.on('exit', (code) => {
      failed(new Error(`verify worker exited (${code}) before it was ready`));
      this.#lost(slot, code);
    });
    return slot;
  }

  /** A worker died: its jobs run again elsewhere (once), the worker is replaced. */
  #lost(slot: Slot, code: number): void {
    const i = this.#slots.indexOf(slot);
    if (i < 0) return; // closing
    const orphans = [...slot.held.values()];
    slot.held.clear();
    if (slot.isReady) {
      this.#slots[i] = this.#spawn();
    } else {
      // It died while loading: try again a little later rather than in a tight loop.
      this.#slots.splice(i, 1);
      setTimeout(() => {
        if (!this.#closed) {
          this.#slots.push(this.#spawn());
          this.#dispatch();
        }
      }, 1000).unref();
    }
    for (const p of orphans) {
      p.attempts++;
      if (p.attempts >= 2) {
        this.#settle(() => p.reject(new VerifierUnavailableError('crashed', `the verify worker died twice while checking it (exit ${code})`)));
      } else {
        this.#waiting.unshift(p);
      }
    }
    this.#dispatch();
  }

  #settle(fn: () => void): void {
    this.#count--;
    fn();
  }

  #dispatchQueued = false;

  /** Dispatches once the current turn's jobs are all queued, so they travel together. */
  #dispatchSoon(): void {
    if (this.#dispatchQueued) return;
    this.#dispatchQueued = true;
    queueMicrotask(() => {
      this.#dispatchQueued = false;
      this.#dispatch();
    });
  }

  /**
   * Hands waiting jobs to the least busy workers, up to PER_WORKER each, in one message per
   * worker: every message wakes a thread, which costs about as much as a check's parsing.
   */
  #dispatch(): void {
    const batches = new Map<Slot, Job[]>();
    while (this.#waiting.length > 0) {
      let best: Slot | undefined;
      for (const s of this.#slots) if (s.held.size < PER_WORKER && (!best || s.held.size < best.held.size)) best = s;
      if (!best) break;
      const p = this.#waiting.shift()!;
      best.held.set(p.job.id, p);
      let batch = batches.get(best);
      if (!batch) batches.set(best, (batch = []));
      batch.push(p.job);
    }
    // Copied, not transferred: the bytes stay here for a retry if the worker dies.
    for (const [slot, jobs] of batches) slot.worker.postMessage(jobs);
  }
}
