/**
 * The steps of one update cycle (Uptane 2.1.0 primary, 5.4.2), one per
 * persisted state; the runner sequences them by the transition table.
 *
 * Invariants:
 * - Nothing reaches an ECU unless the director repository and the image
 *   repository were both fully verified in this cycle and every director
 *   target matched its image repository target: checkingImages turns one
 *   director trusted set (the one checkingDirector stored, re-verified from the
 *   store, never fetched again) and one image repository trusted set into the
 *   verified plan (core verifyPlan), and download, install, the secondaries'
 *   bundles and every release counter use that plan alone.
 * - Every step is idempotent, so the runner may redo it after a power loss:
 *   downloads resume, transfers resume, activation skips ECUs already done.
 * - A step that fails throws its typed error (with `ecuSerial` when one ECU is
 *   concerned); the runner turns it into a `failed` event.
 */
import { randomBytes } from 'node:crypto';
import {
  BadVersionError,
  DirectorTargets,
  RETRYABLE_RESULT_CODES,
  Updater,
  attackCodeFor,
  bindToDevice,
  checkDirectorRole,
  checkEcuReport,
  concerning,
  isAttackResultCode,
  isInstalled,
  networkSource,
  pendingEcus,
  plannedImage,
  signVehicleManifest,
  storeSource,
  verifyPlan,
  type AnySigned,
  type EcuState,
  type EcuInstallResult,
  type Fetcher,
  type InstallationResult,
  type SignedEcuReport,
  type Signer,
} from '@upfleet/core';
import type { AgentConfig } from './config.ts';
import type { KeyValue } from './db.ts';
import { ImageTooLargeError, InstallError, ROLLBACK_RESULT_CODES } from './errors.ts';
import type { ImageCache } from './image-cache.ts';
import type { SqliteMetadataStore } from './metadata-store.ts';
import type { Outbox } from './outbox.ts';
import type { ProgressFacts } from './progress-facts.ts';
import type { Steps, StepResult } from './machine/runner.ts';
import type { FailureRecord, State } from './machine/states.ts';
import type { MetadataBundle, Progress, Secondary } from './secondaries/secondary.ts';

/** A progress event for the director and the local display. */
export interface ProgressEvent {
  ecuSerial: string;
  state: 'downloading' | 'installing';
  done: number;
  total: number;
}

export interface CycleDeps {
  config: AgentConfig;
  signer: Signer;
  /** Every ECU, primary first, by serial. */
  ecus: Map<string, Secondary>;
  directorBase: string;
  directorFetcher: Fetcher;
  imageFetcher: Fetcher;
  directorStore: SqliteMetadataStore;
  imageStore: SqliteMetadataStore;
  images: ImageCache;
  /** Records what the ECUs hold while installing (the power-loss progress fact). */
  facts: ProgressFacts;
  outbox: Outbox;
  kv: KeyValue;
  now: () => Date;
  onProgress: (p: ProgressEvent) => void;
  /** Best-effort delivery of the outbox (never throws). */
  flush: () => Promise<void>;
  log: (msg: string, fields?: Record<string, unknown>) => void;
}

/** The last installation result, kept until a newer one replaces it. */
export interface StoredResult {
  result: InstallationResult;
  /** Whether a later cycle may try the same director targets version again. */
  retryable: boolean;
}

/** Tags an error with the ECU it concerns, keeping its class. */
function forEcu<T>(ecuSerial: string, fn: () => Promise<T>): Promise<T> {
  return fn().catch((e: unknown) => {
    throw concerning(e, ecuSerial);
  });
}

/** The attack a failure reports (core attack-codes.ts), if any; bytes refused while downloading are an image's. */
const attackOf = (f: FailureRecord) => attackCodeFor({ code: f.code, fields: f.fields, refusal: f.attack, data: f.state === 'downloading' ? 'image' : 'metadata' });

