#!/usr/bin/env node
// The one test command: makes sure the system tools the tests use are present,
// and the web console is built from its current sources, type-checks the whole
// tree, then runs every *.test.ts with node's test runner.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureSystemTools } from './system-tools.mjs';
import { ensureConsoleBuilt } from './build-console.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const roots = ['core', 'agent', 'director', 'image-repo', 'device-sim', 'test'];

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
  .sort();

if (filter.length === 0) {
  // The checkout's own TypeScript, never `npx tsc` (without it installed, npx would fetch an unrelated package named tsc).
  for (const project of ['tsconfig.json', 'director/console/tsconfig.json']) {
    const tsc = spawnSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', project, '--noEmit'], { cwd: root, stdio: 'inherit' });
    if (tsc.status !== 0) process.exit(tsc.status ?? 1);
  }
}

const result = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=2', '--test-timeout=300000', ...files],
  { cwd: root, stdio: 'inherit' },
);
process.exit(result.status ?? 1);
