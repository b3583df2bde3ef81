/**
 * One simulated vehicle on a Stack: a primary (the agent, with an install
 * handler script for its own slot pair) and secondary ECUs reached over a
 * serial link.
 *
 * Links, fastest first:
 * - 'local':    install-handler secondaries in the agent's process (no serial
 *               link at all; for attack and power-loss tests that exercise the
 *               agent's checks, not the line);
 * - 'emulated': simulated ECUs (device-sim) behind the in-process link
 *               emulator, paced at `baud`, with optional faults (ber, drops);
 * - 'pty':      simulated ECUs on real pty pairs made by socat, opened with
 *               node-serialport on both sides, paced by the link emulator on
 *               the ECU side (ptys ignore baud rates).
 *
 * Invariants:
 * - Every ECU has its own key; ECUs pin both repositories' version-1 roots at
 *   "manufacture", like the primary's provisioning files.
 * - The agent can run in this process (`agent`) or as a child (`upfleet-agent`
 *   with `configPath`): the config file is always written, and with 'pty' its
 *   serial ports are real device paths a child can open.
 * - `installed()` reads each ECU's non-volatile state from disk (or the live
 *   simulated ECU), so it is true after the agent was killed.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { Ed25519Signer, type InstalledImage } from '@upfleet/core';
import {
  createAgent, LocalInstallSecondary, parseConfig,
  type Agent, type AgentConfig, type AgentOptions, type Limits, type ProgressEvent, type Secondary,
} from '@upfleet/agent';
import { SerialSecondary, type SerialSecondaryOptions } from '@upfleet/agent/secondaries/serial-secondary.ts';
import { connectInProcess, createPtyPair, servePort, SimulatedEcu, type ChannelOptions, type PtyPair, type ServedEcu } from '@upfleet/device-sim/src/index.ts';
import { PROVISIONING_TOKEN, type Stack } from './stack.ts';

export type LinkKind = 'local' | 'emulated' | 'pty';

export interface EcuSpec {
  serial: string;
  hardwareId: string;
  verification?: 'partial' | 'full';
}

export interface VehicleOptions {
  deviceId: string;
  primary?: { serial: string; hardwareId: string };
  secondaries?: EcuSpec[];
  link?: LinkKind;
  /** Line rate of the serial links (default 115200). */
  baud?: number;
  /** Faults of every serial link ('emulated' and 'pty'). */
  fault?: ChannelOptions;
  /** Where the agent finds the servers (a proxy in attack tests). */
  directorUrl?: string;
  imageRepoUrl?: string;
  limits?: Partial<Limits>;
  /** Least time between two progress events of one ECU to the director (agent default 2). */
  progressIntervalSeconds?: number;
  /** Run the agent in this process (default) or only write its config (child agents). */
  agent?: 'in-process' | 'none';
  onProgress?: (p: ProgressEvent) => void;
  /** Replaces a secondary's driver (lying or failing ECUs). */
  wrap?: (s: Secondary) => Secondary;
  /** Connect the agent's MQTT channel (default: HTTP polling only). */
  mqtt?: boolean;
  logger?: Logger;
  seed?: number;
  /** Serial driver tuning (timeouts, resumes) for in-process agents. */
  serial?: Partial<SerialSecondaryOptions>;
}

export interface VehicleEcu {
  spec: Required<EcuSpec>;
  signer: Ed25519Signer;
  sim?: SimulatedEcu;
  served?: ServedEcu | Omit<ServedEcu, 'primary'>;
  pty?: PtyPair;
  driver?: Secondary;
  /** Directory of a 'local' secondary's slot state. */
  localDir?: string;
}

export const AGENT_PASSPHRASE = 'vehicle-key-passphrase';

export class Vehicle {
  agent: Agent | undefined;

  private constructor(
    readonly stack: Stack,
    readonly dir: string,
    readonly config: AgentConfig,
    readonly configPath: string,
    readonly ecus: VehicleEcu[],
    readonly link: LinkKind,
    readonly serialOptions: Partial<SerialSecondaryOptions>,
  ) {}

  get deviceId(): string {
    return this.config.deviceId;
  }

