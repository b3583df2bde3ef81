/**
 * bench:verify — a cold full refresh plus one target lookup, upfleet's Updater
 * against tuf-js's, in the same run, both over loopback HTTP from the same
 * static server (keep-alive, as the image repository's) and each with a fresh
 * metadata directory per iteration.
 *
 * Cases:
 *   targets-10000:   one targets role listing 10,000 targets;
 *   delegations-50:  50 delegated roles (paths `*`, 20 targets each), the target in
 *                    the last one, so every role is fetched and verified.
 *   fanout-500:      the same with 500 roles under targets (5 targets each);
 *   chain-500:       500 roles in a chain (targets -> r0 -> r1 -> ... -> r499), each
 *                    delegating `*` to the next, the target in the last.
 * The 500-role cases raise both clients' delegation cap to 512.
 * Both clients persist what they accept into directories under BENCH_VERIFY_DIR (default:
 * the OS temp directory). Creating a file costs each client the same there; on a shared
 * machine whose disk is busy that cost swings with other processes' I/O, and a tmpfs
 * (BENCH_VERIFY_DIR=/dev/shm) keeps it out of the comparison.
 *
 * The server runs in a process of its own (bench/verify-server.ts), as the repository
 * does for a device: its work is charged to neither client.
 * The two clients run in pairs, one right after the other, the order swapped from one
 * pair to the next, so a change of load on a shared machine hits both sides of a
 * pair alike. Each pair gives a ratio (tuf-js time / upfleet time); the line reports
 * their median as ratioVsTufJs (goal: 5 for the delegation cases, 3 for
 * targets-10000), their min and max, each client's median time, and the 1-minute
 * load average before (loadAvgStart) and after (loadAvg1m) the case. The same for the
 * CPU time the process spent during each run (cpuRatioVsTufJs, upfleetCpuMs, ...: every
 * thread of the client's process), which a busy machine disturbs far less
 * than it does wall time.
 * Prints one JSON line per case: {"bench":"verify","case",...,"ratioVsTufJs",...}.
 */
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Updater as TufJsUpdater } from 'tuf-js';
import { RepositoryBuilder } from '../core/src/repository.ts';
import { Updater } from '../core/src/updater.ts';
import { utf8 } from '../core/src/bytes.ts';
import { HttpFetcher } from '../agent/src/fetcher.ts';
import { DEFAULT_LIMITS } from '../agent/src/config.ts';
import { DirectoryMetadataStore } from '../agent/src/tuf/directory-store.ts';
import { fork } from 'node:child_process';

const ITERATIONS = process.env.BENCH_ITERATIONS === undefined ? undefined : Number(process.env.BENCH_ITERATIONS);

interface Case {
  name: string;
  repo: RepositoryBuilder;
  target: string;
  /** Timed runs per client (tuf-js 5 takes over a minute per run on 10,000 targets). */
  iterations: number;
  /** An untimed first run per client (pointless when one run takes a minute). */
  warmUp: boolean;
  /** Both clients' cap on the roles one search visits. */
  maxDelegations: number;
  /** The least ratioVsTufJs wanted (run-all's default for verify when absent). */
  goal?: number;
}

function targetsCase(): Case {
  const repo = new RepositoryBuilder({ now: new Date() });
  for (let i = 0; i < 10_000; i++) {
    repo.addTarget(`images/ecu-${i % 50}/firmware-${i}.bin`, utf8(`image ${i}`), {
      custom: { hardwareIds: [`ecu-${i % 50}`], releaseCounter: i, version: `1.0.${i}` },
    });
  }
  return { name: 'targets-10000', repo, target: 'images/ecu-49/firmware-9999.bin', iterations: ITERATIONS ?? 3, warmUp: false, maxDelegations: 64 };
}

function fanOutCase(name: string, roles: number, targetsPerRole: number, iterations: number): Case {
  const repo = new RepositoryBuilder({ now: new Date() });
  for (let r = 0; r < roles; r++) {
    repo.delegate('targets', { name: `supplier-${r}`, paths: ['*'] });
    for (let i = 0; i < targetsPerRole; i++) repo.addTarget(`s${r}-image-${i}.bin`, utf8(`supplier ${r} image ${i}`), { role: `supplier-${r}` });
  }
  const target = `s${roles - 1}-image-${targetsPerRole - 1}.bin`;
  return { name, repo, target, iterations: ITERATIONS ?? iterations, warmUp: true, maxDelegations: roles <= 50 ? 64 : 512, goal: 5 };
}

function chainCase(): Case {
  const repo = new RepositoryBuilder({ now: new Date() });
  let parent = 'targets';
  for (let r = 0; r < 500; r++) {
    repo.delegate(parent, { name: `r${r}`, paths: ['*'] });
    parent = `r${r}`;
  }
  repo.addTarget('deep.bin', utf8('at the end of the chain'), { role: parent });
  return { name: 'chain-500', repo, target: 'deep.bin', iterations: ITERATIONS ?? 5, warmUp: true, maxDelegations: 512, goal: 5 };
}

