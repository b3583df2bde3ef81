/**
 * An update that finishes under repeated power loss (issue 13): the agent CLI
 * (`upfleet-agent check --once`) is SIGKILLed KILLS times at seeded random
 * moments while it streams an image to a secondary over a paced pty line, each
 * time after the ECU acknowledged more bytes in that run, then restarted. The
 * update must end installed in one assignment: restarts that made progress
 * are not counted against the crash-loop limit (machine/transitions.ts
 * ON_POWER_LOSS). After every kill each ECU still runs its old image or the
 * new one, whole; at the end the director accepted every manifest counter
 * exactly once and the outbox is empty.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { prng } from '@upfleet/core';
import { realWorld, type RealWorld } from './testing/real-world.ts';
import { runAgentCli, startAgentCli } from './testing/agent-cli.ts';
import { storedState } from './testing/stored-state.ts';

const KILLS = 20;
const SEED = Number(process.env.UPFLEET_TEST_SEED ?? 13);
const BAUD = 460_800;
/** Bytes the ECU must acknowledge in a run before the kill may come; then a random delay up to MAX_DELAY_MS. */
const MIN_PROGRESS = 4096;
const MAX_DELAY_MS = 250;

const start = (w: RealWorld) => startAgentCli(['check', '--once', '--config', w.configPath]);

function agentDb<T>(w: RealWorld, read: (db: Database.Database) => T): T {
  const db = new Database(join(w.config.storageDir, 'agent.db'), { readonly: true });
  try {
    return read(db);
  } finally {
    db.close();
  }
}

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe(`an update under ${KILLS} power losses mid-transfer`, () => {
  let w: RealWorld;

  before(async () => {
    w = await realWorld({ deviceId: 'vehicle-power', secondaries: [{ serial: 'brake-p', hardwareId: 'brake', verification: 'partial' }], baud: BAUD });
    const provision = await runAgentCli(['provision', '--config', w.configPath]);
    assert.equal(provision.code, 0, provision.stderr);
  });
  after(async () => {
    await w?.close();
  });

  it(`installs after ${KILLS} kills, each after the ECU acknowledged more bytes`, async () => {
    const sim = w.secondaries[0]!.sim;
    const oldImage = sim.store.state.slots[sim.store.state.activeSlot] ?? null;
    const gateway = randomBytes(1_000_000);
    const brake = randomBytes(600_000);
    await w.publish([
      { name: 'gateway-2.bin', data: gateway, hardwareIds: ['gateway'], releaseCounter: 2 },
      { name: 'brake-2.bin', data: brake, hardwareIds: ['brake'], releaseCounter: 2 },
    ]);
    const assigned = await w.admin('POST', '/api/v1/admin/devices/vehicle-power/assignments', {
      ecus: [{ ecuSerial: 'primary-1', image: 'gateway-2.bin' }, { ecuSerial: 'brake-p', image: 'brake-2.bin' }],
    });
    assert.equal(assigned.status, 201, JSON.stringify(assigned.json));

    const rand = prng(SEED);
    const begins: number[] = [];
    let lastBegin: number | undefined;
    sim.on('begin', (offset: number) => {
      begins.push(offset);
      lastBegin = offset;
    });
    let kills = 0;
    const t0 = Date.now();
    while (kills < KILLS) {
      lastBegin = undefined;
      const run = start(w);
      let exited = false;
      void run.exit.then(() => (exited = true));
      // Wait for this run's ImageBegin, then for MIN_PROGRESS more acknowledged bytes, then a random moment.
      while (!exited && (lastBegin === undefined || sim.store.inactiveLength() < lastBegin + MIN_PROGRESS)) await new Promise((r) => setTimeout(r, 5));
      if (!exited) await new Promise((r) => setTimeout(r, rand() * MAX_DELAY_MS));
      if (exited) {
        const r = await run.exit;
        assert.fail(`the cycle ended after only ${kills} kills (exit ${r.code}: ${r.stderr.trim()})`);
      }
      run.child.kill('SIGKILL');
      const r = await run.exit;
      assert.equal(r.signal, 'SIGKILL', r.stderr);
      kills++;
      const state = storedState(w.config.storageDir);
      assert.equal(state, 'installing', `kill ${kills} landed in ${state}`);
      // The ECU runs its old image, whole: nothing new is active before the transfer ends.
      assert.deepEqual(sim.store.state.slots[sim.store.state.activeSlot] ?? null, oldImage, `after kill ${kills}`);
    }
    const last = start(w);
    const done = await last.exit;
    const elapsed = Date.now() - t0;
    assert.equal(done.code, 0, done.stderr);
    process.stderr.write(`# ${kills} kills in ${elapsed} ms; the ECU resumed from ${begins.join(', ')}\n`);

    // Each run resumed where the ECU was: the offsets it answered only grew.
    assert.ok(begins.length > KILLS && begins.every((o, i) => i === 0 || o >= begins[i - 1]!), `begins ${begins.join(',')}`);
    const device = await w.device();
    const installed = Object.fromEntries(device.ecus.map((e: { serial: string; installed: { filename: string } | null }) => [e.serial, e.installed?.filename]));
    assert.deepEqual(installed, { 'primary-1': 'gateway-2.bin', 'brake-p': 'brake-2.bin' });
    assert.equal(device.assignments.at(-1).status, 'succeeded', JSON.stringify(device.assignments.at(-1)));
    assert.equal(sha256(new Uint8Array(readFileSync(sim.store.slotPath(sim.store.state.activeSlot)))), sha256(brake), 'the ECU runs the whole image');
    assert.equal(sha256(new Uint8Array(readFileSync(join(w.dir, `slot-${JSON.parse(readFileSync(join(w.config.storageDir, 'primary', 'slots.json'), 'utf8')).active}`)))), sha256(gateway));
    // No report lost, none sent twice: the director accepted counters 1..N once each, and nothing waits.
    const store = w.director.services.store;
    const counters = (await store.manifestsOf('vehicle-power', 1_000_000)).map((m) => m.counter).sort((a, b) => a - b);
    assert.deepEqual(counters, Array.from({ length: (await store.getDevice('vehicle-power'))!.manifestCounter }, (_, i) => i + 1));
    assert.equal(agentDb(w, (db) => (db.prepare('SELECT count(*) AS n FROM outbox').get() as { n: number }).n), 0);
  });
});
