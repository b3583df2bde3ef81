/**
 * A light simulated vehicle for fleet-scale runs (bench/fleet.ts): a primary
 * whose ECUs are all in memory (no serial link, no SQLite, no install
 * handler), so thousands fit in one process, but which does everything an
 * Uptane primary does on the wire and in verification:
 *
 * - registers its ECU keys with the provisioning token;
 * - each cycle signs a version manifest of ECU reports (each signed by its ECU's
 *   own key, with a fresh nonce) and posts it with a device token;
 * - fully verifies its director repository with core's Updater (every role bound
 *   to the device) and, when an ECU needs a new image, the image repository too,
 *   then builds core's verified plan (`verifyPlan`) and downloads each image
 *   through `Updater.downloadTarget` (length and every hash checked);
 * - "installs" by recording the image as the ECU's installed one, and posts the
 *   result manifest; the director answers 200 only once it verified and
 *   recorded it, which is the moment `cycle()` reports.
 *
 * What it leaves out, on purpose: persistence (a restart is a new vehicle),
 * retries inside a cycle (the caller runs another cycle), progress events.
 * The sequence is the agent's (agent/src/cycle.ts); the checks are core's.
 */
import { randomBytes } from 'node:crypto';
import {
  DirectorTargets,
  Ed25519Signer,
  Updater,
  bindToDevice,
  checkDirectorRole,
  digestHex,
  metadataFileName,
  pendingEcus,
  signDeviceToken,
  signEcuReport,
  signVehicleManifest,
  verifyPlan,
  TOKEN_MAX_LIFETIME_S,
  type AnySigned,
  type EcuState,
  type Fetcher,
  type InstallationResult,
  type InstalledImage,
  type SignedEcuReport,
} from '@upfleet/core';
import { MemoryStore } from '@upfleet/core/testing/simulator.ts';

/** The HTTP a light vehicle needs: a GET with core's Fetcher contract (and headers), and a POST. */
export interface LightHttp {
  /** @throws HttpError for a non-2xx answer, LengthLimitError past `maxLength`, DownloadError */
  get(url: string, maxLength: number, headers?: Record<string, string>): Promise<Uint8Array>;
  post(url: string, body: string, headers: Record<string, string>): Promise<{ status: number; text: string }>;
}

export interface LightVehicleOptions {
  deviceId: string;
  directorUrl: string;
  imageRepoUrl: string;
  /** Version-1 roots, pinned at "manufacture". */
  directorRoot: Uint8Array;
  imageRoot: Uint8Array;
  /** The primary's hardware ID, then one per secondary. */
  hardwareIds: { primary: string; secondaries: string[] };
  http: LightHttp;
  now?: () => Date;
}

interface LightEcu {
  serial: string;
  hardwareId: string;
  signer: Ed25519Signer;
  installed: InstalledImage | null;
  releaseCounter: number;
}

export type CycleOutcome =
  | { kind: 'noUpdate' }
  /** Every planned image installed; `at` is when the director accepted the result manifest. */
  | { kind: 'updated'; installed: string[]; at: number };

/** A manifest, registration or other device request the director refused. */
export class DirectorRefusedError extends Error {
  override name = 'DirectorRefusedError';
  constructor(readonly url: string, readonly status: number, readonly body: string) {
    super(`${url}: HTTP ${status} ${body.slice(0, 200)}`);
  }
}

/** What an ECU with no image from the repositories reports: the empty image (a report must list a hash). */
const NO_IMAGE: InstalledImage = { filename: '', length: 0, hashes: { sha256: digestHex('sha256', new Uint8Array(0)) } };

export class LightVehicle {
  readonly deviceId: string;
  readonly ecus: LightEcu[];
  readonly #o: LightVehicleOptions;
  readonly #primary = Ed25519Signer.generate();
  readonly #directorStore = new MemoryStore();
  readonly #imageStore = new MemoryStore();
  readonly #now: () => Date;
  #counter = 0;
  #lastResult: InstallationResult | undefined;
  /** Images installed whose result manifest has not been answered yet. */
  #unreported: string[] | undefined;
  #token = { value: '', expires: 0 };
  /** The director answers a device's metadata to that device's token only. */
  readonly #directorFetcher: Fetcher = { fetch: (url, maxLength) => this.#o.http.get(url, maxLength, this.#auth()) };
  readonly #imageFetcher: Fetcher = { fetch: (url, maxLength) => this.#o.http.get(url, maxLength) };

  constructor(o: LightVehicleOptions) {
    this.#o = o;
    this.deviceId = o.deviceId;
    this.#now = o.now ?? (() => new Date());
    const ecu = (serial: string, hardwareId: string, signer: Ed25519Signer): LightEcu => ({ serial, hardwareId, signer, installed: null, releaseCounter: 0 });
    this.ecus = [
      ecu(`${o.deviceId}-gw`, o.hardwareIds.primary, this.#primary),
      ...o.hardwareIds.secondaries.map((hw, i) => ecu(`${o.deviceId}-ecu${i + 1}`, hw, Ed25519Signer.generate())),
    ];
    void this.#directorStore.writeAtomic(metadataFileName('root'), o.directorRoot);
    void this.#imageStore.writeAtomic(metadataFileName('root'), o.imageRoot);
  }

  get #deviceBase(): string {
    return `${this.#o.directorUrl}/api/v1/devices/${encodeURIComponent(this.deviceId)}`;
  }

