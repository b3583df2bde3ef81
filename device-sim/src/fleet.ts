/**
 * The fleet simulator: N simulated vehicles in one process, each a primary
 * (the real agent logic) plus K secondary ECUs (SimulatedEcu) behind the
 * in-process link emulator, every ECU with its own key. It is what
 * `upfleet-sim fleet --devices N --ecus K --director URL` and `npm run demo --
 * --vehicles N` run.
 *
 * Dependency note: device-sim does not depend on the agent package at build
 * time; this module imports `@upfleet/agent` at RUNTIME (dynamic import) for
 * the primary logic, so a vehicle here runs exactly the code a device runs.
 * Only types are imported statically.
 *
 * Invariants:
 * - Each vehicle has its own directory (agent state, key, ECU slots) under
 *   `dir`, so vehicles share nothing but the servers.
 * - Vehicles are provisioned `provisionConcurrency` at a time (registration
 *   waits on the director and on disk as much as on this CPU), then all run
 *   concurrently: a cycle at start, on each MQTT notify when `mqttUrl` is
 *   given, and every `pollIntervalSeconds`.
 * - At most `linkConcurrency` ECUs of the whole fleet talk on their links at
 *   once (metadata, image transfer, activation; `PacedSecondary`): the
 *   simulated ECUs share this process's CPU, which real ECUs never do, and
 *   200 of them verifying and flashing at the same moment starved each
 *   other's replies past the link's retransmission budget. The links use the
 *   agent's own window and RTO for their line rate (windowForLine, rtoForLine).
 * - Each primary key file is written here, encrypted with a cheap scrypt cost
 *   (2^10): simulated keys are throw-away, and two derivations at the default
 *   cost (encrypt, then decrypt at start) took 0.5 s of CPU per vehicle on a
 *   loaded 2-core machine, most of a 200-vehicle demo's start-up.
 * - `close()` stops every agent and link; it never removes `dir` (the caller
 *   owns it).
 */
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { Ed25519Signer, encryptKeyFile } from '@upfleet/core';
import type { Agent, AgentStatus, Secondary } from '@upfleet/agent';
import { connectInProcess, type ServedEcu } from './index.ts';
import { SimulatedEcu } from './ecu/simulated-ecu.ts';
import type { ChannelOptions } from './link-emulator.ts';

export interface FleetOptions {
  devices: number;
  /** Secondaries per vehicle. */
  ecus: number;
  directorUrl: string;
  imageRepoUrl: string;
  mqttUrl?: string;
  /** Version-1 roots both the primaries and the ECUs pin. */
  directorRoot: Uint8Array;
  imageRoot: Uint8Array;
  provisioningToken: string;
  /** Where every vehicle's state lives. */
  dir: string;
  /** Device IDs are `<prefix>-<n>` (default `sim-car`), n counting from `firstNumber` (default 1). */
  prefix?: string;
  firstNumber?: number;
  baud?: number;
  fault?: ChannelOptions;
  /** Hardware IDs: the primary's, and the secondaries' in turn (default gateway; ecu-1..K). */
  hardwareIds?: { primary: string; secondaries: string[] };
  pollIntervalSeconds?: number;
  /** Vehicles provisioned at once (default 4). */
  provisionConcurrency?: number;
  /** ECUs of the fleet on their links at once (default 8). */
  linkConcurrency?: number;
  logger?: Logger;
}

export interface SimVehicle {
  deviceId: string;
  agent: Agent;
  ecus: SimulatedEcu[];
}

export interface Fleet {
  readonly vehicles: SimVehicle[];
  /** Waits (up to `timeoutMs`) until every vehicle's ECUs all run an image, its last installation succeeded and its manifests were delivered. */
  done(timeoutMs?: number): Promise<{ ok: number; failed: string[] }>;
  status(): Promise<AgentStatus[]>;
  close(): Promise<void>;
}

const PASSPHRASE = 'fleet-simulator-key-passphrase';

