/**
 * upfleet-director: init, serve, and admin commands against a running director.
 * Exit codes: 0 done, 1 failed (one-line typed message on stderr), 2 bad usage.
 * Admin commands print a table, or JSON with --json. `runCli` takes its output
 * and environment as arguments, so tests run commands in-process; `cli.ts` is
 * the process entry point.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { readFileSync } from 'node:fs';
import { UpfleetError } from '@upfleet/core';
import cluster from 'node:cluster';
import { pino } from 'pino';
import { defaultMqttClientId, initDirector, startDirector } from './director.ts';
import { reportStarted, startCluster, workerIndex } from './cluster.ts';
import { defaultDatabase, describeDatabase, openStore } from './open-store.ts';
import { DirectorError, DirectorUnreachableError } from './errors.ts';
import { DEFAULT_PREFIX, Topics } from './mqtt-topics.ts';
import packageJson from '../package.json' with { type: 'json' };

type Env = Record<string, string | undefined>;

/** Where a CLI run writes, and the environment it reads (passphrases, tokens, URL). */
export interface CliIo {
  out(text: string): void;
  err(text: string): void;
  env: Env;
}

class CliUsageError extends Error {}

const HELP: Record<string, string> = {
  main: `upfleet-director <command> [options]

Commands:
  init --dir DIR                         create the offline root key and the online keys
  serve --dir DIR --port P --image-repo URL [...]   run the director
  devices list|show|approve|decommission|preregister   manage devices
  assign DEVICE --ecu SERIAL --image NAME [--ecu S --image N ...]
  campaign create|start|pause|resume|abort|status|list

Admin commands take --url (UPFLEET_DIRECTOR_URL) and --token (UPFLEET_ADMIN_TOKEN), and --json.
Run 'upfleet-director <command> --help' for details; 'upfleet-director --version' prints the version.`,
  init: `upfleet-director init --dir DIR [--root-keys N] [--root-threshold T]

Writes DIR/keys/root.key (offline; encrypted with UPFLEET_PASSPHRASE, required),
DIR/keys/{targets,snapshot,timestamp}.key (online; encrypted with UPFLEET_ONLINE_PASSPHRASE,
or, when that is unset, with a random passphrase written to DIR/keys/online.passphrase, mode 0600)
and DIR/metadata/1.root.json.`,
  serve: `upfleet-director serve --dir DIR --port P --image-repo URL [options]

  --host H                  listen address (default 127.0.0.1)
  --database DB             a SQLite file path or a postgres://user@host:port/db URL
                            (or UPFLEET_DIRECTOR_DATABASE; default DIR/director.db);
                            the schema is migrated at start
  --processes N             N director processes sharing the port and the database
                            (Node cluster; N > 1 needs --mqtt-url or --no-mqtt)
  --image-repo-root FILE    the image repository root.json to trust (default: trust on first use)
  --mqtt-url URL            an external MQTT 5 broker (default: the embedded broker)
  --mqtt-port P             port of the embedded broker (default 1883, often Mosquitto's; 0 = any)
  --mqtt-prefix PREFIX      topic prefix (default upfleet/v1)
  --no-mqtt                 HTTP only
  --verify-workers N        worker threads verifying manifest signatures (default: the
                            machine's cores; 0 = on the main thread)
  --admin-token T           or UPFLEET_ADMIN_TOKEN (required)
  --viewer-token T          or UPFLEET_VIEWER_TOKEN: a read-only admin token (web console viewer role)
  --provisioning-token T    or UPFLEET_PROVISIONING_TOKEN (required)
  --manual-approval         new devices wait for 'devices approve'
Online keys: UPFLEET_ONLINE_PASSPHRASE, else DIR/keys/online.passphrase.
UPFLEET_CAMPAIGN_LAUNCH_CHUNK: devices a campaign wave launches per transaction (default 100).`,
  devices: `upfleet-director devices <list|show ID|approve ID|decommission ID|preregister ID [--tag T...]> [--status S] [--json]
  show: the device, its ECUs, assignments and security event log (GET /api/v1/admin/devices/ID/events)`,
  assign: `upfleet-director assign DEVICE --ecu SERIAL --image NAME [--ecu SERIAL --image NAME ...] [--json]`,
  campaign: `upfleet-director campaign create --name N --image HWID=IMAGE [--image ...] [--tag T ...] [--waves 1,10,50,100] [--threshold 0.9]
upfleet-director campaign <start|pause|resume|abort|status> ID
upfleet-director campaign list`,
};

