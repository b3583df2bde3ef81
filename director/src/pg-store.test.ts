/**
 * The PostgreSQL store: the store contract on a database of its own at
 * 127.0.0.1:5432 (created before, dropped after), and its migrations.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { PgStore } from './pg-store.ts';
import { readMigrations } from './migrations.ts';
import { storeContract } from './store-contract.ts';
import { createTestDatabase, type TestDatabase } from './testing/postgres.ts';

storeContract('PostgreSQL', async () => {
  const db = await createTestDatabase('contract');
  const store = await PgStore.open(db.url);
  return {
    store, openAnother: () => PgStore.open(db.url),
    cleanup: async () => {
      await store.close();
      await db.drop();
    },
  };
});

describe('PgStore migrations', () => {
  let db: TestDatabase;
  before(async () => (db = await createTestDatabase('migrations')));
  after(() => db.drop());

  const versions = async () => {
    const client = new pg.Client(db.url);
    await client.connect();
    try {
      return (await client.query('SELECT version FROM schema_migrations ORDER BY version')).rows.map((r) => r.version as number);
    } finally {
      await client.end();
    }
  };

  it('migrates once even when several directors start together', async () => {
    const stores = await Promise.all([PgStore.open(db.url), PgStore.open(db.url), PgStore.open(db.url)]);
    await Promise.all(stores.map((s) => s.close()));
    assert.deepEqual(await versions(), (await readMigrations('postgres')).map((m) => m.version));
  });

  it('says the database is unavailable when the server cannot be reached', async () => {
    await assert.rejects(PgStore.open('postgres://postgres@127.0.0.1:1/none'), { name: 'StoreUnavailableError', code: 'STORE_UNAVAILABLE' });
  });
});
