/**
 * The SQLite index of the image repository (better-sqlite3, WAL).
 *
 * Theory of operation: every published metadata file is an immutable row of
 * `files`; `roles` says which file is the current one of each role. Readers
 * answer each request from one statement, so they see the state of one
 * committed transaction. A publish inserts the new files and switches `roles`
 * in one transaction: that COMMIT is the single commit point, and a process
 * killed before it leaves the previous version untouched (SQLite rolls the
 * unfinished transaction back on the next open). `images` lists uploaded
 * blobs (not yet published); `published_targets` lists the (name, hash) pairs
 * that committed metadata made downloadable.
 */
import Database from 'better-sqlite3';
import type { BlobInfo } from './blob-store.ts';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS files (
  name TEXT PRIMARY KEY,
  bytes BLOB NOT NULL,
  sha256 TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS roles (
  name TEXT PRIMARY KEY,
  version INTEGER NOT NULL,
  file TEXT NOT NULL REFERENCES files(name)
);
CREATE TABLE IF NOT EXISTS images (
  sha256 TEXT PRIMARY KEY,
  sha512 TEXT NOT NULL,
  length INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS published_targets (
  name TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  sha512 TEXT NOT NULL,
  length INTEGER NOT NULL,
  PRIMARY KEY (name, sha256)
);
`;

export interface StoredFile {
  name: string;
  bytes: Buffer;
  sha256: string;
}

export interface RoleRow {
  name: string;
  version: number;
  file: string;
}

export class IndexDb {
  readonly db: Database.Database;
  #file;
  #roleFile;
  #roles;
  #image;
  #target;

  constructor(path: string) {
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.pragma('busy_timeout = 10000');
    this.db.exec(SCHEMA);
    this.#file = this.db.prepare<[string], StoredFile>('SELECT name, bytes, sha256 FROM files WHERE name = ?');
    this.#roleFile = this.db.prepare<[string], StoredFile>(
      'SELECT f.name, f.bytes, f.sha256 FROM roles r JOIN files f ON f.name = r.file WHERE r.name = ?',
    );
    this.#roles = this.db.prepare<[], RoleRow>('SELECT name, version, file FROM roles ORDER BY name');
    this.#image = this.db.prepare<[string], BlobInfo>('SELECT sha256, sha512, length FROM images WHERE sha256 = ?');
    this.#target = this.db.prepare<[string, string, string], { sha256: string; length: number }>(
      'SELECT sha256, length FROM published_targets WHERE name = ? AND (sha256 = ? OR sha512 = ?)',
    );
  }

  /** A published metadata file by its served name (`3.targets.json`). */
  file(name: string): StoredFile | undefined {
    return this.#file.get(name);
  }

  /** The current file of a role (`root`, `timestamp`, `targets`, a delegated role...). */
  currentFile(role: string): StoredFile | undefined {
    return this.#roleFile.get(role);
  }

  roles(): RoleRow[] {
    return this.#roles.all();
  }

  /** Names of every published metadata file (`1.root.json`, `7.snapshot.json`, ...). */
  fileNames(): string[] {
    return this.db.prepare<[], { name: string }>('SELECT name FROM files ORDER BY name').all().map((r) => r.name);
  }

  /** Every (name, hash) pair committed metadata ever made downloadable. */
  publishedTargets(): Array<BlobInfo & { name: string }> {
    return this.db.prepare<[], BlobInfo & { name: string }>('SELECT name, sha256, sha512, length FROM published_targets ORDER BY name').all();
  }

  /** Runs `fn` in one read transaction: every statement in it sees the same commit. */
  readTransaction<T>(fn: () => T): T {
    return this.db.transaction(fn).deferred();
  }

  image(sha256: string): BlobInfo | undefined {
    return this.#image.get(sha256);
  }

  addImage(info: BlobInfo): void {
    this.db.prepare('INSERT OR IGNORE INTO images (sha256, sha512, length) VALUES (?, ?, ?)').run(info.sha256, info.sha512, info.length);
  }

  /** A downloadable target: `name` published with a sha256 or sha512 of `hash`. */
  publishedTarget(name: string, hash: string): { sha256: string; length: number } | undefined {
    return this.#target.get(name, hash, hash);
  }

  insertFile(name: string, bytes: Uint8Array, sha256: string): void {
    this.db.prepare('INSERT INTO files (name, bytes, sha256) VALUES (?, ?, ?)').run(name, bytes, sha256);
  }

  setRole(name: string, version: number, file: string): void {
    this.db
      .prepare('INSERT INTO roles (name, version, file) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET version = excluded.version, file = excluded.file')
      .run(name, version, file);
  }

  publishTarget(name: string, info: BlobInfo): void {
    this.db
      .prepare('INSERT OR IGNORE INTO published_targets (name, sha256, sha512, length) VALUES (?, ?, ?, ?)')
      .run(name, info.sha256, info.sha512, info.length);
  }

  /** Runs `fn` in a BEGIN IMMEDIATE transaction: writers queue, readers keep the last commit. */
  writeTransaction<T>(fn: () => T): T {
    return this.db.transaction(fn).immediate();
  }

  close(): void {
    this.db.close();
  }
}
