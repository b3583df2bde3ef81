/**
 * `upfleet-repo`: the offline signing tool and the server of the image
 * repository. Exit codes: 0 done, 1 the operation failed (one line naming the
 * error code), 2 bad arguments. The offline passphrase (root, targets and
 * supplier key files) comes from UPFLEET_PASSPHRASE or, on a terminal, a
 * prompt; `serve` never reads it. The online passphrase (snapshot, timestamp
 * keys) comes from UPFLEET_ONLINE_PASSPHRASE, else DIR/keys/online/passphrase.
 * The upload token comes from --token or UPFLEET_REPO_TOKEN.
 * `runCli` takes its output streams and environment as arguments, so tests run
 * most commands in-process; `cli.ts` is the process entry point.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import { UpfleetError, UsageError, type RoleType } from '@upfleet/core';
import {
  addTarget,
  delegate,
  generateKeyFile,
  initRepository,
  loadPublicKey,
  migrateKeys,
  removeTarget,
  rotateKey,
  signDelegated,
  status,
  type RepoContext,
  type RepoStatus,
} from './operations.ts';
import { startImageRepoServer } from './server.ts';
import { exportStaticTree } from './static-export.ts';
import { IndexDb } from './index-db.ts';
import { BlobStore } from './blob-store.ts';
import { Workspace } from './workspace.ts';
import { ProgressLine, type ImageProgress } from './image-progress.ts';
import packageJson from '../package.json' with { type: 'json' };

type Options = NonNullable<ParseArgsConfig['options']>;

const COMMON: Options = {
  dir: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
};
const REMOTE: Options = { remote: { type: 'string' }, token: { type: 'string' } };
const TARGET: Options = {
  name: { type: 'string' },
  'hardware-id': { type: 'string', multiple: true },
  version: { type: 'string' },
  'release-counter': { type: 'string' },
};

interface Command {
  usage: string;
  options: Options;
  positionals: number;
  run(values: Values, positionals: string[], env: Env, io: CliIo): Promise<unknown>;
  print?(result: any): string;
}
type Values = Record<string, string | boolean | string[] | undefined>;
type Env = Record<string, string | undefined>;

/** Where a CLI run writes, and the environment it reads (passphrase, token, directory). */
export interface CliIo {
  out(text: string): void;
  err(text: string): void;
  env: Env;
  /** stderr is a terminal: progress lines are redrawn in place (otherwise one final line per image). */
  errIsTTY?: boolean;
}

const DIR_HELP = '  --dir DIR            the repository directory (default: $UPFLEET_REPO_DIR or .)';
const REMOTE_HELP = `  --remote URL         publish to this server instead of DIR's own index
  --token T            upload token for --remote (default: $UPFLEET_REPO_TOKEN)`;