const COMMON = {
  help: { type: 'boolean', short: 'h' },
  json: { type: 'boolean' },
  url: { type: 'string' },
  token: { type: 'string' },
} as const;

function parse<T extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: T) {
  try {
    return parseArgs({ args, options: { ...COMMON, ...options }, allowPositionals: true, strict: true });
  } catch (e) {
    // node:util parseArgs messages run on with advice for another syntax; the first sentence is the error.
    throw new CliUsageError((e as Error).message.split('\n')[0]!.replace(/\. .*$/, '').replace(/\.$/, ''));
  }
}

/** At most `count` positionals (the subcommand words included); missing ones are reported by name where they are read. */
function expectPositionals(positionals: string[], count: number, what: string): void {
  if (positionals.length > count) throw new CliUsageError(`unexpected argument ${positionals[count]} (${what})`);
}

function positiveInt(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || Number(value) < 1) throw new CliUsageError(`${name} must be a positive integer`);
  return Number(value);
}

function wholeNumber(value: string, name: string): number {
  if (!/^\d+$/.test(value) || Number(value) > 256) throw new CliUsageError(`${name} must be a whole number up to 256`);
  return Number(value);
}

function portNumber(value: string, name: string): number {
  const port = /^\d+$/.test(value) ? Number(value) : NaN;
  if (!(port <= 65535)) throw new CliUsageError(`${name} must be a port number (0-65535)`);
  return port;
}

function httpUrl(value: string, name: string): string {
  if (!/^https?:\/\/[^/]/.test(value)) throw new CliUsageError(`${name} ${value} is not an http(s) URL`);
  return value;
}

function required(value: string | undefined, name: string): string {
  if (!value) throw new CliUsageError(`missing ${name}`);
  return value;
}

function table(rows: Array<Record<string, unknown>>, columns: string[]): string {
  const cell = (v: unknown) => (v === null || v === undefined ? '-' : typeof v === 'object' ? JSON.stringify(v) : String(v));
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (vals: string[]) => vals.map((v, i) => v.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(columns.map((c) => c.toUpperCase())), ...rows.map((r) => line(columns.map((c) => cell(r[c]))))].join('\n');
}

class AdminClient {
  constructor(private readonly url: string, private readonly token: string) {}

  async call(method: string, path: string, body?: unknown): Promise<any> {
    let res: Response;
    try {
      res = await fetch(`${this.url.replace(/\/+$/, '')}${path}`, {
        method, headers: { authorization: `Bearer ${this.token}`, 'content-type': 'application/json' },
        ...(body !== undefined && { body: JSON.stringify(body) }),
      });
    } catch (cause) {
      const root = transportCause(cause);
      throw new DirectorUnreachableError(this.url, root.code, root.message, { cause });
    }
    const text = await res.text();
    const json = text ? JSON.parse(text) : undefined;
    if (!res.ok) throw new DirectorError(res.status, json?.error?.code ?? `HTTP_${res.status}`, json?.error?.message ?? text, json?.error ?? {});
    return json;
  }
}

/** What fetch's "fetch failed" wraps: the innermost error with a system code (ECONNREFUSED...), else the innermost one. */
function transportCause(error: unknown): { code?: string; message: string } {
  let e = error as (Error & { code?: string; cause?: unknown; errors?: unknown[] }) | undefined;
  let found: { code?: string; message: string } = { message: (error as Error)?.message ?? String(error) };
  for (let depth = 0; e && depth < 8; depth++) {
    if (typeof e.code === 'string' && /^E[A-Z]+$/.test(e.code)) return { code: e.code, message: e.message };
    found = { message: e.message };
    e = (e.cause ?? e.errors?.[0]) as typeof e;
  }
  return found;
}

