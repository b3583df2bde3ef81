/**
 * Test and benchmark harness: a real image repository (core RepositoryBuilder
 * served by a static node:http server on loopback), a director in a temp
 * directory, and simulated devices that register, sign tokens and manifests.
 * Everything listens on 127.0.0.1 port 0 and is removed by `close()`.
 */
import { createServer } from 'node:http';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import {
  Ed25519Signer,
  RepositoryBuilder,
  signEcuReport,
  signVehicleManifest,
  type InstalledImage,
  type InstallationResult,
  type SignedEcuReport,
  type SignedVehicleManifest,
  type TargetFile,
} from '@upfleet/core';
import { initDirector, startDirector, type RunningDirector, type StartOptions } from '../director.ts';
import { signDeviceToken } from '@upfleet/core';
import { listenLoopback, type Loopback } from '../../../test/support/loopback.ts';

export const ADMIN_TOKEN = 'admin-secret-for-tests';
export const PROVISIONING_TOKEN = 'provisioning-secret-for-tests';

/** An image repository served over HTTP from a RepositoryBuilder's files. */
export class ImageRepoServer {
  readonly builder = new RepositoryBuilder({ now: new Date() });
  #files = new Map<string, Uint8Array>();
  #listening: Loopback | undefined;
  url = '';

  async start(): Promise<this> {
    this.commit();
    const server = createServer((req, res) => {
      const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname.slice(1));
      const bytes = this.#files.get(path);
      if (!bytes) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-length': bytes.byteLength }).end(bytes);
    });
    this.#listening = await listenLoopback(server);
    this.url = this.#listening.url;
    return this;
  }

  /** Adds an image for hardware IDs and publishes; returns its target info. */
  addImage(name: string, data: Uint8Array, hardwareIds: string[], releaseCounter = 1): TargetFile {
    const info = this.builder.addTarget(name, data, { custom: { hardwareIds, releaseCounter, version: `${releaseCounter}.0.0` } });
    this.commit();
    return info;
  }

  commit(): void {
    this.#files = this.builder.commit();
  }

  /** Replaces a served file's bytes (an attacker between the repository and the director). */
  tamper(path: string, change: (bytes: Uint8Array) => Uint8Array): void {
    const bytes = this.#files.get(path);
    if (!bytes) throw new Error(`no file ${path}`);
    this.#files.set(path, change(bytes));
  }

  get rootBytes(): Uint8Array {
    return this.#files.get('metadata/1.root.json')!;
  }

  async close(): Promise<void> {
    await this.#listening?.close();
  }
}

export interface SimEcu {
  serial: string;
  hardwareId: string;
  signer: Ed25519Signer;
  installed: InstalledImage;
  releaseCounter: number;
}

/** A simulated device: a primary and secondaries with keys, and the manifests they would send. */
export class SimDevice {
  counter = 0;
  readonly ecus: SimEcu[];
  /** The clock tokens are signed with (tests move the director's clock). */
  clock: () => number = () => Date.now();

  constructor(readonly id: string, hardwareIds: string[] = ['gw', 'brake']) {
    this.ecus = hardwareIds.map((hw, i) => ({
      serial: `${id}-${i === 0 ? 'primary' : `ecu${i}`}`, hardwareId: hw, signer: Ed25519Signer.generate(),
      installed: { filename: `factory-${hw}.bin`, length: 1, hashes: { sha256: '00'.repeat(32) } }, releaseCounter: 0,
    }));
  }

  get primary(): SimEcu {
    return this.ecus[0]!;
  }

  ecu(hardwareId: string): SimEcu {
    return this.ecus.find((e) => e.hardwareId === hardwareId)!;
  }

  registration(tags: string[] = []): Record<string, unknown> {
    const j = (e: SimEcu) => ({ ecuSerial: e.serial, hardwareId: e.hardwareId, publicKey: e.signer.key.toJSON() });
    return { primary: j(this.primary), secondaries: this.ecus.slice(1).map(j), tags };
  }

  token(nowSeconds = Math.floor(this.clock() / 1000), lifetime = 600): string {
    return signDeviceToken(this.id, this.primary.signer, nowSeconds + lifetime);
  }

  headers(): Record<string, string> {
    return { authorization: `UpfleetDevice ${this.token()}` };
  }

  /** Marks an ECU as running an image (as after an install). */
  install(hardwareId: string, name: string, info: TargetFile, releaseCounter = 1): void {
    const e = this.ecu(hardwareId);
    e.installed = { filename: name, length: info.length, hashes: { ...info.hashes } };
    e.releaseCounter = releaseCounter;
  }

