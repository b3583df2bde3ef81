/**
 * Group commit: several changes in one store transaction, each still atomic in
 * effect. A change runs in its own savepoint of the shared transaction, so one
 * that throws a typed refusal (an UpfleetError: a replay found under the lock, a
 * stale nonce) is rolled back alone and the others commit. Every caller learns
 * its outcome only after the transaction committed (or failed): nothing is
 * acknowledged before it is durable. When the shared transaction itself fails
 * (the store, or an untyped error that may have broken it), each change of the
 * batch runs again in a transaction of its own, so one bad change never takes
 * the others down.
 * Changes run in the order they were submitted. A batch starts once nothing
 * more is on its way (`pending`, the manifests still being verified), or it is
 * full, or maxWaitMs after its first change; while one batch commits, the next
 * one gathers.
 */
import { UpfleetError } from '@upfleet/core';

type Commit = <T>(fn: () => Promise<T>) => Promise<T>;

interface Item {
  fn: () => Promise<unknown>;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

export interface GroupCommitOptions {
  /**
   * Changes at most per transaction (default 32: each is a savepoint, and PostgreSQL
   * slows every session down once one transaction holds more than 64 subtransactions).
   */
  maxBatch?: number;
  /** How many more changes are on their way (manifests still being verified): the batch waits for them... */
  pending?: () => number;
  /** ...but never longer than this after its first change. */
  maxWaitMs?: number;
}

export class GroupCommit {
  #queue: Item[] = [];
  #draining = false;
  #timer: NodeJS.Timeout | undefined;
  readonly #maxBatch: number;
  readonly #pending: () => number;
  readonly #maxWaitMs: number;

  /** `commit` runs fn in a transaction, and nested calls in savepoints of it (Context.commit). */
  constructor(private readonly commit: Commit, options: GroupCommitOptions = {}) {
    this.#maxBatch = options.maxBatch ?? 32;
    this.#pending = options.pending ?? (() => 0);
    this.#maxWaitMs = options.maxWaitMs ?? 4;
  }

  /** Runs fn in the next batch's transaction; settles once that transaction has committed. */
  run<T>(fn: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#queue.push({ fn, resolve: resolve as (v: unknown) => void, reject });
      if (this.#draining) return; // the running drain takes it after the current batch
      if (this.#queue.length >= this.#maxBatch || this.#pending() === 0) {
        this.#start();
      } else {
        this.#timer ??= setTimeout(() => this.#start(), this.#maxWaitMs);
      }
    });
  }

  /** Starts draining after the I/O of this event loop turn (changes ready together commit together). */
  #start(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#draining) return;
    this.#draining = true;
    setImmediate(() => void this.#drain());
  }

  async #drain(): Promise<void> {
    try {
      while (this.#queue.length > 0) {
        const batch = this.#queue.splice(0, this.#maxBatch);
        let outcomes: Outcome[];
        try {
          outcomes = batch.length === 1 ? [await this.#alone(batch[0]!)] : await this.commit(() => this.#together(batch));
        } catch {
          outcomes = [];
          for (const item of batch) outcomes.push(await this.#alone(item));
        }
        outcomes.forEach((o, i) => (o.ok ? batch[i]!.resolve(o.value) : batch[i]!.reject(o.error)));
      }
    } finally {
      this.#draining = false;
    }
  }

  /** The batch in the current transaction, each change in a savepoint; an untyped error fails the whole transaction. */
  async #together(batch: Item[]): Promise<Outcome[]> {
    const outcomes: Outcome[] = [];
    for (const item of batch) {
      try {
        outcomes.push({ ok: true, value: await this.commit(item.fn) });
      } catch (error) {
        if (!(error instanceof UpfleetError) || isStoreFailure(error)) throw error;
        outcomes.push({ ok: false, error });
      }
    }
    return outcomes;
  }

  async #alone(item: Item): Promise<Outcome> {
    try {
      return { ok: true, value: await this.commit(item.fn) };
    } catch (error) {
      return { ok: false, error };
    }
  }
}

/** A failure of the database rather than a refusal of the change: the transaction may be broken. */
function isStoreFailure(error: UpfleetError): boolean {
  return error.code === 'STORE_UNAVAILABLE';
}
