/**
 * `npm run bench:fleet`: one campaign to a whole fleet, end to end on loopback.
 *
 * - The image repository (`upfleet-repo serve`) and the director
 *   (`upfleet-director serve --mqtt-url mqtt://127.0.0.1:1883`, with
 *   `--database` and `--processes` when asked) run as child processes, so /proc
 *   gives their CPU time and peak RSS. MQTT is the machine's Mosquitto, under a
 *   topic prefix of this run's own.
 * - `--vehicles N` light simulated vehicles (device-sim light-vehicle.ts: a
 *   primary and `--secondaries` in-memory ECUs each, every ECU with its own
 *   key; real HTTP, real MQTT, core's full verification of both repositories)
 *   run in `--workers` child processes (bench/fleet-worker.ts).
 * - Once every vehicle registered and sent its first manifest, one campaign
 *   (one image per hardware ID) starts, in waves (`--waves`, cumulative
 *   percentages) behind a success gate (`--threshold`).
 * - Every vehicle must end running the new image on every ECU (its own view)
 *   and the director must count every assignment succeeded (it does so only on
 *   a verified manifest); otherwise it exits 1, naming what is missing.
 *
 * One JSON line: `"bench":"fleet"`, vehicles, store, processes, updatedPerSecond
 * (vehicles / seconds from campaign start to the last verified manifest),
 * p50Seconds / p99Seconds (campaign start to each vehicle's verified result
 * manifest), directorCpuSecondsPerVehicle (user + system CPU of every director
 * process during the campaign, from /proc), peakRssMb per server (VmHWM), and
 * signRatio: the director's signatures per second during the campaign (three
 * per vehicle: its new targets, snapshot and timestamp) over the raw ed25519
 * sign rate of one core measured in this run (per CPU second; the director's rate is per
 * wall second, so on a loaded machine the ratio is low by the share of a core it got).
 *
 * Usage: npm run bench:fleet -- [--vehicles 10000] [--store sqlite|postgres]
 *   [--processes 1|3] [--workers 3] [--secondaries 2] [--waves 1,10,50,100]
 *   [--threshold 0.9] [--concurrency 48] [--timeout S]
 */
import { fork, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Ed25519Signer, utf8 } from '@upfleet/core';
import { addTarget, initRepository } from '@upfleet/image-repo';
import { startServe, killServe } from '../image-repo/src/testing/serve-child.ts';
import { initDirector } from '@upfleet/director';
import type { WorkerReport, WorkerSetup } from './fleet-worker.ts';
import { freePort } from '../test/support/loopback.ts';

const HELP = `Usage: npm run bench:fleet -- [options]
  --vehicles N       simulated vehicles (default 10000)
  --store S          sqlite (default) or postgres (PostgreSQL at 127.0.0.1:5432, a database of its own)
  --processes P      director processes (default 1)
  --workers W        vehicle processes (default 3)
  --secondaries K    in-memory secondary ECUs per vehicle (default 2)
  --waves LIST       campaign waves, cumulative percentages (default 1,10,50,100)
  --threshold R      success gate between waves (default 0.9)
  --concurrency C    cycles in flight per worker (default 48)
  --timeout S        give up after S seconds (default 300 + 1 s per vehicle)
`;

const ADMIN_TOKEN = 'bench-admin-token';
const PROVISIONING_TOKEN = 'bench-provisioning-token';
const UPLOAD_TOKEN = 'bench-upload-token';
const PASSPHRASE = 'bench-passphrase';
const ONLINE_PASSPHRASE = 'bench-online-passphrase';
const MQTT_URL = 'mqtt://127.0.0.1:1883';
const PG_URL = 'postgres://postgres@127.0.0.1:5432';
/** Signatures the director makes per vehicle of the campaign: its targets, snapshot and timestamp. */
const SIGNATURES_PER_VEHICLE = 3;
const DIRECTOR_BIN = join(import.meta.dirname, '..', 'director', 'bin', 'upfleet-director');

class BenchFailure extends Error {}

