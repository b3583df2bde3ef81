/**
 * bench:agent — the agent's memory and download figures, in one run, in the form that
 * is deployed. Every case runs BENCH_AGENT_REPEATS times (default 3); each figure is
 * printed with its min/median/max, its goal and the baseline from before issue 15 (a
 * table on stderr), and stdout gets one JSON line with the medians at the top level
 * (for bench/run-all.ts), `stats` (min/median/max of every figure) and the load average
 * at the start and the end. On a shared machine the figures move with the load.
 *   idleRssMb:        VmRSS of the single executable built by `npm run build:agent`
 *                     (`upfleet-agent run`, provisioned, with a real director and image repo
 *                     on loopback), 3 s after a cycle with nothing to do, with the
 *                     executable's page cache as after a reboot (see dropPageCache;
 *                     idleRssMbFreshBuild is one run right after the build, before that);
 *                     idleRssBreakdownMb splits it into anonymous memory (heap, malloc) and
 *                     file-backed pages (the executable's code and read-only data actually
 *                     touched, the SQLite addon, libc: clean pages the kernel can reclaim);
 *                     idlePssMb its proportional set size (smaps_rollup: shared pages
 *                     counted in part; the executable is a copy of node shared with nothing,
 *                     so PSS is close to RSS); bareNodeIdle the RSS and PSS of a bare `node -e`
 *                     process kept alive by a timer: the floor any Node daemon starts from
 *                     (idleRssOverBareNodeMb is what the agent adds); idleRssMbViaTsx is the
 *                     same daemon started through tsx, for comparison;
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
 *                     (the download hashes sha512 on a worker thread beside the receiving
 *                     thread, which hashes sha256, so with free cores it can exceed 1);
 *                     the top-level figure downloads into
 *                     tmpfs (/dev/shm) to measure the network-and-verify path,
 *                     onDiskRatioToHashLimit the same into the temp directory (bounded by
 *                     the disk's write speed and the final fsync: onDisk.diskWriteMBps is
 *                     that speed, 1 GiB in 4 MiB writes and one fdatasync, measured in the
 *                     same run, and onDiskWriteBoundRatio = diskWriteMBps / hash rate is the
 *                     highest ratio any download can reach there).
 * BENCH_AGENT_SIZES_MIB (default 256,1024), BENCH_AGENT_SKIP_DOWNLOAD=1 / _SKIP_IDLE=1 run
 * a part; BENCH_AGENT_CPU_PROF=<dir> writes the download children's CPU profiles there.
 * Goals: idle <= 55 MB, peak <= 100 MB, ratio >= 0.8 (tmpfs) and >= 0.7 (disk).
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { build } from 'esbuild';
import { loadavg, tmpdir, uptime } from 'node:os';
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

/** Starts bench/agent-image-server.ts in a session of its own (see there why), serving `block` per image. */
async function serveGenerated(images: Map<string, number>, dir: string): Promise<{ url: string; close(): void }> {
  const blockFile = join(dir, 'block.bin');
  writeFileSync(blockFile, block);
  const server = spawn(process.execPath, ['--import', 'tsx', join(root, 'bench/agent-image-server.ts'), blockFile, JSON.stringify(Object.fromEntries(images))], {
    cwd: root, detached: true, stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    server.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve(out.trim());
    });
    server.on('exit', (code) => reject(new Error(`image server exited ${code}`)));
  });
  return { url, close: () => server.kill('SIGTERM') };
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
  diskWriteMBps?: number;
}

/** One download run; `dir` is where the image goes; `disk` also measures the disk's write rate there. */
async function downloadCase(child: string, server: { url: string }, blocks: number, dir: string, disk: boolean): Promise<DownloadFigures> {
  const target = { name: `bench-${blocks}.img`, length: blocks * MiB, hashes: hashesOf(blocks) };
  const out = await runChild([child, server.url, JSON.stringify(target), dir, ...(disk ? ['disk'] : [])]);
  const figures = JSON.parse(out.trim().split('\n').pop()!) as DownloadFigures;
  if (!figures.peakReset) throw new Error('cannot reset VmHWM (/proc/self/clear_refs): the peak would include startup');
  return figures;
}

interface Rss { rss: number; anon: number; file: number; pss: number }

/** `uptime`'s figures: "up 27 min, load average: 11.12, 12.65, 9.00". */
function uptimeLine(): string {
  return `up ${Math.round(uptime() / 60)} min, load average: ${loadavg().map((x) => x.toFixed(2)).join(', ')}`;
}

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

