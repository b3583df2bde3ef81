/**
 * The shared launcher of every CLI in bin/ (upfleet-agent, upfleet-tuf, upfleet-director,
 * upfleet-repo, upfleet-sim). A bin file is three lines, CommonJS where its folder says so
 * (agent/bin/package.json: the suite starts upfleet-tuf hundreds of times, and a CommonJS
 * main skips Node's ES module loader, about 15 ms per start):
 *
 *   #!/usr/bin/env node
 *   const { pathToFileURL } = require('node:url');
 *   require('../../scripts/launch.cjs').launch(pathToFileURL(__filename).href, '../src/cli.ts');
 *
 * or an ES module (scripts/launch.mjs re-exports this file):
 *
 *   #!/usr/bin/env node
 *   import { launch } from '../../scripts/launch.mjs';
 *   await launch(import.meta.url, '../src/cli.ts');
 *
 * Registering tsx and transforming each module at start-up costs 0.2-0.4 s per launch, which
 * the tests and the TUF conformance suite pay hundreds of times. So the entry is bundled once
 * with esbuild (a dev dependency, present after `npm ci`) into
 * node_modules/.cache/upfleet/<bin>-<build id>.cjs (or .mjs) and later launches load that file.
 *
 * Format. A CommonJS bundle (.cjs, loaded with require) starts about 20 ms sooner than an ES
 * module one (Node's ESM loader links and evaluates asynchronously), and a package that a
 * source imports only from code reached through a dynamic import() is then only loaded when
 * that code runs (esbuild keeps the require() inside the lazily initialized module; an ES
 * module bundle hoists every import to its top). It is used when it runs the same program
 * (see commonJsRefusal): no top-level await, no import.meta, every input an ES module, and
 * every package resolving to the same file for require as for import, with an ES module
 * package (loaded through require(esm)) free of top-level await and of a default export.
 * Otherwise the bundle is an ES module, as before.
 *
 * Invariants:
 * - Never stale. The manifest <bin>.json beside the bundle lists every input of the build
 *   (esbuild's metafile, plus the package.json and tsconfig.json files that steer resolution
 *   and compilation, this file and esbuild's package.json, and for a CommonJS bundle the
 *   package.json of each package it requires) with its mtime and size; each launch
 *   stats them all (about 1 ms) and rebuilds when any differs or is gone. A manifest is only
 *   written when no input was modified after the build started, so an edit made during a build
 *   is never recorded as built.
 * - Compiled once. A CommonJS bundle runs through vm.Script with V8's code cache beside it
 *   (<bundle>.v8cache, see runCommonJs), which V8 ignores unless it matches the bundle, V8 and
 *   its flags; later launches skip compiling what the cache's writer ran.
 * - Never half-written. Bundles are immutable files with a unique name, written to a temp
 *   file and renamed; the manifest that names one is written the same way and only after it.
 *   Concurrent launches may each build; every result is complete and fresh. Superseded
 *   bundles are removed only once they are old enough that no launch can still be opening them.
 * - Same program. Only the workspace TypeScript sources (@upfleet/* and relative imports) are
 *   bundled; every other package stays an import (or, in a CommonJS bundle, a require of the
 *   same file) that Node resolves from node_modules as before (native addons, ESM-only
 *   packages). keepNames keeps class and function names; source maps (linked, sources on
 *   disk) make stack traces point at the .ts lines.
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
'use strict';
// Built-ins through require, and this file CommonJS: an ES module import of node:fs builds its
// namespace from every export, which loads the lazy ones (ReadStream: all of node:stream).
const { closeSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } = require('node:fs');
const { isBuiltin } = require('node:module');
const { basename, dirname, isAbsolute, join, resolve, sep } = require('node:path');
const { fileURLToPath, pathToFileURL } = require('node:url');

const ROOT = join(__dirname, '..', sep);
const NODE_MODULES = join(ROOT, 'node_modules');
const CACHE_DIR = join(NODE_MODULES, '.cache', 'upfleet');
/** Bumped when the bundle options change in a way the inputs do not show. */
const FORMAT = 2;
/** Files that change a build without being in esbuild's metafile. */
const EXTRA_INPUTS = [
  __filename,
  join(NODE_MODULES, 'esbuild', 'package.json'),
  join(ROOT, 'package.json'),
  join(ROOT, 'tsconfig.json'),
];
/** A superseded bundle this old cannot still be in the middle of being opened. */
const STALE_BUNDLE_MS = 10 * 60_000;
/** Timestamps on some file systems are whole seconds (or two): mtimes this close to the build start are suspect. */
const MTIME_SLACK_MS = 2_000;

