/**
 * Test support for end-to-end runs: the REAL image repository server
 * (image-repo/src/index.ts) and director (director/src/index.ts) on loopback,
 * simulated secondary ECUs (device-sim) behind real pty pairs (socat; paced by
 * device-sim's link emulator when `baud` is given, as ptys ignore baud rates), an
 * install-handler script for the primary, and an agent config file wired to
 * all of it. `close()` removes everything it started.
 */
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { Ed25519Signer, Metadata, TargetFile, type Targets } from '@upfleet/core';
import { initDirector, startDirector, type RunningDirector } from '@upfleet/director';
import { initRepository, startImageRepoServer, MemoryKeyring, type ImageRepoServer, type InitResult } from '@upfleet/image-repo/src/index.ts';
import { createPtyPair, type PtyPair } from '@upfleet/device-sim/src/pty.ts';
import { SimulatedEcu } from '@upfleet/device-sim/src/ecu/simulated-ecu.ts';
import { EcuEndpoint } from '@upfleet/device-sim/src/ecu/ecu-endpoint.ts';
import { servePort } from '@upfleet/device-sim/src/index.ts';
import { parseConfig, type AgentConfig } from '../config.ts';

export const ADMIN_TOKEN = 'admin-token-agent-tests';
export const PROVISIONING_TOKEN = 'provisioning-token-agent-tests';
export const UPLOAD_TOKEN = 'upload-token-agent-tests';
export const PASSPHRASE = 'agent-key-passphrase';

export interface SimSecondary {
  serial: string;
  hardwareId: string;
  sim: SimulatedEcu;
  pty: PtyPair;
  close(): Promise<void>;
}

export interface RealWorld {
  dir: string;
  imageRepo: ImageRepoServer;
  director: RunningDirector;
  secondaries: SimSecondary[];
  config: AgentConfig;
  configPath: string;
  /** Uploads images and publishes them in a new top-level targets version. */
  publish(images: Array<{ name: string; data: Uint8Array; hardwareIds: string[]; releaseCounter?: number }>): Promise<Record<string, TargetFile>>;
  /** Publishes a new targets version where `name` has these custom fields. */
  retarget(name: string, custom: Record<string, unknown>): Promise<void>;
  admin(method: string, path: string, body?: unknown): Promise<{ status: number; json: any }>;
  /** The director's view of the device (ECUs, assignments, events). */
  device(): Promise<any>;
  close(): Promise<void>;
}

export interface WorldOptions {
  deviceId?: string;
  secondaries?: Array<{ serial: string; hardwareId: string; verification: 'partial' | 'full' }>;
  mqtt?: boolean;
  /** Handler script body for the primary (default: copy the image into slot-<x>). */
  handler?: string;
  /** Pace every serial line at this rate (default: unpaced, as fast as the pty goes). */
  baud?: number;
  /** The primary's `installer` (default: the handler script). */
  primaryInstaller?: Record<string, unknown>;
}

async function serveSecondary(dir: string, o: { serial: string; hardwareId: string; verification: 'partial' | 'full' }, directorRoot: Uint8Array, imageRoot: Uint8Array, baud?: number): Promise<SimSecondary> {
  const pty = await createPtyPair({ dir: mkdtempSync(join(dir, `pty-${o.serial}-`)) });
  mkdirSync(join(dir, `ecu-${o.serial}`), { recursive: true });
  const sim = new SimulatedEcu({
    dir: join(dir, `ecu-${o.serial}`),
    ecuSerial: o.serial,
    hardwareId: o.hardwareId,
    signer: Ed25519Signer.generate(),
    verification: o.verification,
    directorRoot,
    imageRoot,
    rebootMs: 50,
  });
  if (baud !== undefined) {
    const served = await servePort(sim, pty.b, { baud });
    return { serial: o.serial, hardwareId: o.hardwareId, sim, pty, close: async () => (await served.close(), await pty.close()) };
  }
  const { SerialPort } = await import('serialport');
  const port = new SerialPort({ path: pty.b, baudRate: 115200, autoOpen: false });
  await new Promise<void>((resolve, reject) => port.open((e) => (e ? reject(e) : resolve())));
  const endpoint = new EcuEndpoint(sim, port);
  return {
    serial: o.serial,
    hardwareId: o.hardwareId,
    sim,
    pty,
    async close() {
      (endpoint as { close?: () => void }).close?.();
      await new Promise<void>((r) => (port.isOpen ? port.close(() => r()) : r()));
      await pty.close();
    },
  };
}