  /** The device token (also the MQTT password), renewed with a quarter of its life left. */
  token(): string {
    const nowS = Math.floor(this.#now().getTime() / 1000);
    if (this.#token.expires - nowS < TOKEN_MAX_LIFETIME_S / 4) {
      const expires = nowS + TOKEN_MAX_LIFETIME_S;
      this.#token = { value: signDeviceToken(this.deviceId, this.#primary, expires), expires };
    }
    return this.#token.value;
  }

  #auth(): Record<string, string> {
    return { authorization: `UpfleetDevice ${this.token()}` };
  }

  /** @throws DirectorRefusedError, DownloadError */
  async register(provisioningToken: string): Promise<void> {
    const entry = (e: LightEcu) => ({ ecuSerial: e.serial, hardwareId: e.hardwareId, publicKey: e.signer.key.toJSON() });
    const body = JSON.stringify({ primary: entry(this.ecus[0]!), secondaries: this.ecus.slice(1).map(entry) });
    await this.#post('register', body, { authorization: `Bearer ${provisioningToken}` });
  }

  /**
   * One Uptane cycle: manifest, director, (image repository, plan, downloads, install, result manifest).
   * @throws RepositoryError (a refused role, a mismatch), DownloadError, DirectorRefusedError
   */
  async cycle(): Promise<CycleOutcome> {
    await this.#sendManifest();
    // A result manifest whose answer was lost: the director has it now.
    const unreported = this.#unreported;
    this.#unreported = undefined;
    if (unreported) return { kind: 'updated', installed: unreported, at: Date.now() };
    const director = await this.#refreshDirector();
    const states = this.#ecuStates();
    if (pendingEcus(director, states).length === 0) return { kind: 'noUpdate' };
    const image = new Updater({ metadataBaseUrl: `${this.#o.imageRepoUrl}/metadata/`, fetcher: this.#imageFetcher, store: this.#imageStore, now: this.#now() });
    await image.refresh();
    const { installs } = await verifyPlan({ director, findImageTarget: async (name, hardwareId) => (await image.findTarget(name, { hardwareId }))?.info, ecus: states });
    for (const p of installs) {
      const found = await image.findTarget(p.name, { hardwareId: p.hardwareId });
      // The plan matched this very target; downloadTarget checks the bytes against it.
      await image.downloadTarget(found!, `${this.#o.imageRepoUrl}/targets/`);
    }
    for (const p of installs) {
      const ecu = this.ecus.find((e) => e.serial === p.ecuSerial)!;
      ecu.installed = { filename: p.name, length: p.length, hashes: p.hashes };
      ecu.releaseCounter = p.releaseCounter;
    }
    this.#lastResult = {
      directorTargetsVersion: director.version, success: true, code: 'OK', description: `installed ${installs.map((p) => p.name).join(', ')}`,
      ecus: installs.map((p) => ({ ecuSerial: p.ecuSerial, success: true, code: 'OK', description: 'installed', filename: p.name })),
    };
    this.#unreported = installs.map((p) => p.name);
    await this.#sendManifest();
    this.#unreported = undefined;
    return { kind: 'updated', installed: installs.map((p) => p.name), at: Date.now() };
  }

  /** What every ECU runs now (filename, or '' for the factory image). */
  installed(): Record<string, string> {
    return Object.fromEntries(this.ecus.map((e) => [e.serial, e.installed?.filename ?? '']));
  }

  async #refreshDirector(): Promise<DirectorTargets> {
    const binding = bindToDevice(this.deviceId);
    const updater = new Updater({
      metadataBaseUrl: `${this.#deviceBase}/metadata/`, fetcher: this.#directorFetcher, store: this.#directorStore, now: this.#now(),
      acceptRole: (role: string, signed: AnySigned) => {
        binding(role, signed);
        checkDirectorRole(role, signed);
      },
    });
    await updater.refresh();
    return DirectorTargets.from(updater.trustedSet.targets!);
  }

  #ecuStates(): Map<string, EcuState> {
    return new Map(this.ecus.map((e) => [e.serial, { hardwareId: e.hardwareId, installed: e.installed, releaseCounter: e.releaseCounter }]));
  }

  async #sendManifest(): Promise<void> {
    const nonce = randomBytes(16).toString('hex');
    const now = this.#now().toISOString();
    const reports: Record<string, SignedEcuReport> = {};
    for (const e of this.ecus) {
      reports[e.serial] = signEcuReport({
        ecuSerial: e.serial, hardwareId: e.hardwareId, installedImage: e.installed ?? NO_IMAGE, releaseCounter: e.releaseCounter,
        nonce, attacksDetected: '', latestVerifiedTime: now, timestamp: now,
      }, e.signer);
    }
    const manifest = signVehicleManifest({
      deviceId: this.deviceId, primaryEcuSerial: this.ecus[0]!.serial, ecuVersionReports: reports,
      ...(this.#lastResult && { installationResult: this.#lastResult }), counter: ++this.#counter, timestamp: now,
    }, this.#primary);
    await this.#post('manifest', JSON.stringify(manifest), this.#auth());
  }

  async #post(path: string, body: string, headers: Record<string, string>): Promise<void> {
    const url = `${this.#deviceBase}/${path}`;
    const res = await this.#o.http.post(url, body, { 'content-type': 'application/json', ...headers });
    if (res.status < 200 || res.status > 299) throw new DirectorRefusedError(url, res.status, res.text);
  }
}