/**
 * How a failure is reported, first matching rule wins: the installation result
 * code the director sees; whether a later cycle may try the same director
 * targets version again follows from the code (core RETRYABLE_RESULT_CODES,
 * which the director shares). Every Uptane/TUF attack carries its own code (core
 * attackCodeFor: METADATA_ROLLBACK, FREEZE, MIX_AND_MATCH, ENDLESS_DATA...), so
 * the director's security event log says which one; slow retrieval is retried
 * (a bad link looks the same); a primary that runs its old image again after an
 * activation reports why (HEALTH_CHECK_FAILED, BOOT_FALLBACK).
 */
const REPORT_RULES: ReadonlyArray<{ when: (f: FailureRecord) => boolean; code: (f: FailureRecord) => string }> = [
  { when: (f) => attackOf(f) !== undefined, code: (f) => attackOf(f)! },
  { when: (f) => f.code === 'DOWNLOAD' || f.code === 'HTTP', code: () => 'DOWNLOAD_FAILED' },
  { when: (f) => ROLLBACK_RESULT_CODES.includes(f.code), code: (f) => f.code },
  { when: () => true, code: () => 'INSTALL_FAILED' },
];

/** The installation result code the director sees for a failure, and whether it may be retried (core RETRYABLE_RESULT_CODES, which the director shares). */
export function reportFor(failure: FailureRecord): { code: string; retryable: boolean; attack: boolean } {
  const rule = REPORT_RULES.find((r) => r.when(failure))!;
  const code = rule.code(failure);
  return { code, retryable: (RETRYABLE_RESULT_CODES as readonly string[]).includes(code), attack: isAttackResultCode(code) };
}