function options() {
  const { values: v } = parseArgs({
    options: {
      vehicles: { type: 'string' }, store: { type: 'string' }, processes: { type: 'string' }, workers: { type: 'string' },
      secondaries: { type: 'string' }, waves: { type: 'string' }, threshold: { type: 'string' }, concurrency: { type: 'string' },
      timeout: { type: 'string' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (v.help) {
    process.stdout.write(HELP);
    process.exit(0);
  }
  const int = (s: string | undefined, d: number, name: string, max = 1e6) => {
    const n = s === undefined ? d : Number(s);
    if (!Number.isSafeInteger(n) || n < 1 || n > max) throw new BenchFailure(`--${name} must be an integer from 1 to ${max}`);
    return n;
  };
  const vehicles = int(v.vehicles, 10_000, 'vehicles');
  const store = v.store ?? 'sqlite';
  if (store !== 'sqlite' && store !== 'postgres') throw new BenchFailure('--store is sqlite or postgres');
  const waves = (v.waves ?? '1,10,50,100').split(',').map(Number);
  const threshold = Number(v.threshold ?? 0.9);
  const timeoutS = v.timeout === undefined ? 300 + vehicles : Number(v.timeout);
  if (!(timeoutS > 0)) throw new BenchFailure('--timeout must be a positive number of seconds');
  return {
    vehicles, store, waves, threshold, timeoutS,
    processes: int(v.processes, 1, 'processes', 64), workers: int(v.workers, 3, 'workers', 64),
    secondaries: int(v.secondaries, 2, 'secondaries', 16), concurrency: int(v.concurrency, 48, 'concurrency', 10_000),
  };
}

// ------------------------------------------------------------------ /proc

/** The process and its descendants (cluster workers of a director). */
function processTree(root: number): number[] {
  const parent = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      parent.set(Number(name), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // gone meanwhile
    }
  }
  const out = [root];
  for (let i = 0; i < out.length; i++) for (const [pid, ppid] of parent) if (ppid === out[i]) out.push(pid);
  return out;
}

const TICKS_PER_SECOND = 100; // USER_HZ on Linux

/** User + system CPU seconds of the processes (0 for one that is gone). */
function cpuSeconds(pids: number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(f[11]) + Number(f[12]);
    } catch {
      // gone
    }
  }
  return ticks / TICKS_PER_SECOND;
}

function peakRssMb(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Math.round(Number(m[1]) / 1024) : 0;
  } catch {
    return 0;
  }
}

// ------------------------------------------------------------------ servers