function admin(values: { url?: string; token?: string }, env: Env): AdminClient {
  const url = required(values.url ?? env.UPFLEET_DIRECTOR_URL, '--url (or UPFLEET_DIRECTOR_URL)');
  const token = values.token ?? env.UPFLEET_ADMIN_TOKEN;
  return new AdminClient(httpUrl(url, '--url'), required(token, '--token (or UPFLEET_ADMIN_TOKEN)'));
}

const campaignRow = (c: any) => ({ ...c, name: c.spec.name, wave: `${c.currentWave}/${c.totalWaves}`, ...c.counts });
const CAMPAIGN_COLUMNS = ['id', 'name', 'status', 'wave', 'waiting', 'pending', 'downloading', 'installing', 'succeeded', 'failed', 'cancelled'];

async function main(argv: string[], io: CliIo): Promise<void> {
  const env = io.env;
  const print = (json: boolean | undefined, value: unknown, asTable: () => string): void => io.out((json ? JSON.stringify(value, null, 2) : asTable()) + '\n');
  const help = (text: string): void => io.out(text + '\n');
  const [command, ...rest] = argv;
  if (!command) throw new CliUsageError('missing command');
  if (command === '--help' || command === '-h' || command === 'help') return help(HELP.main);
  if (command === '--version' || command === '-V') return help(`upfleet-director ${packageJson.version}`);
  switch (command) {
    case 'init': {
      const { values, positionals } = parse(rest, { dir: { type: 'string' }, 'root-keys': { type: 'string' }, 'root-threshold': { type: 'string' } });
      if (values.help) return help(HELP.init);
      expectPositionals(positionals, 0, 'init takes options only');
      const rootKeys = positiveInt(values['root-keys'], '--root-keys');
      const rootThreshold = positiveInt(values['root-threshold'], '--root-threshold');
      const passphrase = env.UPFLEET_PASSPHRASE;
      if (!passphrase) throw new CliUsageError('set UPFLEET_PASSPHRASE (protects the root key)');
      const result = await initDirector({
        dir: required(values.dir, '--dir'), passphrase,
        ...(env.UPFLEET_ONLINE_PASSPHRASE && { onlinePassphrase: env.UPFLEET_ONLINE_PASSPHRASE }),
        ...(env.UPFLEET_LOG_LEVEL && { logLevel: env.UPFLEET_LOG_LEVEL }),
        ...(rootKeys !== undefined && { rootKeys }),
        ...(rootThreshold !== undefined && { rootThreshold }),
      });
      print(values.json, result, () => [
        `root: ${result.rootPath} (keys ${result.rootKeyids.map((k) => k.slice(0, 12)).join(', ')})`,
        ...Object.entries(result.onlineKeyids).map(([r, k]) => `${r}: ${k.slice(0, 12)}`),
        result.onlinePassphraseFile ? `online passphrase: ${result.onlinePassphraseFile}` : 'online keys: UPFLEET_ONLINE_PASSPHRASE',
        'Move keys/root*.key offline: the server never needs it.',
      ].join('\n'));
      return;
    }
    case 'serve': {
      const { values, positionals } = parse(rest, {
        dir: { type: 'string' }, port: { type: 'string' }, host: { type: 'string' }, 'image-repo': { type: 'string' },
        'image-repo-root': { type: 'string' }, 'mqtt-url': { type: 'string' }, 'mqtt-port': { type: 'string' },
        'mqtt-prefix': { type: 'string' }, 'no-mqtt': { type: 'boolean' }, 'admin-token': { type: 'string' },
        'viewer-token': { type: 'string' }, 'provisioning-token': { type: 'string' }, 'manual-approval': { type: 'boolean' },
        database: { type: 'string' }, processes: { type: 'string' }, 'verify-workers': { type: 'string' },
      });
      if (values.help) return help(HELP.serve);
      expectPositionals(positionals, 0, 'serve takes options only');
      const processes = positiveInt(values.processes, '--processes') ?? 1;
      if (processes > 1 && !values['mqtt-url'] && !values['no-mqtt']) {
        throw new CliUsageError('--processes above 1 needs --mqtt-url (an external MQTT 5 broker: the processes share its messages with $share subscriptions) or --no-mqtt; the embedded broker lives in one process');
      }
      const database = values.database ?? env.UPFLEET_DIRECTOR_DATABASE;
      if (database === '') throw new CliUsageError('--database is empty: give a SQLite file path or a postgres:// URL');
      const port = portNumber(required(values.port, '--port'), '--port');
      const verifyWorkers = values['verify-workers'] === undefined ? undefined : wholeNumber(values['verify-workers'], '--verify-workers');
      const mqttPort = values['mqtt-port'] !== undefined ? portNumber(values['mqtt-port'], '--mqtt-port') : 1883;
      const imageRepoUrl = httpUrl(required(values['image-repo'], '--image-repo'), '--image-repo');
      if (values['mqtt-prefix'] !== undefined) {
        try {
          new Topics(values['mqtt-prefix']);
        } catch (error) {
          throw new CliUsageError(`--mqtt-prefix: ${(error as Error).message}`);
        }
      }
      const imageRepoRoot = values['image-repo-root'] !== undefined ? readInput(values['image-repo-root'], '--image-repo-root') : undefined;
      const dir = required(values.dir, '--dir');
      const logLevel = env.UPFLEET_LOG_LEVEL ?? 'info';
      const campaignLaunchChunk = positiveInt(env.UPFLEET_CAMPAIGN_LAUNCH_CHUNK || undefined, 'UPFLEET_CAMPAIGN_LAUNCH_CHUNK');
      if (processes > 1 && cluster.isPrimary) {
        const log = pino({ name: 'upfleet-director', level: logLevel });
        const running = await startCluster({
          processes, log,
          async prepare() {
            await (await openStore(database ?? defaultDatabase(dir))).close();
            log.info({ database: describeDatabase(database ?? defaultDatabase(dir)) }, 'database migrated');
          },
        });
        const stop = () => void running.close().then(() => process.exit(0));
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
        return;
      }
      const worker = workerIndex();
      const prefix = values['mqtt-prefix'] ?? DEFAULT_PREFIX;
      const director = await startDirector({
        dir, port, ...(values.host && { host: values.host }),
        ...(database !== undefined && { database }),
        ...(worker !== undefined && {
          // Its own MQTT session per worker index, kept across restarts of that worker.
          mqttClientId: `${defaultMqttClientId(dir, prefix)}_w${worker}`,
          logger: pino({ name: 'upfleet-director', level: logLevel }).child({ worker }),
        }),
        imageRepoUrl, ...(imageRepoRoot && { imageRepoRoot }),
        mqtt: values['no-mqtt'] ? 'none' : values['mqtt-url'] ? { url: values['mqtt-url'] } : 'embedded',
        mqttPort, ...(verifyWorkers !== undefined && { verifyWorkers }),
        ...(values['mqtt-prefix'] && { mqttPrefix: values['mqtt-prefix'] }),
        adminToken: required(values['admin-token'] ?? env.UPFLEET_ADMIN_TOKEN, '--admin-token (or UPFLEET_ADMIN_TOKEN)'),
        provisioningToken: required(values['provisioning-token'] ?? env.UPFLEET_PROVISIONING_TOKEN, '--provisioning-token (or UPFLEET_PROVISIONING_TOKEN)'),
        ...((values['viewer-token'] ?? env.UPFLEET_VIEWER_TOKEN) && { viewerToken: values['viewer-token'] ?? env.UPFLEET_VIEWER_TOKEN }),
        approval: values['manual-approval'] ? 'manual' : 'auto',
        ...(env.UPFLEET_ONLINE_PASSPHRASE && { onlinePassphrase: env.UPFLEET_ONLINE_PASSPHRASE }),
        ...(env.UPFLEET_LOG_LEVEL && { logLevel: env.UPFLEET_LOG_LEVEL }),
        ...(campaignLaunchChunk !== undefined && { campaignLaunchChunk }),
      });
      if (worker !== undefined) reportStarted(director.url);
      const stop = () => void director.close().then(() => process.exit(0));
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      return;
    }
    case 'devices': {
      const { values, positionals } = parse(rest, { status: { type: 'string' }, tag: { type: 'string', multiple: true } });
      if (values.help) return help(HELP.devices);
      const [sub, id] = positionals;
      if (!sub) throw new CliUsageError('missing devices subcommand (list, show, approve, decommission, preregister)');
      expectPositionals(positionals, sub === 'list' ? 1 : 2, `devices ${sub}`);
      const c = admin(values, env);
      const deviceColumns = ['id', 'status', 'online', 'manifestCounter', 'tags', 'lastSeen'];
      if (sub === 'list') {
        const r = await c.call('GET', `/api/v1/admin/devices${values.status ? `?status=${encodeURIComponent(values.status)}` : ''}`);
        return print(values.json, r.devices, () => table(r.devices, deviceColumns));
      }
      const deviceId = encodeURIComponent(required(id, 'DEVICE'));
      if (sub === 'show') {
        const d = await c.call('GET', `/api/v1/admin/devices/${deviceId}`);
        return print(values.json, d, () => [
          table([d], deviceColumns), '',
          table(d.ecus.map((e: any) => ({ ...e, installed: e.installed?.filename, primary: e.primary ? 'yes' : '' })), ['serial', 'hardwareId', 'primary', 'installed', 'releaseCounter']), '',
          table(d.assignments.map((a: any) => ({ ...a, images: a.items.map((i: any) => `${i.ecuSerial}=${i.image}`).join(' ') })), ['id', 'status', 'images', 'targetsVersion', 'errorCode']), '',
          `security events (${d.events.length}):`, table(d.events, ['at', 'kind', 'code', 'ecuSerial', 'detail']),
        ].join('\n'));
      }
      if (sub === 'approve' || sub === 'decommission') {
        const d = await c.call('POST', `/api/v1/admin/devices/${deviceId}/${sub}`);
        return print(values.json, d, () => table([d], deviceColumns));
      }
      if (sub === 'preregister') {
        const d = await c.call('POST', '/api/v1/admin/devices', { deviceId: id, tags: values.tag ?? [] });
        return print(values.json, d, () => table([d], deviceColumns));
      }
      throw new CliUsageError(`unknown devices subcommand ${sub ?? ''}`);
    }
    case 'assign': {
      const { values, positionals } = parse(rest, { ecu: { type: 'string', multiple: true }, image: { type: 'string', multiple: true } });
      if (values.help) return help(HELP.assign);
      const device = required(positionals[0], 'DEVICE');
      expectPositionals(positionals, 1, 'assign takes one DEVICE');
      const ecus = values.ecu ?? [];
      const images = values.image ?? [];
      if (ecus.length === 0 || ecus.length !== images.length) throw new CliUsageError('give --ecu and --image in pairs');
      const a = await admin(values, env).call('POST', `/api/v1/admin/devices/${encodeURIComponent(device)}/assignments`, {
        ecus: ecus.map((ecuSerial, i) => ({ ecuSerial, image: images[i] })),
      });
      return print(values.json, a, () => table([{ ...a, images: a.items.map((i: any) => `${i.ecuSerial}=${i.image}`).join(' ') }], ['id', 'deviceId', 'status', 'images', 'targetsVersion']));
    }
    case 'campaign': {
      const { values, positionals } = parse(rest, {
        name: { type: 'string' }, image: { type: 'string', multiple: true }, tag: { type: 'string', multiple: true },
        waves: { type: 'string' }, threshold: { type: 'string' },
      });
      if (values.help) return help(HELP.campaign);
      const [sub, id] = positionals;
      if (!sub) throw new CliUsageError('missing campaign subcommand (create, start, pause, resume, abort, status, list)');
      expectPositionals(positionals, sub === 'list' || sub === 'create' ? 1 : 2, `campaign ${sub}`);
      const c = admin(values, env);
      if (sub === 'list') {
        const r = await c.call('GET', '/api/v1/admin/campaigns');
        return print(values.json, r.campaigns, () => table(r.campaigns.map(campaignRow), CAMPAIGN_COLUMNS));
      }
      let result: any;
      if (sub === 'create') {
        const images = (values.image ?? []).map((s) => {
          const eq = s.indexOf('=');
          if (eq <= 0) throw new CliUsageError(`--image ${s}: expected HWID=IMAGE`);
          return { hardwareId: s.slice(0, eq), image: s.slice(eq + 1) };
        });
        result = await c.call('POST', '/api/v1/admin/campaigns', {
          name: required(values.name, '--name'), images, tags: values.tag ?? [],
          ...(values.waves !== undefined && { waves: numbers(values.waves, '--waves') }),
          ...(values.threshold !== undefined && { successThreshold: numbers(values.threshold, '--threshold')[0] }),
        });
      } else if (sub === 'status') {
        result = await c.call('GET', `/api/v1/admin/campaigns/${encodeURIComponent(required(id, 'ID'))}`);
      } else if (sub === 'start' || sub === 'pause' || sub === 'resume' || sub === 'abort') {
        result = await c.call('POST', `/api/v1/admin/campaigns/${encodeURIComponent(required(id, 'ID'))}/${sub}`);
      } else {
        throw new CliUsageError(`unknown campaign subcommand ${sub ?? ''}`);
      }
      return print(values.json, result, () => table([campaignRow(result)], CAMPAIGN_COLUMNS) + (result.reason ? `\nreason: ${result.reason}` : '') +
        (Array.isArray(result.deviceStatus) ? `\n\ndevices (${result.deviceStatus.length}):\n${table(result.deviceStatus, ['deviceId', 'wave', 'status', 'errorCode', 'updatedAt'])}` : ''));
    }
    default:
      throw new CliUsageError(`unknown command ${command}`);
  }
}