/**
 * Drops the page cache of a freshly built executable, as a device reboot does. The build
 * writes the file, and written pages sit in large folios: a process that touches one byte
 * of a folio maps all of it, so the executable's file-backed RSS depends on how its pages
 * came into memory (measured: 64 MB idle RSS right after the build, 53 MB once the pages
 * were read back from disk). Read pages come in readahead-sized folios, as on a device
 * that booted. `dd iflag=nocache count=0` is posix_fadvise(DONTNEED) on the whole file;
 * the fsync first makes every page clean, so all of them can go.
 */
function dropPageCache(file: string): void {
  const fd = openSync(file, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  const r = spawnSync('dd', [`if=${file}`, 'iflag=nocache', 'count=0', 'status=none']);
  if (r.status !== 0) throw new Error(`dd iflag=nocache ${file}: ${r.stderr}`);
}

interface Stat {
  min: number;
  median: number;
  max: number;
}

const REPEATS = Number(process.env.BENCH_AGENT_REPEATS ?? 3);
const round = (x: number) => Math.round(x * 100) / 100;
function stat(xs: number[]): Stat {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? { min: NaN, median: NaN, max: NaN } : { min: round(s[0]!), median: round(s[Math.floor(s.length / 2)]!), max: round(s.at(-1)!) };
}
async function repeat<T>(run: () => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < REPEATS; i++) out.push(await run());
  return out;
}

/** The goals (issue 15) and the figures measured before it (the brief's, under heavy load), per figure. */
const GOALS = { idleRssMb: 55, peakRssMb: 100, ratioToHashLimit: 0.8, onDiskRatioToHashLimit: 0.7 };
const BASELINE = { idleRssMb: '62', ratioToHashLimit: '0.50-0.87', onDiskRatioToHashLimit: '0.56-0.59' };

const sizes = (process.env.BENCH_AGENT_SIZES_MIB ?? '256,1024').split(',').map(Number);
const largest = Math.max(...sizes);
const loadAtStart = loadavg();
const uptimeAtStart = uptimeLine();
const stats: Record<string, Stat> = {};
const peaks: Record<string, number> = {};
const before: Record<string, number> = {};
const growth: Record<string, number> = {};
// BENCH_AGENT_SKIP_DOWNLOAD=1 / BENCH_AGENT_SKIP_IDLE=1 measure one half only.
if (process.env.BENCH_AGENT_SKIP_DOWNLOAD !== '1') {
  const images = new Map(sizes.map((n) => [`/targets/${hashesOf(n).sha256}.bench-${n}.img`, n]));
  const childDir = mkdtempSync(join(tmpdir(), 'upfleet-bench-child-'));
  const server = await serveGenerated(images, childDir);
  try {
    const child = await bundleChild(childDir);
    // To disk (the temp directory), every size: peak RSS must not grow with the size.
    for (const n of sizes) {
      const runs = await repeat(() => downloadCase(child, server, n, tmpdir(), n === largest));
      const key = `${n}MiB`;
      stats[`peakRssMb.${key}`] = stat(runs.map((r) => r.peakDownloadMb));
      stats[`downloadGrowthMb.${key}`] = stat(runs.map((r) => r.peakDownloadMb - r.rssBeforeMb));
      peaks[key] = stats[`peakRssMb.${key}`]!.max;
      before[key] = stat(runs.map((r) => r.rssBeforeMb)).median;
      growth[key] = stats[`downloadGrowthMb.${key}`]!.max;
      if (n !== largest) continue;
      // Each run measures the download and the page-cache hash back to back: the ratio per run.
      stats.onDiskRatioToHashLimit = stat(runs.map((r) => r.downloadMBps / r.hashMBps));
      stats['onDisk.downloadMBps'] = stat(runs.map((r) => r.downloadMBps));
      stats['onDisk.hashFromPageCacheMBps'] = stat(runs.map((r) => r.hashMBps));
      stats['onDisk.diskWriteMBps'] = stat(runs.map((r) => r.diskWriteMBps!));
      // The most any download can reach there: the disk's own write rate over the hash rate.
      stats['onDisk.diskWriteBoundRatio'] = stat(runs.map((r) => r.diskWriteMBps! / r.hashMBps));
    }
    // The same download into tmpfs: the network-and-verify path without the disk's write speed.
    if (existsSync('/dev/shm')) {
      const runs = await repeat(() => downloadCase(child, server, largest, '/dev/shm', false));
      stats.ratioToHashLimit = stat(runs.map((r) => r.downloadMBps / r.hashMBps));
      stats.downloadMBps = stat(runs.map((r) => r.downloadMBps));
      stats.hashFromPageCacheMBps = stat(runs.map((r) => r.hashMBps));
    }
  } finally {
    server.close();
    rmSync(childDir, { recursive: true, force: true });
  }
}

