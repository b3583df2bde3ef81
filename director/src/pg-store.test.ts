/**
 * The PostgreSQL store: the store contract on a database of its own at
 * 127.0.0.1:5432 (created before, dropped after), and its migrations.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { PgStore } from './pg-store.ts';
import { readMigrations } from './migrations.ts';
import { device, storeContract, WHOLE_WAVE_CAMPAIGNS, wholeWaveCampaignsSql } from './store-contract.ts';
import { createTestDatabase, TEST_POSTGRES, type TestDatabase } from './testing/postgres.ts';

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

  it('gives campaigns launched whole, wave by wave, the count of devices their waves launched', async () => {
    const old = await createTestDatabase('whole_waves');
    try {
      const migrations = await readMigrations('postgres');
      const launch = migrations.find((m) => m.name === 'campaign_launch')!;
      const client = new pg.Client(old.url);
      await client.connect();
      try {
        await client.query('CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)');
        for (const m of migrations.filter((m) => m.version < launch.version)) {
          await client.query(m.sql);
          await client.query('INSERT INTO schema_migrations VALUES ($1, $2, $3)', [m.version, m.name, 't']);
        }
        await client.query(wholeWaveCampaignsSql());
      } finally {
        await client.end();
      }
      const store = await PgStore.open(old.url);
      try {
        for (const c of WHOLE_WAVE_CAMPAIGNS) assert.equal((await store.getCampaignState(c.id))!.launchedCount, c.launchedCount, c.id);
      } finally {
        await store.close();
      }
    } finally {
      await old.drop();
    }
  });

  it('says the database is unavailable when the server cannot be reached', async () => {
    await assert.rejects(PgStore.open('postgres://postgres@127.0.0.1:1/none'), { name: 'StoreUnavailableError', code: 'STORE_UNAVAILABLE' });
  });
});

describe('PgStore connection pool', () => {
  let db: TestDatabase;
  before(async () => (db = await createTestDatabase('pool')));
  after(() => db.drop());

  const sleep = (store: PgStore, seconds: number) => store.transaction(async () => {
    await store.getDevice('none'); // takes the connection
    await new Promise((r) => setTimeout(r, seconds * 1000));
  });

  it('queues callers while the pool is busy and moving, well past the connect timeout', async () => {
    const store = await PgStore.open(db.url, 2, 300);
    try {
      // 40 transactions of 50 ms on 2 connections: the last waits about a second, three times the timeout.
      const started = Date.now();
      await Promise.all(Array.from({ length: 40 }, () => sleep(store, 0.05)));
      assert.ok(Date.now() - started > 600, 'the queue was longer than the connect timeout');
    } finally {
      await store.close();
    }
  });

  it('is unavailable when nothing in a full pool finishes for the connect timeout', async () => {
    const store = await PgStore.open(db.url, 1, 300);
    try {
      const stuck = sleep(store, 1.5);
      await new Promise((r) => setTimeout(r, 50));
      await assert.rejects(store.getDevice('x'), { name: 'StoreUnavailableError', code: 'STORE_UNAVAILABLE', message: /no pooled connection finished any work for 300 ms/ });
      await stuck;
    } finally {
      await store.close();
    }
  });
});

describe('PgStore change feed cursor', () => {
  let db: TestDatabase;
  before(async () => (db = await createTestDatabase('cursor')));
  after(() => db.drop());

  it('is not held back by a transaction running in another database on the server', async () => {
    const store = await PgStore.open(db.url);
    const elsewhere = new pg.Client(TEST_POSTGRES);
    await elsewhere.connect();
    try {
      await elsewhere.query('BEGIN');
      await elsewhere.query('SELECT pg_current_xact_id()'); // an old transaction ID, still running
      const start = await store.changesSince(undefined);
      await store.insertDevice(device('cursor-1'));
      const first = await store.changesSince(start.cursor);
      assert.deepEqual(first.changes.map((c) => c.id), ['cursor-1']);
      assert.deepEqual((await store.changesSince(first.cursor)).changes, [], 'nothing is read again');
    } finally {
      await elsewhere.query('ROLLBACK');
      await elsewhere.end();
      await store.close();
    }
  });
});