const COMMANDS: Record<string, Command> = {
  init: {
    usage: `upfleet-repo init --dir DIR [--root-keys N --root-threshold M]
Creates encrypted keys for every role, root version 1 and an empty targets version 1, and publishes
them into DIR's index. Root and targets keys go to DIR/keys/offline/ (encrypted with UPFLEET_PASSPHRASE);
snapshot and timestamp keys to DIR/keys/online/ (encrypted with UPFLEET_ONLINE_PASSPHRASE, or when that is
unset with a generated passphrase written to DIR/keys/online/passphrase). Key files 0600, directories 0700.
A server gets upfleet-repo.json, metadata/ and keys/online/ only.
${DIR_HELP}
  --root-keys N        number of root keys (default 1)
  --root-threshold M   signatures needed on root (default 1)
  --json               print the result as JSON`,
    options: { ...COMMON, 'root-keys': { type: 'string' }, 'root-threshold': { type: 'string' } },
    positionals: 0,
    async run(v, _p, env) {
      const passphrase = await readPassphrase(env, true);
      const online = onlinePassphraseOf(env);
      const r = initRepository({
        dir: dirOf(v, env), passphrase, rootKeys: int(v, 'root-keys', 1), rootThreshold: int(v, 'root-threshold', 1), ...(online && { onlinePassphrase: online }),
      });
      return { dir: r.dir, keyids: r.keyids, versions: r.versions, onlinePassphraseFile: r.onlinePassphraseFile ?? null };
    },
    print: (r) => [
      `initialised ${r.dir}`,
      ...Object.entries(r.keyids as Record<string, string[]>).map(([role, ids]) => `  ${role.padEnd(9)} ${ids.map((i) => i.slice(0, 16)).join(' ')}`),
      r.onlinePassphraseFile ? `online passphrase: ${r.onlinePassphraseFile}` : 'online keys: encrypted with UPFLEET_ONLINE_PASSPHRASE',
      'A server needs upfleet-repo.json, metadata/ and keys/online/ only; keep keys/offline/ off it.',
    ].join('\n'),
  },
  keygen: {
    usage: `upfleet-repo keygen --out FILE
Creates an encrypted ed25519 key file (a supplier's key for a delegated role) and prints its keyid.
  --out FILE           where to write the key file
  --json               print the public key as JSON`,
    options: { ...COMMON, out: { type: 'string' } },
    positionals: 0,
    async run(v, _p, env) {
      const out = required(v, 'out');
      const key = generateKeyFile(out, await readPassphrase(env, true));
      return { file: out, keyid: key.keyid, key: key.toJSON() };
    },
    print: (r) => `wrote ${r.file}\n  keyid ${r.keyid}`,
  },
  'add-target': {
    usage: `upfleet-repo add-target FILE --dir DIR --name NAME --hardware-id HW [--hardware-id HW2 ...] --version SEMVER [--release-counter N]
Hashes FILE (sha256, sha512), stores or uploads it (progress on stderr: a bar on a terminal, else one line), and signs a new targets version with the offline targets key.
${DIR_HELP}
  --name NAME          target name (path segments of letters, digits, ._+-)
  --hardware-id HW     hardware ID the image is for (repeatable)
  --version SEMVER     the image's version (SemVer 2.0.0, e.g. 1.4.0 or 2.0.0-rc.1)
  --release-counter N  anti-rollback counter (default: the replaced target's, else 0)
${REMOTE_HELP}
  --json               print the result as JSON`,
    options: { ...COMMON, ...REMOTE, ...TARGET },
    positionals: 1,
    async run(v, p, env, io) {
      const passphrase = await readPassphrase(env, false);
      return addTarget({ ...context(v, env, passphrase), onImageProgress: progressLine(io) }, targetSpec(v, p[0]!));
    },
    print: (r) => `targets version ${r.version}: ${r.target.length} bytes, sha256 ${r.target.hashes.sha256}`,
  },
  'remove-target': {
    usage: `upfleet-repo remove-target NAME --dir DIR
Signs a new targets version without NAME.
${DIR_HELP}
${REMOTE_HELP}
  --json               print the result as JSON`,
    options: { ...COMMON, ...REMOTE },
    positionals: 1,
    async run(v, p, env) {
      return removeTarget(context(v, env, await readPassphrase(env, false)), p[0]!);
    },
    print: (r) => `targets version ${r.version}`,
  },
  delegate: {
    usage: `upfleet-repo delegate ROLE --dir DIR --paths GLOB [--paths GLOB2] --hardware-id HW --key PUBKEYFILE... --threshold N [--terminating]
Delegates target names matching GLOB (a * never crosses /), for the listed hardware IDs, to ROLE,
whose metadata the supplier signs with its own keys (upfleet-repo sign-delegated). Re-running it
replaces the delegation (new keys: key rotation for the supplier).
${DIR_HELP}
  --paths GLOB         target name pattern (repeatable)
  --hardware-id HW     hardware IDs the role may publish for (repeatable; none = any)
  --key FILE           the supplier's key file or public key JSON (repeatable)
  --threshold N        signatures needed (default 1)
  --terminating        stop the search at this role for matching names
${REMOTE_HELP}
  --json               print the result as JSON`,
    options: {
      ...COMMON, ...REMOTE,
      paths: { type: 'string', multiple: true },
      'hardware-id': { type: 'string', multiple: true },
      key: { type: 'string', multiple: true },
      threshold: { type: 'string' },
      terminating: { type: 'boolean' },
    },
    positionals: 1,
    async run(v, p, env) {
      const keys = list(v, 'key').map(loadPublicKey);
      return delegate(context(v, env, await readPassphrase(env, false)), {
        role: p[0]!, paths: list(v, 'paths'), hardwareIds: list(v, 'hardware-id'), keys, threshold: int(v, 'threshold', 1), terminating: v.terminating === true,
      });
    },
    print: (r) => `targets version ${r.version}`,
  },
  'sign-delegated': {
    usage: `upfleet-repo sign-delegated ROLE --key KEYFILE [--key KEYFILE2] [--add FILE --name NAME --hardware-id HW --version V [--release-counter N]] [--remove NAME]
A supplier signs a new version of its delegated ROLE with its own key(s), adding and removing targets.
${DIR_HELP}
  --key FILE           the supplier's encrypted key file (repeatable, up to the threshold)
  --add FILE           an image to add (with --name, --hardware-id, --version)
  --remove NAME        a target to remove (repeatable)
${REMOTE_HELP}
  --json               print the result as JSON`,
    options: { ...COMMON, ...REMOTE, ...TARGET, key: { type: 'string', multiple: true }, add: { type: 'string' }, remove: { type: 'string', multiple: true } },
    positionals: 1,
    async run(v, p, env, io) {
      const add = typeof v.add === 'string' ? [targetSpec(v, v.add)] : [];
      if (!v.add && (v.name || v.version || v['hardware-id'])) throw new UsageError('--name, --version and --hardware-id go with --add FILE');
      const ctx = { ...context(v, env, await readPassphrase(env, false)), onImageProgress: progressLine(io) };
      return signDelegated(ctx, { role: p[0]!, keyFiles: list(v, 'key'), add, remove: list(v, 'remove') });
    },
    print: (r) => `${r.role} version ${r.version}`,
  },
  'rotate-key': {
    usage: `upfleet-repo rotate-key ROLE --dir DIR [--new-key KEYFILE]
Replaces the keys of a top-level ROLE (root, targets, snapshot, timestamp). root: a new root signed by
the old and the new keys; others: a new root naming the new key (targets is re-signed with it).
Old key files move to DIR/keys/{offline,online}/retired/. A new snapshot or timestamp key is encrypted with
the online passphrase (UPFLEET_ONLINE_PASSPHRASE, else DIR/keys/online/passphrase); a server with its own DIR
needs the new key file in its keys/online/ before the new root is published.
${DIR_HELP}
  --new-key FILE       rotate to this existing key file instead of a generated one (snapshot, timestamp:
                       installed as it is, encrypted with the server's online passphrase)
${REMOTE_HELP}
  --json               print the result as JSON`,
    options: { ...COMMON, ...REMOTE, 'new-key': { type: 'string' } },
    positionals: 1,
    async run(v, p, env) {
      const role = p[0]!;
      if (!['root', 'targets', 'snapshot', 'timestamp'].includes(role)) {
        throw new UsageError(`rotate-key takes root, targets, snapshot or timestamp; for a delegated role run delegate ${role} with the new --key`);
      }
      return rotateKey(context(v, env, await readPassphrase(env, false)), { role: role as RoleType, newKeyFile: v['new-key'] as string | undefined });
    },
    print: (r) => `${r.role} rotated: root version ${r.versions.root}`,
  },
  status: {
    usage: `upfleet-repo status --dir DIR [--remote URL]
Shows the published versions, expiry dates, keys, delegations and targets.
${DIR_HELP}
  --remote URL         read a server instead of DIR's own index
  --json               print the status as JSON`,
    options: { ...COMMON, ...REMOTE },
    positionals: 0,
    async run(v, _p, env) {
      const noPassphrase = () => {
        throw new UsageError('status needs no passphrase');
      };
      return status(context(v, env, noPassphrase, false));
    },
    print: printStatus,
  },
  'migrate-keys': {
    usage: `upfleet-repo migrate-keys --dir DIR
Splits the keys of a directory made when one passphrase protected every key in DIR/keys: root and
targets key files (and keys/retired/) move to DIR/keys/offline/ as they are; snapshot and timestamp
keys are re-encrypted with the online passphrase (UPFLEET_ONLINE_PASSPHRASE, else a generated one in
DIR/keys/online/passphrase) into DIR/keys/online/. UPFLEET_PASSPHRASE is the old passphrase and stays the
offline one. If a server ever held it, rotate the root and targets keys afterwards.
${DIR_HELP}
  --json               print the result as JSON`,
    options: { ...COMMON },
    positionals: 0,
    async run(v, _p, env) {
      const online = onlinePassphraseOf(env);
      const r = migrateKeys({ dir: dirOf(v, env), passphrase: await readPassphrase(env, false), ...(online && { onlinePassphrase: online }) });
      return { ...r, onlinePassphraseFile: r.onlinePassphraseFile ?? null };
    },
    print: (r) => [
      `offline (keys/offline/): ${r.offline.join(' ') || '-'}`,
      `online (keys/online/): ${r.online.join(' ') || '-'}`,
      r.onlinePassphraseFile ? `online passphrase: ${r.onlinePassphraseFile}` : 'online keys: encrypted with UPFLEET_ONLINE_PASSPHRASE',
      'On the server: replace its keys/ with keys/online/ alone.',
    ].join('\n'),
  },
  serve: {
    usage: `upfleet-repo serve --dir DIR --port P [--host 127.0.0.1] --token T
Serves the repository (static TUF layout under /metadata/ and /targets/, the upload API under /api/v1/,
/metrics) and re-signs snapshot and timestamp with the online keys in DIR/keys/online, decrypted with
UPFLEET_ONLINE_PASSPHRASE or DIR/keys/online/passphrase. It never reads the offline keys or UPFLEET_PASSPHRASE.
${DIR_HELP}
  --port P                 port (default 8700; 0 picks a free one)
  --host H                 address to listen on (default 127.0.0.1)
  --token T                upload API bearer token (default: $UPFLEET_REPO_TOKEN)
  --timestamp-expiry SECS  timestamp validity (default from DIR/upfleet-repo.json: 1 day)
  --snapshot-expiry SECS   snapshot validity (default 7 days)
  --max-upload-bytes N     image upload limit (default 1 GiB)
  --export OUT             also keep the published tree as plain files in OUT (see export), after every
                           publish and on the expiry timer, for nginx, a CDN or an object store
  --log-level L            pino level (default info)`,
    options: {
      ...COMMON,
      port: { type: 'string' }, host: { type: 'string' }, token: { type: 'string' }, export: { type: 'string' },
      'timestamp-expiry': { type: 'string' }, 'snapshot-expiry': { type: 'string' }, 'max-upload-bytes': { type: 'string' }, 'log-level': { type: 'string' },
    },
    positionals: 0,
    async run(v, _p, env) {
      const token = (v.token as string | undefined) ?? env.UPFLEET_REPO_TOKEN;
      if (!token) throw new UsageError('serve needs --token or UPFLEET_REPO_TOKEN');
      const pause = Number(env.UPFLEET_REPO_FAULT_PAUSE_BEFORE_COMMIT_MS ?? 0);
      const server = await startImageRepoServer({
        dir: dirOf(v, env), port: portOf(v), host: (v.host as string | undefined) ?? '127.0.0.1', token,
        onlinePassphrase: onlinePassphraseOf(env),
        timestampExpiry: optInt(v, 'timestamp-expiry'), snapshotExpiry: optInt(v, 'snapshot-expiry'),
        maxUploadBytes: optInt(v, 'max-upload-bytes'), logLevel: v['log-level'] as string | undefined,
        pauseBeforeCommitMs: pause > 0 ? pause : undefined,
        exportDir: v.export as string | undefined,
      });
      await new Promise<void>((resolve) => {
        const stop = () => void server.close().then(resolve);
        process.once('SIGTERM', stop);
        process.once('SIGINT', stop);
      });
      return undefined;
    },
  },
};

