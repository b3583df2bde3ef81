/**
 * Trusted metadata kept byte for byte in SQLite, one namespace per repository
 * ('director', 'image'). A write is one SQLite transaction: atomic, so a power loss
 * leaves the old or the new bytes, never a mix. Names are the core updater's store
 * names (`<quoted role>.json`).
 *
 * A durable write (root, timestamp, snapshot: the rollback state) commits with
 * the connection's synchronous=FULL: it is on disk when the call returns. A write
 * the updater marks `durable: false` (a targets role, re-verified against snapshot
 * whenever it loads) commits with synchronous=NORMAL: no fsync of its own, so a
 * search through 50 delegated roles costs no 50 syncs. In WAL mode such a commit is
 * still atomic; a power cut may lose it (the role is then fetched again), and the
 * next durable commit, or a checkpoint, syncs the log with it, so it never outlives
 * a durable write made after it.
 *
 * Every root accepted is also kept as `N.root.json`: a secondary pinned at an
 * older root needs each version in between to follow a rotation (TUF 5.3), and
 * the metadata bundle sent to secondaries is every name in the store.
 */
import { Metadata, type MetadataStore } from '@upfleet/core';
import type { Db } from './db.ts';

/** SQLite's synchronous=NORMAL: in WAL mode, a commit without a sync. */
const NORMAL = 1;

export class SqliteMetadataStore implements MetadataStore {
  #read;
  #write;
  #list;
  #remove;
  #writeRoot;
  #db;

  constructor(db: Db, readonly repo: string) {
    this.#db = db;
    this.#read = db.prepare<[string, string], { bytes: Buffer }>('SELECT bytes FROM metadata WHERE repo = ? AND name = ?');
    this.#write = db.prepare<[string, string, Buffer]>(
      'INSERT INTO metadata (repo, name, bytes) VALUES (?, ?, ?) ON CONFLICT(repo, name) DO UPDATE SET bytes = excluded.bytes',
    );
    this.#list = db.prepare<[string], { name: string }>('SELECT name FROM metadata WHERE repo = ? ORDER BY name');
    this.#remove = db.prepare<[string, string]>('DELETE FROM metadata WHERE repo = ? AND name = ?');
    this.#writeRoot = db.transaction((version: number, bytes: Buffer) => {
      this.#write.run(this.repo, `${version}.root.json`, bytes);
      this.#write.run(this.repo, 'root.json', bytes);
    });
  }

  /** The stored bytes, or undefined when there are none (the core updater's MetadataStore). */
  async read(name: string): Promise<Uint8Array | undefined> {
    return this.readSync(name);
  }

  async writeAtomic(name: string, bytes: Uint8Array, options?: { durable: boolean }): Promise<void> {
    this.writeSync(name, bytes, options);
  }

  readSync(name: string): Uint8Array | undefined {
    const row = this.#read.get(this.repo, name);
    return row === undefined ? undefined : new Uint8Array(row.bytes.buffer, row.bytes.byteOffset, row.bytes.byteLength);
  }

  /** `durable: false` commits without a sync of its own (see the module comment); roots are always durable. */
  writeSync(name: string, bytes: Uint8Array, options: { durable: boolean } = { durable: true }): void {
    const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (name === 'root.json') this.#writeRoot(Metadata.fromBytes(bytes, 'root').signed.version, buffer);
    else if (options.durable) this.#write.run(this.repo, name, buffer);
    else this.#withoutSync(() => this.#write.run(this.repo, name, buffer));
  }

  /** Runs `write` (one commit) at synchronous=NORMAL, then restores the connection's setting. */
  #withoutSync(write: () => void): void {
    const setting = this.#db.pragma('synchronous', { simple: true }) as number;
    if (setting <= NORMAL) return write();
    this.#db.pragma(`synchronous = ${NORMAL}`);
    try {
      write();
    } finally {
      this.#db.pragma(`synchronous = ${setting}`);
    }
  }

  async remove(name: string): Promise<void> {
    this.removeSync(name);
  }

  removeSync(name: string): void {
    this.#remove.run(this.repo, name);
  }

  names(): string[] {
    return this.#list.all(this.repo).map((r) => r.name);
  }
}