async function waitHealthy(url: string, child: ChildProcess, stderr: () => string): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (child.exitCode !== null) throw new BenchFailure(`the director exited with ${child.exitCode}: ${stderr().slice(-2000)}`);
    try {
      if ((await fetch(`${url}/healthz`)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new BenchFailure(`the director did not answer /healthz within 60 s: ${stderr().slice(-2000)}`);
}

/** A PostgreSQL database of this run's own (dropped at the end), through psql. */
function postgresDatabase(): { url: string; drop(): void } {
  const name = `upfleet_bench_${randomBytes(6).toString('hex')}`;
  const psql = (sql: string) => {
    const r = spawnSync('psql', ['-h', '127.0.0.1', '-U', 'postgres', '-d', 'postgres', '-v', 'ON_ERROR_STOP=1', '-c', sql], { encoding: 'utf8' });
    if (r.status !== 0) throw new BenchFailure(`psql failed (${sql}): ${r.stderr || r.error?.message}`);
  };
  psql(`CREATE DATABASE ${name}`);
  return { url: `${PG_URL}/${name}`, drop: () => psql(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) };
}

async function admin(url: string, method: string, path: string, body?: unknown): Promise<any> {
  const res = await fetch(`${url}/api/v1/admin${path}`, {
    method, headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    ...(body !== undefined && { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  if (!res.ok) throw new BenchFailure(`${method} ${path}: HTTP ${res.status} ${text.slice(0, 500)}`);
  return text ? JSON.parse(text) : undefined;
}

/**
 * Ed25519 signatures per CPU second of one core, the path the director signs with. Per CPU
 * second, not per wall second: on a machine shared with other work, a wall-clock loop measures
 * how much of a core this process got, not what signing costs.
 */
function rawSignRate(): number {
  const signer = Ed25519Signer.generate();
  const message = utf8('x'.repeat(600));
  for (let i = 0; i < 500; i++) signer.sign(message);
  const c0 = process.cpuUsage();
  let n = 0;
  let cpuS = 0;
  while (cpuS < 1) {
    for (let i = 0; i < 200; i++) signer.sign(message);
    n += 200;
    const c = process.cpuUsage(c0);
    cpuS = (c.user + c.system) / 1e6;
  }
  return n / cpuS;
}

const quantile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;

// ------------------------------------------------------------------ the run

async function main(): Promise<number> {
  const o = options();
  const deadline = Date.now() + o.timeoutS * 1000;
  const timeoutAdvice = `--timeout ${o.timeoutS} s ran out (raise it, e.g. --timeout ${Math.ceil(o.timeoutS * 2)})`;
  const log = (s: string) => process.stderr.write(`[bench:fleet ${((Date.now() - (deadline - o.timeoutS * 1000)) / 1000).toFixed(0)} s] ${s}\n`);
  const dir = mkdtempSync(join(tmpdir(), 'upfleet-bench-fleet-'));
  const cleanups: Array<() => Promise<void> | void> = [() => rmSync(dir, { recursive: true, force: true })];
  const workers: ChildProcess[] = [];
  try {
    // Image repository: initialised offline, served as a child, firmware published through it.
    const repoDir = join(dir, 'image-repo');
    initRepository({ dir: repoDir, passphrase: PASSPHRASE, onlinePassphrase: ONLINE_PASSPHRASE });
    const repo = await startServe(['--dir', repoDir, '--token', UPLOAD_TOKEN], { UPFLEET_ONLINE_PASSPHRASE: ONLINE_PASSPHRASE });
    cleanups.push(() => killServe(repo, 'SIGTERM'));
    log(`image repository ${repo.url}`);
    const hardwareIds = { primary: 'bench-gw', secondaries: Array.from({ length: o.secondaries }, (_, i) => `bench-ecu-${i + 1}`) };
    const images: Record<string, { name: string; sha256: string }> = {};
    mkdirSync(join(dir, 'fw'));
    for (const hw of [hardwareIds.primary, ...hardwareIds.secondaries]) {
      const file = join(dir, 'fw', `${hw}.bin`);
      const data = randomBytes(4096);
      writeFileSync(file, data);
      const name = `${hw}-2.0.0.bin`;
      await addTarget({ dir: repoDir, passphrase: PASSPHRASE, remote: { url: repo.url, token: UPLOAD_TOKEN } }, { file, name, hardwareIds: [hw], version: '2.0.0', releaseCounter: 2 });
      images[hw] = { name, sha256: createHash('sha256').update(data).digest('hex') };
    }

    // Director: a child process on Mosquitto, with the store and processes asked for.
    const directorDir = join(dir, 'director');
    await initDirector({ dir: directorDir, passphrase: PASSPHRASE, onlinePassphrase: ONLINE_PASSPHRASE });
    const imageRootFile = join(repoDir, 'metadata', '1.root.json');
    const port = await freePort();
    const mqttPrefix = `upfleet-bench-${randomBytes(4).toString('hex')}/v1`;
    const storeArgs: string[] = [];
    if (o.store === 'postgres') {
      const db = postgresDatabase();
      cleanups.push(() => db.drop());
      storeArgs.push('--database', db.url);
    }
    if (o.processes > 1) storeArgs.push('--processes', String(o.processes));
    const director = spawn(process.execPath, [
      DIRECTOR_BIN, 'serve', '--dir', directorDir, '--port', String(port), '--image-repo', repo.url, '--image-repo-root', imageRootFile,
      '--mqtt-url', MQTT_URL, '--mqtt-prefix', mqttPrefix, '--admin-token', ADMIN_TOKEN, '--provisioning-token', PROVISIONING_TOKEN, ...storeArgs,
    ], { env: { ...process.env, UPFLEET_ONLINE_PASSPHRASE: ONLINE_PASSPHRASE, UPFLEET_LOG_LEVEL: 'warn' }, stdio: ['ignore', 'ignore', 'pipe'] });
    let directorStderr = '';
    director.stderr!.on('data', (d: Buffer) => (directorStderr = (directorStderr + d.toString()).slice(-20_000)));
    const directorExited = new Promise<void>((r) => director.once('exit', () => r()));
    cleanups.push(async () => {
      director.kill('SIGTERM');
      const t = setTimeout(() => director.kill('SIGKILL'), 5000);
      await directorExited;
      clearTimeout(t);
    });
    const directorUrl = `http://127.0.0.1:${port}`;
    await waitHealthy(directorUrl, director, () => directorStderr);
    log(`director ${directorUrl} (${o.store}, ${o.processes} process(es)), MQTT ${MQTT_URL} prefix ${mqttPrefix}`);

    // Vehicles: registered, connected and reporting before the campaign starts.
    const ids = Array.from({ length: o.vehicles }, (_, i) => `bench-car-${i + 1}`);
    const arrivals: number[] = [];
    const updatedIds = new Set<string>();
    const ready = ids.length === 0 ? [] : Array.from({ length: Math.min(o.workers, o.vehicles) }, (_, w) => {
      const child = fork(join(import.meta.dirname, 'fleet-worker.ts'), [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
      let stderr = '';
      child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-5000)));
      workers.push(child);
      child.on('message', (m: { type: string; done?: Array<[string, number]> }) => {
        if (m.type === 'updated') for (const [id, at] of m.done!) if (!updatedIds.has(id)) (updatedIds.add(id), arrivals.push(at));
      });
      const setup: WorkerSetup = {
        type: 'setup', deviceIds: ids.filter((_, i) => i % o.workers === w), directorUrl, imageRepoUrl: repo.url,
        directorRoot: readFileSync(join(directorDir, 'metadata', '1.root.json')).toString('base64'),
        imageRoot: readFileSync(imageRootFile).toString('base64'), provisioningToken: PROVISIONING_TOKEN,
        mqttUrl: MQTT_URL, mqttPrefix, hardwareIds, concurrency: o.concurrency, maxSockets: 32, pollSeconds: 600,
      };
      child.send(setup);
      return new Promise<void>((resolve, reject) => {
        child.once('exit', (code) => reject(new BenchFailure(`worker ${w} exited with ${code}: ${stderr.slice(-2000)}`)));
        child.on('message', (m: { type: string }) => m.type === 'ready' && resolve());
      });
    });
    const t1 = Date.now();
    await Promise.race([Promise.all(ready), new Promise((_, reject) => setTimeout(() => reject(new BenchFailure(`vehicles not all registered: ${timeoutAdvice}`)), Math.max(0, deadline - Date.now())).unref())]);
    log(`${o.vehicles} vehicles registered and reporting in ${((Date.now() - t1) / 1000).toFixed(1)} s`);

    const signRate = rawSignRate();
    const directorPids = processTree(director.pid!);
    const cpuBefore = cpuSeconds(directorPids);
    const campaign = await admin(directorUrl, 'POST', '/campaigns', {
      name: 'bench', images: Object.entries(images).map(([hardwareId, i]) => ({ hardwareId, image: i.name })), waves: o.waves, successThreshold: o.threshold,
    });
    const t0 = Date.now();
    await admin(directorUrl, 'POST', `/campaigns/${campaign.id}/start`);
    log(`campaign ${campaign.id} started: waves ${o.waves.join(',')}%, gate ${o.threshold}`);
    let status: any;
    for (;;) {
      // The campaign list, not GET /campaigns/{id}: the list's counts come from the director's
      // counters, while the single view adds every device's assignment (a read of the whole group).
      status = (await admin(directorUrl, 'GET', '/campaigns')).campaigns.find((c: { id: string }) => c.id === campaign.id);
      const settled = (status.counts.succeeded ?? 0) + (status.counts.failed ?? 0) + (status.counts.cancelled ?? 0);
      if ((settled >= o.vehicles && updatedIds.size >= o.vehicles) || status.status === 'halted' || status.status === 'aborted') break;
      if (Date.now() > deadline) throw new BenchFailure(`campaign at wave ${status.currentWave}/${status.totalWaves}, ${JSON.stringify(status.counts)}, ${updatedIds.size} vehicles updated: ${timeoutAdvice}`);
      await new Promise((r) => setTimeout(r, 1000));
    }
    const allDirectorPids = [...new Set([...directorPids, ...processTree(director.pid!)])];
    const cpu = cpuSeconds(allDirectorPids) - cpuBefore;
    const last = Math.max(...arrivals);
    const campaignSeconds = (last - t0) / 1000;
    log(`campaign ${status.status}: ${JSON.stringify(status.counts)} in ${campaignSeconds.toFixed(1)} s`);

    const reports = await Promise.all(workers.map((w) => new Promise<WorkerReport>((resolve) => {
      w.on('message', (m: WorkerReport) => m.type === 'report' && resolve(m));
      w.send({ type: 'report', images });
    })));
    const wrong = reports.flatMap((r) => r.wrong);
    const problems: string[] = [];
    if ((status.counts.succeeded ?? 0) !== o.vehicles) problems.push(`the director counts ${status.counts.succeeded ?? 0} of ${o.vehicles} assignments succeeded (${JSON.stringify(status.counts)})`);
    if (wrong.length > 0) problems.push(`${wrong.length} vehicle(s) do not run the new images: ${wrong.slice(0, 5).join('; ')}`);
    if (updatedIds.size !== o.vehicles) problems.push(`${o.vehicles - updatedIds.size} vehicle(s) never had a result manifest accepted`);

    const seconds = arrivals.map((a) => (a - t0) / 1000).sort((a, b) => a - b);
    const signatures = SIGNATURES_PER_VEHICLE * o.vehicles;
    const line = {
      bench: 'fleet', vehicles: o.vehicles, store: o.store, processes: o.processes, workers: o.workers, secondaries: o.secondaries,
      waves: o.waves.join(','), campaignSeconds: +campaignSeconds.toFixed(1),
      updatedPerSecond: +(o.vehicles / campaignSeconds).toFixed(1),
      p50Seconds: +quantile(seconds, 0.5).toFixed(1), p99Seconds: +quantile(seconds, 0.99).toFixed(1),
      directorCpuSecondsPerVehicle: +(cpu / o.vehicles).toFixed(4),
      peakRssMb: { director: allDirectorPids.map(peakRssMb).filter((m) => m > 0), imageRepo: Math.max(...processTree(repo.process.pid!).map(peakRssMb)) },
      directorSignaturesPerSecond: +(signatures / campaignSeconds).toFixed(1), rawSignPerCpuSecond: Math.round(signRate),
      signRatio: +(signatures / campaignSeconds / signRate).toFixed(4),
      loadAverage: loadavg().map((l) => +l.toFixed(2)),
      ok: problems.length === 0,
    };
    process.stdout.write(JSON.stringify(line) + '\n');
    if (problems.length > 0) {
      for (const p of problems) process.stderr.write(`bench:fleet FAILED: ${p}\n`);
      return 1;
    }
    return 0;
  } catch (e) {
    process.stderr.write(`bench:fleet FAILED: ${(e as Error).message}\n`);
    return 1;
  } finally {
    for (const w of workers) if (w.exitCode === null) w.send({ type: 'exit' }, () => undefined);
    await Promise.all(workers.map((w) => (w.exitCode === null ? new Promise((r) => w.once('exit', r)) : undefined)));
    for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => undefined);
  }
}

process.exitCode = await main();
