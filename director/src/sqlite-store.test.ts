/** The SQLite store opening a database written before assignments kept progress. */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { SqliteStore } from './sqlite-store.ts';

const dir = mkdtempSync(join(tmpdir(), 'upfleet-director-store-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('SqliteStore', () => {
  describe('on an assignments table without progress', () => {
    it('adds the column, keeps the rows, and records progress on them', () => {
      const path = join(dir, 'old.db');
      const old = new Database(path);
      old.exec(`CREATE TABLE assignments (
        id TEXT PRIMARY KEY, device_id TEXT NOT NULL, campaign_id TEXT, status TEXT NOT NULL, items TEXT NOT NULL,
        targets_version INTEGER NOT NULL, error_code TEXT, error_message TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
        seq INTEGER NOT NULL)`);
      old.prepare("INSERT INTO assignments VALUES ('a1', 'car-1', NULL, 'pending', '[]', 2, NULL, NULL, 't0', 't0', 1)").run();
      old.close();

      const store = new SqliteStore(path);
      try {
        assert.deepEqual(store.getAssignment('a1')!.progress, {});
        const progress = { brake: { phase: 'downloading' as const, done: 1, total: 2, at: 't1' } };
        store.updateAssignment('a1', { progress });
        assert.deepEqual(store.getAssignment('a1')!.progress, progress);
        store.insertAssignment({ ...store.getAssignment('a1')!, id: 'a2', progress: {} });
        assert.deepEqual(store.assignmentsOf('car-1').map((a) => [a.id, Object.keys(a.progress)]), [['a1', ['brake']], ['a2', []]]);
      } finally {
        store.close();
      }
    });
  });
});
