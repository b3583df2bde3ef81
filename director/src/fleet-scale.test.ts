/**
 * What one manifest, one progress event, one MQTT status, one change-feed read and
 * one fleet summary cost the store must not grow with the fleet (issue 12): the same
 * director, over HTTP, on a real SQLite file and a real PostgreSQL database, with 10
 * and with 2,000 other devices in a running campaign. The database drivers are
 * instrumented (statements sent, rows and characters received); the counts must be
 * the same at both sizes, so a path that reads every device or every assignment of
 * the campaign fails here.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import Database from 'better-sqlite3';
import pg from 'pg';
import { utf8 } from '@upfleet/core';
import { harness, SimDevice } from './testing/harness.ts';
import { createTestDatabase, type TestDatabase } from './testing/postgres.ts';
import { fleetSummary } from './fleet-summary.ts';

interface Cost {
  statements: number;
  rows: number;
  /** Characters of the rows received (JSON): a query that returns one row holding the whole group counts too. */
  chars: number;
}

/** Counts what both drivers send and receive while `measure` runs. */
const meter = (() => {
  let current: Cost | undefined;
  const note = (rows: unknown) => {
    if (!current) return;
    current.statements++;
    if (Array.isArray(rows)) {
      current.rows += rows.length;
      current.chars += JSON.stringify(rows).length;
    }
  };
  const sqliteStatement = Object.getPrototypeOf(new Database(':memory:').prepare('SELECT 1')) as Record<string, (...a: unknown[]) => unknown>;
  for (const method of ['all', 'run', 'get']) {
    const original = sqliteStatement[method]!;
    sqliteStatement[method] = function (this: unknown, ...args: unknown[]) {
      const result = original.apply(this, args);
      note(method === 'run' ? undefined : method === 'get' ? [result].filter(Boolean) : result);
      return result;
    };
  }
  const exec = Database.prototype.exec;
  Database.prototype.exec = function (this: Database.Database, sql: string) {
    note(undefined);
    return exec.call(this, sql);
  };
  const query = pg.Client.prototype.query as (...a: unknown[]) => unknown;
  (pg.Client.prototype as { query: unknown }).query = function (this: unknown, ...args: unknown[]) {
    const result = query.apply(this, args);
    if (result instanceof Promise) void result.then((r: { rows?: unknown }) => note(r?.rows), () => note(undefined));
    return result;
  };
  return {
    async measure(fn: () => Promise<unknown>): Promise<Cost> {
      const cost: Cost = { statements: 0, rows: 0, chars: 0 };
      current = cost;
      try {
        await fn();
      } finally {
        current = undefined;
      }
      return cost;
    },
  };
})();

const T0 = new Date().toISOString();

