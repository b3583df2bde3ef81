/**
 * Which store a director uses: `--database` (or UPFLEET_DIRECTOR_DATABASE) is a
 * postgres:// (or postgresql://) URL for PostgreSQL, anything else a SQLite file
 * path; by default DIR/director.db. Opening migrates the schema.
 */
import { join } from 'node:path';
import { DatabaseConfigError } from './errors.ts';
import { PgStore } from './pg-store.ts';
import { SqliteStore } from './sqlite-store.ts';
import type { DirectorStore } from './store.ts';

export const DEFAULT_DATABASE_FILE = 'director.db';

export function isPostgresUrl(database: string): boolean {
  return /^postgres(ql)?:\/\//i.test(database);
}

/** The database a director on DIR uses when none is named. */
export function defaultDatabase(dir: string): string {
  return join(dir, DEFAULT_DATABASE_FILE);
}

/** The database as logs may show it: a URL without its password. */
export function describeDatabase(database: string): string {
  if (!isPostgresUrl(database)) return database;
  try {
    const url = new URL(database);
    if (url.password) url.password = '***';
    return url.toString();
  } catch {
    return 'postgres://(unparsable URL)';
  }
}

/** @throws DatabaseConfigError, StoreUnavailableError, SqliteError */
export async function openStore(database: string): Promise<DirectorStore> {
  if (database.length === 0) throw new DatabaseConfigError('the database is empty: give a SQLite file path or a postgres:// URL');
  if (isPostgresUrl(database)) {
    try {
      new URL(database);
    } catch (cause) {
      throw new DatabaseConfigError(`${describeDatabase(database)} is not a valid postgres:// URL`, { cause });
    }
    return PgStore.open(database);
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(database)) {
    throw new DatabaseConfigError(`unsupported database URL ${database.replace(/:[^:@/]*@/, ':***@')}: give a SQLite file path or a postgres:// URL`);
  }
  return SqliteStore.open(database);
}
