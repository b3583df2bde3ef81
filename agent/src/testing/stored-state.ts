/** Test support: what the agent persisted, read from its SQLite file as a separate process would. */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';

/** The name of the agent's persisted machine state under `storageDir`, read-only; undefined before its first run. */
export function storedState(storageDir: string): string | undefined {
  const path = join(storageDir, 'agent.db');
  if (!existsSync(path)) return undefined;
  const db = new Database(path, { readonly: true });
  try {
    const row = db.prepare('SELECT state FROM machine').get() as { state: string } | undefined;
    return row && (JSON.parse(row.state) as { name: string }).name;
  } finally {
    db.close();
  }
}