COMMANDS.export = {
  usage: `upfleet-repo export --dir DIR --out OUT
Writes the published repository of DIR's index as plain files: OUT/metadata/ (N.root.json, root.json,
timestamp.json, N.snapshot.json, N.<role>.json) and OUT/targets/<dir/><sha256|sha512>.<base> (images
hard-linked from the blob store when OUT is on the same file system), the paths every TUF client asks
for. Serve OUT with any web server (metadata/timestamp.json and root.json must not be cached long).
Running it again adds only what is new and replaces timestamp.json last. It needs no key: timestamp
re-signing stays with serve, whose --export OUT keeps OUT current by itself.
${DIR_HELP}
  --out OUT            the directory to write (created if missing)
  --json               print the result as JSON`,
  options: { ...COMMON, out: { type: 'string' } },
  positionals: 0,
  async run(v, _p, env) {
    const out = v.out as string | undefined;
    if (!out) throw new UsageError('export needs --out OUT');
    const workspace = new Workspace(dirOf(v, env));
    workspace.settings();
    const db = new IndexDb(workspace.indexFile);
    try {
      return { out, ...exportStaticTree(db, new BlobStore(workspace.blobsDir), out) };
    } finally {
      db.close();
    }
  },
  print: (r) => `${r.out}: ${r.written} file(s) written; timestamp version ${r.timestampVersion}`,
};