  get primarySerial(): string {
    return this.config.ecus.primary.serial;
  }

  /** Builds the vehicle's ECUs and config; with agent 'in-process', creates and provisions the agent. */
  static async create(stack: Stack, o: VehicleOptions): Promise<Vehicle> {
    const dir = join(stack.dir, 'vehicles', o.deviceId);
    mkdirSync(dir, { recursive: true });
    const link = o.link ?? 'local';
    const baud = o.baud ?? 115200;
    writeFileSync(join(dir, 'director-root.json'), stack.directorRootBytes);
    writeFileSync(join(dir, 'image-root.json'), stack.imageRootBytes);
    writeFileSync(join(dir, 'passphrase'), AGENT_PASSPHRASE + '\n', { mode: 0o600 });
    const handler = join(dir, 'install-handler.sh');
    writeFileSync(handler, [
      '#!/bin/sh',
      '# The primary\'s own install handler: writes the verified image into the inactive slot.',
      `echo "$UPFLEET_PHASE $UPFLEET_SLOT $UPFLEET_TARGET_NAME" >> "${dir}/handler.log"`,
      `[ "$UPFLEET_PHASE" != install ] || cp "$1" "${dir}/primary-slot-$UPFLEET_SLOT.bin"`,
      '',
    ].join('\n'));
    chmodSync(handler, 0o755);

    const ecus: VehicleEcu[] = [];
    const emulation = { baud, seed: o.seed ?? 1, ...o.fault };
    try {
      for (const s of o.secondaries ?? []) {
        const spec: Required<EcuSpec> = { verification: 'partial', ...s };
        const signer = Ed25519Signer.generate();
        const e: VehicleEcu = { spec, signer };
        ecus.push(e);
        if (link === 'local') {
          e.localDir = join(dir, `ecu-${spec.serial}`);
          continue;
        }
        mkdirSync(join(dir, `ecu-${spec.serial}`), { recursive: true });
        e.sim = new SimulatedEcu({
          dir: join(dir, `ecu-${spec.serial}`), ecuSerial: spec.serial, hardwareId: spec.hardwareId, signer,
          verification: spec.verification, directorRoot: stack.directorRootBytes, imageRoot: stack.imageRootBytes,
          rebootMs: 20,
        });
        if (link === 'emulated') {
          e.served = connectInProcess(e.sim, emulation);
        } else {
          mkdirSync(join(dir, `pty-${spec.serial}`), { recursive: true });
          e.pty = await createPtyPair({ dir: join(dir, `pty-${spec.serial}`) });
          e.served = await servePort(e.sim, e.pty.a, emulation);
        }
      }
    } catch (err) {
      await closeEcus(ecus);
      throw err;
    }

    const primary = o.primary ?? { serial: `${o.deviceId}-gw`, hardwareId: 'gateway' };
    const raw = {
      deviceId: o.deviceId,
      directorUrl: o.directorUrl ?? stack.director.url,
      imageRepoUrl: o.imageRepoUrl ?? stack.imageRepo.url,
      ...(o.mqtt && stack.director.mqttUrl && { mqttUrl: stack.director.mqttUrl }),
      storageDir: join(dir, 'var'),
      keyPath: join(dir, 'var', 'primary.key'),
      keyPassphraseFile: join(dir, 'passphrase'),
      pollIntervalSeconds: 2,
      ...(o.progressIntervalSeconds !== undefined && { progressIntervalSeconds: o.progressIntervalSeconds }),
      provisioning: { directorRoot: join(dir, 'director-root.json'), imageRepoRoot: join(dir, 'image-root.json'), token: PROVISIONING_TOKEN },
      limits: { minBytesPerSecond: 0, downloadAttempts: 2, ...o.limits },
      ecus: {
        primary: { ...primary, installCommand: handler, installTimeoutSeconds: 30 },
        secondaries: ecus.map((e) => ({
          serial: e.spec.serial, hardwareId: e.spec.hardwareId, baud, verification: e.spec.verification,
          port: e.pty?.b ?? '/dev/null',
        })),
      },
    };
    const configPath = join(dir, 'agent.json');
    writeFileSync(configPath, JSON.stringify(raw, null, 2) + '\n');
    const vehicle = new Vehicle(stack, dir, parseConfig(raw), configPath, ecus, link, o.serial ?? {});
    if ((o.agent ?? 'in-process') === 'in-process') {
      try {
        await vehicle.startAgent({ ...(o.onProgress && { onProgress: o.onProgress }), ...(o.logger && { logger: o.logger }) }, o.wrap);
        await vehicle.agent!.provision();
      } catch (err) {
        await vehicle.close();
        throw err;
      }
    }
    return vehicle;
  }

