/**
 * `npm run build:agent`: turns the agent CLI (agent/src/cli.ts) into one folder that runs on a
 * Linux gateway with no Node and no node_modules: `upfleet-agent` (a Node single executable
 * application) plus the native addons it loads, side by side. docs/packaging.md says why.
 *
 * Invariants:
 * - The bundle comes from the TypeScript sources (esbuild), never through tsx, so the
 *   executable runs the same CLI module as `agent/bin/upfleet-agent` and nothing else.
 * - Every native addon loader the bundle reaches (`bindings`, `node-gyp-build`) is replaced
 *   at bundle time by a loader of a file beside the executable; a loader from a package not
 *   listed in ADDONS fails the build, so a new native dependency cannot ship half-packaged.
 * - The bundle is one CommonJS script (the only main script Node 20 executables run) that
 *   parses as such; nothing but built-ins is left for its `require`.
 * - Every addon and the Node base binary are checked to be ELF files of the target
 *   architecture, and the base to be the Node version that makes the blob, before anything
 *   is written to the output folder.
 * - The output folder is replaced as a whole; intermediates live in a temp dir that is removed.
 */
import { build, type Plugin } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readSync, closeSync,
  readFileSync, readdirSync, rmSync, statSync, writeFileSync, renameSync } from 'node:fs';
import { createRequire, isBuiltin } from 'node:module';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Script } from 'node:vm';
import { UpfleetError, UsageError } from '@upfleet/core';

const root = fileURLToPath(new URL('..', import.meta.url));
const requireFromRoot = createRequire(join(root, 'package.json'));
const ENTRY = join(root, 'agent/src/cli.ts');
const EXECUTABLE = 'upfleet-agent';
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

type Arch = 'x64' | 'arm64';
/** ELF e_machine values, to refuse a binary built for another CPU. */
const ELF_MACHINE: Record<Arch, number> = { x64: 0x3e, arm64: 0xb7 };

/**
 * The native addons of the agent's dependency tree. `loader` is the module the package
 * loads its addon with; `file` is the addon's name in the output folder.
 */
const ADDONS = [
  { package: 'better-sqlite3', loader: 'bindings', file: 'better_sqlite3.node' },
  { package: '@serialport/bindings-cpp', loader: 'node-gyp-build', file: 'serialport_bindings_cpp.node' },
] as const;
type AddonFile = (typeof ADDONS)[number]['file'];

/** The build cannot go on: a missing or wrong input, or a failing tool. */
export class AgentBuildError extends UpfleetError {
  override name = 'AgentBuildError';
  override readonly code = 'AGENT_BUILD';
  constructor(readonly step: string, reason: string, options?: ErrorOptions) {
    super(`${step}: ${reason}`, options);
  }
}

export interface BuildOptions {
  arch: Arch;
  /** Output folder, replaced as a whole. */
  out: string;
  /** Node binary for the target arch; the running node when the target is this machine's arch. */
  node?: string;
  /** Addon files for a foreign arch, by output name (resolved from node_modules for this arch). */
  addons?: Partial<Record<AddonFile, string>>;
  /** Strip the Node binary's symbols (13 MB less); needs binutils `strip` for the target. */
  strip: boolean;
}

export interface BuildResult {
  out: string;
  arch: Arch;
  executableBytes: number;
  folderBytes: number;
  bundleBytes: number;
  addons: Record<string, { from: string; bytes: number }>;
  /** Optional modules the dependencies probe for with try/require that are not installed. */
  absentOptionalModules: string[];
  stripped: boolean;
  codeCache: boolean;
  seconds: number;
}

/**
 * Builds the agent folder.
 * @throws AgentBuildError when an input is missing or of the wrong arch, or a tool fails.
 */