const tracing = process.env.UPFLEET_LAUNCH_TRACE === '1';
// performance (node:perf_hooks, nine modules) is only touched when tracing.
const trace = tracing ? (msg) => process.stderr.write(`launch: ${msg} (${performance.now().toFixed(1)} ms since process start)\n`) : () => {};

/**
 * Runs a CLI entry: from a fresh cached bundle, else by building one, else through tsx.
 * @param binUrl the bin file's URL (import.meta.url, or pathToFileURL(__filename).href; names the cache entry).
 * @param entry the .ts entry, relative to the bin file.
 */
async function launch(binUrl, entry) {
  const entryPath = fileURLToPath(new URL(entry, binUrl));
  const name = basename(fileURLToPath(binUrl));
  if (process.env.UPFLEET_LAUNCH === 'tsx') return viaTsx(entryPath, 'UPFLEET_LAUNCH=tsx');

  const checkStarted = tracing ? performance.now() : 0;
  let bundle = freshBundle(name, entryPath);
  if (bundle) {
    if (tracing) trace(`cached ${bundle}, checked in ${(performance.now() - checkStarted).toFixed(2)} ms`); // the argument reads the clock
  } else {
    try {
      bundle = await build(name, entryPath);
    } catch (err) {
      return viaTsx(entryPath, `bundle failed: ${err instanceof Error ? err.message : String(err)}`);
    }
    trace(`built ${bundle}`);
  }
  if (!bundle.endsWith('.cjs')) {
    process.setSourceMapsEnabled(true);
    await import(pathToFileURL(bundle).href);
    return;
  }
  registerSourceMap(bundle);
  try {
    runCommonJs(bundle);
  } finally {
    process.setSourceMapsEnabled(true);
  }
}

/**
 * Runs a CommonJS bundle as require() would (a module in the require cache, its require
 * resolving from the bundle's path), compiled with V8's code cache <bundle>.v8cache: the
 * bytecode of the functions an earlier launch ran, so a start skips parsing and compiling them
 * (4-10 ms of each conformance step's 65-100 ms of CPU). V8 checks a cache against the source,
 * its own version and its flags, and ignores one that does not match.
 * Which launch writes it: the cache holds what its writer ran, and serializing it costs about
 * 1.5 ms, too much for every exit. The file starts with the CPU time its writer's program took
 * (ms, 4 bytes), a measure of how much of it ran; a launch that ran longer than the writer, or found no
 * usable cache, writes it again at exit (atomically: concurrent launches each leave a whole file).
 * So the cache settles on the CLI's longest command within a few launches.
 */
function runCommonJs(bundle) {
  const { Script, constants } = require('node:vm');
  const Module = require('node:module');
  const cacheFile = `${bundle}.v8cache`;
  let file;
  try {
    file = readFileSync(cacheFile);
  } catch {
    file = undefined; // first launch of this bundle, or removed
  }
  const cachedData = file && file.length > 4 ? file.subarray(4) : undefined;
  const script = new Script(Module.wrap(readFileSync(bundle, 'utf8')), {
    filename: bundle,
    cachedData,
    importModuleDynamically: constants.USE_MAIN_CONTEXT_DEFAULT_LOADER,
  });
  const used = cachedData !== undefined && !script.cachedDataRejected;
  trace(`code cache ${file === undefined ? 'none' : used ? 'used' : 'rejected'}`);
  const writerCpuMs = used ? file.readUInt32LE(0) : -1;
  const started = process.cpuUsage(); // the program's own work, not a build that came before
  process.once('exit', () => {
    const { user, system } = process.cpuUsage(started);
    const cpuMs = Math.round((user + system) / 1000);
    if (cpuMs <= writerCpuMs) return;
    try {
      const header = Buffer.alloc(4);
      header.writeUInt32LE(Math.min(cpuMs, 0xffffffff));
      writeAtomic(cacheFile, Buffer.concat([header, script.createCachedData()]));
    } catch {
      // A read-only cache directory: the next launch compiles as this one did.
    }
  });
  const mod = new Module(bundle, module);
  mod.filename = bundle;
  mod.paths = Module._nodeModulePaths(dirname(bundle));
  Module._cache[bundle] = mod;
  script.runInThisContext().call(mod.exports, mod.exports, Module.createRequire(bundle), mod, bundle, dirname(bundle));
  mod.loaded = true;
}

