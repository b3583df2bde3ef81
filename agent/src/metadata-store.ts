/**
 * Trusted metadata kept byte for byte in SQLite, one namespace per repository
 * ('director', 'image'). A write is one SQLite transaction: atomic and durable
 * (WAL, synchronous=FULL), so a power loss leaves the old or the new bytes,
 * never a mix.
 */
import type { Db } from './db.ts';

export class SqliteMetadataStore {
  #read;
  #write;
  #list;
  #remove;

  constructor(db: Db, readonly repo: string) {
    this.#read = db.prepare<[string, string], { bytes: Buffer }>('SELECT bytes FROM metadata WHERE repo = ? AND name = ?');
    this.#write = db.prepare<[string, string, Buffer]>(
      'INSERT INTO metadata (repo, name, bytes) VALUES (?, ?, ?) ON CONFLICT(repo, name) DO UPDATE SET bytes = excluded.bytes',
    );
    this.#list = db.prepare<[string], { name: string }>('SELECT name FROM metadata WHERE repo = ? ORDER BY name');
    this.#remove = db.prepare<[string, string]>('DELETE FROM metadata WHERE repo = ? AND name = ?');
  }

  /** The stored bytes, or undefined when there are none. */
  read(name: string): Uint8Array | undefined {
    const row = this.#read.get(this.repo, name);
    return row === undefined ? undefined : new Uint8Array(row.bytes.buffer, row.bytes.byteOffset, row.bytes.byteLength);
  }

  writeAtomic(name: string, bytes: Uint8Array): void {
    this.#write.run(this.repo, name, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  }

  remove(name: string): void {
    this.#remove.run(this.repo, name);
  }

  names(): string[] {
    return this.#list.all(this.repo).map((r) => r.name);
  }
}