export async function buildAgent(options: BuildOptions): Promise<BuildResult> {
  const started = performance.now();
  const hostBuild = options.arch === process.arch;
  const nodeBinary = options.node ?? (hostBuild ? process.execPath : undefined);
  if (!nodeBinary) {
    throw new AgentBuildError('node', `no Node binary for linux-${options.arch}: pass --node <node ${process.version} for linux-${options.arch}>`);
  }
  assertElf(nodeBinary, options.arch, 'node');
  if (resolve(nodeBinary) !== process.execPath) assertSameNodeVersion(nodeBinary);
  const addonSources = resolveAddons(options);

  const work = mkdtempSync(join(tmpdir(), 'upfleet-agent-build-'));
  try {
    const bundle = join(work, 'agent.cjs');
    const absentOptionalModules = await bundleAgent(bundle);
    // A code cache is V8 bytecode for this exact binary: only valid when the base is the running node.
    const codeCache = resolve(nodeBinary) === process.execPath;
    const blob = makeSeaBlob(work, bundle, codeCache);

    const staging = join(work, 'folder');
    mkdirSync(staging);
    const executable = join(staging, EXECUTABLE);
    copyFileSync(nodeBinary, executable);
    chmodSync(executable, 0o755);
    const stripped = options.strip && stripBinary(executable, options.arch);
    await injectBlob(executable, blob);
    const addons: BuildResult['addons'] = {};
    for (const [file, from] of Object.entries(addonSources)) {
      copyFileSync(from, join(staging, file));
      addons[file] = { from, bytes: statSync(from).size };
    }

    const out = resolve(options.out);
    rmSync(out, { recursive: true, force: true });
    mkdirSync(dirname(out), { recursive: true });
    moveDir(staging, out);
    return {
      out, arch: options.arch,
      executableBytes: statSync(join(out, EXECUTABLE)).size,
      folderBytes: readdirSync(out).reduce((sum, name) => sum + statSync(join(out, name)).size, 0),
      bundleBytes: statSync(bundle).size,
      addons, absentOptionalModules, stripped, codeCache,
      seconds: Math.round((performance.now() - started) / 100) / 10,
    };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** Picks each addon: given on the command line, else the one its loader would pick on this machine. */
function resolveAddons(options: BuildOptions): Record<AddonFile, string> {
  const result = {} as Record<AddonFile, string>;
  for (const addon of ADDONS) {
    const given = options.addons?.[addon.file];
    let from: string;
    if (given) from = resolve(given);
    else if (options.arch !== process.arch) {
      throw new AgentBuildError('addons', `no ${addon.file} for linux-${options.arch}: pass --addon ${addon.file}=<path> (see docs/packaging.md)`);
    } else from = hostAddon(addon.package, addon.loader);
    assertElf(from, options.arch, addon.file);
    result[addon.file] = from;
  }
  return result;
}

/** The .node file that the package's own loader resolves to on this machine. */
function hostAddon(pkg: string, loader: 'bindings' | 'node-gyp-build'): string {
  const dir = dirname(requireFromRoot.resolve(`${pkg}/package.json`));
  if (loader === 'node-gyp-build') {
    const requireFromPkg = createRequire(join(dir, 'package.json'));
    const ngb = requireFromPkg('node-gyp-build') as { resolve(dir: string): string };
    return ngb.resolve(dir);
  }
  // `bindings` tries build/Release first, which is where `npm ci` compiles better-sqlite3.
  const release = join(dir, 'build/Release/better_sqlite3.node');
  if (!existsSync(release)) throw new AgentBuildError('addons', `${release} is missing: run npm ci (it compiles better-sqlite3)`);
  return release;
}

/** Throws unless `path` is an ELF file for `arch`. */
function assertElf(path: string, arch: Arch, what: string): void {
  if (!existsSync(path)) throw new AgentBuildError(what, `${path} does not exist`);
  const header = Buffer.alloc(20);
  const fd = openSync(path, 'r');
  try {
    readSync(fd, header, 0, 20, 0);
  } finally {
    closeSync(fd);
  }
  if (header.readUInt32BE(0) !== 0x7f454c46) throw new AgentBuildError(what, `${path} is not an ELF file`);
  const machine = header.readUInt16LE(18);
  if (machine !== ELF_MACHINE[arch]) {
    throw new AgentBuildError(what, `${path} is for ELF machine 0x${machine.toString(16)}, not linux-${arch}`);
  }
}

/**
 * The blob is made by the running node and its format follows the Node version, so the base
 * must be the same version. A Node binary names its own headers tarball in process.release.
 */
function assertSameNodeVersion(nodeBinary: string): void {
  const marker = `node-${process.version}-headers.tar.gz`;
  if (!readFileSync(nodeBinary).includes(marker)) {
    throw new AgentBuildError('node', `${nodeBinary} is not Node ${process.version} (the version that makes the blob)`);
  }
}

/**
 * Bundles the CLI into one CommonJS script (Node 20 single executables run CommonJS only).
 *
 * The CLI modules end with a top-level `await main(...)`, which esbuild cannot emit as
 * CommonJS. So esbuild emits ESM, with every built-in import turned into a `require`, and
 * the whole body is wrapped in an async function: a CommonJS script with the same
 * semantics, where a rejection ends the process with exit code 1 as under node.
 * @returns the optional modules that are not installed and were replaced by a throwing stub.
 */
async function bundleAgent(outfile: string): Promise<string[]> {
  const absent = new Set<string>();
  const result = await build({
    // A side-effect import: the output then has no `export` statement to get in the way.
    stdin: { contents: `import ${JSON.stringify(ENTRY)};`, resolveDir: root, sourcefile: 'upfleet-agent-main.js' },
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    // Whitespace and comments only: V8 keeps the bundle's source text in the heap (about
    // 1 MB of idle RSS measured), and identifiers stay readable in stack traces.
    minifyWhitespace: true,
    // In the executable, __filename is the executable itself.
    define: { 'import.meta.url': '__upfleet_import_meta_url' },
    banner: {
      js: "'use strict';\nconst __upfleet_import_meta_url = require('node:url').pathToFileURL(__filename).href;\n(async () => {",
    },
    footer: { js: '})();' },
    plugins: [builtinsAsRequirePlugin(), addonPlugin(), absentOptionalPlugin(absent)],
    logLevel: 'silent',
  }).catch((err: unknown) => {
    throw new AgentBuildError('bundle', esbuildMessage(err), { cause: err });
  });
  if (result.warnings.length > 0) {
    throw new AgentBuildError('bundle', result.warnings.map(formatMessage).join('; '));
  }
  try {
    // Parsed as a script, as Node will: a stray import/export statement is a syntax error here.
    new Script(readFileSync(outfile, 'utf8'), { filename: outfile });
  } catch (err) {
    throw new AgentBuildError('bundle', `the bundle is not a valid CommonJS script: ${(err as Error).message}`, { cause: err });
  }
  return [...absent].sort();
}

/** Turns `import ... from 'node:fs'` into a module that is `require('node:fs')`. */
function builtinsAsRequirePlugin(): Plugin {
  return {
    name: 'upfleet-builtins-as-require',
    setup(b) {
      b.onResolve({ filter: /^[^./]/ }, (args) => {
        if (!isBuiltin(args.path)) return undefined;
        if (args.kind === 'require-call' || args.namespace === 'upfleet-builtin') return { path: args.path, external: true };
        return { path: args.path, namespace: 'upfleet-builtin' };
      });
      b.onLoad({ filter: /.*/, namespace: 'upfleet-builtin' }, (args) => ({
        loader: 'js',
        contents: `module.exports = require(${JSON.stringify(args.path)});`,
      }));
    },
  };
}

/** Replaces `bindings` and `node-gyp-build` with a loader of the addon beside the executable. */
function addonPlugin(): Plugin {
  return {
    name: 'upfleet-addons',
    setup(b) {
      b.onResolve({ filter: /^(bindings|node-gyp-build)$/ }, (args) => {
        const pkg = owningPackage(args.importer);
        const addon = ADDONS.find((a) => a.package === pkg && a.loader === args.path);
        if (!addon) {
          return { errors: [{ text: `${pkg} loads a native addon with ${args.path}; add it to ADDONS in scripts/build-agent.ts` }] };
        }
        return { path: addon.file, namespace: 'upfleet-addon' };
      });
      b.onLoad({ filter: /.*/, namespace: 'upfleet-addon' }, (args) => ({
        loader: 'js',
        // createRequire gives a full require (the embedded script's own sees built-ins only);
        // execPath is the real path of the executable, so a symlink to it works too.
        contents: `const { createRequire } = require('node:module');
const { dirname, join } = require('node:path');
const file = join(dirname(process.execPath), ${JSON.stringify(args.path)});
module.exports = () => createRequire(process.execPath)(file);`,
      }));
    },
  };
}

/**
 * A bare import that does not resolve becomes a module that throws MODULE_NOT_FOUND when
 * required, exactly as it does under node; the dependencies only probe for these
 * (supports-color, bufferutil, ...) inside try/catch.
 */
function absentOptionalPlugin(absent: Set<string>): Plugin {
  return {
    name: 'upfleet-absent-optional',
    setup(b) {
      b.onResolve({ filter: /^[^./]/ }, async (args) => {
        if (args.pluginData === 'probe' || args.kind === 'entry-point') return undefined;
        const found = await b.resolve(args.path, { kind: args.kind, resolveDir: args.resolveDir, importer: args.importer, pluginData: 'probe' });
        if (found.errors.length === 0) return undefined;
        absent.add(args.path);
        return { path: args.path, namespace: 'upfleet-absent' };
      });
      b.onLoad({ filter: /.*/, namespace: 'upfleet-absent' }, (args) => ({
        loader: 'js',
        contents: `throw Object.assign(new Error(${JSON.stringify(`Cannot find module '${args.path}'`)}), { code: 'MODULE_NOT_FOUND' });`,
      }));
    },
  };
}

/** The name in the nearest package.json above `file`. */
function owningPackage(file: string): string {
  for (let dir = dirname(file); dir !== dirname(dir); dir = dirname(dir)) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest)) return (JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string }).name ?? dir;
  }
  return file;
}

