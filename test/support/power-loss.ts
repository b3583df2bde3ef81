/**
 * The power-loss harness (test/power-loss and bench/soak-power-loss.ts): the
 * real agent CLI (`upfleet-agent check --once`) runs as a child process and is
 * killed with SIGKILL at seeded random moments of updates, then restarted,
 * until each update is over; the image repository, director and the two
 * simulated secondaries (on real pty pairs, served from this process, so they
 * outlive the agent like real ECUs do) keep running.
 *
 * Invariants checked after every kill and every exit:
 * - every ECU runs its old image or its new one, never anything else, and the
 *   bytes in its active slot hash to what it reports (never a partial image);
 * - at the end, the director accepted each manifest counter exactly once:
 *   counters 1..N with no gap and no repeat, N the last one, and the agent's
 *   outbox is empty (nothing lost, nothing refused).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { InstalledImage } from '@upfleet/core';
import { prng } from '@upfleet/core';
import { Stack } from './stack.ts';
import { Vehicle, type LinkKind } from './vehicle.ts';
import { DEMO_SECONDARIES, publishDemoFirmware, type FirmwareSet } from './firmware.ts';

const AGENT_BIN = join(import.meta.dirname, '..', '..', 'agent', 'bin', 'upfleet-agent');

export interface PowerLossOptions {
  /** Kills to make in all. */
  kills: number;
  seed?: number;
  /** Kills per update before it is let through (default 5). */
  killsPerUpdate?: number;
  baud?: number;
  link?: Extract<LinkKind, 'pty'>;
  log?: (line: string) => void;
}

export interface PowerLossResult {
  kills: number;
  restarts: number;
  updates: { succeeded: number; failed: number };
  /** Kills by the agent state persisted at the moment of the kill. */
  killsByState: Record<string, number>;
  manifests: number;
  violations: string[];
  durationMs: number;
}

interface ChildRun {
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
  child: ChildProcess;
}

function runAgent(vehicle: Vehicle, args: string[]): ChildRun {
  const child = spawn(process.execPath, [AGENT_BIN, ...args, '--config', vehicle.configPath], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, UPFLEET_LOG_LEVEL: 'warn' },
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal, stderr })));
  return { exit, child };
}

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const same = (a: InstalledImage | null | undefined, b: { name: string; sha256: string } | null) =>
  (a === null || a === undefined || a.filename === '') ? b === null : b !== null && a.filename === b.name && a.hashes.sha256 === b.sha256;

/** The agent's persisted state name (its SQLite file), read-only. */
async function persistedState(vehicle: Vehicle): Promise<string> {
  const path = join(vehicle.config.storageDir, 'agent.db');
  if (!existsSync(path)) return 'unknown';
  const { default: Database } = await import('better-sqlite3');
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    const row = db.prepare('SELECT state FROM machine WHERE id = 1').get() as { state: string } | undefined;
    return row ? (JSON.parse(row.state) as { name: string }).name : 'idle';
  } catch {
    return 'unknown';
  } finally {
    db.close();
  }
}