/**
 * Registers the bundle's source map for stack traces without the cost Node 20 pays when it
 * compiles a file with source maps enabled: it measures every line of the 100 KB bundle
 * (about 10 ms at start-up). A one-line eval naming the bundle as its sourceURL makes Node
 * read the map alone; the bundle is then compiled with source maps off, and they are turned
 * on again before any stack trace is formatted (V8 formats one when .stack is first read).
 */
function registerSourceMap(bundle) {
  process.setSourceMapsEnabled(true);
  // eslint-disable-next-line no-eval -- the comments are the whole point: Node reads the map they name.
  (0, eval)(`//# sourceURL=${pathToFileURL(bundle).href}\n//# sourceMappingURL=${basename(bundle)}.map\n`);
  process.setSourceMapsEnabled(false);
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
    // A CommonJS bundle requires ES module packages only where Node can (not under --no-experimental-require-module).
    if (manifest.requiresEsm && !process.features.require_module) return undefined;
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
 * Bundles the entry (CommonJS when that is the same program, else an ES module), writes bundle
 * and map under unique names, then the manifest.
 * @returns the bundle's path.
 * @throws when esbuild is missing, the build fails, or the cache cannot be written.
 */
async function build(name, entryPath) {
  const esbuild = await import('esbuild');
  const started = Date.now();
  const id = `${started.toString(36)}-${process.pid.toString(36)}`;
  let built = await bundle(esbuild, 'cjs', join(CACHE_DIR, `${name}-${id}.cjs`), entryPath);
  const refusal = await commonJsRefusal(esbuild, built);
  if (refusal) {
    trace(`not a CommonJS bundle: ${refusal}`);
    built = await bundle(esbuild, 'esm', join(CACHE_DIR, `${name}-${id}.mjs`), entryPath);
    if (built.errors) throw new Error(built.errors);
  }
  const { result, outfile, esmPackages, packageManifests } = built;
  const file = basename(outfile);

  const code = result.outputFiles.find((out) => out.path === outfile);
  // Only workspace sources are in the bundle: any import.meta there would name the bundle, not the source.
  if (/\bimport\.meta\b/.test(code.text)) throw new Error('a source uses import.meta, which would point into the cache');

  mkdirSync(CACHE_DIR, { recursive: true });
  // The map first: the bundle names it, and the manifest names the bundle.
  const outputs = [...result.outputFiles].sort((a) => (a.path.endsWith('.map') ? -1 : 1));
  for (const out of outputs) writeAtomic(out.path, out.contents);

  const inputs = [...Object.keys(result.metafile.inputs).map((p) => resolve(ROOT, p)), ...manifestsOf(result.metafile), ...packageManifests, ...EXTRA_INPUTS];
  const recorded = [];
  let settled = true;
  for (const input of new Set(inputs)) {
    const st = statSync(input, { throwIfNoEntry: false });
    if (!st) continue; // e.g. no tsconfig.json: adding one later is not detected, as with tsx's cache
    if (st.mtimeMs >= started - MTIME_SLACK_MS) settled = false;
    recorded.push([input, st.mtimeMs, st.size]);
  }
  if (settled) {
    const manifest = { format: FORMAT, entry: entryPath, bundle: file, requiresEsm: esmPackages.size > 0, inputs: recorded };
    writeAtomic(join(CACHE_DIR, `${name}.json`), JSON.stringify(manifest));
    removeSuperseded(name, file);
  } else {
    trace('an input changed during the build: not cached');
  }
  return outfile;
}

/**
 * One esbuild run. A failed CommonJS run is returned with its errors (the ES module run decides
 * whether the sources build at all); a failed ES module run throws.
 * @returns the result, the bundle's path, and the ES module packages it leaves external.
 */
async function bundle(esbuild, format, outfile, entryPath) {
  const esmPackages = new Map();
  const packageManifests = new Set();
  try {
    const result = await esbuild.build({
      entryPoints: [entryPath],
      outfile,
      absWorkingDir: ROOT,
      bundle: true,
      write: false,
      metafile: true,
      platform: 'node',
      format,
      target: 'node20',
      keepNames: true,
      sourcemap: 'linked',
      sourcesContent: false,
      logLevel: 'silent',
      // The sources are ES modules, which are strict; a CommonJS script is not unless it says so.
      ...(format === 'cjs' && { banner: { js: "'use strict';" } }),
      plugins: [externalPackagesPlugin(format, esmPackages, packageManifests)],
    });
    return { result, outfile, esmPackages, packageManifests };
  } catch (err) {
    if (format === 'esm') throw err;
    const texts = Array.isArray(err?.errors) ? err.errors.map((e) => e.text).join('; ') : '';
    return { errors: texts || (err instanceof Error ? err.message : String(err)), outfile, esmPackages, packageManifests };
  }
}

/**
 * Why a CommonJS bundle would not be the same program as the ES module one, or undefined when it is.
 * Only called after a CommonJS build; checks esbuild's diagnostics, the inputs, and the ES module
 * packages the bundle would require.
 */
async function commonJsRefusal(esbuild, built) {
  if (built.errors) return built.errors; // e.g. top-level await
  const { result, esmPackages } = built;
  if (result.warnings.some((w) => w.id === 'empty-import-meta')) return 'a source uses import.meta';
  for (const [path, input] of Object.entries(result.metafile.inputs)) {
    // A CommonJS source keeps its own module scope only in an ES module bundle's wrapper; so does a free __dirname.
    if (input.format === 'cjs') return `${path} is CommonJS`;
    if (/\b__(dirname|filename)\b|\brequire\s*\(/.test(readFileSync(resolve(ROOT, path), 'utf8'))) return `${path} names a CommonJS binding`;
  }
  if (esmPackages.size === 0) return undefined;
  if (!process.features.require_module) return 'this Node cannot require an ES module';
  for (const [specifier, path] of esmPackages) {
    // require(esm) fails on top-level await anywhere in the package's graph: bundling it as CommonJS finds that.
    try {
      await esbuild.build({ entryPoints: [path], bundle: true, write: false, platform: 'node', format: 'cjs', logLevel: 'silent' });
    } catch {
      return `${specifier} cannot be required (top-level await, or not bundleable to tell)`;
    }
    // esbuild maps a default import of a required package to the whole namespace, as for CommonJS.
    const probe = await esbuild.build({ entryPoints: [path], bundle: true, write: false, metafile: true, platform: 'node', format: 'esm', outdir: CACHE_DIR, logLevel: 'silent' });
    if (Object.values(probe.metafile.outputs).some((out) => out.exports.includes('default'))) return `${specifier} has a default export`;
  }
  return undefined;
}

/** The package.json nearest to a file, or undefined. */
function packageManifestOf(path) {
  for (let dir = dirname(path); dir !== dirname(dir); dir = dirname(dir)) {
    const manifest = join(dir, 'package.json');
    if (statSync(manifest, { throwIfNoEntry: false })) return manifest;
  }
  return undefined;
}

/** Whether Node loads this file as an ES module: .mjs, or .js under a package.json with "type": "module". */
function isEsModuleFile(path, manifest) {
  if (path.endsWith('.mjs')) return true;
  if (!path.endsWith('.js') || !manifest) return false;
  try {
    return JSON.parse(readFileSync(manifest, 'utf8')).type === 'module';
  } catch {
    return false;
  }
}

/**
 * Keeps every import that is not a workspace source external, after checking that Node will
 * find it from the cache dir exactly where esbuild found it from the source (top-level
 * node_modules); a package only installed deeper would resolve differently, so it fails the
 * build (and the launch falls back to tsx). For a CommonJS bundle, a package must also resolve
 * to the same file for require as for import (else that build fails and the bundle is an ES
 * module); the ES module files it resolves to are collected in `esmPackages` (specifier -> path),
 * and each package's package.json in `packageManifests`: the choice of format rests on them, so
 * they are inputs (an npm update that changes a package rewrites its package.json).
 */
function externalPackagesPlugin(format, esmPackages, packageManifests) {
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
        if (format === 'cjs' && found.errors.length === 0) {
          const required = await b.resolve(args.path, { kind: 'require-call', resolveDir: args.resolveDir, importer: args.importer, pluginData: 'probe' });
          if (required.path !== found.path) return { errors: [{ text: `${args.path} is ${required.path} for require but ${found.path} for import` }] };
          const manifest = packageManifestOf(found.path);
          if (manifest) packageManifests.add(manifest);
          if (isEsModuleFile(found.path, manifest)) esmPackages.set(args.path, found.path);
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

/** Removes this bin's older bundles, maps and code caches once they are old enough (see STALE_BUNDLE_MS). */
function removeSuperseded(name, current) {
  const prefix = `${name}-`;
  const keep = new Set([current, `${current}.map`, `${current}.v8cache`]);
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

module.exports = { launch };
