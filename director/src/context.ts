/**
 * What the director's services share: the store, the device repositories, the
 * image repository, the clock, the logger and metrics, and the notifier.
 * `commit(fn)` runs fn in one store transaction, then sends the notifications
 * fn queued, so a device is never told about metadata that was rolled back.
 * Nested commits (a campaign wave creating assignments, each manifest of a group
 * commit) are savepoints of the outermost one, and only the outermost sends; a
 * nested commit that throws takes back the notifications it queued. Commits run concurrently (each
 * request, each MQTT message): the queue belongs to the async context of its
 * outermost commit, and is emptied whenever the store runs fn again (a retried
 * transaction queues afresh). Work to start once the change is committed (the rest
 * of a campaign wave's launch) is queued the same way with `afterCommit`.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { Logger } from 'pino';
import type { FoundTarget, TargetFile } from '@upfleet/core';
import type { DeviceRepository } from './device-repo.ts';
import type { DirectorStore, RepoState } from './store.ts';
import type { DirectorMetrics } from './metrics.ts';

/** The image repository as the director sees it: verified targets by name. */
export interface ImageRepository {
  /**
   * Refreshes the verified metadata when it is older than the cache period, then looks up `name`.
   * @throws RepositoryError or DownloadError when the image repository cannot be verified or reached
   */
  findTarget(name: string, hardwareId?: string): Promise<TargetFile | undefined>;
  /**
   * Every target the image repository lists, with the role that signed it (core Updater.listTargets).
   * @throws as findTarget
   */
  listTargets(): Promise<FoundTarget[]>;
}

export type Notifier = (deviceId: string, state: RepoState) => void;

export class Context {
  /** The notifications queued by the outermost commit of this async context. */
  readonly #commits = new AsyncLocalStorage<{ queued: Map<string, RepoState>; after: Map<string, () => void>; open: boolean }>();

  #current() {
    const c = this.#commits.getStore();
    return c?.open ? c : undefined;
  }

  constructor(
    readonly store: DirectorStore,
    readonly repo: DeviceRepository,
    readonly imageRepo: ImageRepository,
    readonly now: () => Date,
    readonly log: Logger,
    readonly metrics: DirectorMetrics,
    public notifier: Notifier | undefined = undefined,
  ) {}

  nowIso(): string {
    return this.now().toISOString();
  }

  /** Queues a notification, sent when the surrounding commit succeeds. */
  queueNotify(deviceId: string, state: RepoState): void {
    const c = this.#current();
    if (!c) throw new Error('queueNotify outside a commit');
    c.queued.set(deviceId, state);
  }

  /**
   * Queues work to start when the surrounding commit succeeds, after its notifications;
   * once per key (later ones replace earlier). fn must not throw: it starts work, it does not await it.
   */
  afterCommit(key: string, fn: () => void): void {
    const c = this.#current();
    if (!c) throw new Error('afterCommit outside a commit');
    c.after.set(key, fn);
  }

  /** Runs fn in a transaction; nested commits join the outermost, which alone sends notifications. */
  async commit<T>(fn: () => Promise<T>): Promise<T> {
    let result: T;
    const outer = this.#current();
    if (outer) {
      // A savepoint: when it rolls back, so do the notifications and after-commit work it queued.
      const queued = new Map(outer.queued);
      const after = new Map(outer.after);
      try {
        return await this.store.transaction(fn);
      } catch (error) {
        outer.queued = queued;
        outer.after = after;
        throw error;
      }
    }
    const c = { queued: new Map<string, RepoState>(), after: new Map<string, () => void>(), open: true };
    try {
      result = await this.#commits.run(c, () => this.store.transaction(async () => {
        c.queued.clear();
        c.after.clear();
        return fn();
      }));
    } finally {
      c.open = false;
    }
    for (const [deviceId, state] of c.queued) this.notifier?.(deviceId, state);
    for (const fn of c.after.values()) fn();
    return result;
  }
}