interface Sample {
  ms: number;
  cpuMs: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Starts bench/verify-server.ts in a session of its own, serving `files`. */
async function serveElsewhere(files: Map<string, Uint8Array>): Promise<{ url: string; close(): Promise<void> }> {
  const child = fork(join(import.meta.dirname, 'verify-server.ts'), {
    execArgv: ['--import', 'tsx'], detached: true, serialization: 'advanced', stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  const url = await new Promise<string>((resolve, reject) => {
    child.once('message', (m: { url: string }) => resolve(m.url));
    child.once('exit', (code) => reject(new Error(`repository server exited ${code}`)));
    child.send({ files: [...files] });
  });
  return { url, close: () => new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.disconnect();
  }) };
}

async function run(c: Case): Promise<void> {
  const files = c.repo.commit();
  const server = await serveElsewhere(files);
  const root = files.get('metadata/1.root.json')!;
  const work = mkdtempSync(join(process.env.BENCH_VERIFY_DIR ?? tmpdir(), 'upfleet-bench-verify-'));
  let n = 0;
  const freshDir = (): string => {
    const dir = join(work, String(n++));
    mkdirSync(dir);
    writeFileSync(join(dir, 'root.json'), root);
    return dir;
  };

  /** Wall time and CPU time (every thread of the process: client, loopback server, thread pool) of `work`. */
  const timed = async (work: () => Promise<void>): Promise<Sample> => {
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    await work();
    const cpu = process.cpuUsage(cpu0);
    return { ms: performance.now() - t0, cpuMs: (cpu.user + cpu.system) / 1000 };
  };

  const upfleet = (): Promise<Sample> => {
    const dir = freshDir();
    return timed(async () => {
      const updater = new Updater({
        metadataBaseUrl: `${server.url}metadata/`,
        fetcher: new HttpFetcher(DEFAULT_LIMITS),
        store: new DirectoryMetadataStore(dir),
        now: new Date(),
        maxDelegations: c.maxDelegations,
      });
      await updater.refresh();
      const found = await updater.findTarget(c.target);
      if (!found) throw new Error(`upfleet did not find ${c.target}`);
    });
  };

  const tufJs = (): Promise<Sample> => {
    const dir = freshDir();
    return timed(async () => {
      const updater = new TufJsUpdater({
        metadataDir: dir,
        metadataBaseUrl: `${server.url}metadata`,
        config: { maxDelegations: c.maxDelegations },
      });
      await updater.refresh();
      const info = await updater.getTargetInfo(c.target);
      if (!info) throw new Error(`tuf-js did not find ${c.target}`);
    });
  };

  try {
    await upfleet(); // warm-up (JIT, connections)
    if (c.warmUp) await tufJs();
    const loadAvgStart = loadavg()[0]!;
    const ours: Sample[] = [];
    const theirs: Sample[] = [];
    const ratios: number[] = [];
    const cpuRatios: number[] = [];
    for (let i = 0; i < c.iterations; i++) {
      let mine: Sample;
      let baseline: Sample;
      if (i % 2 === 0) {
        mine = await upfleet();
        baseline = await tufJs();
      } else {
        baseline = await tufJs();
        mine = await upfleet();
      }
      ours.push(mine);
      theirs.push(baseline);
      ratios.push(baseline.ms / mine.ms);
      cpuRatios.push(baseline.cpuMs / mine.cpuMs);
    }
    const targetsBytes = c.repo.bytes('targets').byteLength;
    const ms = (x: number) => Number(x.toFixed(1));
    const ratio = (x: number) => Number(x.toFixed(2));
    console.log(
      JSON.stringify({
        bench: 'verify',
        case: c.name,
        iterations: c.iterations,
        targetsJsonBytes: targetsBytes,
        upfleetMs: ms(median(ours.map((x) => x.ms))),
        tufJsMs: ms(median(theirs.map((x) => x.ms))),
        ratioVsTufJs: ratio(median(ratios)),
        ratioMin: ratio(Math.min(...ratios)),
        ratioMax: ratio(Math.max(...ratios)),
        upfleetCpuMs: ms(median(ours.map((x) => x.cpuMs))),
        tufJsCpuMs: ms(median(theirs.map((x) => x.cpuMs))),
        cpuRatioVsTufJs: ratio(median(cpuRatios)),
        cpuRatioMin: ratio(Math.min(...cpuRatios)),
        cpuRatioMax: ratio(Math.max(...cpuRatios)),
        ...(c.goal !== undefined && { goals: { ratioVsTufJs: c.goal } }),
        metadataDir: process.env.BENCH_VERIFY_DIR ?? tmpdir(),
        loadAvgStart: Number(loadAvgStart.toFixed(2)),
        loadAvg1m: Number(loadavg()[0]!.toFixed(2)),
      }),
    );
  } finally {
    await server.close();
    rmSync(work, { recursive: true, force: true });
  }
}

// BENCH_CASES=delegations-50 (comma-separated) runs a subset.
const only = process.env.BENCH_CASES?.split(',');
const cases: Array<[string, () => Case]> = [
  ['targets-10000', targetsCase],
  ['delegations-50', () => fanOutCase('delegations-50', 50, 20, 9)],
  ['fanout-500', () => fanOutCase('fanout-500', 500, 5, 5)],
  ['chain-500', chainCase],
];
for (const [name, make] of cases) {
  if (!only || only.includes(name)) await run(make());
}
