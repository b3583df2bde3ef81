#!/usr/bin/env node
// Builds the director's web console (director/console, Vite + Preact) into
// director/console/dist, which the director serves at /. Runs at `npm ci` (the
// root `prepare` script), before the tests (scripts/run-tests.mjs) and from the
// console tests, and rebuilds only when an input changed: the build writes a
// hash of every input file (and the Vite and Preact versions) to dist/.inputs,
// so a checkout that changed nothing does not rebuild, whatever the mtimes say.
// Without Vite (an install without dev dependencies) it says so and exits 0:
// the director then serves a page that says the console is not built.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
export const consoleDir = join(root, 'director', 'console');
const dist = join(consoleDir, 'dist');
const stamp = join(dist, '.inputs');
const require = createRequire(join(consoleDir, 'package.json'));

function inputFiles(dir, out = []) {
  for (const name of readdirSync(dir).sort()) {
    if (name === 'dist' || name === 'node_modules' || name.startsWith('.')) continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) inputFiles(path, out);
    else out.push(path);
  }
  return out;
}

function version(pkg) {
  try {
    return JSON.parse(readFileSync(require.resolve(`${pkg}/package.json`), 'utf8')).version;
  } catch {
    return undefined;
  }
}

function inputsHash() {
  const h = createHash('sha256');
  h.update(`vite ${version('vite')} preact ${version('preact')}\n`);
  for (const file of inputFiles(consoleDir)) h.update(`${relative(consoleDir, file)}\0`).update(readFileSync(file));
  return h.digest('hex');
}

/** Whether dist/ holds a build of the current inputs. */
export function consoleBuildIsFresh() {
  return existsSync(join(dist, 'index.html')) && existsSync(stamp) && readFileSync(stamp, 'utf8') === inputsHash();
}

/**
 * Builds the console unless dist/ is fresh.
 * @returns 'fresh' | 'built' | 'no-vite'
 * @throws Error when the build fails
 */
export function ensureConsoleBuilt({ quiet = false } = {}) {
  if (consoleBuildIsFresh()) return 'fresh';
  let viteBin;
  try {
    viteBin = join(dirname(require.resolve('vite/package.json')), 'bin', 'vite.js');
  } catch {
    if (!quiet) console.error('web console not built: Vite is not installed (dev dependencies); the director will say so at /');
    return 'no-vite';
  }
  const hash = inputsHash();
  const result = spawnSync(process.execPath, [viteBin, 'build', '--config', join(consoleDir, 'vite.config.mjs'), '--logLevel', quiet ? 'error' : 'warn'], {
    cwd: consoleDir, stdio: ['ignore', quiet ? 'ignore' : 'inherit', 'inherit'],
  });
  if (result.status !== 0) throw new Error(`the web console build failed (vite exit ${result.status ?? result.signal})`);
  writeFileSync(stamp, hash);
  return 'built';
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  try {
    const outcome = ensureConsoleBuilt();
    console.error(outcome === 'fresh' ? 'web console: dist is up to date' : outcome === 'built' ? `web console built in ${relative(root, dist)}` : 'web console: skipped');
  } catch (error) {
    console.error(error.message);
    process.exit(1);
  }
}
