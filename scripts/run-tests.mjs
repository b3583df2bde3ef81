#!/usr/bin/env node
// The one test command: makes sure the system tools the tests use are present,
// and the web console is built from its current sources, then type-checks the
// whole tree while it runs every *.test.ts with node's test runner.
import { spawn } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureSystemTools } from './system-tools.mjs';
import { ensureConsoleBuilt } from './build-console.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const roots = ['core', 'agent', 'director', 'image-repo', 'device-sim', 'test'];
/**
 * The longest files, started first (measured file times: 71, 36, 31, 27, 25 and 22 s on an
 * idle 2-core machine, 78-85 s for the first two under load). In name order the power-loss
 * file started last but one and ran alone for its last minute while the other slot had
 * nothing left to run: 339 s in all, against 306 s simulated for this order (half the sum
 * of the file times, the least two slots can take).
 */
const LONGEST_FIRST = [
  'test/power-loss/power-loss.test.ts',
  'test/e2e/demo.test.ts',
  'agent/src/power-loss-loop.test.ts',
  'agent/src/kill.test.ts',
  'device-sim/src/ecu/ecu.test.ts',
  'test/e2e/live-progress.test.ts',
];
const startRank = (file) => {
  const i = LONGEST_FIRST.indexOf(file);
  return i === -1 ? LONGEST_FIRST.length : i;
};

function findTests(dir, out) {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name.startsWith('.')) continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) findTests(path, out);
    else if (name.endsWith('.test.ts')) out.push(relative(root, path));
  }
  return out;
}

ensureSystemTools();
ensureConsoleBuilt({ quiet: true });

const filter = process.argv.slice(2);
const files = roots
  .flatMap((r) => findTests(join(root, r), []))
  .filter((f) => filter.length === 0 || filter.some((p) => f.includes(p)))
  .sort()
  .sort((a, b) => startRank(a) - startRank(b));

// A renamed or removed file would silently lose its early start.
for (const file of LONGEST_FIRST) {
  if (filter.length === 0 && !files.includes(file)) console.error(`run-tests: ${file} (in LONGEST_FIRST) is not a test file any more`);
}

/** Runs node with `args`; resolves with its exit status. */
function runNode(args, options = {}) {
  const child = spawn(process.execPath, args, { cwd: root, stdio: 'inherit', ...options });
  const status = new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? (signal === 'SIGINT' ? 130 : 1))));
  return { child, status };
}

// test-files.mjs keeps the order above (`node --test` would sort the files by name). The
// tests run in a process group of their own, so that stopping them reaches every file
// process and what it started (run() does not stop its file processes when killed);
// Ctrl-C and SIGTERM are passed on to that group.
const tests = runNode(['--import', 'tsx', join(root, 'scripts', 'test-files.mjs'), '2', '300000', ...files], { detached: true });
const stopTests = (signal) => {
  try {
    process.kill(-tests.child.pid, signal);
  } catch {
    // Already gone.
  }
};
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => stopTests(signal));

// The type check takes one core for 13-31 s (measured); the tests leave much of the second idle
// (they wait on sockets, serial links and child processes), so it runs beside them. A type
// error still stops the run at once (stopTests).
async function typecheck() {
  for (const project of ['tsconfig.json', 'director/console/tsconfig.json']) {
    // The checkout's own TypeScript, never `npx tsc` (without it installed, npx would fetch an unrelated package named tsc).
    const status = await runNode([join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', project, '--noEmit']).status;
    if (status !== 0) return status;
  }
  return 0;
}
const typeStatus = filter.length > 0 ? 0 : await typecheck();
if (typeStatus !== 0) {
  stopTests('SIGINT');
  await tests.status;
  console.error('the type check failed (errors above): tests stopped');
  process.exit(typeStatus);
}
process.exit(await tests.status);
