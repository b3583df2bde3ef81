/**
 * Changes to devices, assignments and campaigns, for the console's live updates
 * (GET /api/v1/admin/events/stream). Several director processes may write to one
 * store, so changes are derived from the store, never from this process's own
 * events: while anyone listens, one timer per process reads a fingerprint of
 * every watched record (`fleetFingerprints`, the feed's only store read) about
 * once a second, and tells each listener which records changed, appeared or
 * disappeared since the previous read.
 *
 * Watched: every device (status, online, tags, manifest counter, last update),
 * every campaign (status, waves, last update), the open assignments of active
 * devices and every assignment of a campaign that is not over (status, error,
 * per-ECU progress). An assignment that closes drops out of the open set, so
 * its disappearance is a change too.
 */
import type { DirectorStore } from './store.ts';

export interface FleetChange {
  devices: string[];
  assignments: string[];
  campaigns: string[];
}

type Fingerprints = Map<string, string>;

const KINDS = { d: 'devices', a: 'assignments', c: 'campaigns' } as const;

/** Record key (`d:<id>`, `a:<id>`, `c:<id>`) -> what about it a console shows. */
export async function fleetFingerprints(store: DirectorStore): Promise<Fingerprints> {
  const out: Fingerprints = new Map();
  const assignment = (a: { id: string; status: string; errorCode: string | null; updatedAt: string; progress: unknown }) =>
    out.set(`a:${a.id}`, `${a.status}|${a.errorCode}|${a.updatedAt}|${JSON.stringify(a.progress)}`);
  for (const d of await store.listDevices()) {
    out.set(`d:${d.id}`, `${d.status}|${d.online}|${d.tags.join(',')}|${d.manifestCounter}|${d.updatedAt}`);
    if (d.status === 'active') for (const a of await store.openAssignmentsOf(d.id)) assignment(a);
  }
  for (const c of await store.listCampaigns()) {
    out.set(`c:${c.id}`, `${c.status}|${c.wavesLaunched}|${c.updatedAt}`);
    if (c.status !== 'completed' && c.status !== 'aborted' && c.status !== 'draft') for (const a of await store.assignmentsOfCampaign(c.id)) assignment(a);
  }
  return out;
}

/** What differs between two fingerprint maps, or undefined when nothing does. */
export function diffFingerprints(before: Fingerprints, after: Fingerprints): FleetChange | undefined {
  const change: FleetChange = { devices: [], assignments: [], campaigns: [] };
  let any = false;
  const note = (key: string) => {
    change[KINDS[key[0] as keyof typeof KINDS]].push(key.slice(2));
    any = true;
  };
  for (const [key, value] of after) if (before.get(key) !== value) note(key);
  for (const key of before.keys()) if (!after.has(key)) note(key);
  return any ? change : undefined;
}

export type ChangeListener = (change: FleetChange) => void;

export class ChangeFeed {
  readonly #listeners = new Set<ChangeListener>();
  #last: Fingerprints | undefined;
  #timer: NodeJS.Timeout | undefined;
  #reading = false;

  /** A tick never overlaps the one before (a read may take longer than the interval). */
  constructor(
    private readonly read: () => Fingerprints | Promise<Fingerprints>,
    private readonly intervalMs = 1000,
    private readonly onError: (error: unknown) => void = () => {},
  ) {}

  /** Starts the timer with the first listener. @returns the function that unsubscribes */
  subscribe(listener: ChangeListener): () => void {
    if (this.#listeners.size === 0) {
      this.#last = undefined; // the first tick reads the baseline
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
    this.#last = undefined;
    this.#listeners.clear();
  }

  async #tick(): Promise<void> {
    if (this.#reading) return;
    this.#reading = true;
    let next: Fingerprints;
    try {
      next = await this.read();
    } catch (error) {
      this.onError(error); // a busy or closing store: try again next tick
      return;
    } finally {
      this.#reading = false;
    }
    if (this.#listeners.size === 0) return; // closed meanwhile
    const change = this.#last && diffFingerprints(this.#last, next);
    this.#last = next;
    if (change) for (const l of this.#listeners) l(change);
  }
}
