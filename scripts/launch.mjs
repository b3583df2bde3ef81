/**
 * The shared launcher of every CLI in bin/ (upfleet-agent, upfleet-tuf, upfleet-director,
 * upfleet-repo, upfleet-sim). A bin file is three lines:
 *
 *   #!/usr/bin/env node
 *   import { launch } from '../../scripts/launch.mjs';
 *   await launch(import.meta.url, '../src/cli.ts');
 *
 * Registering tsx and transforming each module at start-up costs 0.2-0.4 s per launch, which
 * the tests and the TUF conformance suite pay hundreds of times. So the entry is bundled once
 * with esbuild (a dev dependency, present after `npm ci`) into
 * node_modules/.cache/upfleet/<bin>-<build id>.mjs and later launches import that file.
 *
 * Invariants:
 * - Never stale. The manifest <bin>.json beside the bundle lists every input of the build
 *   (esbuild's metafile, plus the package.json and tsconfig.json files that steer resolution
 *   and compilation, this file and esbuild's package.json) with its mtime and size; each launch
 *   stats them all (about 1 ms) and rebuilds when any differs or is gone. A manifest is only
 *   written when no input was modified after the build started, so an edit made during a build
 *   is never recorded as built.
 * - Never half-written. Bundles are immutable files with a unique name, written to a temp
 *   file and renamed; the manifest that names one is written the same way and only after it.
 *   Concurrent launches may each build; every result is complete and fresh. Superseded
 *   bundles are removed only once they are old enough that no launch can still be opening them.
 * - Same program. Only the workspace TypeScript sources (@upfleet/* and relative imports) are
 *   bundled; every other package stays an import that Node resolves from node_modules as
 *   before (native addons, ESM-only packages). keepNames keeps class and function names;
 *   source maps (linked, sources on disk) make stack traces point at the .ts lines.
 * - Sources keep their meaning. None of them may use import.meta (in the bundle it would name
 *   the cache file, not the source); if one does, that bin is not bundled.
 * - Always runnable. When esbuild cannot be loaded, the build fails, the bundle would change
 *   a source's meaning (above), or the cache cannot be written, the launch goes through tsx exactly as before (the source errors, if any, are
 *   then reported by tsx as they always were).
 *
 * Environment:
 * - UPFLEET_LAUNCH=tsx      skip the bundle: register tsx and import the .ts entry (the old path).
 * - UPFLEET_LAUNCH_TRACE=1  print on stderr which path was taken and how long it took.
 */
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { isBuiltin } from 'node:module';
import { basename, dirname, isAbsolute, join, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const NODE_MODULES = join(ROOT, 'node_modules');
const CACHE_DIR = join(NODE_MODULES, '.cache', 'upfleet');
/** Bumped when the bundle options change in a way the inputs do not show. */
const FORMAT = 1;
/** Files that change a build without being in esbuild's metafile. */
const EXTRA_INPUTS = [
  fileURLToPath(import.meta.url),
  join(NODE_MODULES, 'esbuild', 'package.json'),
  join(ROOT, 'package.json'),
  join(ROOT, 'tsconfig.json'),
];
/** A superseded bundle this old cannot still be in the middle of being opened. */
const STALE_BUNDLE_MS = 10 * 60_000;
/** Timestamps on some file systems are whole seconds (or two): mtimes this close to the build start are suspect. */
const MTIME_SLACK_MS = 2_000;

const trace = process.env.UPFLEET_LAUNCH_TRACE === '1'
  ? (msg) => process.stderr.write(`launch: ${msg} (${performance.now().toFixed(1)} ms since process start)\n`)
  : () => {};

/**
 * Runs a CLI entry: from a fresh cached bundle, else by building one, else through tsx.
 * @param binUrl import.meta.url of the bin file (names the cache entry).
 * @param entry the .ts entry, relative to the bin file.
 */
export async function launch(binUrl, entry) {
  const entryPath = fileURLToPath(new URL(entry, binUrl));
  const name = basename(fileURLToPath(binUrl));
  if (process.env.UPFLEET_LAUNCH === 'tsx') return viaTsx(entryPath, 'UPFLEET_LAUNCH=tsx');

  const checkStarted = performance.now();
  let bundle = freshBundle(name, entryPath);
  if (bundle) {
    trace(`cached ${bundle}, checked in ${(performance.now() - checkStarted).toFixed(2)} ms`);
  } else {
    try {
      bundle = await build(name, entryPath);
    } catch (err) {
      return viaTsx(entryPath, `bundle failed: ${err instanceof Error ? err.message : String(err)}`);
    }
    trace(`built ${bundle}`);
  }
  process.setSourceMapsEnabled(true);
  await import(pathToFileURL(bundle).href);
}

async function viaTsx(entryPath, why) {
  trace(`tsx (${why})`);
  const { register } = await import('tsx/esm/api');
  register();
  await import(pathToFileURL(entryPath).href);
}

/** The bundle named by the manifest when every recorded input is unchanged; else undefined. */
function freshBundle(name, entryPath) {
  try {
    const manifest = JSON.parse(readFileSync(join(CACHE_DIR, `${name}.json`), 'utf8'));
    if (manifest.format !== FORMAT || manifest.entry !== entryPath) return undefined;
    for (const [file, mtimeMs, size] of manifest.inputs) {
      const st = statSync(file, { throwIfNoEntry: false });
      if (!st || st.mtimeMs !== mtimeMs || st.size !== size) {
        trace(`stale: ${file}`);
        return undefined;
      }
    }
    const bundle = join(CACHE_DIR, manifest.bundle);
    return statSync(bundle, { throwIfNoEntry: false }) ? bundle : undefined;
  } catch {
    return undefined; // no manifest, or not one this launcher wrote: rebuild
  }
}

/**
 * Bundles the entry, writes bundle and map under unique names, then the manifest.
 * @returns the bundle's path.
 * @throws when esbuild is missing, the build fails, or the cache cannot be written.
 */
async function build(name, entryPath) {
  const esbuild = await import('esbuild');
  const started = Date.now();
  const id = `${started.toString(36)}-${process.pid.toString(36)}`;
  const file = `${name}-${id}.mjs`;
  const outfile = join(CACHE_DIR, file);
  const result = await esbuild.build({
    entryPoints: [entryPath],
    outfile,
    absWorkingDir: ROOT,
    bundle: true,
    write: false,
    metafile: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    keepNames: true,
    sourcemap: 'linked',
    sourcesContent: false,
    logLevel: 'silent',
    plugins: [externalPackagesPlugin()],
  });

  const code = result.outputFiles.find((out) => out.path === outfile);
  // Only workspace sources are in the bundle: any import.meta there would name the bundle, not the source.
  if (/\bimport\.meta\b/.test(code.text)) throw new Error('a source uses import.meta, which would point into the cache');

  mkdirSync(CACHE_DIR, { recursive: true });
  // The map first: the bundle names it, and the manifest names the bundle.
  const outputs = [...result.outputFiles].sort((a) => (a.path.endsWith('.map') ? -1 : 1));
  for (const out of outputs) writeAtomic(out.path, out.contents);

  const inputs = [...Object.keys(result.metafile.inputs).map((p) => resolve(ROOT, p)), ...manifestsOf(result.metafile), ...EXTRA_INPUTS];
  const recorded = [];
  let settled = true;
  for (const input of new Set(inputs)) {
    const st = statSync(input, { throwIfNoEntry: false });
    if (!st) continue; // e.g. no tsconfig.json: adding one later is not detected, as with tsx's cache
    if (st.mtimeMs >= started - MTIME_SLACK_MS) settled = false;
    recorded.push([input, st.mtimeMs, st.size]);
  }
  if (settled) {
    const manifest = { format: FORMAT, entry: entryPath, bundle: file, inputs: recorded };
    writeAtomic(join(CACHE_DIR, `${name}.json`), JSON.stringify(manifest));
    removeSuperseded(name, file);
  } else {
    trace('an input changed during the build: not cached');
  }
  return outfile;
}

/**
 * Keeps every import that is not a workspace source external, after checking that Node will
 * find it from the cache dir exactly where esbuild found it from the source (top-level
 * node_modules); a package only installed deeper would resolve differently, so it fails the
 * build (and the launch falls back to tsx).
 */
function externalPackagesPlugin() {
  return {
    name: 'upfleet-external-packages',
    setup(b) {
      b.onResolve({ filter: /^[^./]/ }, async (args) => {
        if (args.path.startsWith('@upfleet/') || args.pluginData === 'probe' || isAbsolute(args.path)) return undefined;
        if (isBuiltin(args.path)) return { path: args.path, external: true };
        const found = await b.resolve(args.path, { kind: args.kind, resolveDir: args.resolveDir, importer: args.importer, pluginData: 'probe' });
        if (found.errors.length === 0 && !found.path.startsWith(NODE_MODULES + sep)) {
          return { errors: [{ text: `${args.path} resolves outside ${NODE_MODULES}: ${found.path}` }] };
        }
        return { path: args.path, external: true };
      });
    },
  };
}

/** The package.json nearest to each source: its `exports` and `type` steer how imports resolve. */
function manifestsOf(metafile) {
  const dirs = new Set(Object.keys(metafile.inputs).map((p) => dirname(resolve(ROOT, p))));
  const found = new Set();
  for (let dir of dirs) {
    for (; dir.startsWith(ROOT) && dir !== dirname(dir); dir = dirname(dir)) {
      const candidate = join(dir, 'package.json');
      if (statSync(candidate, { throwIfNoEntry: false })) {
        found.add(candidate);
        const tsconfig = join(dir, 'tsconfig.json');
        if (statSync(tsconfig, { throwIfNoEntry: false })) found.add(tsconfig);
        break;
      }
    }
  }
  return found;
}

function writeAtomic(path, contents) {
  const tmp = `${path}.${process.pid}.tmp`;
  const fd = openSync(tmp, 'w');
  try {
    writeSync(fd, contents);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

/** Removes this bin's older bundles and maps once they are old enough (see STALE_BUNDLE_MS). */
function removeSuperseded(name, current) {
  const prefix = `${name}-`;
  const keep = new Set([current, `${current}.map`]);
  for (const entry of readdirSync(CACHE_DIR)) {
    if (!entry.startsWith(prefix) || keep.has(entry)) continue;
    const path = join(CACHE_DIR, entry);
    const st = statSync(path, { throwIfNoEntry: false });
    if (st && Date.now() - st.mtimeMs > STALE_BUNDLE_MS) {
      try {
        unlinkSync(path);
      } catch {
        // Another launch removed it first.
      }
    }
  }
}
