/**
 * A whole Upfleet back end on loopback, for the demo, the end-to-end, attack
 * and power-loss tests: the real image repository (initialised with its
 * offline tool, served by its server, published to through its upload API) and
 * the real director (SQLite and, optionally, the embedded MQTT broker), both in
 * one temp directory.
 *
 * Invariants:
 * - Every listener is on 127.0.0.1, port 0; `close()` stops them and removes
 *   the temp directory (unless KEEP=1).
 * - One movable clock (`clock`) drives the image repository server, the
 *   vehicles built on this stack and (unless `directorClock: 'real'`) the
 *   director, so freeze tests can move the world forward without touching the
 *   system clock.
 * - Firmware goes through the same operations as `upfleet-repo` (addTarget,
 *   delegate, signDelegated with `remote`), so the server's verifying publisher
 *   checks every batch; assignments go through the director's admin HTTP API.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import type { Key } from '@upfleet/core';
import {
  addTarget,
  delegate,
  generateKeyFile,
  initRepository,
  MemoryKeyring,
  signDelegated,
  startImageRepoServer,
  type ImageRepoServer,
  type InitResult,
  type RepoContext,
} from '@upfleet/image-repo';
import { initDirector, startDirector, type EventRecord, type RunningDirector } from '@upfleet/director';

export const PASSPHRASE = 'upfleet-demo-passphrase';
export const ADMIN_TOKEN = 'upfleet-admin-token';
/** The director's read-only admin token (the web console's viewer role). */
export const VIEWER_TOKEN = 'upfleet-viewer-token';
export const PROVISIONING_TOKEN = 'upfleet-provisioning-token';
export const UPLOAD_TOKEN = 'upfleet-upload-token';

/** A clock that tests can move forward; `now()` is real time plus the offset. */
export class Clock {
  offsetMs = 0;
  readonly now = (): Date => new Date(Date.now() + this.offsetMs);
  advance(ms: number): void {
    this.offsetMs += ms;
  }
  reset(): void {
    this.offsetMs = 0;
  }
}

export interface StackOptions {
  /** The embedded MQTT broker (default) or none (HTTP polling only). */
  mqtt?: 'embedded' | 'none';
  /** Image repository root keys and threshold (key-compromise tests use 3/2). */
  rootKeys?: number;
  rootThreshold?: number;
  logger?: Logger;
  /** Parent of the temp directory (default os.tmpdir()). */
  baseDir?: string;
  /**
   * The director's clock: the stack's movable one (default), or real time.
   * Agents sign device tokens on real time, so tests that move the clock far
   * keep the director on real time (with `directorExpiries` long enough).
   */
  directorClock?: 'stack' | 'real';
  /** Director metadata lifetimes in seconds (targets, snapshot, timestamp). */
  directorExpiries?: { targets?: number; snapshot?: number; timestamp?: number };
  /** The image repository server also keeps its published tree as plain files here (`serve --export`). */
  imageRepoExportDir?: string;
}

export interface PublishSpec {
  /** Target name, e.g. `gw-2.0.0.bin` or `brakes/brake-1.1.0.bin` (delegated paths). */
  name: string;
  data: Uint8Array;
  hardwareIds: string[];
  version: string;
  releaseCounter: number;
  /** A delegated role to sign with (its key from `addSupplier`); default the top-level targets role. */
  supplier?: string;
}

export interface AdminReply {
  status: number;
  json: any;
}

export class Stack {
  readonly #suppliers = new Map<string, string[]>();

  private constructor(
    readonly dir: string,
    readonly repoDir: string,
    readonly repo: InitResult,
    readonly imageRepo: ImageRepoServer,
    readonly director: RunningDirector,
    readonly directorDir: string,
    readonly log: Logger,
    readonly clock: Clock,
  ) {}