export function buildSteps(d: CycleDeps): Steps {
  const primarySerial = d.config.ecus.primary.serial;
  const hardwareOf = new Map([d.config.ecus.primary, ...d.config.ecus.secondaries].map((e) => [e.serial, e.hardwareId]));

  const metadataCaps = { snapshot: d.config.limits.maxMetadataBytes, targets: d.config.limits.maxMetadataBytes };
  // Every director role must be this device's, checked before anything of it is stored.
  const deviceBinding = bindToDevice(d.config.deviceId);
  const checkDirector = (role: string, signed: AnySigned) => {
    deviceBinding(role, signed);
    checkDirectorRole(role, signed);
  };
  /** The director repository from the network, or (offline) re-verified from what is stored. */
  const directorUpdater = (offline = false) =>
    new Updater({
      source: offline ? storeSource('director', d.directorStore) : networkSource(`${d.directorBase}/metadata/`, d.directorFetcher),
      store: d.directorStore, now: d.now(), maxLength: metadataCaps, acceptRole: checkDirector,
    });
  const imageUpdater = () =>
    new Updater({ metadataBaseUrl: `${d.config.imageRepoUrl}/metadata/`, fetcher: d.imageFetcher, store: d.imageStore, now: d.now(), maxLength: metadataCaps });

  const ecu = (serial: string): Secondary => {
    const e = d.ecus.get(serial);
    if (!e) throw new InstallError(serial, 'lookup', 'no driver for this ECU');
    return e;
  };

  async function signManifest(installationResult?: InstallationResult): Promise<{ manifest: unknown; counter: number }> {
    const nonce = randomBytes(16).toString('hex');
    const reports: Record<string, SignedEcuReport> = {};
    for (const [serial, e] of d.ecus) reports[serial] = await forEcu(serial, async () => checkEcuReport(await e.versionReport(nonce), { ecuSerial: serial, nonce }));
    const counter = (d.kv.get<number>('manifestCounter') ?? 0) + 1;
    const manifest = signVehicleManifest(
      {
        deviceId: d.config.deviceId,
        primaryEcuSerial: primarySerial,
        ecuVersionReports: reports,
        ...(installationResult && { installationResult }),
        counter,
        timestamp: d.now().toISOString(),
      },
      d.signer,
    );
    return { manifest, counter };
  }

  function queueManifest(m: { manifest: unknown; counter: number }): () => void {
    const enqueue = d.outbox.enqueueLater('manifest', m.manifest);
    return () => {
      d.kv.set('manifestCounter', m.counter);
      enqueue();
    };
  }

  /** What the primary knows of each ECU the director names (ECUs it names but this vehicle lacks are left out: the plan refuses them). */
  async function ecuStates(director: DirectorTargets): Promise<Map<string, EcuState>> {
    const states = new Map<string, EcuState>();
    for (const { ecuSerial } of director.images) {
      const hardwareId = hardwareOf.get(ecuSerial);
      if (hardwareId === undefined || !d.ecus.has(ecuSerial)) continue;
      const info = await forEcu(ecuSerial, () => ecu(ecuSerial).info());
      states.set(ecuSerial, { hardwareId, installed: info.installed, releaseCounter: info.releaseCounter });
    }
    return states;
  }

  function bundle(withImage: boolean): MetadataBundle {
    const read = (store: SqliteMetadataStore) => {
      const out: Record<string, Uint8Array> = {};
      for (const name of store.names()) out[decodeURIComponent(name)] = store.readSync(name)!;
      return out;
    };
    return { director: read(d.directorStore), ...(withImage && { image: read(d.imageStore) }) };
  }

  const steps: Steps = {
    async sendingManifest(): Promise<StepResult> {
      const last = d.kv.get<StoredResult>('lastResult');
      const m = await signManifest(last?.result);
      return { event: { type: 'manifestQueued' }, commit: queueManifest(m) };
    },

    async checkingDirector(): Promise<StepResult> {
      await d.flush();
      const updater = directorUpdater();
      await updater.refresh();
      const director = DirectorTargets.from(updater.trustedSet.targets!);
      const pending = new Set(pendingEcus(director, await ecuStates(director)));
      const last = d.kv.get<StoredResult>('lastResult');
      const handled = last && last.result.directorTargetsVersion === director.version && !last.retryable;
      if (pending.size === 0 || handled) return { event: { type: 'noUpdate' } };
      // Not yet a plan: which ECUs the director wants changed, so a refusal can name them.
      const named = director.images.filter((i) => pending.has(i.ecuSerial)).map((i) => plannedImage(i));
      return { event: { type: 'directorUpdated', directorTargetsVersion: director.version, plan: named } };
    },

    async checkingImages(state: State): Promise<StepResult> {
      // The director metadata checkingDirector accepted, verified again from the store
      // (also after a power loss), never a second answer from the network.
      const directorSet = directorUpdater(true);
      await directorSet.refresh();
      const director = DirectorTargets.from(directorSet.trustedSet.targets!);
      if (director.version !== state.cycle.directorTargetsVersion) {
        throw new BadVersionError('targets', state.cycle.directorTargetsVersion, director.version, 'the stored director targets changed within the cycle');
      }
      const image = imageUpdater();
      await image.refresh();
      const { installs } = await verifyPlan({
        director,
        findImageTarget: async (name, hardwareId) => (await image.findTarget(name, { hardwareId }))?.info,
        ecus: await ecuStates(director),
      });
      for (const p of installs) {
        if (p.length > d.config.limits.maxImageBytes) throw concerning(new ImageTooLargeError(p.name, p.length, d.config.limits.maxImageBytes), p.ecuSerial);
      }
      return { event: { type: 'targetsMatched', plan: installs } };
    },

    async downloading(state: State): Promise<StepResult> {
      d.images.prune(state.cycle.plan);
      for (const p of state.cycle.plan) {
        await forEcu(p.ecuSerial, () =>
          d.images.download(p, {
            attempts: d.config.limits.downloadAttempts,
            onProgress: (done, total) => d.onProgress({ ecuSerial: p.ecuSerial, state: 'downloading', done, total }),
            onRetry: (error, attempt) => d.log('download retry', { target: p.name, attempt, error: error.message, code: error.code }),
          }),
        );
      }
      return { event: { type: 'imagesDownloaded' } };
    },

    async installing(state: State): Promise<StepResult> {
      const record = d.facts.ecuBytesRecorder(state.cycle.cycleId);
      for (const p of state.cycle.plan) {
        const e = ecu(p.ecuSerial);
        await forEcu(p.ecuSerial, async () => {
          const info = await e.info();
          await e.putMetadata(bundle(info.verification === 'full'));
          await e.install(
            { name: p.name, length: p.length, hashes: p.hashes, releaseCounter: p.releaseCounter, open: (offset) => d.images.read(p, offset), localPath: d.images.path(p) },
            (pr: Progress) => {
              record(pr.ecuSerial, pr.done, pr.phase !== 'transfer');
              d.onProgress({ ecuSerial: pr.ecuSerial, state: 'installing', done: pr.done, total: pr.total });
            },
          );
        });
      }
      return { event: { type: 'imagesInstalled' } };
    },

    async activating(state: State): Promise<StepResult> {
      const next = state.cycle.plan.find((p) => !state.cycle.activated.includes(p.ecuSerial));
      if (!next) return { event: { type: 'activated' } };
      await forEcu(next.ecuSerial, async () => {
        const e = ecu(next.ecuSerial);
        // After a power loss the ECU may have switched before `ecuActivated` was persisted: do not activate twice.
        if (!isInstalled((await e.info()).installed, next)) await e.activate();
        const info = await e.info();
        if (!isInstalled(info.installed, next)) throw new InstallError(next.ecuSerial, 'activate', `runs ${info.installed?.filename ?? 'nothing'} after activating ${next.name}`);
      });
      return { event: { type: 'ecuActivated', ecuSerial: next.ecuSerial } };
    },

    async rollingBack(state: State): Promise<StepResult> {
      for (const p of state.cycle.plan) {
        if (state.cycle.activated.includes(p.ecuSerial)) continue;
        await forEcu(p.ecuSerial, () => ecu(p.ecuSerial).abort()).catch((e: Error) => d.log('abort failed', { ecuSerial: p.ecuSerial, error: e.message }));
      }
      return { event: { type: 'rolledBack' } };
    },

    async reporting(state: State): Promise<StepResult> {
      const { failure, plan, directorTargetsVersion } = state.cycle;
      d.images.removeInstalled(plan, state.cycle.activated); // the ECUs run them now: free the space
      const report = failure && reportFor(failure);
      if (failure && !report!.attack && failure.state === 'checkingDirector') {
        // The director could not be reached: there is nothing to report to it yet.
        return { event: { type: 'reported' } };
      }
      const ecuSerials = plan.length > 0 ? plan.map((p) => p.ecuSerial) : failure?.ecuSerial ? [failure.ecuSerial] : [...d.ecus.keys()];
      const code = report ? report.code : 'OK';
      const ecus: EcuInstallResult[] = ecuSerials.map((serial) => {
        const p = plan.find((x) => x.ecuSerial === serial);
        const ok = !failure || state.cycle.activated.includes(serial);
        const own = !failure || failure.ecuSerial === undefined || failure.ecuSerial === serial;
        return {
          ecuSerial: serial,
          success: ok,
          code: ok ? 'OK' : own ? code : 'ABORTED',
          description: ok ? 'installed' : own ? failure!.message : `not installed: ${failure!.ecuSerial} failed`,
          ...(p && { filename: p.name }),
        };
      });
      const result: InstallationResult = {
        directorTargetsVersion,
        success: !failure,
        code,
        description: failure ? `${failure.name}: ${failure.message}` : `installed ${plan.map((p) => p.name).join(', ')}`,
        ecus,
      };
      // A transport failure may pass: the same director targets are tried again next cycle.
      const stored: StoredResult = { result, retryable: report?.retryable ?? false };
      let m: { manifest: unknown; counter: number } | undefined;
      try {
        m = await signManifest(result);
      } catch (e) {
        d.log('cannot collect ECU reports for the result manifest; the next manifest carries the result', { error: (e as Error).message });
      }
      const queue = m && queueManifest(m);
      return {
        event: { type: 'reported' },
        commit: () => {
          d.kv.set('lastResult', stored);
          queue?.();
        },
      };
    },
  };
  return steps;
}