function makeSeaBlob(work: string, bundle: string, codeCache: boolean): string {
  const blob = join(work, 'sea-prep.blob');
  const config = join(work, 'sea-config.json');
  writeFileSync(config, JSON.stringify({
    main: bundle, output: blob, disableExperimentalSEAWarning: true, useCodeCache: codeCache,
  }));
  run('sea-blob', process.execPath, ['--experimental-sea-config', config]);
  return blob;
}

/** Strips symbols when a `strip` for the target is at hand; returns whether it did. */
function stripBinary(executable: string, arch: Arch): boolean {
  const tool = arch === process.arch ? 'strip' : 'aarch64-linux-gnu-strip';
  const probe = spawnSync(tool, ['--version'], { stdio: 'ignore' });
  if (probe.error || probe.status !== 0) return false;
  run('strip', tool, [executable]);
  return true;
}

async function injectBlob(executable: string, blob: string): Promise<void> {
  const { inject } = requireFromRoot('postject') as {
    inject(file: string, name: string, data: Buffer, options: { sentinelFuse: string }): Promise<void>;
  };
  // postject's LIEF build prints harmless "Can't find string offset" notes on console.warn.
  const warn = console.warn;
  console.warn = () => {};
  try {
    await inject(executable, 'NODE_SEA_BLOB', readFileSync(blob), { sentinelFuse: SEA_FUSE });
  } catch (err) {
    throw new AgentBuildError('postject', err instanceof Error ? err.message : String(err), { cause: err });
  } finally {
    console.warn = warn;
  }
}