/** A number list ("1,10,100"); the director checks the ranges. */
function numbers(value: string, name: string): number[] {
  const list = value.split(',').map((v) => (/^\d+(\.\d+)?$/.test(v.trim()) ? Number(v) : NaN));
  if (list.some(Number.isNaN)) throw new CliUsageError(`${name} ${value}: expected ${name === '--waves' ? 'comma-separated percentages' : 'a number'}`);
  if (name === '--threshold' && list.length !== 1) throw new CliUsageError(`${name} takes one number`);
  return list;
}

function readInput(path: string, name: string): Uint8Array {
  try {
    return new Uint8Array(readFileSync(path));
  } catch (cause) {
    throw new UpfleetError(`cannot read ${name} ${path}: ${(cause as NodeJS.ErrnoException).code ?? (cause as Error).message}`, { cause });
  }
}

/**
 * Runs one command line; resolves with the exit code (0 done, 1 failed, 2 bad usage),
 * never rejects. `serve` resolves once the director listens and keeps running.
 */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  try {
    await main(argv, io);
    return 0;
  } catch (error) {
    if (error instanceof CliUsageError) {
      io.err(`upfleet-director: ${error.message} (see --help)\n`);
      return 2;
    }
    const e = error as Error & { code?: string };
    // Some system errors repeat their code in the message ("ENOENT: no such file ..."): print it once.
    const message = e.code && e.message.startsWith(`${e.code}: `) ? e.message.slice(e.code.length + 2) : e.message;
    io.err(`upfleet-director: ${e.name}${e.code ? ` ${e.code}` : ''}: ${message}\n`);
    return 1;
  }
}