/** Messages still waiting in the agent's outbox, and messages the director refused. */
async function outboxCounts(vehicle: Vehicle): Promise<{ waiting: number; rejected: number }> {
  const { default: Database } = await import('better-sqlite3');
  const db = new Database(join(vehicle.config.storageDir, 'agent.db'), { readonly: true, fileMustExist: true });
  try {
    const count = (table: string) => (db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
    return { waiting: count('outbox'), rejected: count('outbox_rejected') };
  } finally {
    db.close();
  }
}

/** Checks every ECU against its old and new image; returns the problems found. */
function checkEcus(vehicle: Vehicle, old: Record<string, { name: string; sha256: string } | null>, next: Record<string, { name: string; sha256: string }>): string[] {
  const problems: string[] = [];
  const installed = vehicle.installed();
  for (const [serial, image] of Object.entries(installed)) {
    if (!same(image, old[serial] ?? null) && !same(image, next[serial]!)) {
      problems.push(`${serial} runs ${image?.filename ?? 'nothing'}, neither ${old[serial]?.name ?? 'nothing'} nor ${next[serial]!.name}`);
      continue;
    }
    if (!image || !image.filename) continue;
    let bytes: Uint8Array | undefined;
    if (serial === vehicle.primarySerial) {
      const slots = JSON.parse(readFileSync(join(vehicle.config.storageDir, 'primary', 'slots.json'), 'utf8')) as { active: 'a' | 'b' };
      bytes = vehicle.primarySlotBytes(slots.active);
    } else {
      const sim = vehicle.ecus.find((e) => e.spec.serial === serial)!.sim!;
      const p = sim.store.slotPath(sim.store.state.activeSlot);
      bytes = existsSync(p) ? new Uint8Array(readFileSync(p)) : undefined;
    }
    if (!bytes || sha256(bytes) !== image.hashes.sha256) problems.push(`${serial}: active slot bytes do not match ${image.filename} (partial image)`);
  }
  return problems;
}

export async function runPowerLoss(o: PowerLossOptions): Promise<PowerLossResult> {
  const t0 = Date.now();
  const rand = prng(o.seed ?? 42);
  const log = o.log ?? (() => {});
  const killsPerUpdate = o.killsPerUpdate ?? 5;
  const stack = await Stack.start({ mqtt: 'none' });
  const result: PowerLossResult = { kills: 0, restarts: 0, updates: { succeeded: 0, failed: 0 }, killsByState: {}, manifests: 0, violations: [], durationMs: 0 };
  let vehicle: Vehicle | undefined;
  try {
    vehicle = await Vehicle.create(stack, {
      deviceId: 'power-loss-car', secondaries: DEMO_SECONDARIES('power-loss-car'), link: o.link ?? 'pty', baud: o.baud ?? 460800, agent: 'none',
    });
    const provision = await runAgent(vehicle, ['provision']).exit;
    if (provision.code !== 0) throw new Error(`provision failed: ${provision.stderr}`);

    // Cycle durations seen without kills bound the random kill delays.
    let cycleMs = 3000;
    let generation = 0;
    const current = (v: Vehicle) => Object.fromEntries(Object.entries(v.installed()).map(([s, i]) => [s, i && i.filename ? { name: i.filename, sha256: i.hashes.sha256! } : null]));
    // What each ECU ran at the start (simulated ECUs leave the factory with an image).
    let old: Record<string, { name: string; sha256: string } | null> = current(vehicle);
    while (result.kills < o.kills) {
      generation += 1;
      const fw: FirmwareSet = await publishDemoFirmware(stack, {
        sizes: { gateway: 24_000, brake: 6_000, door: 4_000 }, version: `${generation}.0.0`, releaseCounter: generation, delegated: generation > 1,
      });
      const next = Object.fromEntries(Object.entries(fw.byEcu(vehicle)).map(([s, f]) => [s, { name: f.name, sha256: f.sha256 }]));
      const assignment = await stack.assign(vehicle.deviceId, Object.entries(next).map(([ecuSerial, f]) => ({ ecuSerial, image: f.name })));
      let killsHere = 0;
      for (let attempt = 0; ; attempt++) {
        if (attempt > killsPerUpdate + 10) throw new Error(`update ${generation} did not finish after ${attempt} runs`);
        const started = Date.now();
        const run = runAgent(vehicle, ['check', '--once']);
        result.restarts += attempt > 0 ? 1 : 0;
        let killed = false;
        if (killsHere < killsPerUpdate && result.kills < o.kills) {
          const delay = 150 + rand() * cycleMs;
          const timer = new Promise<'timer'>((r) => setTimeout(() => r('timer'), delay));
          if ((await Promise.race([timer, run.exit.then(() => 'exit' as const)])) === 'timer') {
            run.child.kill('SIGKILL');
            killed = true;
          }
        }
        const exit = await run.exit;
        if (killed && exit.signal === 'SIGKILL') {
          result.kills += 1;
          killsHere += 1;
          const state = await persistedState(vehicle);
          result.killsByState[state] = (result.killsByState[state] ?? 0) + 1;
          log(`update ${generation}: kill ${result.kills} in state ${state} after ${Date.now() - started} ms`);
        } else if (!killed) {
          cycleMs = Math.max(1000, Math.min(8000, Date.now() - started));
        }
        for (const p of checkEcus(vehicle, old, next)) result.violations.push(`update ${generation}, after ${killed ? 'kill' : 'exit'}: ${p}`);
        if (!killed || exit.signal !== 'SIGKILL') {
          const a = (await stack.admin('GET', `/assignments/${assignment.id}`)).json as { status: string; errorCode?: string };
          if (a.status === 'succeeded' || a.status === 'failed') {
            if (a.status === 'succeeded') result.updates.succeeded += 1;
            else result.updates.failed += 1;
            log(`update ${generation}: ${a.status}${a.errorCode ? ` (${a.errorCode})` : ''} after ${killsHere} kill(s)`);
            break;
          }
          if (exit.code !== 0 && exit.code !== 1) throw new Error(`agent exited with ${exit.code ?? exit.signal}: ${exit.stderr.trim()}`);
        }
      }
      old = current(vehicle);
    }

    // A last clean run delivers whatever is still in the outbox.
    const last = await runAgent(vehicle, ['check', '--once']).exit;
    if (last.code !== 0) result.violations.push(`final run exited ${last.code}: ${last.stderr.trim()}`);
    const outbox = await outboxCounts(vehicle);
    if (outbox.waiting !== 0 || outbox.rejected !== 0) result.violations.push(`outbox at the end: ${outbox.waiting} waiting, ${outbox.rejected} refused by the director`);
    const manifests = await stack.director.services.store.manifestsOf(vehicle.deviceId, 1_000_000);
    const counters = manifests.map((m) => m.counter).sort((a, b) => a - b);
    const device = (await stack.director.services.store.getDevice(vehicle.deviceId))!;
    result.manifests = counters.length;
    const expected = Array.from({ length: device.manifestCounter }, (_, i) => i + 1);
    if (JSON.stringify(counters) !== JSON.stringify(expected)) {
      const dup = counters.filter((c, i) => counters.indexOf(c) !== i);
      const missing = expected.filter((c) => !counters.includes(c));
      result.violations.push(`manifest counters accepted: ${counters.length}, last ${device.manifestCounter}; repeated [${dup.join(',')}], missing [${missing.join(',')}]`);
    }
    return result;
  } finally {
    result.durationMs = Date.now() - t0;
    await vehicle?.close();
    await stack.close();
  }
}
