/**
 * bench:agent — the agent's memory and download figures, in one run, in the form that
 * is deployed:
 *   idleRssMb:        VmRSS of the single executable built by `npm run build:agent`
 *                     (`upfleet-agent run`, provisioned, with a real director and image repo
 *                     on loopback and an MQTT broker), 3 s after a cycle with nothing to do;
 *                     idleRssBreakdownMb splits it into anonymous memory (heap, malloc) and
 *                     file-backed pages (the executable's code and read-only data actually
 *                     touched, the SQLite addon, libc: clean pages the kernel can reclaim);
 *                     idlePssMb its proportional set size (smaps_rollup: shared pages
 *                     counted in part); bareNodeIdle the RSS and PSS of a bare `node -e`
 *                     process kept alive by a timer, measured in the same run: the floor any
 *                     Node daemon starts from (idleRssOverBareNodeMb is what the agent adds);
 *                     idleRssMbViaTsx is the same daemon started through tsx, for comparison;
 *   peakRssMb:        peak RSS (VmHWM, reset just before the download starts) of a process
 *                     downloading a 256 MiB and a 1 GiB image with the agent's ImageCache
 *                     from a loopback HTTP server (generated content). That process is the
 *                     download code bundled with esbuild and run with plain node, like the
 *                     executable runs its bundle (no tsx); it loads only the download path,
 *                     so rssBeforeDownloadMb is lower than the daemon's idle RSS and
 *                     downloadGrowthMb (peak - before) is what a download adds; it must not
 *                     grow with the image size. daemonPeakEstimateMb = idleRssMb + the largest
 *                     growth: an estimate of the daemon's peak while downloading;
 *   ratioToHashLimit: download-and-verify throughput (sha256+sha512, length, write to
 *                     a partial file, fsync, rename) divided by the throughput of hashing
 *                     the same file from page cache with the same algorithms one after
 *                     the other on one thread, measured in the same process right after
 *                     (the download hashes each algorithm on its own worker thread, so on
 *                     two free cores it can exceed 1); the top-level figure downloads into
 *                     tmpfs (/dev/shm) to measure the network-and-verify path,
 *                     onDiskRatioToHashLimit the same into the temp directory (bounded by
 *                     the disk's write speed and the final fsync).
 * Prints one JSON line: {"bench":"agent",...}. Goals: idle <= 55 MB, peak <= 100 MB,
 * ratio >= 0.8 (tmpfs) and >= 0.7 (disk).
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { build } from 'esbuild';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { realWorld } from '../agent/src/testing/real-world.ts';

const MiB = 2 ** 20;
const root = fileURLToPath(new URL('..', import.meta.url));
const block = randomBytes(MiB);

/** sha256/sha512 of `block` repeated `n` times. */
function hashesOf(n: number): Record<string, string> {
  const a = createHash('sha256');
  const b = createHash('sha512');
  for (let i = 0; i < n; i++) {
    a.update(block);
    b.update(block);
  }
  return { sha256: a.digest('hex'), sha512: b.digest('hex') };
}

/** Serves `block` repeated per image, with Range (whole blocks only are needed: offsets are arbitrary). */
async function serveGenerated(images: Map<string, number>): Promise<{ url: string; close(): void }> {
  const server = http.createServer(async (req, res) => {
    const blocks = images.get(new URL(req.url ?? '/', 'http://x').pathname);
    if (blocks === undefined) return void res.writeHead(404).end();
    const total = blocks * MiB;
    const from = Number(/^bytes=(\d+)-$/.exec(req.headers.range ?? '')?.[1] ?? 0);
    res.writeHead(from > 0 ? 206 : 200, { 'content-length': total - from });
    let offset = from;
    while (offset < total) {
      const inBlock = offset % MiB;
      const chunk = block.subarray(inBlock);
      offset += chunk.length;
      if (!res.write(chunk)) await new Promise((r) => res.once('drain', r));
    }
    res.end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => server.close() };
}

/** The download child as one ESM file for plain node (see bench/agent-download-child.ts). */
async function bundleChild(dir: string): Promise<string> {
  const outfile = join(dir, 'agent-download-child.mjs');
  await build({
    entryPoints: [join(root, 'bench/agent-download-child.ts')],
    outfile, bundle: true, platform: 'node', format: 'esm', target: 'node20', logLevel: 'error',
    banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  });
  return outfile;
}

/** BENCH_AGENT_CPU_PROF=<dir>: each download child writes a V8 CPU profile there (node --cpu-prof; workers too). */
const cpuProf = process.env.BENCH_AGENT_CPU_PROF;

function runChild(args: string[]): Promise<string> {
  const flags = cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${cpuProf}`] : [];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...flags, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${args.join(' ')} exited ${code}`))));
  });
}