  /** Drivers for the secondaries, as the agent in this process uses them. */
  async #drivers(wrap?: (s: Secondary) => Secondary): Promise<Secondary[]> {
    const out: Secondary[] = [];
    for (const e of this.ecus) {
      let d: Secondary;
      if (this.link === 'local') {
        d = new LocalInstallSecondary({
          ecuSerial: e.spec.serial, hardwareId: e.spec.hardwareId, installCommand: 'true', timeoutSeconds: 30,
          signer: e.signer, dir: e.localDir!, bootId: () => 'simulated-vehicle', now: this.stack.clock.now,
        });
      } else if (this.link === 'emulated') {
        d = new SerialSecondary((e.served as ServedEcu).primary, { rtoMs: 300, reconnectMs: 3000, ...this.serialOptions, ecuSerial: e.spec.serial });
      } else {
        d = await SerialSecondary.open({ path: e.pty!.b, baudRate: this.config.ecus.secondaries[0]?.baud ?? 115200, rtoMs: 300, reconnectMs: 3000, ...this.serialOptions, ecuSerial: e.spec.serial });
      }
      e.driver = wrap ? wrap(d) : d;
      out.push(e.driver);
    }
    return out;
  }

  /** (Re)creates the in-process agent with the stack's clock. */
  async startAgent(options: Partial<AgentOptions> = {}, wrap?: (s: Secondary) => Secondary): Promise<Agent> {
    await this.agent?.close();
    this.agent = await createAgent(this.config, {
      secondaries: await this.#drivers(wrap),
      passphrase: AGENT_PASSPHRASE,
      now: this.stack.clock.now,
      logger: options.logger ?? this.stack.log,
      ...options,
    });
    return this.agent;
  }

  /** What every ECU runs now, by serial, read from its non-volatile state. */
  installed(): Record<string, InstalledImage | null> {
    const out: Record<string, InstalledImage | null> = {};
    const primarySlots = join(this.config.storageDir, 'primary', 'slots.json');
    out[this.primarySerial] = existsSync(primarySlots) ? (JSON.parse(readFileSync(primarySlots, 'utf8')).installed ?? null) : null;
    for (const e of this.ecus) {
      if (e.sim) {
        const s = e.sim.store.state;
        out[e.spec.serial] = s.slots[s.activeSlot] ?? null;
      } else {
        const f = join(e.localDir!, 'slots.json');
        out[e.spec.serial] = existsSync(f) ? (JSON.parse(readFileSync(f, 'utf8')).installed ?? null) : null;
      }
    }
    return out;
  }

  /** The bytes in the primary's active slot as the install handler wrote them. */
  primarySlotBytes(slot: 'a' | 'b'): Uint8Array | undefined {
    const f = join(this.dir, `primary-slot-${slot}.bin`);
    return existsSync(f) ? new Uint8Array(readFileSync(f)) : undefined;
  }

  async close(): Promise<void> {
    await this.agent?.close().catch(() => undefined);
    this.agent = undefined;
    await closeEcus(this.ecus);
  }
}

async function closeEcus(ecus: VehicleEcu[]): Promise<void> {
  for (const e of ecus) {
    await e.served?.close().catch(() => undefined);
    await e.pty?.close().catch(() => undefined);
  }
}

/** A quiet logger for agents and servers unless UPFLEET_LOG_LEVEL is set. */
export function quietLogger(): Logger {
  return pino({ level: process.env.UPFLEET_LOG_LEVEL || 'silent' });
}