function run(step: string, command: string, args: string[]): void {
  const result = spawnSync(command, args, { encoding: 'utf8' });
  if (result.error) throw new AgentBuildError(step, result.error.message, { cause: result.error });
  if (result.status !== 0) throw new AgentBuildError(step, `${basename(command)} exited ${result.status}: ${result.stderr.trim()}`);
}

/** rename, or copy when the temp dir is on another filesystem. */
function moveDir(from: string, to: string): void {
  try {
    renameSync(from, to);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
    mkdirSync(to);
    for (const name of readdirSync(from)) {
      copyFileSync(join(from, name), join(to, name));
      chmodSync(join(to, name), statSync(join(from, name)).mode);
    }
  }
}

function formatMessage(m: { text: string; location?: { file: string; line: number } | null }): string {
  return m.location ? `${m.location.file}:${m.location.line}: ${m.text}` : m.text;
}

function esbuildMessage(err: unknown): string {
  const errors = (err as { errors?: { text: string; location?: { file: string; line: number } | null }[] }).errors;
  return errors?.length ? errors.map(formatMessage).join('; ') : String(err);
}

const HELP = `Usage: npm run build:agent -- [options]

Builds dist/agent/: the agent as one executable (upfleet-agent, a Node single
executable application) and the native addons it loads, to copy to a device.

Options:
  --arch <x64|arm64>        target CPU (default: this machine's, ${process.arch})
  --node <path>             Node ${process.version} binary for the target (default: this node, same arch only)
  --addon <file>=<path>     addon for the target, file one of: ${ADDONS.map((a) => a.file).join(', ')}
                            (default: the one installed in node_modules, same arch only)
  --out <dir>               output folder, replaced (default: dist/agent)
  --no-strip                keep the Node binary's symbols
  --json                    print the result as JSON
  -h, --help                this help
`;