  /** A signed manifest with a fresh counter and nonce. */
  manifest(options: {
    installationResult?: InstallationResult; attacks?: Record<string, string>; nonce?: string; counter?: number;
    /** Reports to carry instead of fresh ones, by ECU serial (a replay). */
    reports?: Record<string, SignedEcuReport>;
  } = {}): SignedVehicleManifest {
    const nonce = options.nonce ?? randomBytes(8).toString('hex');
    const now = new Date(this.clock()).toISOString();
    const reports = Object.fromEntries(this.ecus.map((e) => [e.serial, options.reports?.[e.serial] ?? signEcuReport({
      ecuSerial: e.serial, hardwareId: e.hardwareId, installedImage: e.installed, releaseCounter: e.releaseCounter,
      nonce, attacksDetected: options.attacks?.[e.serial] ?? '', latestVerifiedTime: now.replace(/\.\d+Z$/, 'Z'), timestamp: now,
    }, e.signer)]));
    return signVehicleManifest({
      deviceId: this.id, primaryEcuSerial: this.primary.serial, ecuVersionReports: reports, counter: options.counter ?? ++this.counter,
      timestamp: now, ...(options.installationResult && { installationResult: options.installationResult }),
    }, this.primary.signer);
  }
}

export interface Harness {
  dir: string;
  imageRepo: ImageRepoServer;
  director: RunningDirector;
  api(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; body: any; headers?: Headers }>;
  admin(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }>;
  register(device: SimDevice, tags?: string[]): Promise<void>;
  send(device: SimDevice, manifest: SignedVehicleManifest): Promise<{ status: number; body: any }>;
  restart(overrides?: Partial<StartOptions>): Promise<void>;
  close(): Promise<void>;
}

let initialised: Promise<string> | undefined;

/**
 * A new director directory: a copy of keys and root made once per process by
 * initDirector (each init costs four scrypt key encryptions; the harnesses of one
 * process may share keys, never a database).
 */
export async function directorDir(): Promise<string> {
  initialised ??= (async () => {
    const template = mkdtempSync(join(tmpdir(), 'upfleet-director-template-'));
    process.once('exit', () => rmSync(template, { recursive: true, force: true }));
    await initDirector({ dir: template, passphrase: 'root-pass', onlinePassphrase: 'online-pass' });
    return template;
  })();
  const dir = mkdtempSync(join(tmpdir(), 'upfleet-director-'));
  cpSync(await initialised, dir, { recursive: true });
  return dir;
}

/** A fresh image repository and director (fresh database; keys shared within the process); `options` go to startDirector. */
export async function harness(options: Partial<StartOptions> = {}): Promise<Harness> {
  const dir = await directorDir();
  const imageRepo = await new ImageRepoServer().start();
  const start = (o: Partial<StartOptions>) => startDirector({
    dir, port: 0, imageRepoUrl: imageRepo.url, imageRepoRoot: imageRepo.rootBytes, adminToken: ADMIN_TOKEN,
    provisioningToken: PROVISIONING_TOKEN, onlinePassphrase: 'online-pass', mqtt: 'none', logger: pino({ level: 'silent' }), ...o,
  });
  const h: Harness = {
    dir, imageRepo, director: await start(options),
    async api(method, path, body, headers = {}) {
      const res = await fetch(`${h.director.url}${path}`, {
        method, headers: { 'content-type': 'application/json', ...headers },
        ...(body !== undefined && { body: typeof body === 'string' ? body : JSON.stringify(body) }),
      });
      const text = await res.text();
      return { status: res.status, body: text ? JSON.parse(text) : undefined, headers: res.headers };
    },
    admin: (method, path, body) => h.api(method, path, body, { authorization: `Bearer ${ADMIN_TOKEN}` }),
    async register(device, tags = []) {
      const r = await h.api('POST', `/api/v1/devices/${device.id}/register`, device.registration(tags), { authorization: `Bearer ${PROVISIONING_TOKEN}` });
      if (r.status !== 201) throw new Error(`register ${device.id}: ${r.status} ${JSON.stringify(r.body)}`);
    },
    send: (device, manifest) => h.api('POST', `/api/v1/devices/${device.id}/manifest`, manifest, device.headers()),
    async restart(overrides = {}) {
      await h.director.close();
      h.director = await start({ ...options, ...overrides });
    },
    async close() {
      await h.director.close();
      await imageRepo.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return h;
}
