/**
 * The SQLite store: the store contract on a fresh file, and migrations of
 * databases written by earlier directors (before migrations existed).
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { SqliteStore } from './sqlite-store.ts';
import { readMigrations } from './migrations.ts';
import { storeContract, WHOLE_WAVE_CAMPAIGNS, wholeWaveCampaignsSql } from './store-contract.ts';

const dir = mkdtempSync(join(tmpdir(), 'upfleet-director-store-'));
after(() => rmSync(dir, { recursive: true, force: true }));

storeContract('SQLite', async () => {
  const path = join(dir, 'contract.db');
  const store = await SqliteStore.open(path);
  return { store, openAnother: () => SqliteStore.open(path), cleanup: () => store.close() };
});

const versions = (path: string) => {
  const db = new Database(path, { readonly: true });
  try {
    return (db.prepare('SELECT version FROM schema_migrations ORDER BY version').all() as Array<{ version: number }>).map((r) => r.version);
  } finally {
    db.close();
  }
};

describe('SqliteStore migrations', () => {
  it('gives campaigns launched whole, wave by wave, the count of devices their waves launched', async () => {
    const path = join(dir, 'whole-waves.db');
    const migrations = await readMigrations('sqlite');
    const launch = migrations.find((m) => m.name === 'campaign_launch')!;
    const old = new Database(path);
    old.exec('CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)');
    for (const m of migrations.filter((m) => m.version < launch.version)) {
      old.exec(m.sql);
      old.prepare('INSERT INTO schema_migrations VALUES (?, ?, ?)').run(m.version, m.name, 't');
    }
    old.exec(wholeWaveCampaignsSql());
    old.close();
    const store = await SqliteStore.open(path);
    try {
      for (const c of WHOLE_WAVE_CAMPAIGNS) assert.equal((await store.getCampaignState(c.id))!.launchedCount, c.launchedCount, c.id);
    } finally {
      await store.close();
    }
  });

  it('creates a new database at the newest version, and opening it again applies nothing', async () => {
    const path = join(dir, 'new.db');
    await (await SqliteStore.open(path)).close();
    const all = (await readMigrations('sqlite')).map((m) => m.version);
    assert.deepEqual(versions(path), all);
    await (await SqliteStore.open(path)).close();
    assert.deepEqual(versions(path), all);
  });

  it('upgrades a database written by the director before migrations, keeping every row', async () => {
    // The dump of a database the director wrote before migrations (a device, its ECUs, an
    // assignment with progress, a manifest, a refused-manifest event, a draft campaign).
    const path = join(dir, 'before-migrations.db');
    const old = new Database(path);
    old.exec(readFileSync(join(import.meta.dirname, 'testing', 'fixtures', 'director-db-before-migrations.sql'), 'utf8'));
    old.close();

    const store = await SqliteStore.open(path);
    try {
      assert.deepEqual(versions(path), (await readMigrations('sqlite')).map((m) => m.version));
      const device = (await store.getDevice('legacy-car'))!;
      assert.deepEqual([device.status, device.tags, device.manifestCounter], ['active', ['eu'], 1]);
      assert.equal((await store.ecusOf('legacy-car')).length, 2);
      const [a] = await store.assignmentsOf('legacy-car');
      assert.deepEqual([a!.status, Object.keys(a!.progress)], ['downloading', ['legacy-car-ecu1']]);
      assert.equal((await store.manifestsOf('legacy-car', 10)).length, 1);
      assert.deepEqual((await store.eventsOf('legacy-car')).map((e) => e.code), ['MANIFEST_REPLAY']);
      assert.deepEqual((await store.listCampaigns()).map((c) => c.spec.name), ['legacy']);
      const state = (await store.getRepoState('legacy-car'))!;
      assert.ok(await store.getMetadataFile('legacy-car', `${state.targetsVersion}.targets.json`));
      // New rows go on after the old ones.
      await store.insertAssignment({ ...a!, id: 'after-upgrade', progress: {} });
      await store.insertEvent({ deviceId: 'legacy-car', ecuSerial: null, kind: 'attack', code: 'X', detail: 'new', at: 't' });
      assert.deepEqual((await store.assignmentsOf('legacy-car')).map((x) => x.id), [a!.id, 'after-upgrade']);
      assert.deepEqual((await store.eventsOf('legacy-car')).map((e) => e.code), ['MANIFEST_REPLAY', 'X']);
    } finally {
      await store.close();
    }
  });

  it('upgrades a first-release database (assignments without progress)', async () => {
    const path = join(dir, 'first-release.db');
    const old = new Database(path);
    old.exec((await readMigrations('sqlite'))[0]!.sql);
    old.prepare("INSERT INTO assignments VALUES ('a1', 'car-1', NULL, 'pending', '[]', 2, NULL, NULL, 't0', 't0', 1)").run();
    old.close();

    const store = await SqliteStore.open(path);
    try {
      assert.deepEqual((await store.getAssignment('a1'))!.progress, {});
      const progress = { brake: { phase: 'downloading' as const, done: 1, total: 2, at: 't1' } };
      await store.updateAssignment('a1', { progress });
      await store.insertAssignment({ ...(await store.getAssignment('a1'))!, id: 'a2', progress: {} });
      assert.deepEqual((await store.assignmentsOf('car-1')).map((a) => [a.id, Object.keys(a.progress)]), [['a1', ['brake']], ['a2', []]]);
    } finally {
      await store.close();
    }
  });

  it('refuses a database migrated by a newer director, and changes nothing', async () => {
    const path = join(dir, 'newer.db');
    await (await SqliteStore.open(path)).close();
    const db = new Database(path);
    db.prepare("INSERT INTO schema_migrations VALUES (999, 'from_the_future', 't')").run();
    db.close();
    await assert.rejects(SqliteStore.open(path), { name: 'DatabaseConfigError', code: 'BAD_DATABASE', message: /version 999, newer than this director/ });
    assert.equal(versions(path).at(-1), 999);
  });
});