const MAIN_USAGE = `upfleet-repo: the Upfleet image repository (offline signing tool and server)

Commands:
  init            create keys and the first root
  keygen          create a key file (a supplier's delegated key)
  add-target      add an image to the top-level targets role
  remove-target   remove an image from the top-level targets role
  delegate        delegate target names and hardware IDs to a supplier's role
  sign-delegated  a supplier signs its role (adds/removes its targets)
  rotate-key      replace a top-level role's keys
  status          show versions, keys, delegations and targets
  migrate-keys    split an old directory's keys into keys/offline/ and keys/online/
  serve           serve the repository over HTTP
  export          write the published repository as plain files for any web server

Run upfleet-repo COMMAND --help for the options of a command; upfleet-repo --version prints the version.
Offline passphrase (root, targets, supplier keys): $UPFLEET_PASSPHRASE or a prompt.
Online passphrase (snapshot, timestamp; serve): $UPFLEET_ONLINE_PASSPHRASE, else DIR/keys/online/passphrase.
Exit codes: 0 ok, 1 failure, 2 bad arguments.`;

function dirOf(v: Values, env: Env): string {
  return (v.dir as string | undefined) ?? env.UPFLEET_REPO_DIR ?? '.';
}

/** `uploads`: the command publishes, so --remote needs a token (reading a server does not). */
function context(v: Values, env: Env, passphrase: string | (() => string), uploads = true): RepoContext {
  const url = v.remote as string | undefined;
  const token = (v.token as string | undefined) ?? env.UPFLEET_REPO_TOKEN;
  if (url && uploads && !token) throw new UsageError('--remote needs --token or UPFLEET_REPO_TOKEN');
  if (url && !/^https?:\/\//.test(url)) throw new UsageError(`--remote ${url} is not an http(s) URL`);
  return { dir: dirOf(v, env), passphrase, onlinePassphrase: onlinePassphraseOf(env), remote: url ? { url, token: token ?? '' } : undefined };
}

/** UPFLEET_ONLINE_PASSPHRASE; undefined when unset (DIR/keys/online/passphrase is the fallback). */
function onlinePassphraseOf(env: Env): string | undefined {
  const given = env.UPFLEET_ONLINE_PASSPHRASE;
  if (given === '') throw new UsageError('UPFLEET_ONLINE_PASSPHRASE is empty');
  return given;
}

/** Progress of hashing or uploading images, on stderr. */
function progressLine(io: CliIo): (p: ImageProgress) => void {
  const line = new ProgressLine((text) => io.err(text), io.errIsTTY === true);
  return (p) => line.update(p);
}

function targetSpec(v: Values, file: string) {
  return {
    file,
    name: required(v, 'name'),
    hardwareIds: list(v, 'hardware-id'),
    version: required(v, 'version'),
    releaseCounter: optInt(v, 'release-counter'),
  };
}

function required(v: Values, name: string): string {
  const value = v[name];
  if (typeof value !== 'string' || value === '') throw new UsageError(`--${name} is required`);
  return value;
}

function list(v: Values, name: string): string[] {
  const value = v[name];
  return Array.isArray(value) ? value : typeof value === 'string' ? [value] : [];
}

function optInt(v: Values, name: string): number | undefined {
  const value = v[name];
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !/^\d+$/.test(value)) throw new UsageError(`--${name} must be a non-negative integer`);
  return Number(value);
}