function parseCli(argv: string[]): (BuildOptions & { json: boolean }) | 'help' {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      arch: { type: 'string' }, node: { type: 'string' }, addon: { type: 'string', multiple: true },
      out: { type: 'string' }, 'no-strip': { type: 'boolean' }, json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return 'help';
  if (positionals.length > 0) throw new UsageError(`unexpected argument: ${positionals[0]}`);
  const arch = values.arch ?? process.arch;
  if (arch !== 'x64' && arch !== 'arm64') throw new UsageError(`--arch must be x64 or arm64, not ${arch}`);
  const addons: Partial<Record<AddonFile, string>> = {};
  for (const spec of values.addon ?? []) {
    const [file, path] = spec.split('=', 2);
    const known = ADDONS.find((a) => a.file === file);
    if (!known || !path) throw new UsageError(`--addon wants <file>=<path> with file one of ${ADDONS.map((a) => a.file).join(', ')}: ${spec}`);
    addons[known.file] = path;
  }
  return {
    arch, addons, node: values.node, strip: !values['no-strip'], json: values.json ?? false,
    out: values.out ?? join(root, 'dist/agent'),
  };
}

function summary(r: BuildResult): string {
  const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;
  return [
    `built ${join(r.out, EXECUTABLE)} for linux-${r.arch} in ${r.seconds} s`,
    `  executable ${mb(r.executableBytes)} (bundle ${mb(r.bundleBytes)}${r.stripped ? ', stripped' : ''}${r.codeCache ? ', code cache' : ''})`,
    ...Object.entries(r.addons).map(([file, a]) => `  ${file} ${mb(a.bytes)} from ${a.from}`),
    `  folder ${mb(r.folderBytes)}`,
  ].join('\n');
}

async function main(argv: string[]): Promise<number> {
  let options;
  try {
    options = parseCli(argv);
  } catch (err) {
    process.stderr.write(`build:agent: ${err instanceof Error ? err.message : String(err)}\n${HELP}`);
    return 2;
  }
  if (options === 'help') {
    process.stdout.write(HELP);
    return 0;
  }
  try {
    const result = await buildAgent(options);
    process.stdout.write(options.json ? `${JSON.stringify(result)}\n` : `${summary(result)}\n`);
    return 0;
  } catch (err) {
    process.stderr.write(`build:agent: ${err instanceof UpfleetError ? `${err.name}: ` : ''}${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = await main(process.argv.slice(2));
}