interface DownloadFigures {
  downloadMBps: number;
  hashMBps: number;
  peakDownloadMb: number;
  rssBeforeMb: number;
  peakReset: boolean;
}

async function downloadCase(child: string, server: { url: string }, blocks: number, dir?: string): Promise<DownloadFigures> {
  const target = { name: `bench-${blocks}.img`, length: blocks * MiB, hashes: hashesOf(blocks) };
  const out = await runChild([child, server.url, JSON.stringify(target), ...(dir ? [dir] : [])]);
  const figures = JSON.parse(out.trim().split('\n').pop()!) as DownloadFigures;
  if (!figures.peakReset) throw new Error('cannot reset VmHWM (/proc/self/clear_refs): the peak would include startup');
  return figures;
}

interface Rss { rss: number; anon: number; file: number; pss: number }

/** VmRSS (with its anonymous and file-backed parts) and PSS (smaps_rollup) of a live process, in MB. */
function memoryOf(pid: number): Rss {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kB = (text: string, field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(text)?.[1] ?? NaN) / 1024;
  const rollup = existsSync(`/proc/${pid}/smaps_rollup`) ? readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8') : '';
  return { rss: kB(status, 'VmRSS'), anon: kB(status, 'RssAnon'), file: kB(status, 'RssFile'), pss: kB(rollup, 'Pss') };
}

/** The same figures for a bare `node -e` process kept alive by a timer: the floor any Node daemon starts from. */
async function bareNodeIdle(): Promise<Rss> {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1 << 30)'], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 3000));
  const m = memoryOf(child.pid!);
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
  return m;
}