function int(v: Values, name: string, fallback: number): number {
  return optInt(v, name) ?? fallback;
}

function portOf(v: Values): number {
  const port = int(v, 'port', 8700);
  if (port > 65535) throw new UsageError('--port must be at most 65535');
  return port;
}

/** node:util parseArgs messages run on with advice for another syntax; the first sentence is the error. */
function firstSentence(message: string): string {
  return message.split('\n')[0]!.replace(/\. .*$/, '').replace(/\.$/, '');
}

async function readPassphrase(env: Env, confirm: boolean): Promise<string> {
  const given = env.UPFLEET_PASSPHRASE;
  if (given !== undefined) {
    if (given === '') throw new UsageError('UPFLEET_PASSPHRASE is empty');
    return given;
  }
  if (!process.stdin.isTTY) throw new UsageError('no passphrase: set UPFLEET_PASSPHRASE (stdin is not a terminal)');
  const first = await prompt('passphrase: ');
  if (confirm && (await prompt('again: ')) !== first) throw new UsageError('the passphrases differ');
  if (!first) throw new UsageError('an empty passphrase is not allowed');
  return first;
}

function prompt(question: string): Promise<string> {
  process.stderr.write(question);
  const muted = new Writable({ write: (_c, _e, cb) => cb() });
  const rl = createInterface({ input: process.stdin, output: muted, terminal: true });
  return new Promise((resolve) => {
    rl.question('', (answer) => {
      rl.close();
      process.stderr.write('\n');
      resolve(answer);
    });
  });
}