/** A count of free slots; `acquire` waits for one. */
class Slots {
  #free: number;
  #waiting: Array<() => void> = [];
  constructor(n: number) {
    this.#free = n;
  }
  async acquire(): Promise<void> {
    if (this.#free > 0) {
      this.#free--;
      return;
    }
    await new Promise<void>((r) => this.#waiting.push(r));
  }
  release(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#free++;
  }
}

/**
 * A secondary that holds one of the fleet's link slots while it works: from
 * putMetadata to the end of install (the agent sends them back to back), and
 * for activate and abort.
 */
class PacedSecondary implements Secondary {
  #held = false;
  constructor(private readonly inner: Secondary, private readonly slots: Slots) {}
  get ecuSerial(): string {
    return this.inner.ecuSerial;
  }
  info() {
    return this.inner.info();
  }
  versionReport(nonce: string) {
    return this.inner.versionReport(nonce);
  }
  async putMetadata(bundle: Parameters<Secondary['putMetadata']>[0]): Promise<void> {
    await this.#hold();
    try {
      await this.inner.putMetadata(bundle);
    } catch (e) {
      this.#release();
      throw e;
    }
  }
  async install(...args: Parameters<Secondary['install']>): Promise<void> {
    await this.#hold();
    try {
      await this.inner.install(...args);
    } finally {
      this.#release();
    }
  }
  activate(): Promise<void> {
    return this.#within(() => this.inner.activate());
  }
  abort(): Promise<void> {
    return this.#within(() => this.inner.abort());
  }
  close(): Promise<void> {
    this.#release();
    return this.inner.close();
  }
  async #within(work: () => Promise<void>): Promise<void> {
    await this.#hold();
    try {
      await work();
    } finally {
      this.#release();
    }
  }
  async #hold(): Promise<void> {
    if (this.#held) return;
    await this.slots.acquire();
    this.#held = true;
  }
  #release(): void {
    if (!this.#held) return;
    this.#held = false;
    this.slots.release();
  }
}

/** Simulated device keys: see the module invariants. */
const SIMULATED_KEY_SCRYPT_N = 1 << 10;

/** Runs `work(i)` for i = 0..n-1, at most `limit` at a time; rejects with the first failure after the started ones settle. */
async function forEachLimited(n: number, limit: number, work: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: unknown;
  const lane = async () => {
    while (next < n && failure === undefined) {
      const i = next++;
      await work(i).catch((e: unknown) => void (failure ??= e));
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, n) }, lane));
  if (failure !== undefined) throw failure;
}