// The shipped form (npm run build:agent: esbuild bundle in a Node single executable), and via tsx.
const buildDir = mkdtempSync(join(tmpdir(), 'upfleet-bench-build-'));
if (process.env.BENCH_AGENT_SKIP_IDLE !== '1') try {
  const built = spawn(process.execPath, ['--import', 'tsx', 'scripts/build-agent.ts', '--out', join(buildDir, 'out')], { cwd: root, stdio: 'ignore' });
  if ((await new Promise((r) => built.on('exit', r))) !== 0) throw new Error('build:agent failed');
  const executable = join(buildDir, 'out', 'upfleet-agent');
  // Once as built (pages written by the build), then as after a reboot (see dropPageCache).
  const fresh = await idleRss([executable], 'bench-idle-fresh');
  stats.idleRssMbFreshBuild = stat([fresh.rss]);
  for (const f of readdirSync(join(buildDir, 'out'))) dropPageCache(join(buildDir, 'out', f));
  const idle = await repeat(() => idleRss([executable], `bench-idle-sea-${randomBytes(3).toString('hex')}`));
  stats.idleRssMb = stat(idle.map((m) => m.rss));
  stats.idlePssMb = stat(idle.map((m) => m.pss));
  stats['idleRssBreakdownMb.anon'] = stat(idle.map((m) => m.anon));
  stats['idleRssBreakdownMb.file'] = stat(idle.map((m) => m.file));
  const bare = await repeat(bareNodeIdle);
  stats['bareNodeIdle.rssMb'] = stat(bare.map((m) => m.rss));
  stats['bareNodeIdle.pssMb'] = stat(bare.map((m) => m.pss));
  stats.idleRssOverBareNodeMb = stat([stats.idleRssMb.median - stats['bareNodeIdle.rssMb'].median]);
  const tsx = await repeat(() => idleRss([process.execPath, `${root}agent/bin/upfleet-agent`], `bench-idle-tsx-${randomBytes(3).toString('hex')}`));
  stats.idleRssMbViaTsx = stat(tsx.map((m) => m.rss));
} finally {
  rmSync(buildDir, { recursive: true, force: true });
}

const loadAtEnd = loadavg();
const med = (k: string) => stats[k]?.median ?? NaN;
// Human-readable, on stderr: each figure with its goal and the baseline (stdout keeps the one JSON line).
const rows = Object.entries(stats).map(([k, v]) => {
  const goalKey = k.replace(/\..*$/, '') as keyof typeof GOALS;
  const goal = GOALS[goalKey] === undefined ? '' : `${/Mb$/.test(goalKey) ? '<=' : '>='} ${GOALS[goalKey]}`;
  return [k, String(v.min), String(v.median), String(v.max), goal, BASELINE[goalKey as keyof typeof BASELINE] ?? ''];
});
const header = ['figure', 'min', 'median', 'max', 'goal', 'baseline'];
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
process.stderr.write(
  [header, ...rows].map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n') +
    `\n${REPEATS} run(s) each; ${uptimeAtStart} at the start, ${uptimeLine()} at the end (2 cores shared: figures move with the load)\n`,
);
process.stdout.write(
  JSON.stringify({
    bench: 'agent',
    idleRssMb: med('idleRssMb'),
    idleRssBreakdownMb: { anon: med('idleRssBreakdownMb.anon'), file: med('idleRssBreakdownMb.file') },
    idlePssMb: med('idlePssMb'),
    idleRssMbFreshBuild: med('idleRssMbFreshBuild'),
    idleRssMbViaTsx: med('idleRssMbViaTsx'),
    bareNodeIdle: { rssMb: med('bareNodeIdle.rssMb'), pssMb: med('bareNodeIdle.pssMb') },
    idleRssOverBareNodeMb: med('idleRssOverBareNodeMb'),
    peakRssMb: peaks,
    rssBeforeDownloadMb: before,
    downloadGrowthMb: growth,
    daemonPeakEstimateMb: round(med('idleRssMb') + Math.max(...Object.values(growth))),
    downloadMBps: med('downloadMBps'),
    hashFromPageCacheMBps: med('hashFromPageCacheMBps'),
    ratioToHashLimit: med('ratioToHashLimit'),
    onDisk: { downloadMBps: med('onDisk.downloadMBps'), hashFromPageCacheMBps: med('onDisk.hashFromPageCacheMBps'), diskWriteMBps: med('onDisk.diskWriteMBps') },
    onDiskRatioToHashLimit: med('onDiskRatioToHashLimit'),
    onDiskWriteBoundRatio: med('onDisk.diskWriteBoundRatio'),
    repeats: REPEATS,
    stats,
    baseline: BASELINE,
    loadAvg: { start: loadAtStart.map(round), end: loadAtEnd.map(round) },
    goals: GOALS,
  }) + '\n',
);
