/**
 * Changes to devices, assignments and campaigns, for the console's live updates
 * (GET /api/v1/admin/events/stream). Several director processes may write to one
 * store, so changes are derived from the store, never from this process's own
 * events: while anyone listens, one timer per process asks the store about once a
 * second for the rows written since its previous read (`DirectorStore.changesSince`,
 * the feed's only store read: an index range over each table's change stamp), and
 * tells each listener their IDs. A tick's cost follows what changed, not the fleet.
 *
 * The first read only takes the cursor. A row the store names again with the same
 * stamp (PostgreSQL re-reads the rows of transactions that were running at the
 * previous read) is not reported twice.
 */
import type { FleetChange } from './admin-records.ts';
import type { ChangeBatch } from './store.ts';

/** The IDs of a batch by kind, leaving out rows `seen` (kind, ID and stamp) at the previous read; undefined when none are left. */
export function changeOf(batch: ChangeBatch, seen: ReadonlySet<string>): FleetChange | undefined {
  const ids = { devices: new Set<string>(), assignments: new Set<string>(), campaigns: new Set<string>() };
  for (const c of batch.changes) if (!seen.has(stampKey(c))) ids[c.kind].add(c.id);
  if (ids.devices.size + ids.assignments.size + ids.campaigns.size === 0) return undefined;
  return { devices: [...ids.devices], assignments: [...ids.assignments], campaigns: [...ids.campaigns] };
}

const stampKey = (c: ChangeBatch['changes'][number]) => `${c.kind}:${c.stamp}:${c.id}`;

export type ChangeListener = (change: FleetChange) => void;

export class ChangeFeed {
  readonly #listeners = new Set<ChangeListener>();
  #cursor: string | undefined;
  #seen = new Set<string>();
  #timer: NodeJS.Timeout | undefined;
  #reading = false;

  /** A tick never overlaps the one before (a read may take longer than the interval). */
  constructor(
    private readonly read: (cursor: string | undefined) => ChangeBatch | Promise<ChangeBatch>,
    private readonly intervalMs = 1000,
    private readonly onError: (error: unknown) => void = () => {},
  ) {}

  /** Starts the timer with the first listener. @returns the function that unsubscribes */
  subscribe(listener: ChangeListener): () => void {
    if (this.#listeners.size === 0) {
      this.#reset(); // the first tick reads the cursor
      void this.#tick();
      this.#timer = setInterval(() => void this.#tick(), this.intervalMs);
      this.#timer.unref();
    }
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
      if (this.#listeners.size === 0) this.close();
    };
  }

  get listeners(): number {
    return this.#listeners.size;
  }

  close(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#reset();
    this.#listeners.clear();
  }

  #reset(): void {
    this.#cursor = undefined;
    this.#seen = new Set();
  }

  async #tick(): Promise<void> {
    if (this.#reading) return;
    this.#reading = true;
    const first = this.#cursor === undefined;
    let batch: ChangeBatch;
    try {
      batch = await this.read(this.#cursor);
    } catch (error) {
      this.onError(error); // a busy or closing store: try again next tick, from the same cursor
      return;
    } finally {
      this.#reading = false;
    }
    if (this.#listeners.size === 0) return; // closed meanwhile
    const change = first ? undefined : changeOf(batch, this.#seen);
    this.#cursor = batch.cursor;
    this.#seen = new Set(batch.changes.map(stampKey));
    if (change) for (const l of this.#listeners) l(change);
  }
}
