/**
 * bench:conformance — wall time of the TUF conformance suite
 * (theupdateframework/tuf-conformance) with upfleet-tuf as the client under test,
 * against the same suite with tuf-js's conformance client, in the same run,
 * alternating the two. The suite spawns a client process for every step, so the
 * clients' start-up cost counts as much as their verification.
 *
 * Nothing here fetches or builds the suite or tuf-js; point it at checkouts:
 *   TUF_CONFORMANCE_DIR      a tuf-conformance checkout (pytest must import its
 *                            dependencies, python-tuf and securesystemslib: set PYTHONPATH)
 *   TUF_CONFORMANCE_TUFJS    tuf-js's client entrypoint (its .github/scripts/tuf-conformance,
 *                            with tuf-js and yargs installed beside it)
 *   BENCH_RUNS               runs per client (default 1)
 * Without both variables it prints a line saying it was skipped.
 *
 * Prints {"bench":"conformance","upfleetSeconds","tufJsSeconds","wallSecondsVsTufJs",...}
 * with the median of each client's runs, every run's seconds, and the ratio of each
 * alternating pair (min / median / max); goal: wallSecondsVsTufJs <= 0.5.
 */
import { spawn } from 'node:child_process';
import { loadavg } from 'node:os';
import { join } from 'node:path';

const suite = process.env.TUF_CONFORMANCE_DIR;
const tufJs = process.env.TUF_CONFORMANCE_TUFJS;
const runs = Number(process.env.BENCH_RUNS ?? 1);
const upfleet = join(import.meta.dirname, '..', 'agent', 'bin', 'upfleet-tuf');

interface SuiteRun {
  seconds: number;
  summary: string;
}

function runSuite(entrypoint: string): Promise<SuiteRun> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn('python3', ['-m', 'pytest', '-q', '-p', 'no:cacheprovider', 'tuf_conformance', '--entrypoint', entrypoint], {
      cwd: suite,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('exit', () => {
      // pytest's last line: "N failed, M passed, ... in S s"; failures are the clients' own, not the bench's.
      const summary = out.trim().split('\n').at(-1) ?? '';
      resolve({ seconds: (performance.now() - t0) / 1000, summary });
    });
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

if (!suite || !tufJs) {
  console.log(JSON.stringify({ bench: 'conformance', skipped: 'set TUF_CONFORMANCE_DIR and TUF_CONFORMANCE_TUFJS' }));
} else {
  const load = loadavg()[0]!;
  const ours: SuiteRun[] = [];
  const theirs: SuiteRun[] = [];
  for (let i = 0; i < runs; i++) {
    ours.push(await runSuite(upfleet));
    theirs.push(await runSuite(tufJs));
  }
  const upfleetSeconds = median(ours.map((r) => r.seconds));
  const tufJsSeconds = median(theirs.map((r) => r.seconds));
  const oneDecimal = (xs: number[]) => xs.map((x) => Number(x.toFixed(1)));
  const pairRatios = ours.map((r, i) => r.seconds / theirs[i]!.seconds).sort((a, b) => a - b);
  console.log(
    JSON.stringify({
      bench: 'conformance',
      runs,
      upfleetSeconds: Number(upfleetSeconds.toFixed(1)),
      tufJsSeconds: Number(tufJsSeconds.toFixed(1)),
      wallSecondsVsTufJs: Number((upfleetSeconds / tufJsSeconds).toFixed(2)),
      upfleetRuns: oneDecimal(ours.map((r) => r.seconds)),
      tufJsRuns: oneDecimal(theirs.map((r) => r.seconds)),
      pairRatioMinMedianMax: [pairRatios[0]!, median(pairRatios), pairRatios.at(-1)!].map((x) => Number(x.toFixed(2))),
      upfleetResult: ours.at(-1)!.summary,
      tufJsResult: theirs.at(-1)!.summary,
      goals: { wallSecondsVsTufJs: 0.5 },
      loadAvg1m: Number(load.toFixed(2)),
    }),
  );
}
