/**
 * The agent's one SQLite database (better-sqlite3): machine state, outbox,
 * trusted metadata, key/value facts. WAL with synchronous=FULL, so a committed
 * transaction survives power loss; everything that must change together
 * (a state and the manifest it queued) changes in one transaction.
 */
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

export type Db = Database.Database;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS machine (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  state TEXT NOT NULL,
  resumes INTEGER NOT NULL DEFAULT 0,
  progress INTEGER,
  updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  kind TEXT NOT NULL,
  payload TEXT NOT NULL,
  created_at TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS metadata (
  repo TEXT NOT NULL,
  name TEXT NOT NULL,
  bytes BLOB NOT NULL,
  PRIMARY KEY (repo, name)
);
CREATE TABLE IF NOT EXISTS kv (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
`;

/** Opens (creating) `<storageDir>/agent.db`. */
export function openDb(storageDir: string): Db {
  mkdirSync(storageDir, { recursive: true });
  const db = new Database(join(storageDir, 'agent.db'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma('busy_timeout = 5000');
  // At most 512 KiB of page cache (SQLite's default is 2 MiB): the daemon's rows
  // are read once per cycle, so a large cache buys nothing and stays resident.
  db.pragma('cache_size = -512');
  db.exec(SCHEMA);
  // Databases made before the power-loss progress mark (machine.progress) gain the column.
  const machineColumns = db.prepare<[], { name: string }>('PRAGMA table_info(machine)').all();
  if (!machineColumns.some((c) => c.name === 'progress')) db.exec('ALTER TABLE machine ADD COLUMN progress INTEGER');
  return db;
}

/** Small typed facts (manifest counter, last result, ...), stored as JSON. */
export class KeyValue {
  #get: Database.Statement<[string], { value: string }>;
  #set: Database.Statement<[string, string]>;

  constructor(db: Db) {
    this.#get = db.prepare('SELECT value FROM kv WHERE key = ?');
    this.#set = db.prepare('INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value');
  }

  get<T>(key: string): T | undefined {
    const row = this.#get.get(key);
    return row === undefined ? undefined : (JSON.parse(row.value) as T);
  }

  set(key: string, value: unknown): void {
    this.#set.run(key, JSON.stringify(value));
  }
}
