/**
 * Versioned schema migrations, applied at start-up: plain numbered SQL files per
 * dialect (director/migrations/<dialect>/NNN_name.sql), recorded in a
 * `schema_migrations` table. Invariants:
 * - All pending files run in one transaction with their records: a failed
 *   migration leaves the schema as it was. On PostgreSQL an advisory lock makes
 *   directors that start together migrate one after the other; on SQLite the
 *   write lock does.
 * - A SQLite database written before migrations existed (no schema_migrations,
 *   but the director's tables) is stamped with the version its tables match,
 *   then upgraded like any other.
 * - A database migrated by a newer director (a version this one lacks) is refused.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DatabaseConfigError } from './errors.ts';
import type { SqlConnection } from './sql-store.ts';

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** Imported by package name at run time, so the bundle (scripts/launch.mjs) keeps it a file of its own. */
const LOCATION_MODULE = ['@upfleet', 'director', 'migrations', 'location.mjs'].join('/');
/** Any constant: the key of PostgreSQL's advisory lock for migrations. */
const PG_MIGRATION_LOCK = 0x75706c74;

/** The migration files of a dialect, by version. @throws DatabaseConfigError on a badly named or duplicate file */
export async function readMigrations(dialect: SqlConnection['dialect']): Promise<Migration[]> {
  const { migrationsDir } = (await import(LOCATION_MODULE)) as { migrationsDir: URL };
  const dir = join(fileURLToPath(migrationsDir), dialect);
  const migrations = readdirSync(dir).filter((f) => f.endsWith('.sql')).sort().map((file) => {
    const m = /^(\d+)_([a-z0-9_]+)\.sql$/.exec(file);
    if (!m) throw new DatabaseConfigError(`migration file ${join(dir, file)} is not named NNN_name.sql`);
    return { version: Number(m[1]), name: m[2]!, sql: readFileSync(join(dir, file), 'utf8') };
  });
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) throw new DatabaseConfigError(`migrations of ${dialect} must be numbered 1, 2, 3...: found ${m.version} at ${i + 1}`);
  });
  return migrations;
}

/** Brings the database's schema to the newest version; returns the versions applied now. @throws DatabaseConfigError */
export async function migrate(db: SqlConnection, now: () => Date = () => new Date()): Promise<number[]> {
  const migrations = await readMigrations(db.dialect);
  return db.transaction(async () => {
    if (db.dialect === 'postgres') await db.all('SELECT pg_advisory_xact_lock(?)', [PG_MIGRATION_LOCK]);
    const hadTable = await tableExists(db, 'schema_migrations');
    await db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)');
    if (!hadTable && db.dialect === 'sqlite') await stampLegacy(db, migrations, now);
    const applied = new Set((await db.all('SELECT version FROM schema_migrations')).map((r) => Number(r.version)));
    const newest = Math.max(0, ...applied);
    if (newest > migrations.length) {
      throw new DatabaseConfigError(`the database schema is at version ${newest}, newer than this director knows (${migrations.length}): run a newer director`);
    }
    const done: number[] = [];
    for (const m of migrations) {
      if (applied.has(m.version)) continue;
      await db.exec(m.sql);
      await db.run('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)', [m.version, m.name, now().toISOString()]);
      done.push(m.version);
    }
    return done;
  });
}

async function tableExists(db: SqlConnection, table: string): Promise<boolean> {
  const rows = db.dialect === 'sqlite'
    ? await db.all("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [table])
    : await db.all('SELECT 1 FROM pg_tables WHERE schemaname = current_schema() AND tablename = ?', [table]);
  return rows.length > 0;
}

/**
 * Records as applied the migrations a pre-migration SQLite database already has:
 * 1 (its tables) and 2 (assignments.progress, added in place by that code).
 */
async function stampLegacy(db: SqlConnection, migrations: Migration[], now: () => Date): Promise<void> {
  if (!(await tableExists(db, 'devices'))) return;
  const columns = await db.all("SELECT name FROM pragma_table_info('assignments')");
  const version = columns.some((c) => c.name === 'progress') ? 2 : 1;
  for (const m of migrations.slice(0, version)) {
    await db.run('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)', [m.version, m.name, now().toISOString()]);
  }
}