  static async start(options: StackOptions = {}): Promise<Stack> {
    const log = options.logger ?? pino({ level: process.env.UPFLEET_LOG_LEVEL || 'silent' });
    const dir = mkdtempSync(join(options.baseDir ?? tmpdir(), 'upfleet-stack-'));
    const repoDir = join(dir, 'image-repo');
    const directorDir = join(dir, 'director');
    mkdirSync(directorDir, { recursive: true });
    const clock = new Clock();
    try {
      const repo = initRepository({
        dir: repoDir, passphrase: PASSPHRASE, rootKeys: options.rootKeys ?? 1, rootThreshold: options.rootThreshold ?? 1, now: clock.now,
      });
      const imageRepo = await startImageRepoServer({
        dir: repoDir, token: UPLOAD_TOKEN, keyring: new MemoryKeyring([repo.signers.snapshot, repo.signers.timestamp]), logger: log, now: clock.now,
        ...(options.imageRepoExportDir && { exportDir: options.imageRepoExportDir }),
      });
      await initDirector({ dir: directorDir, passphrase: PASSPHRASE, onlinePassphrase: PASSPHRASE });
      let director: RunningDirector;
      try {
        director = await startDirector({
          dir: directorDir, imageRepoUrl: imageRepo.url, imageRepoRoot: new Uint8Array(readFileSync(join(repoDir, 'metadata', '1.root.json'))),
          mqtt: options.mqtt ?? 'embedded', adminToken: ADMIN_TOKEN, viewerToken: VIEWER_TOKEN, provisioningToken: PROVISIONING_TOKEN, onlinePassphrase: PASSPHRASE,
          now: options.directorClock === 'real' ? () => new Date() : clock.now, logger: log,
          ...(options.directorExpiries && { expiries: options.directorExpiries }),
        });
      } catch (e) {
        await imageRepo.close();
        throw e;
      }
      return new Stack(dir, repoDir, repo, imageRepo, director, directorDir, log, clock);
    } catch (e) {
      rmSync(dir, { recursive: true, force: true });
      throw e;
    }
  }

  /** The context `upfleet-repo --remote` would use: publish through the server's upload API. */
  get repoContext(): RepoContext {
    return { dir: this.repoDir, passphrase: PASSPHRASE, remote: { url: this.imageRepo.url, token: UPLOAD_TOKEN }, now: this.clock.now };
  }

  /** Root metadata files a device is provisioned with. */
  get directorRootBytes(): Uint8Array {
    return new Uint8Array(readFileSync(join(this.directorDir, 'metadata', '1.root.json')));
  }
  get imageRootBytes(): Uint8Array {
    return new Uint8Array(readFileSync(join(this.repoDir, 'metadata', '1.root.json')));
  }

  /**
   * Delegates `paths` for `hardwareIds` to a supplier role with a fresh key file
   * (`threshold` of `keys` keys). @returns the key file paths
   */
  async addSupplier(role: string, paths: string[], hardwareIds: string[], keys = 1, threshold = 1): Promise<string[]> {
    const files: string[] = [];
    const publicKeys: Key[] = [];
    for (let i = 0; i < keys; i++) {
      const file = join(this.dir, 'supplier-keys', `${role}-${i + 1}.key.json`);
      mkdirSync(join(this.dir, 'supplier-keys'), { recursive: true });
      publicKeys.push(generateKeyFile(file, PASSPHRASE));
      files.push(file);
    }
    await delegate(this.repoContext, { role, paths, hardwareIds, keys: publicKeys, threshold });
    this.#suppliers.set(role, files);
    return files;
  }

  /** The key files of a supplier role made by `addSupplier`. */
  supplierKeyFiles(role: string): string[] {
    const files = this.#suppliers.get(role);
    if (!files) throw new Error(`no supplier ${role}: call addSupplier first`);
    return files;
  }