function printStatus(s: RepoStatus): string {
  const lines = [`repository ${s.source}`];
  for (const [role, version] of Object.entries(s.versions)) lines.push(`  ${role.padEnd(14)} v${version}  expires ${s.expires[role] ?? '-'}`);
  lines.push('keys:');
  for (const [role, k] of Object.entries(s.keys)) lines.push(`  ${role.padEnd(14)} ${k.threshold}-of-${k.keyids.length}, ${k.inKeysDir} in keys/`);
  if (s.delegations.length) lines.push('delegations:');
  for (const d of s.delegations) {
    lines.push(`  ${d.role.padEnd(14)} paths ${d.paths.join(',')}  hardware ${d.hardwareIds?.join(',') ?? 'any'}  ${d.threshold}-of-${d.keyids.length}  ${d.version ? `v${d.version}` : 'unsigned'}`);
  }
  lines.push(`targets (${s.targets.length}):`);
  for (const t of s.targets) lines.push(`  ${t.name}  [${t.role}]  ${t.length} B  ${String(t.version)}  hw ${String(t.hardwareIds)}  rc ${String(t.releaseCounter)}`);
  for (const w of s.warnings) lines.push(`warning: ${w}`);
  return lines.join('\n');
}

/**
 * Runs one command line and returns its exit code (0 done, 1 failed, 2 bad arguments);
 * never throws for a failing command.
 */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    io.err(MAIN_USAGE + '\n');
    return 2;
  }
  if (name === '--help' || name === '-h' || name === 'help') {
    io.out(MAIN_USAGE + '\n');
    return 0;
  }
  if (name === '--version' || name === '-V') {
    io.out(`upfleet-repo ${packageJson.version}\n`);
    return 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    io.err(`upfleet-repo: unknown command ${name}\n\n${MAIN_USAGE}\n`);
    return 2;
  }
  let values: Values;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({ args: rest, options: command.options, allowPositionals: true, strict: true }) as { values: Values; positionals: string[] });
  } catch (error) {
    io.err(`upfleet-repo ${name}: ${firstSentence((error as Error).message)} (run upfleet-repo ${name} --help)\n`);
    return 2;
  }
  if (values.help) {
    io.out(command.usage + '\n');
    return 0;
  }
  if (positionals.length !== command.positionals) {
    io.err(`upfleet-repo ${name}: expected ${command.positionals} argument(s), got ${positionals.length}\nUsage: ${command.usage.split('\n')[0]}\n`);
    return 2;
  }
  try {
    const result = await command.run(values, positionals, io.env, io);
    if (result !== undefined) io.out((values.json || !command.print ? JSON.stringify(result, null, 2) : command.print(result)) + '\n');
    return 0;
  } catch (error) {
    if (error instanceof UsageError) {
      io.err(`upfleet-repo ${name}: ${error.message}\n`);
      return 2;
    }
    const code = error instanceof UpfleetError ? error.code : ((error as NodeJS.ErrnoException).code ?? 'ERROR');
    // A system error's message already starts with its code ("ENOENT: no such file...").
    const message = (error as Error).message.startsWith(`${code}: `) ? (error as Error).message.slice(code.length + 2) : (error as Error).message;
    io.err(`upfleet-repo ${name}: error ${code}: ${message}\n`);
    return 1;
  }
}

