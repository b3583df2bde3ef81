/**
 * bench:verify — a cold full refresh plus one target lookup, upfleet's Updater
 * against tuf-js's, in the same run, both over loopback HTTP from the same
 * static server and each with a fresh metadata directory per iteration.
 *
 * Cases:
 *   targets-10000:   one targets role listing 10,000 targets;
 *   delegations-50:  50 delegated roles (paths `*`, 20 targets each), the target in
 *                    the last one, so every role is fetched and verified.
 * Prints one JSON line per case: {"bench":"verify","case",...,"ratioVsTufJs"},
 * where ratioVsTufJs = tuf-js median time / upfleet median time.
 */
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Updater as TufJsUpdater } from 'tuf-js';
import { RepositoryBuilder } from '../core/src/repository.ts';
import { Updater } from '../core/src/updater.ts';
import { utf8 } from '../core/src/bytes.ts';
import { HttpFetcher } from '../agent/src/fetcher.ts';
import { DEFAULT_LIMITS } from '../agent/src/config.ts';
import { DirectoryMetadataStore } from '../agent/src/tuf/directory-store.ts';
import { serveFiles } from '../test/interop/static-server.ts';

const ITERATIONS = process.env.BENCH_ITERATIONS === undefined ? undefined : Number(process.env.BENCH_ITERATIONS);
const MAX_DELEGATIONS = 64;

interface Case {
  name: string;
  repo: RepositoryBuilder;
  target: string;
  /** Timed runs per client (tuf-js 5 takes over a minute per run on 10,000 targets). */
  iterations: number;
  /** An untimed first run per client (pointless when one run takes a minute). */
  warmUp: boolean;
}

function targetsCase(): Case {
  const repo = new RepositoryBuilder({ now: new Date() });
  for (let i = 0; i < 10_000; i++) {
    repo.addTarget(`images/ecu-${i % 50}/firmware-${i}.bin`, utf8(`image ${i}`), {
      custom: { hardwareIds: [`ecu-${i % 50}`], releaseCounter: i, version: `1.0.${i}` },
    });
  }
  return { name: 'targets-10000', repo, target: 'images/ecu-49/firmware-9999.bin', iterations: ITERATIONS ?? 3, warmUp: false };
}

function delegationsCase(): Case {
  const repo = new RepositoryBuilder({ now: new Date() });
  for (let r = 0; r < 50; r++) {
    repo.delegate('targets', { name: `supplier-${r}`, paths: ['*'] });
    for (let i = 0; i < 20; i++) repo.addTarget(`s${r}-image-${i}.bin`, utf8(`supplier ${r} image ${i}`), { role: `supplier-${r}` });
  }
  return { name: 'delegations-50', repo, target: 's49-image-19.bin', iterations: ITERATIONS ?? 7, warmUp: true };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function run(c: Case): Promise<void> {
  const files = c.repo.commit();
  const server = await serveFiles(files);
  const root = files.get('metadata/1.root.json')!;
  const work = mkdtempSync(join(tmpdir(), 'upfleet-bench-verify-'));
  let n = 0;
  const freshDir = (): string => {
    const dir = join(work, String(n++));
    mkdirSync(dir);
    writeFileSync(join(dir, 'root.json'), root);
    return dir;
  };

  const upfleet = async (): Promise<number> => {
    const dir = freshDir();
    const t0 = performance.now();
    const updater = new Updater({
      metadataBaseUrl: `${server.url}metadata/`,
      fetcher: new HttpFetcher(DEFAULT_LIMITS),
      store: new DirectoryMetadataStore(dir),
      now: new Date(),
      maxDelegations: MAX_DELEGATIONS,
    });
    await updater.refresh();
    const found = await updater.findTarget(c.target);
    const ms = performance.now() - t0;
    if (!found) throw new Error(`upfleet did not find ${c.target}`);
    return ms;
  };

  const tufJs = async (): Promise<number> => {
    const dir = freshDir();
    const t0 = performance.now();
    const updater = new TufJsUpdater({
      metadataDir: dir,
      metadataBaseUrl: `${server.url}metadata`,
      config: { maxDelegations: MAX_DELEGATIONS },
    });
    await updater.refresh();
    const info = await updater.getTargetInfo(c.target);
    const ms = performance.now() - t0;
    if (!info) throw new Error(`tuf-js did not find ${c.target}`);
    return ms;
  };

  try {
    await upfleet(); // warm-up (JIT, connections)
    if (c.warmUp) await tufJs();
    const ours: number[] = [];
    const theirs: number[] = [];
    for (let i = 0; i < c.iterations; i++) {
      ours.push(await upfleet());
      theirs.push(await tufJs());
    }
    const upfleetMs = median(ours);
    const tufJsMs = median(theirs);
    const targetsBytes = c.repo.bytes('targets').byteLength;
    console.log(
      JSON.stringify({
        bench: 'verify',
        case: c.name,
        iterations: c.iterations,
        targetsJsonBytes: targetsBytes,
        upfleetMs: Number(upfleetMs.toFixed(1)),
        tufJsMs: Number(tufJsMs.toFixed(1)),
        ratioVsTufJs: Number((tufJsMs / upfleetMs).toFixed(2)),
      }),
    );
  } finally {
    await server.close();
    rmSync(work, { recursive: true, force: true });
  }
}

// BENCH_CASES=delegations-50 (comma-separated) runs a subset.
const only = process.env.BENCH_CASES?.split(',');
for (const [name, make] of [['targets-10000', targetsCase], ['delegations-50', delegationsCase]] as const) {
  if (!only || only.includes(name)) await run(make());
}
