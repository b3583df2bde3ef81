/**
 * upfleet-sim: simulated secondary ECUs on serial lines, and pty pairs to put them on.
 * Exit codes: 0 done, 1 failed (one-line typed message on stderr), 2 bad usage.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import pino from 'pino';
import { UpfleetError } from '@upfleet/core';
import { loadEcuConfig } from './ecu/ecu-config.ts';
import { SimulatedEcu } from './ecu/simulated-ecu.ts';
import { createPtyPair, servePort, type EmulatorOptions } from './index.ts';
import packageJson from '../package.json' with { type: 'json' };

class CliUsageError extends Error {}

const HELP: Record<string, string> = {
  main: `upfleet-sim <command> [options]

Commands:
  ecu --port PATH --config ecu.json     run a simulated secondary ECU on a serial device
  pty-pair [--dir DIR]                  create a connected pty pair (socat) and print its paths
  fleet --devices N --ecus K --director URL ...   N simulated vehicles (agent + K ECUs each) in one process
Run 'upfleet-sim <command> --help' for details; 'upfleet-sim --version' prints the version.`,
  ecu: `upfleet-sim ecu --port PATH --config ecu.json [options]

Serves one simulated ECU (A/B slots, partial or full verification) on PATH.
  --baud N          pace the line at N baud through the link emulator (ptys ignore baud)
  --ber X           bit error rate per bit (emulator)
  --drop X          byte drop probability (emulator)
  --latency MS      one-way latency (emulator)
  --seed N          fault PRNG seed (default 1)
  --passphrase-env NAME   env var holding the key file passphrase (default UPFLEET_ECU_PASSPHRASE;
                    unset means an empty passphrase, fine for simulations only)
The key file named in the config is generated when missing. Logs are JSON lines on stdout.
SIGINT/SIGTERM stop it.`,
  'pty-pair': `upfleet-sim pty-pair [--dir DIR] [--json]

Creates two linked ptys with socat (raw, no echo) and prints {"a": PATH, "b": PATH};
keeps running until SIGINT/SIGTERM.`,
};

HELP.fleet = `upfleet-sim fleet --devices N --ecus K --director URL --image-repo URL --director-root FILE [options]

Runs N simulated vehicles in this process: the real agent logic as each primary,
K simulated secondaries per vehicle behind emulated serial links, distinct keys.
Each vehicle provisions itself (registers with the director), then cycles on every
poll and MQTT notify until SIGINT/SIGTERM. Prints one JSON status line per interval.
  --image-root FILE         the image repository's root.json (default: fetched from --image-repo)
  --provisioning-token T    (default: $UPFLEET_PROVISIONING_TOKEN)
  --mqtt URL                the director's MQTT broker (notify); default: poll only
  --dir DIR                 state directory (default: a new temp directory)
  --prefix NAME             device IDs are NAME-1..N (default sim-car)
  --baud N --ber X          serial link rate and bit error rate (default 115200, 0)
  --interval S              seconds between status lines (default 5)`;

async function fleetCommand(args: string[]): Promise<void> {
  const { values } = parse(args, {
    devices: { type: 'string' }, ecus: { type: 'string' }, director: { type: 'string' }, 'image-repo': { type: 'string' },
    'director-root': { type: 'string' }, 'image-root': { type: 'string' }, 'provisioning-token': { type: 'string' }, mqtt: { type: 'string' },
    dir: { type: 'string' }, prefix: { type: 'string' }, baud: { type: 'string' }, ber: { type: 'string' }, interval: { type: 'string' },
  } as const);
  if (values.help) return void console.log(HELP.fleet);
  const devices = numberOpt(values.devices, 'devices');
  const ecus = numberOpt(values.ecus, 'ecus') ?? 2;
  if (devices === undefined || !Number.isInteger(devices) || devices < 1 || !Number.isInteger(ecus)) throw new CliUsageError('--devices N (>= 1) and an integer --ecus K are needed');
  if (typeof values.director !== 'string' || typeof values['image-repo'] !== 'string' || typeof values['director-root'] !== 'string') {
    throw new CliUsageError('fleet needs --director URL, --image-repo URL and --director-root FILE');
  }
  const token = values['provisioning-token'] ?? process.env.UPFLEET_PROVISIONING_TOKEN;
  if (!token) throw new CliUsageError('a provisioning token is needed (--provisioning-token or UPFLEET_PROVISIONING_TOKEN)');
  const { readFileSync, mkdtempSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const imageRepo = values['image-repo'].replace(/\/+$/, '');
  const imageRoot = typeof values['image-root'] === 'string'
    ? new Uint8Array(readFileSync(values['image-root']))
    : new Uint8Array(await (await fetch(`${imageRepo}/metadata/1.root.json`)).arrayBuffer());
  const { startFleet } = await import('./fleet.ts');
  const ber = numberOpt(values.ber, 'ber');
  const fleet = await startFleet({
    devices, ecus, directorUrl: values.director.replace(/\/+$/, ''), imageRepoUrl: imageRepo,
    ...(typeof values.mqtt === 'string' && { mqttUrl: values.mqtt }),
    directorRoot: new Uint8Array(readFileSync(values['director-root'])), imageRoot, provisioningToken: token,
    dir: typeof values.dir === 'string' ? values.dir : mkdtempSync(join(tmpdir(), 'upfleet-fleet-')),
    ...(typeof values.prefix === 'string' && { prefix: values.prefix }),
    baud: numberOpt(values.baud, 'baud') ?? 115200, ...(ber !== undefined && { fault: { ber } }),
  });
  const report = async () => {
    const all = await fleet.status();
    console.log(JSON.stringify({ devices: all.length, idle: all.filter((s) => s.state === 'idle').length,
      updated: all.filter((s) => s.lastResult?.result.success).length, failed: all.filter((s) => s.lastResult && !s.lastResult.result.success).length }));
  };
  const timer = setInterval(() => void report(), (numberOpt(values.interval, 'interval') ?? 5) * 1000);
  await report();
  await untilSignal();
  clearInterval(timer);
  await fleet.close();
}

const COMMON = { help: { type: 'boolean', short: 'h' }, json: { type: 'boolean' } } as const;

function parse<T extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: T) {
  try {
    return parseArgs({ args, options: { ...COMMON, ...options }, strict: true, allowPositionals: false });
  } catch (e) {
    throw new CliUsageError((e as Error).message);
  }
}

function numberOpt(v: unknown, name: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== 'string' || v === '' || !Number.isFinite(n) || n < 0) throw new CliUsageError(`--${name} must be a number >= 0`);
  return n;
}

const untilSignal = () =>
  new Promise<string>((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
  });

async function ecuCommand(args: string[]): Promise<void> {
  const { values } = parse(args, {
    port: { type: 'string' }, config: { type: 'string' }, baud: { type: 'string' }, ber: { type: 'string' },
    drop: { type: 'string' }, latency: { type: 'string' }, seed: { type: 'string' }, 'passphrase-env': { type: 'string' },
  } as const);
  if (values.help) return void console.log(HELP.ecu);
  if (typeof values.port !== 'string' || typeof values.config !== 'string') throw new CliUsageError('ecu needs --port PATH and --config FILE');
  const baud = numberOpt(values.baud, 'baud');
  const ber = numberOpt(values.ber, 'ber');
  const drop = numberOpt(values.drop, 'drop');
  const latency = numberOpt(values.latency, 'latency');
  const seed = numberOpt(values.seed, 'seed');
  if ((ber ?? 0) > 1 || (drop ?? 0) > 1) throw new CliUsageError('--ber and --drop are probabilities (0..1)');
  const emulate = [baud, ber, drop, latency].some((v) => v !== undefined);
  const emulation: EmulatorOptions | undefined = emulate
    ? { baud: baud ?? 0, ber: ber ?? 0, dropRate: drop ?? 0, latencyMs: latency ?? 0, seed: seed ?? 1 }
    : undefined;
  const passphrase = process.env[values['passphrase-env'] ?? 'UPFLEET_ECU_PASSPHRASE'] ?? '';
  const options = loadEcuConfig(values.config, passphrase);
  const log = pino({ base: { ecuSerial: options.ecuSerial } });
  const ecu = new SimulatedEcu(options);
  for (const name of ['verified', 'begin', 'image-verified', 'activated', 'rebooted']) {
    ecu.on(name, (...a: unknown[]) => log.info({ event: name, detail: a }, name));
  }
  ecu.on('refused', (code: string, detail: string) => log.warn({ event: 'refused', code, detail }, 'refused'));
  ecu.on('protocol-error', (e: Error) => log.warn({ event: 'protocol-error', err: e.message }, 'protocol error'));
  ecu.on('link-error', (e: Error) => log.error({ event: 'link-error', err: e.message }, 'serial port error'));
  const served = await servePort(ecu, values.port, emulation);
  log.info({ event: 'serving', port: values.port, hardwareId: options.hardwareId, verification: options.verification, keyid: options.signer.keyid, emulation }, 'serving');
  const signal = await untilSignal();
  await served.close();
  log.info({ event: 'stopped', signal }, 'stopped');
}

async function ptyPairCommand(args: string[]): Promise<void> {
  const { values } = parse(args, { dir: { type: 'string' } } as const);
  if (values.help) return void console.log(HELP['pty-pair']);
  const pair = await createPtyPair(typeof values.dir === 'string' ? { dir: values.dir } : {});
  console.log(JSON.stringify({ a: pair.a, b: pair.b }));
  await untilSignal();
  await pair.close();
}

const COMMANDS: Record<string, (args: string[]) => Promise<void>> = { ecu: ecuCommand, 'pty-pair': ptyPairCommand, fleet: fleetCommand };

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    console.log(HELP.main);
    return command === undefined ? 2 : 0;
  }
  if (command === '--version' || command === '-V') {
    console.log(`upfleet-sim ${packageJson.version}`);
    return 0;
  }
  const run = COMMANDS[command];
  if (!run) {
    console.error(`upfleet-sim: unknown command ${command}\n${HELP.main}`);
    return 2;
  }
  try {
    await run(rest);
    return 0;
  } catch (e) {
    if (e instanceof CliUsageError) {
      console.error(`upfleet-sim ${command}: ${e.message}\n${HELP[command]}`);
      return 2;
    }
    const err = e as Error;
    const code = e instanceof UpfleetError ? e.code : err.name;
    console.error(`upfleet-sim ${command}: ${code}: ${err.message}`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
