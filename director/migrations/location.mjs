// Where the migration files are. Plain JavaScript imported at run time by package name
// (director/src/migrations.ts), so that import.meta here names this directory even when
// the director's sources run from a bundle (scripts/launch.mjs).
export const migrationsDir = new URL('.', import.meta.url);
