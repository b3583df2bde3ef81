/**
 * What the director's services share: the store, the device repositories, the
 * image repository, the clock, the logger and metrics, and the notifier.
 * `commit(fn)` runs fn in one store transaction, then sends the notifications
 * fn queued, so a device is never told about metadata that was rolled back.
 * Nested commits (a campaign wave creating assignments) are savepoints of the
 * outermost one, and only the outermost sends.
 */
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
  #queued = new Map<string, RepoState>();
  #depth = 0;

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
    this.#queued.set(deviceId, state);
  }

  /** Runs fn in a transaction; nested commits join the outermost, which alone sends notifications. */
  commit<T>(fn: () => T): T {
    this.#depth++;
    let result: T;
    try {
      result = this.store.transaction(fn);
    } catch (error) {
      if (this.#depth === 1) this.#queued.clear();
      throw error;
    } finally {
      this.#depth--;
    }
    if (this.#depth > 0) return result;
    const queued = [...this.#queued];
    this.#queued.clear();
    for (const [deviceId, state] of queued) this.notifier?.(deviceId, state);
    return result;
  }
}
