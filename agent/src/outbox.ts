/**
 * The on-disk outbox: manifests and progress events wait in SQLite until the
 * director acknowledges them (an MQTT QoS 1 PUBACK or an HTTP 2xx). They
 * survive restarts and broker outages, and go out in the order queued.
 *
 * Invariants:
 * - A row is deleted only after an acknowledgement. A message the director
 *   refuses for good (a 4xx other than auth) is kept, marked rejected with the
 *   reason, and no longer sent: nothing is dropped silently.
 * - `enqueue` can run inside the runner's state transaction (see `enqueueLater`).
 * - `enqueueLatest` keeps one waiting message per key (the latest progress of
 *   one ECU's phase), so a long offline period does not fill the outbox with
 *   progress nobody needs any more; the new message goes to the end of the queue.
 */
import type { Db } from './db.ts';

export type OutboxKind = 'manifest' | 'progress';

export interface OutboxRow {
  id: number;
  kind: OutboxKind;
  payload: string;
  attempts: number;
}

/** What the sender made of one message. */
/** `error`: the typed transport error behind a retry, when there is one. */
export type Delivery = { outcome: 'ack' } | { outcome: 'retry'; reason: string; error?: Error } | { outcome: 'reject'; reason: string };

export class Outbox {
  #insert;
  #replace;
  #pending;
  #delete;
  #attempt;
  #reject;
  #counts;
  #rejected;

  constructor(db: Db) {
    db.exec(`CREATE TABLE IF NOT EXISTS outbox_rejected (id INTEGER PRIMARY KEY, kind TEXT, payload TEXT, reason TEXT, rejected_at TEXT)`);
    // Added after the first release: an older database gains the column in place.
    if (!db.prepare<[], { name: string }>("SELECT name FROM pragma_table_info('outbox')").all().some((c) => c.name === 'coalesce_key')) {
      db.exec('ALTER TABLE outbox ADD COLUMN coalesce_key TEXT');
    }
    this.#insert = db.prepare<[string, string, string]>('INSERT INTO outbox (kind, payload, created_at) VALUES (?, ?, ?)');
    const insertKeyed = db.prepare<[string, string, string, string]>('INSERT INTO outbox (kind, payload, created_at, coalesce_key) VALUES (?, ?, ?, ?)');
    const deleteKeyed = db.prepare<[string, string]>('DELETE FROM outbox WHERE kind = ? AND coalesce_key = ?');
    this.#replace = db.transaction((kind: OutboxKind, key: string, text: string) => {
      deleteKeyed.run(kind, key);
      insertKeyed.run(kind, text, new Date().toISOString(), key);
    });
    this.#pending = db.prepare<[number], OutboxRow>('SELECT id, kind, payload, attempts FROM outbox ORDER BY id LIMIT ?');
    this.#delete = db.prepare<[number]>('DELETE FROM outbox WHERE id = ?');
    this.#attempt = db.prepare<[number]>('UPDATE outbox SET attempts = attempts + 1 WHERE id = ?');
    const moveRejected = db.prepare<[string, string, number]>(
      `INSERT INTO outbox_rejected (id, kind, payload, reason, rejected_at) SELECT id, kind, payload, ?, ? FROM outbox WHERE id = ?`,
    );
    this.#reject = db.transaction((id: number, reason: string) => {
      moveRejected.run(reason, new Date().toISOString(), id);
      this.#delete.run(id);
    });
    this.#counts = db.prepare<[], { kind: string; n: number }>('SELECT kind, COUNT(*) AS n FROM outbox GROUP BY kind');
    this.#rejected = db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM outbox_rejected');
  }

  enqueue(kind: OutboxKind, payload: unknown): void {
    this.#insert.run(kind, JSON.stringify(payload), new Date().toISOString());
  }

  /** Enqueues, replacing the waiting message of the same kind and key, if any. */
  enqueueLatest(kind: OutboxKind, key: string, payload: unknown): void {
    this.#replace(kind, key, JSON.stringify(payload));
  }

  /** A closure that enqueues, for a runner commit (same transaction as the next state). */
  enqueueLater(kind: OutboxKind, payload: unknown): () => void {
    const text = JSON.stringify(payload);
    return () => this.#insert.run(kind, text, new Date().toISOString());
  }

  pending(limit = 100): OutboxRow[] {
    return this.#pending.all(limit);
  }

  counts(): { manifest: number; progress: number; rejected: number } {
    const out = { manifest: 0, progress: 0, rejected: this.#rejected.get()!.n };
    for (const r of this.#counts.all()) out[r.kind as OutboxKind] = r.n;
    return out;
  }

  /**
   * Sends pending messages in order until one cannot be delivered now.
   * @returns how many were acknowledged, and the reason it stopped, if it did.
   */
  async flush(send: (row: OutboxRow) => Promise<Delivery>): Promise<{ acked: number; stoppedBy?: string; error?: Error }> {
    let acked = 0;
    for (;;) {
      const rows = this.pending(50);
      if (rows.length === 0) return { acked };
      for (const row of rows) {
        this.#attempt.run(row.id);
        const d = await send(row);
        if (d.outcome === 'ack') {
          this.#delete.run(row.id);
          acked++;
        } else if (d.outcome === 'reject') {
          this.#reject(row.id, d.reason);
        } else {
          return { acked, stoppedBy: d.reason, ...(d.error && { error: d.error }) };
        }
      }
    }
  }
}