/** RSS of an idle daemon; `command` is the agent executable and its leading arguments. */
async function idleRss(command: string[], deviceId: string): Promise<Rss> {
  const w = await realWorld({ deviceId });
  const [exe, ...pre] = command as [string, ...string[]];
  try {
    // Asynchronous: the director runs in this process and must keep answering.
    const provision = spawn(exe, [...pre, 'provision', '--config', w.configPath], { stdio: ['ignore', 'ignore', 'pipe'] });
    let perr = '';
    provision.stderr.on('data', (d: Buffer) => (perr += d.toString()));
    const code = await new Promise((r) => provision.on('exit', r));
    if (code !== 0) throw new Error(`provision: ${perr}`);
    const child = spawn(exe, [...pre, 'run', '--config', w.configPath, '--poll-interval-seconds', '3600'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    await new Promise<void>((resolve, reject) => {
      child.stderr.on('data', (d: Buffer) => {
        log += d.toString();
        if (log.includes('"cycle done"')) resolve();
      });
      child.on('exit', (code) => reject(new Error(`agent exited ${code}: ${log}`)));
    });
    await new Promise((r) => setTimeout(r, 3000));
    const m = memoryOf(child.pid!);
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    return m;
  } finally {
    await w.close();
  }
}

const REPEATS = Number(process.env.BENCH_AGENT_REPEATS ?? 3);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const sizes = (process.env.BENCH_AGENT_SIZES_MIB ?? '256,1024').split(',').map(Number);
const peaks: Record<string, number> = {};
const before: Record<string, number> = {};
const growth: Record<string, number> = {};
let onDisk = { downloadMBps: 0, hashMBps: 0 };
let inMemory = { downloadMBps: 0, hashMBps: 0 };
// BENCH_AGENT_SKIP_DOWNLOAD=1 / BENCH_AGENT_SKIP_IDLE=1 measure one half only.
if (process.env.BENCH_AGENT_SKIP_DOWNLOAD !== '1') {
  const images = new Map(sizes.map((n) => [`/targets/${hashesOf(n).sha256}.bench-${n}.img`, n]));
  const server = await serveGenerated(images);
  const childDir = mkdtempSync(join(tmpdir(), 'upfleet-bench-child-'));
  try {
    const child = await bundleChild(childDir);
    for (const n of sizes) {
      const r = await downloadCase(child, server, n);
      peaks[`${n}MiB`] = Math.round(r.peakDownloadMb * 10) / 10;
      before[`${n}MiB`] = Math.round(r.rssBeforeMb * 10) / 10;
      growth[`${n}MiB`] = Math.round((r.peakDownloadMb - r.rssBeforeMb) * 10) / 10;
      if (n === Math.max(...sizes)) onDisk = r;
    }
    // The same download into tmpfs: the network-and-verify path without the disk's write speed.
    // Repeated, each run measuring both rates back to back; the ratio of the medians.
    if (existsSync('/dev/shm')) {
      const runs: DownloadFigures[] = [];
      for (let i = 0; i < REPEATS; i++) runs.push(await downloadCase(child, server, Math.max(...sizes), '/dev/shm'));
      inMemory = { downloadMBps: median(runs.map((r) => r.downloadMBps)), hashMBps: median(runs.map((r) => r.hashMBps)) };
    }
  } finally {
    server.close();
    rmSync(childDir, { recursive: true, force: true });
  }
}
// The shipped form (npm run build:agent: esbuild bundle in a Node single executable), and via tsx.
const buildDir = mkdtempSync(join(tmpdir(), 'upfleet-bench-build-'));
const none: Rss = { rss: NaN, anon: NaN, file: NaN, pss: NaN };
let idle = none;
let idleTsx = none;
let bare = none;

if (process.env.BENCH_AGENT_SKIP_IDLE !== '1') try {
  const built = spawn(process.execPath, ['--import', 'tsx', 'scripts/build-agent.ts', '--out', join(buildDir, 'out')], { cwd: root, stdio: 'ignore' });
  if ((await new Promise((r) => built.on('exit', r))) !== 0) throw new Error('build:agent failed');
  idle = await idleRss([join(buildDir, 'out', 'upfleet-agent')], 'bench-idle-sea');
  idleTsx = await idleRss([process.execPath, `${root}agent/bin/upfleet-agent`], 'bench-idle-tsx');
  bare = await bareNodeIdle();
} finally {
  rmSync(buildDir, { recursive: true, force: true });
}
const round = (x: number) => Math.round(x * 100) / 100;
process.stdout.write(
  JSON.stringify({
    bench: 'agent',
    idleRssMb: round(idle.rss),
    idleRssBreakdownMb: { anon: round(idle.anon), file: round(idle.file) },
    idlePssMb: round(idle.pss),
    idleRssMbViaTsx: round(idleTsx.rss),
    bareNodeIdle: { rssMb: round(bare.rss), pssMb: round(bare.pss) },
    idleRssOverBareNodeMb: round(idle.rss - bare.rss),
    peakRssMb: peaks,
    rssBeforeDownloadMb: before,
    downloadGrowthMb: growth,
    daemonPeakEstimateMb: round(idle.rss + Math.max(...Object.values(growth))),
    downloadMBps: round(inMemory.downloadMBps),
    hashFromPageCacheMBps: round(inMemory.hashMBps),
    ratioToHashLimit: round(inMemory.downloadMBps / inMemory.hashMBps),
    repeats: REPEATS,
    onDisk: { downloadMBps: round(onDisk.downloadMBps), hashFromPageCacheMBps: round(onDisk.hashMBps) },
    onDiskRatioToHashLimit: round(onDisk.downloadMBps / onDisk.hashMBps),
    goals: { idleRssMb: 55, peakRssMb: 100, ratioToHashLimit: 0.8, onDiskRatioToHashLimit: 0.7 },
  }) + '\n',
);