export async function realWorld(options: WorldOptions = {}): Promise<RealWorld> {
  const dir = mkdtempSync(join(tmpdir(), 'upfleet-e2e-'));
  const closers: Array<() => Promise<void>> = [];
  const silent = pino({ level: 'silent' });
  try {
    const repoDir = join(dir, 'image-repo');
    const repo: InitResult = initRepository({ dir: repoDir, passphrase: 'repo-pw' });
    const imageRepo = await startImageRepoServer({
      dir: repoDir, port: 0, host: '127.0.0.1', token: UPLOAD_TOKEN, logger: silent,
      keyring: new MemoryKeyring([repo.signers.snapshot, repo.signers.timestamp]),
    });
    closers.push(() => imageRepo.close());
    const imageRoot = new Uint8Array(await (await fetch(`${imageRepo.url}/metadata/1.root.json`)).arrayBuffer());

    const directorDir = join(dir, 'director');
    await initDirector({ dir: directorDir, passphrase: 'director-pw', onlinePassphrase: 'online-pw' });
    const director = await startDirector({
      dir: directorDir, port: 0, host: '127.0.0.1', imageRepoUrl: imageRepo.url, imageRepoRoot: imageRoot,
      mqtt: options.mqtt ? 'embedded' : 'none', mqttPort: 0,
      adminToken: ADMIN_TOKEN, provisioningToken: PROVISIONING_TOKEN, onlinePassphrase: 'online-pw', logger: silent,
    });
    closers.push(() => director.close());
    const directorRoot = new Uint8Array(readFileSync(join(directorDir, 'metadata', '1.root.json')));
    writeFileSync(join(dir, 'director-root.json'), directorRoot);
    writeFileSync(join(dir, 'image-root.json'), imageRoot);

    const secondaries: SimSecondary[] = [];
    for (const s of options.secondaries ?? []) {
      const sec = await serveSecondary(dir, s, directorRoot, imageRoot, options.baud);
      secondaries.push(sec);
      closers.push(() => sec.close());
    }

    const handler = join(dir, 'handler.sh');
    writeFileSync(handler, options.handler ?? `#!/bin/sh\necho "$UPFLEET_PHASE $UPFLEET_SLOT" >> "${dir}/handler.log"\n[ "$UPFLEET_PHASE" != install ] || cp "$1" "${dir}/slot-$UPFLEET_SLOT"\n`);
    chmodSync(handler, 0o755);
    writeFileSync(join(dir, 'passphrase'), PASSPHRASE + '\n', { mode: 0o600 });
    const rawConfig = {
      deviceId: options.deviceId ?? 'vehicle-1',
      directorUrl: director.url,
      imageRepoUrl: imageRepo.url,
      ...(director.mqttUrl && { mqttUrl: director.mqttUrl }),
      storageDir: join(dir, 'var'),
      keyPath: join(dir, 'var', 'primary.key'),
      keyPassphraseFile: join(dir, 'passphrase'),
      pollIntervalSeconds: 2,
      provisioning: { directorRoot: join(dir, 'director-root.json'), imageRepoRoot: join(dir, 'image-root.json'), token: PROVISIONING_TOKEN },
      limits: { minBytesPerSecond: 1024, slowWindowSeconds: 5 },
      ecus: {
        primary: options.primaryInstaller
          ? { serial: 'primary-1', hardwareId: 'gateway', installer: options.primaryInstaller }
          : { serial: 'primary-1', hardwareId: 'gateway', installCommand: handler, installTimeoutSeconds: 30 },
        secondaries: secondaries.map((s, i) => ({ serial: s.serial, hardwareId: s.hardwareId, port: s.pty.a, baud: options.baud ?? 115200, verification: options.secondaries![i]!.verification })),
      },
    };
    const configPath = join(dir, 'agent.json');
    writeFileSync(configPath, JSON.stringify(rawConfig, null, 2));

    async function admin(method: string, path: string, body?: unknown) {
      const res = await fetch(`${director.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body !== undefined && { 'content-type': 'application/json' }) },
        ...(body !== undefined && { body: JSON.stringify(body) }),
      });
      const text = await res.text();
      return { status: res.status, json: text ? JSON.parse(text) : null };
    }

    async function publishTargets(mutate: (t: Targets) => void): Promise<void> {
      const health = (await (await fetch(`${imageRepo.url}/healthz`)).json()) as { versions: Record<string, number> };
      const md = Metadata.fromBytes(new Uint8Array(await (await fetch(`${imageRepo.url}/metadata/${health.versions.targets}.targets.json`)).arrayBuffer()), 'targets') as Metadata<Targets>;
      mutate(md.signed);
      md.signed.version += 1;
      md.signatures.clear();
      md.sign(repo.signers.targets);
      const res = await fetch(`${imageRepo.url}/api/v1/publish`, {
        method: 'POST',
        headers: { authorization: `Bearer ${UPLOAD_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ targets: md.toJSON() }),
      });
      if (res.status !== 200) throw new Error(`publish: ${res.status} ${await res.text()}`);
      // The director caches its view of the image repository for a few seconds; tests assign at once.
      (director.services.ctx.imageRepo as { invalidate?: () => void }).invalidate?.();
    }

    async function retarget(name: string, custom: Record<string, unknown>): Promise<void> {
      await publishTargets((t) => {
        const info = t.targets[name];
        if (!info) throw new Error(`no target ${name}`);
        info.custom = custom as TargetFile['custom'];
      });
    }

    async function publish(images: Array<{ name: string; data: Uint8Array; hardwareIds: string[]; releaseCounter?: number }>) {
      const out: Record<string, TargetFile> = {};
      for (const img of images) {
        const put = await fetch(`${imageRepo.url}/api/v1/images/${img.name}`, { method: 'PUT', headers: { authorization: `Bearer ${UPLOAD_TOKEN}` }, body: img.data });
        if (put.status !== 201) throw new Error(`upload ${img.name}: ${put.status} ${await put.text()}`);
        const r = img.releaseCounter ?? 1;
        out[img.name] = TargetFile.fromData(img.data, ['sha256', 'sha512'], { hardwareIds: img.hardwareIds, releaseCounter: r, version: `${r}.0.0` });
      }
      await publishTargets((t) => Object.assign(t.targets, out));
      return out;
    }

    return {
      dir,
      imageRepo,
      director,
      secondaries,
      config: parseConfig(rawConfig),
      configPath,
      publish,
      retarget,
      admin,
      device: async () => (await admin('GET', `/api/v1/admin/devices/${rawConfig.deviceId}`)).json,
      async close() {
        for (const c of closers.reverse()) await c().catch(() => undefined);
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (e) {
    for (const c of closers.reverse()) await c().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}