/** A director with `others` devices besides the one measured, all in one running campaign; the cost of each path for the measured device. */
async function costsWith(others: number, database: string | undefined): Promise<Record<string, Cost>> {
  // The launch sweep's periodic read would land in a measurement now and then: once at start is enough here.
  const h = await harness({ campaignLaunchSweepMs: 3_600_000, ...(database && { database }) });
  try {
    const info = h.imageRepo.addImage('brake-9.bin', utf8('brake nine'), ['brake'], 9);
    const s = h.director.services;
    const d = new SimDevice('measured');
    await h.register(d, ['scale']);
    assert.equal((await h.send(d, d.manifest())).status, 200);

    // The rest of the fleet, straight into the store: half settled, half still downloading, all in the campaign.
    const campaignId = randomUUID();
    const group = Array.from({ length: others }, (_, i) => `other-${String(i).padStart(5, '0')}`);
    await s.store.transaction(async () => {
      for (const [i, id] of group.entries()) {
        await s.store.insertDevice({ id, status: 'active', tags: ['scale'], manifestCounter: 3, recentNonces: {}, online: i % 2 === 0, lastSeen: T0, createdAt: T0, updatedAt: T0 });
        await s.store.insertEcu({ serial: `${id}-brake`, deviceId: id, hardwareId: 'brake', publicKey: d.primary.signer.key.toJSON() as Record<string, unknown>, primary: true, installed: null, releaseCounter: 0 });
      }
      await s.store.insertCampaign({
        id: campaignId, status: 'running', devices: ['measured', ...group], wavesLaunched: 1, launchedCount: others + 1, reason: null, createdAt: T0, updatedAt: T0,
        spec: { name: 'scale', images: [{ hardwareId: 'brake', image: 'brake-9.bin' }], tags: ['scale'], waves: [100], successThreshold: 0.9,
          resolved: [{ hardwareId: 'brake', image: 'brake-9.bin', length: info.length, hashes: { ...info.hashes }, custom: { ...info.custom } }] },
      });
      for (const [i, id] of group.entries()) {
        await s.store.insertAssignment({
          id: randomUUID(), deviceId: id, campaignId, status: i % 2 === 0 ? 'succeeded' : 'downloading', targetsVersion: 2, errorCode: null, errorMessage: null,
          createdAt: T0, updatedAt: T0, progress: {}, items: [{ ecuSerial: `${id}-brake`, hardwareId: 'brake', image: 'brake-9.bin', length: info.length, hashes: { ...info.hashes }, releaseCounter: 9, previous: null }],
        });
      }
    });
    const items = await s.assignments.resolve(d.id, [{ ecuSerial: d.ecu('brake').serial, image: 'brake-9.bin' }]);
    await s.assignments.insert(d.id, items, campaignId);

    const costs: Record<string, Cost> = {};
    const { cursor } = await s.store.changesSince(undefined);
    costs.progress = await meter.measure(async () => {
      const r = await h.api('POST', `/api/v1/devices/${d.id}/progress`, { ecuSerial: d.ecu('brake').serial, state: 'installing', done: 5, total: 10 }, d.headers());
      assert.equal(r.status, 204, JSON.stringify(r.body));
    });
    d.install('brake', 'brake-9.bin', info, 9);
    costs.manifest = await meter.measure(async () => {
      const r = await h.send(d, d.manifest());
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.deepEqual(r.body.changed.map((c: { status: string }) => c.status), ['succeeded'], 'the manifest settles the assignment and runs the wave gate');
    });
    costs.online = await meter.measure(() => s.setOnline(d.id, true));
    costs.changeFeed = await meter.measure(async () => {
      const batch = await s.store.changesSince(cursor);
      assert.ok(batch.changes.some((c) => c.kind === 'devices' && c.id === d.id));
    });
    costs.fleetSummary = await meter.measure(async () => {
      const summary = await fleetSummary(s.store);
      assert.equal(summary.devices.total, others + 1);
    });
    costs.onlineGauge = await meter.measure(async () => {
      assert.match(await s.metrics.registry.metrics(), new RegExp(`upfleet_director_devices_online ${Math.ceil(others / 2) + 1}\\b`));
    });
    const status = await h.admin('GET', `/api/v1/admin/campaigns/${campaignId}`);
    assert.equal(status.body.counts.downloading, Math.floor(others / 2), 'the counters agree with the rows');
    assert.equal(status.body.counts.succeeded, Math.ceil(others / 2) + 1);
    return costs;
  } finally {
    await h.close();
  }
}

/** The same statements and rows at both sizes; characters within a few (counts have more digits). */
function assertSameCost(small: Record<string, Cost>, large: Record<string, Cost>): void {
  for (const path of Object.keys(small)) {
    const [a, b] = [small[path]!, large[path]!];
    assert.ok(a.statements > 0, `${path} was measured`);
    assert.deepEqual([b.statements, b.rows], [a.statements, a.rows], `${path}: statements and rows with 2,000 other devices (${JSON.stringify(b)}) as with 10 (${JSON.stringify(a)})`);
    assert.ok(Math.abs(b.chars - a.chars) < 100, `${path}: characters read with 2,000 other devices (${b.chars}) about as with 10 (${a.chars})`);
  }
}

describe('per-manifest cost independent of fleet size', () => {
  it('on SQLite', async () => {
    assertSameCost(await costsWith(10, undefined), await costsWith(2000, undefined));
  });

  describe('on PostgreSQL', () => {
    const dbs: TestDatabase[] = [];
    after(async () => {
      for (const db of dbs) await db.drop();
    });
    it('is the same with 10 and 2,000 other devices', async () => {
      for (let i = 0; i < 2; i++) dbs.push(await createTestDatabase('scale'));
      assertSameCost(await costsWith(10, dbs[0]!.url), await costsWith(2000, dbs[1]!.url));
    });
  });
});
