/**
 * `npm run demo`: the whole system on this machine, in under a minute.
 *
 *  1. Starts the image repository and the director (SQLite, embedded MQTT
 *     broker) in a temp directory, and one simulated vehicle: the agent as
 *     primary (with its own install handler) and two secondary ECUs on serial
 *     links at 115200 baud: real pty pairs (socat, opened with node-serialport)
 *     when the machine can make them, else the in-process link emulator.
 *  2. Publishes firmware for the three ECUs with the upfleet-repo operations
 *     (the brake firmware signed by a supplier's delegated key), and assigns it
 *     through the director's admin API.
 *  3. Shows progress per ECU (bars on a TTY, plain lines otherwise).
 *  4. Prints one table row per ECU.
 *  5. Exits 0 only when the director accepted a verified manifest in which
 *     every ECU reports its assigned image; otherwise 1, with the reason.
 *
 * Options: --vehicles N (N-1 more vehicles from the fleet simulator),
 * --keep-running, --fault ber=1e-5[,drop=1e-4,latency=5], --help.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import type { ChannelOptions } from '@upfleet/device-sim/src/index.ts';
import { createPtyPair } from '@upfleet/device-sim/src/index.ts';
import type { ProgressEvent } from '@upfleet/agent';
import { rtoForLine, windowForLine } from '@upfleet/agent/secondaries/serial-secondary.ts';
import { formatBytes, formatBytesOf } from '@upfleet/core/format-bytes.ts';
import { Stack, ADMIN_TOKEN, PASSPHRASE, PROVISIONING_TOKEN, UPLOAD_TOKEN } from '../test/support/stack.ts';
import { Vehicle, AGENT_PASSPHRASE, type LinkKind } from '../test/support/vehicle.ts';
import { assignDemoFirmware, DEMO_SECONDARIES, publishDemoFirmware, type Firmware } from '../test/support/firmware.ts';
import { cliCommand } from './cli-command.ts';

const BAUD = 115200;
/**
 * The default --timeout: 120 s for the demo vehicle (start-up and publishing take a
 * good part of it on a loaded machine), plus what each fleet vehicle
 * adds on a loaded 2-core machine (provisioning, assignment, its update): --vehicles 200
 * took 873 s with a load average of 25-28 from other work, inside the 1115 s default.
 */
const BASE_TIMEOUT_S = 120;
const PER_VEHICLE_S = 5;
function defaultTimeoutS(vehicles: number): number {
  return Math.round(BASE_TIMEOUT_S + PER_VEHICLE_S * (vehicles - 1));
}
/** Fleet vehicles are woken by MQTT; polling is only the fallback, and 200 vehicles polling every 2 s would swamp the director. */
const FLEET_POLL_S = 60;
/** Fleet assignments in flight at once: each is an admin call plus an image repository check. */
const ASSIGN_CONCURRENCY = 8;

const HELP = `Usage: npm run demo -- [options]

Runs an image repository, a director and a simulated vehicle (a primary and
two secondary ECUs on 115200-baud serial links), publishes firmware, updates
every ECU, and prints what happened.

Options:
  --vehicles N       run N vehicles (the extra ones come from the fleet simulator)
  --keep-running     keep everything up afterwards and print commands to try
  --fault SPEC       serial link faults, e.g. ber=1e-5 or ber=1e-5,drop=1e-4,latency=5
  --link KIND        auto (default: pty pairs when socat works, else the emulator), pty, emulated
  --timeout S        give up after S seconds (default ${defaultTimeoutS(1)} for one vehicle, plus
                     ${PER_VEHICLE_S} s per extra vehicle: ${defaultTimeoutS(200)} for --vehicles 200)
  -h, --help         this help
`;


interface Args {
  vehicles: number;
  keepRunning: boolean;
  fault: ChannelOptions | undefined;
  timeoutS: number;
  link: 'auto' | LinkKind;
}

class UsageProblem extends Error {}