  /** Uploads and signs one image (the `upfleet-repo add-target` / `sign-delegated` path). */
  async publish(spec: PublishSpec): Promise<void> {
    const file = join(this.dir, 'uploads', spec.name.replace(/\//g, '__'));
    mkdirSync(join(this.dir, 'uploads'), { recursive: true });
    writeFileSync(file, spec.data);
    const target = { file, name: spec.name, hardwareIds: spec.hardwareIds, version: spec.version, releaseCounter: spec.releaseCounter };
    if (spec.supplier) {
      const keyFiles = this.#suppliers.get(spec.supplier);
      if (!keyFiles) throw new Error(`no supplier ${spec.supplier}: call addSupplier first`);
      await signDelegated(this.repoContext, { role: spec.supplier, keyFiles, add: [target] });
    } else {
      await addTarget(this.repoContext, target);
    }
  }

  /** A call to the director's admin API. */
  async admin(method: string, path: string, body?: unknown): Promise<AdminReply> {
    const res = await fetch(`${this.director.url}/api/v1/admin${path}`, {
      method,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body !== undefined && { 'content-type': 'application/json' }) },
      ...(body !== undefined && { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    return { status: res.status, json: text ? JSON.parse(text) : undefined };
  }

  /**
   * Assigns images to a device's ECUs through the admin API.
   * @throws Error with the director's refusal
   */
  async assign(deviceId: string, ecus: Array<{ ecuSerial: string; image: string }>): Promise<{ id: string }> {
    const r = await this.admin('POST', `/devices/${encodeURIComponent(deviceId)}/assignments`, { ecus });
    if (r.status !== 201) throw new Error(`assignment refused (${r.status}): ${JSON.stringify(r.json)}`);
    return r.json as { id: string };
  }

  /** The director's view of a device: ECUs, installed images, assignments, security events. */
  async device(deviceId: string): Promise<any> {
    const r = await this.admin('GET', `/devices/${encodeURIComponent(deviceId)}`);
    if (r.status !== 200) throw new Error(`device ${deviceId}: ${r.status} ${JSON.stringify(r.json)}`);
    return r.json;
  }

  /** The device's security event log (GET /admin/devices/{id}/events), oldest first. */
  async events(deviceId: string): Promise<EventRecord[]> {
    const r = await this.admin('GET', `/devices/${encodeURIComponent(deviceId)}/events`);
    if (r.status !== 200) throw new Error(`events of ${deviceId}: ${r.status} ${JSON.stringify(r.json)}`);
    return r.json.events as EventRecord[];
  }

  /** Manifests the director accepted from a device, newest first. */
  async manifests(deviceId: string): Promise<any[]> {
    const r = await this.admin('GET', `/devices/${encodeURIComponent(deviceId)}/manifests`);
    if (r.status !== 200) throw new Error(`manifests of ${deviceId}: ${r.status}`);
    return (Array.isArray(r.json) ? r.json : r.json.manifests) as any[];
  }

  /** A counter from the director's /metrics, summed over label sets matching `labels`. */
  async metric(name: string, labels: Record<string, string> = {}): Promise<number> {
    return sumMetric(await (await fetch(`${this.director.url}/metrics`)).text(), name, labels);
  }

  /** A counter from the image repository's /metrics, summed over label sets matching `labels`. */
  async imageRepoMetric(name: string, labels: Record<string, string> = {}): Promise<number> {
    return sumMetric(await (await fetch(`${this.imageRepo.url}/metrics`)).text(), name, labels);
  }

  async close(): Promise<void> {
    await this.director.close().catch(() => undefined);
    await this.imageRepo.close().catch(() => undefined);
    if (!process.env.KEEP) rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A metric in Prometheus text, summed over the label sets that match `labels`. */
function sumMetric(text: string, name: string, labels: Record<string, string>): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^(\w+)(\{[^}]*\})?\s+([0-9.e+-]+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const l = m[2] ?? '';
    if (Object.entries(labels).every(([k, v]) => l.includes(`${k}="${v}"`))) sum += Number(m[3]);
  }
  return sum;
}