/** Provisions and starts the fleet. @throws whatever provisioning throws (the director refused, a bad root) */
export async function startFleet(o: FleetOptions): Promise<Fleet> {
  const { createAgent, parseConfig } = await import('@upfleet/agent');
  const log = o.logger ?? pino({ level: process.env.UPFLEET_LOG_LEVEL || 'silent' });
  const prefix = o.prefix ?? 'sim-car';
  const hw = o.hardwareIds ?? { primary: 'gateway', secondaries: Array.from({ length: o.ecus }, (_, i) => `ecu-${i + 1}`) };
  mkdirSync(o.dir, { recursive: true });
  writeFileSync(join(o.dir, 'director-root.json'), o.directorRoot);
  writeFileSync(join(o.dir, 'image-root.json'), o.imageRoot);
  const handler = join(o.dir, 'install-handler.sh');
  writeFileSync(handler, '#!/bin/sh\n# Simulated gateway: the verified image is staged by the agent; nothing else to do.\nexit 0\n');
  chmodSync(handler, 0o755);

  const vehicles: SimVehicle[] = [];
  const links: ServedEcu[] = [];
  const running: Array<Promise<void>> = [];
  const close = async () => {
    for (const v of vehicles) await v.agent.close().catch(() => undefined);
    await Promise.all(running.map((r) => r.catch(() => undefined)));
    for (const l of links) await l.close();
  };
  const { SerialSecondary, rtoForLine, windowForLine } = await import('@upfleet/agent/secondaries/serial-secondary.ts');
  const baud = o.baud ?? 115200;
  const maxWindow = windowForLine(baud);
  const rtoMs = rtoForLine(baud, undefined, maxWindow);
  const linkSlots = new Slots(o.linkConcurrency ?? 8);
  const provisioned: Array<SimVehicle | undefined> = [];
  try {
    await forEachLimited(o.devices, o.provisionConcurrency ?? 4, async (i) => {
      const n = (o.firstNumber ?? 1) + i;
      const deviceId = `${prefix}-${n}`;
      const vdir = join(o.dir, deviceId);
      const ecus: SimulatedEcu[] = [];
      const drivers: Secondary[] = [];
      for (let k = 0; k < o.ecus; k++) {
        const ecuDir = join(vdir, `ecu-${k + 1}`);
        mkdirSync(ecuDir, { recursive: true });
        const ecu = new SimulatedEcu({
          dir: ecuDir, ecuSerial: `${deviceId}-ecu${k + 1}`, hardwareId: hw.secondaries[k % hw.secondaries.length]!,
          signer: Ed25519Signer.generate(), verification: k === 0 ? 'full' : 'partial',
          directorRoot: o.directorRoot, imageRoot: o.imageRoot, rebootMs: 20,
        });
        const link = connectInProcess(ecu, { baud, seed: n * 100 + k, ...o.fault });
        links.push(link);
        ecus.push(ecu);
        drivers.push(new PacedSecondary(new SerialSecondary(link.primary, { ecuSerial: ecu.ecuSerial, rtoMs, maxWindow, reconnectMs: 3000 }), linkSlots));
      }
      const config = parseConfig({
        deviceId, directorUrl: o.directorUrl, imageRepoUrl: o.imageRepoUrl, ...(o.mqttUrl && { mqttUrl: o.mqttUrl }),
        storageDir: join(vdir, 'var'), keyPath: join(vdir, 'var', 'primary.key'), pollIntervalSeconds: o.pollIntervalSeconds ?? 2,
        provisioning: { directorRoot: join(o.dir, 'director-root.json'), imageRepoRoot: join(o.dir, 'image-root.json'), token: o.provisioningToken },
        limits: { minBytesPerSecond: 0 },
        ecus: {
          primary: { serial: `${deviceId}-gw`, hardwareId: hw.primary, installCommand: handler, installTimeoutSeconds: 30 },
          secondaries: ecus.map((e) => ({ serial: e.ecuSerial, hardwareId: e.options.hardwareId, port: '/dev/null', verification: e.options.verification, baud })),
        },
      });
      mkdirSync(join(vdir, 'var'), { recursive: true, mode: 0o700 });
      writeFileSync(config.keyPath, encryptKeyFile(Ed25519Signer.generate(), PASSPHRASE, { scryptN: SIMULATED_KEY_SCRYPT_N }), { mode: 0o600 });
      const agent = await createAgent(config, { secondaries: drivers, passphrase: PASSPHRASE, logger: log.child({ deviceId }) });
      provisioned[i] = { deviceId, agent, ecus };
      await agent.provision();
    });
    // Device order, whatever order provisioning finished in.
    for (const v of provisioned) if (v) vehicles.push(v);
    for (const v of vehicles) running.push(v.agent.run());
  } catch (e) {
    for (const v of provisioned) if (v && !vehicles.includes(v)) vehicles.push(v);
    await close();
    throw e;
  }

  const status = () => Promise.all(vehicles.map((v) => v.agent.status()));
  return {
    vehicles,
    status,
    close,
    async done(timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const all = await status();
        const ok = all.filter((s) => s.state === 'idle' && s.lastResult?.result.success === true && s.outbox.manifest === 0 && s.ecus.every((e) => e.installed?.filename));
        if (ok.length === all.length || Date.now() > deadline) {
          return { ok: ok.length, failed: all.filter((s) => !ok.includes(s)).map((s) => `${s.deviceId}${s.lastResult && !s.lastResult.result.success ? ` (${s.lastResult.result.description})` : ''}`) };
        }
        await new Promise((r) => setTimeout(r, 250));
      }
    },
  };
}