function parseFault(spec: string): ChannelOptions {
  const out: ChannelOptions = {};
  for (const part of spec.split(',')) {
    const [k, v] = part.split('=');
    const n = Number(v);
    if (v === undefined || v.trim() === '' || !Number.isFinite(n) || n < 0) throw new UsageProblem(`--fault: "${part}" is not NAME=NUMBER`);
    if (k === 'ber') out.ber = n;
    else if (k === 'drop') out.dropRate = n;
    else if (k === 'latency') out.latencyMs = n;
    else throw new UsageProblem(`--fault: unknown fault "${k}" (ber, drop, latency)`);
  }
  if ((out.ber ?? 0) > 1e-2 || (out.dropRate ?? 0) > 1e-1) throw new UsageProblem('--fault: rates that high never get a frame through');
  return out;
}

function parse(argv: string[]): Args | 'help' {
  let v;
  try {
    v = parseArgs({
      args: argv,
      options: {
        vehicles: { type: 'string' }, 'keep-running': { type: 'boolean' }, fault: { type: 'string' }, timeout: { type: 'string' }, link: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }).values;
  } catch (e) {
    throw new UsageProblem((e as Error).message);
  }
  if (v.help) return 'help';
  const vehicles = v.vehicles === undefined ? 1 : Number(v.vehicles);
  if (!Number.isSafeInteger(vehicles) || vehicles < 1 || vehicles > 1000) throw new UsageProblem('--vehicles must be an integer from 1 to 1000');
  const timeoutS = v.timeout === undefined ? defaultTimeoutS(vehicles) : Number(v.timeout);
  if (!Number.isFinite(timeoutS) || timeoutS <= 0) throw new UsageProblem('--timeout must be a positive number of seconds');
  const link = v.link ?? 'auto';
  if (link !== 'auto' && link !== 'pty' && link !== 'emulated') throw new UsageProblem('--link is auto, pty or emulated');
  return { vehicles, keepRunning: v['keep-running'] === true, fault: v.fault === undefined ? undefined : parseFault(v.fault), timeoutS, link };
}

// ------------------------------------------------------------------ display

const tty = process.stdout.isTTY === true;
const say = (line = '') => process.stdout.write(line + '\n');
const ms = (n: number) => (n < 1 ? "<1 ms" : n < 1000 ? `${Math.round(n)} ms` : `${(n / 1000).toFixed(1)} s`);

/** Agent state names, as a user reads them. */
const STEP_LABEL: Record<string, string> = {
  sendingManifest: 'sending version manifest',
  checkingDirector: 'verifying director metadata',
  checkingImages: 'verifying image repository metadata',
  downloading: 'downloading images',
  installing: 'sending images to ECUs',
  activating: 'activating',
  rollingBack: 'rolling back',
  reporting: 'reporting result',
  idle: 'idle',
};

interface EcuRow {
  serial: string;
  hardwareId: string;
  role: 'primary' | 'secondary';
  verification: 'full' | 'partial';
  before: string;
  target?: Firmware;
  download?: { done: number; total: number };
  flash?: { done: number; total: number };
  /** performance.now() marks: first and last progress of the download and of the flash. */
  marks: { dl?: [number, number]; flash?: [number, number] };
  ecuVerified: boolean;
}

/** The steps of a cycle that finds nothing new (idle -> sendingManifest -> checkingDirector -> idle). */
const QUIET_STEPS = new Set(['sendingManifest', 'checkingDirector', 'idle']);

class ProgressView {
  #drawn = 0;
  #lastDraw = 0;
  #marks = new Map<string, number>();
  /** Bars redrawn in place (a TTY, until other output follows them). */
  #inPlace = tty;
  /** After the first update (--keep-running): a cycle is shown only once it does something. */
  #following = false;
  #cycleShown = false;
  step = 'starting';

  constructor(readonly rows: EcuRow[], readonly startedAt: number) {}

  onProgress(p: ProgressEvent): void {
    const row = this.rows.find((r) => r.serial === p.ecuSerial);
    if (!row) return;
    const t = performance.now();
    const which = p.state === 'downloading' ? 'dl' : 'flash';
    const m = row.marks[which];
    row.marks[which] = m ? [m[0], t] : [t, t];
    if (p.state === 'downloading') row.download = { done: p.done, total: p.total };
    else row.flash = { done: p.done, total: p.total };
    if (this.#inPlace) return this.draw();
    const pct = p.total > 0 ? Math.floor((p.done / p.total) * 4) * 25 : 100;
    const key = `${p.ecuSerial}/${p.state}`;
    if (this.#marks.get(key) === pct) return;
    this.#marks.set(key, pct);
    say(`  ${p.ecuSerial.padEnd(16)} ${p.state === 'downloading' ? 'download' : 'flash   '} ${String(pct).padStart(3)}%  ${formatBytesOf(p.done, p.total)}`);
  }

  onStep(to: string): void {
    if (to === this.step) return;
    this.step = to;
    if (this.#inPlace) return this.draw(true);
    // The agent polls every few seconds; a poll that finds nothing new is not news.
    if (this.#following && !this.#cycleShown && QUIET_STEPS.has(to)) return;
    this.#cycleShown = to !== 'idle';
    say(`  step: ${STEP_LABEL[to] ?? to}`);
  }

  /** Below the summary (--keep-running): plain lines, and only for cycles that change something. */
  follow(): void {
    this.#inPlace = false;
    this.#following = true;
    this.#cycleShown = false;
  }

  draw(force = false): void {
    const now = Date.now();
    if (!force && now - this.#lastDraw < 80) return;
    this.#lastDraw = now;
    const bar = (x?: { done: number; total: number }) => {
      const r = x ? (x.total > 0 ? Math.min(1, x.done / x.total) : 1) : 0;
      const n = Math.round(r * 20);
      return `[${'#'.repeat(n)}${'.'.repeat(20 - n)}] ${String(Math.floor(r * 100)).padStart(3)}% ${(x ? formatBytesOf(x.done, x.total) : '').padEnd(15)}`;
    };
    const lines = [
      `  step: ${(STEP_LABEL[this.step] ?? this.step).padEnd(40)} ${ms(performance.now() - this.startedAt)}`,
      ...this.rows.map((r) => `  ${r.serial.padEnd(16)} download ${bar(r.download)}   flash ${bar(r.flash)}`),
    ];
    if (this.#drawn > 0) process.stdout.write(`\x1b[${this.#drawn}A`);
    for (const l of lines) process.stdout.write(`\x1b[2K${l}\n`);
    this.#drawn = lines.length;
  }
}

/** A pino destination that turns the agent's transition logs into step changes. */
function transitionLogger(onStep: (to: string) => void): Logger {
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (!line.includes('"transition"')) continue;
        try {
          const o = JSON.parse(line) as { to?: string };
          if (o.to) onStep(o.to);
        } catch {
          // not a JSON log line
        }
      }
      cb();
    },
  });
  return pino({ level: 'info' }, sink);
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => '  ' + cells.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  return [line(header), '  ' + widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

// ------------------------------------------------------------------ the run

/** pty pairs when socat can make them (installing socat first when root), else the emulator. */
async function chooseLink(wanted: Args['link']): Promise<{ link: LinkKind; why: string }> {
  if (wanted === 'emulated') return { link: 'emulated', why: 'asked for with --link' };
  const tools = (await import(join(import.meta.dirname, 'system-tools.mjs'))) as { ensureSystemTools(o?: { quiet?: boolean }): string[] };
  const missing = tools.ensureSystemTools({ quiet: true });
  if (missing.length > 0 && wanted === 'pty') throw new Error(`--link pty: ${missing.join(', ')} not available`);
  if (missing.length > 0) return { link: 'emulated', why: `${missing.join(', ')} not available: falling back` };
  try {
    const pair = await createPtyPair({ timeoutMs: 3000 });
    await pair.close();
    return { link: 'pty', why: 'socat made a pty pair' };
  } catch (e) {
    if (wanted === 'pty') throw e;
    return { link: 'emulated', why: `${(e as Error).message}: falling back` };
  }
}

function expectedVersion(f: Firmware | undefined): string {
  return f ? `${f.version} (release ${f.releaseCounter})` : '-';
}

/** What every timeout failure says: how long it waited, and the option that gives it longer. */
function timeoutAdvice(args: Args): string {
  return `the demo's --timeout of ${args.timeoutS} s ran out (raise it, e.g. --timeout ${Math.ceil(args.timeoutS * 2)}; the default grows with --vehicles)`;
}

async function waitFor<T>(what: string, deadline: number, advice: string, probe: () => Promise<T | undefined>): Promise<T> {
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${advice}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Runs `work` on every item, at most `limit` at a time; the first failure rejects once the started ones settle. */
async function eachLimited<T>(items: T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: unknown;
  const lane = async () => {
    while (next < items.length && failure === undefined) await work(items[next++]!).catch((e: unknown) => void (failure ??= e));
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  if (failure !== undefined) throw failure;
}

async function main(): Promise<number> {
  let args: Args | 'help';
  try {
    args = parse(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`demo: ${(e as Error).message}\n${HELP}`);
    return 2;
  }
  if (args === 'help') {
    process.stdout.write(HELP);
    return 0;
  }
  const t0 = performance.now();
  const deadline = Date.now() + args.timeoutS * 1000;

  say('Upfleet demo');
  const { link, why } = await chooseLink(args.link);
  say(`serial links: ${link === 'pty' ? 'real pty pairs (socat + node-serialport)' : 'in-process link emulator'} at ${BAUD} baud (${why})` +
    (args.fault ? `, faults ${JSON.stringify(args.fault)}` : ''));

  const stack = await Stack.start({ mqtt: 'embedded' });
  const closers: Array<() => Promise<void>> = [];
  let exitCode = 1;
  try {
    say(`image repository  ${stack.imageRepo.url}   (data in ${stack.repoDir})`);
    say(`director          ${stack.director.url}   mqtt ${stack.director.mqttUrl}   (data in ${stack.directorDir})`);

    const deviceId = 'demo-car-1';
    const progressRows: EcuRow[] = [];
    let view: ProgressView | undefined;
    const vehicle = await Vehicle.create(stack, {
      deviceId, secondaries: DEMO_SECONDARIES(deviceId), link, baud: BAUD, ...(args.fault && { fault: args.fault }), mqtt: true,
      // The agent's own window and RTO for the line (the test default of 300 ms is too eager on a loaded machine).
      serial: { maxWindow: windowForLine(BAUD), rtoMs: rtoForLine(BAUD, undefined, windowForLine(BAUD)) },
      logger: transitionLogger((to) => view?.onStep(to)), onProgress: (p) => view?.onProgress(p),
    });
    closers.push(() => vehicle.close());
    say(`vehicle ${deviceId}: primary ${vehicle.primarySerial} (gateway) + ${vehicle.ecus.map((e) => `${e.spec.serial} (${e.spec.hardwareId}, ${e.spec.verification} verification)`).join(' + ')}; provisioned and registered`);

    let fleet: { close(): Promise<void>; done(timeoutMs?: number): Promise<{ ok: number; failed: string[] }> } | undefined;
    say('publishing firmware with upfleet-repo ...');
    const fw = await publishDemoFirmware(stack);
    for (const f of fw.images) say(`  ${f.name.padEnd(26)} ${formatBytes(f.length).padStart(9)}  hardware ${f.hardwareId.padEnd(10)} signed by ${f.signedBy === 'targets' ? 'the targets key' : `supplier role "${f.signedBy}"`}`);

    if (args.vehicles > 1) {
      const { startFleetProcesses } = await import('../device-sim/src/fleet-processes.ts');
      fleet = await startFleetProcesses({
        // In their own processes: the director and the image repository here keep an event loop of their own.
        processes: Math.min(availableParallelism(), args.vehicles - 1),
        devices: args.vehicles - 1, ecus: 2, directorUrl: stack.director.url, imageRepoUrl: stack.imageRepo.url,
        directorRoot: stack.directorRootBytes, imageRoot: stack.imageRootBytes, provisioningToken: PROVISIONING_TOKEN,
        dir: join(stack.dir, 'fleet'), baud: BAUD, ...(args.fault && { fault: args.fault }),
        hardwareIds: { primary: 'gateway', secondaries: ['brake-ecu', 'door-ecu'] },
        ...(stack.director.mqttUrl && { mqttUrl: stack.director.mqttUrl }), pollIntervalSeconds: FLEET_POLL_S,
      });
      closers.push(() => fleet!.close());
      say(`fleet simulator: ${args.vehicles - 1} more vehicle(s) in ${Math.min(availableParallelism(), args.vehicles - 1)} process(es), 2 secondaries each, distinct keys`);
    }

    const before = vehicle.installed();
    const targets = fw.byEcu(vehicle);
    progressRows.push(
      ...[{ serial: vehicle.primarySerial, hardwareId: 'gateway', role: 'primary' as const, verification: 'full' as const },
        ...vehicle.ecus.map((e) => ({ serial: e.spec.serial, hardwareId: e.spec.hardwareId, role: 'secondary' as const, verification: e.spec.verification }))]
        .map((r) => {
          const target = targets[r.serial];
          return { ...r, before: before[r.serial]?.filename || 'factory (empty)', ecuVerified: r.role === 'primary', marks: {}, ...(target && { target }) };
        }),
    );
    for (const e of vehicle.ecus) e.sim?.on('image-verified', () => (progressRows.find((r) => r.serial === e.spec.serial)!.ecuVerified = true));

    const assignment = await assignDemoFirmware(stack, vehicle, fw);
    say(`director: assignment ${assignment.id} for ${deviceId} (3 ECUs); MQTT notify sent`);
    if (fleet) {
      const ids = (await stack.admin('GET', '/devices')).json as Array<{ id: string }> | { devices: Array<{ id: string }> };
      const list = Array.isArray(ids) ? ids : ids.devices;
      await eachLimited(list.filter((d) => d.id !== deviceId), ASSIGN_CONCURRENCY, async (d) => {
        const dv = await stack.device(d.id);
        await stack.assign(d.id, dv.ecus.map((e: { serial: string; hardwareId: string }) => ({ ecuSerial: e.serial, image: fw.images.find((i) => i.hardwareId === e.hardwareId)!.name })));
      });
      say(`director: ${list.length - 1} more assignment(s), one per fleet vehicle; MQTT notify sent to each`);
    }
    say('');
    view = new ProgressView(progressRows, performance.now());
    const updateStart = performance.now();
    const running = vehicle.agent!.run();
    const done = await waitFor('the assignment to finish', deadline, timeoutAdvice(args), async () => {
      const a = (await stack.admin('GET', `/assignments/${assignment.id}`)).json as { status: string; errorCode?: string; errorMessage?: string };
      return a.status === 'succeeded' || a.status === 'failed' || a.status === 'cancelled' ? a : undefined;
    }).catch((e: Error) => ({ status: 'timeout', errorMessage: e.message, errorCode: 'TIMEOUT' }));
    const updateMs = performance.now() - updateStart;
    view.onStep('idle');
    if (tty) view.draw(true);
    say('');
    // The agent keeps polling under --keep-running: from here on, nothing redraws over the summary.
    if (args.keepRunning) view.follow();

    // The agent keeps running for --keep-running; otherwise stop it before reading the final state.
    // Out of time, the demo does not wait for the agent's cycle either (it might take as long again).
    if (!args.keepRunning) {
      await vehicle.agent!.close({ abandonCycle: done.status === 'timeout' });
      await running.catch(() => undefined);
      vehicle.agent = undefined;
    }

    const after = await stack.device(deviceId);
    const manifests = await stack.manifests(deviceId);
    const reasons: string[] = [];
    if (done.status !== 'succeeded') reasons.push(`assignment ${done.status}: ${done.errorCode ?? ''} ${done.errorMessage ?? ''}`.trim());
    const rows = progressRows.map((r) => {
      const ecu = (after.ecus as Array<{ serial: string; installed: { filename: string; hashes: Record<string, string> } | null }>).find((x) => x.serial === r.serial);
      const ok = !!ecu?.installed && ecu.installed.filename === r.target?.name && ecu.installed.hashes.sha256 === r.target?.sha256;
      if (!ok) reasons.push(`${r.serial} reports ${ecu?.installed?.filename || 'nothing'}, assigned ${r.target?.name}`);
      const span = (x?: [number, number]) => (x ? x[1] - x[0] : 0);
      const took = r.marks.flash ? `${ms(span(r.marks.dl) + span(r.marks.flash))} (download ${ms(span(r.marks.dl))}, flash ${ms(span(r.marks.flash))})` : '-';
      return [
        r.serial, r.hardwareId, r.before, ok ? expectedVersion(r.target) : `NOT ${expectedVersion(r.target)}`,
        `primary (full) + ${r.role === 'primary' ? 'itself (install handler)' : `ECU (${r.verification})${r.ecuVerified ? '' : ' ?'}`}`,
        took,
      ];
    });
    if (manifests.length === 0) reasons.push('the director accepted no manifest');
    say(table(['ECU serial', 'hardware ID', 'before', 'after', 'verified by', 'time'], rows));
    say('');
    const events = (after.events as Array<{ kind: string; code: string; detail: string }>) ?? [];
    for (const e of events) say(`director event: ${e.kind} ${e.code} ${e.detail}`);

    if (fleet) {
      const f = await fleet.done(Math.max(0, deadline - Date.now()));
      say(`fleet simulator: ${f.ok} of ${args.vehicles - 1} vehicle(s) updated${f.failed.length ? `; not updated: ${f.failed.slice(0, 20).join(', ')}${f.failed.length > 20 ? ', ...' : ''}` : ''}`);
      if (f.failed.length > 0) reasons.push(`${f.failed.length} fleet vehicle(s) not updated${Date.now() >= deadline ? `: ${timeoutAdvice(args)}` : ''}`);
    }

    if (reasons.length === 0) {
      say(`OK: the director verified manifest #${manifests[0]?.counter ?? '?'} from ${deviceId}: every ECU runs its assigned image ` +
        `(update ${ms(updateMs)}, demo ${ms(performance.now() - t0)}, links: ${link})`);
      exitCode = 0;
    } else {
      say('FAILED:');
      for (const r of reasons) say(`  - ${r}`);
      exitCode = 1;
    }

    if (args.keepRunning) {
      say('');
      say('Everything is still running. Try:');
      say(`  curl -s -H 'authorization: Bearer ${ADMIN_TOKEN}' ${stack.director.url}/api/v1/admin/devices/${deviceId} | head -c 2000`);
      say(`  curl -s ${stack.director.url}/metrics | grep upfleet_director`);
      say(`  curl -s ${stack.imageRepo.url}/api/v1/status`);
      say(`  UPFLEET_PASSPHRASE=${PASSPHRASE} ${cliCommand('upfleet-repo')} status --dir ${stack.repoDir}`);
      say(`  echo new > fw.bin && UPFLEET_PASSPHRASE=${PASSPHRASE} ${cliCommand('upfleet-repo')} add-target fw.bin --name gateway-2.1.0.bin --hardware-id gateway --version 2.1.0 --release-counter 3 --dir ${stack.repoDir} --remote ${stack.imageRepo.url} --token ${UPLOAD_TOKEN}`);
      say(`  curl -s -X POST -H 'authorization: Bearer ${ADMIN_TOKEN}' -H 'content-type: application/json' ${stack.director.url}/api/v1/admin/devices/${deviceId}/assignments -d '{"ecus":[{"ecuSerial":"${vehicle.primarySerial}","image":"gateway-2.1.0.bin"}]}'`);
      say(`     (the running agent is woken by MQTT and installs it; key passphrase ${AGENT_PASSPHRASE}, config ${vehicle.configPath})`);
      say('Press Ctrl-C to stop.');
      await new Promise<void>((resolve) => {
        process.once('SIGINT', () => resolve());
        process.once('SIGTERM', () => resolve());
      });
    }
  } catch (e) {
    say(`FAILED: ${(e as Error).name}: ${(e as Error).message}`);
    exitCode = 1;
  } finally {
    for (const c of closers.reverse()) await c().catch(() => undefined);
    await stack.close();
  }
  if (existsSync(stack.dir) && !process.env.KEEP) say(`(could not remove ${stack.dir})`);
  return exitCode;
}

process.exitCode = await main();
// Everything was closed in order; a straggling socket or timer (e.g. an MQTT
// reconnect racing the shutdown) must not keep a finished demo alive.
setTimeout(() => process.exit(), 2000).unref();
