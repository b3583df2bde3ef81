/**
 * Trusted metadata kept byte for byte in SQLite, one namespace per repository
 * ('director', 'image'). A write is one SQLite transaction: atomic and durable
 * (WAL, synchronous=FULL), so a power loss leaves the old or the new bytes,
 * never a mix. Names are the core updater's store names (`<quoted role>.json`).
 *
 * Every root accepted is also kept as `N.root.json`: a secondary pinned at an
 * older root needs each version in between to follow a rotation (TUF 5.3), and
 * the metadata bundle sent to secondaries is every name in the store.
 */
import { Metadata, type MetadataStore } from '@upfleet/core';
import type { Db } from './db.ts';

export class SqliteMetadataStore implements MetadataStore {
  #read;
  #write;
  #list;
  #remove;
  #writeRoot;

  constructor(db: Db, readonly repo: string) {
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

  async writeAtomic(name: string, bytes: Uint8Array): Promise<void> {
    this.writeSync(name, bytes);
  }

  readSync(name: string): Uint8Array | undefined {
    const row = this.#read.get(this.repo, name);
    return row === undefined ? undefined : new Uint8Array(row.bytes.buffer, row.bytes.byteOffset, row.bytes.byteLength);
  }

  writeSync(name: string, bytes: Uint8Array): void {
    const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (name === 'root.json') this.#writeRoot(Metadata.fromBytes(bytes, 'root').signed.version, buffer);
    else this.#write.run(this.repo, name, buffer);
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
