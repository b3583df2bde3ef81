/**
 * The steps of one update cycle (Uptane 2.1.0 primary, 5.4.2), one per
 * persisted state; the runner sequences them by the transition table.
 *
 * Invariants:
 * - Nothing reaches an ECU unless the director repository and the image
 *   repository were both fully verified in this cycle and every director
 *   target matched its image repository target (matchDirectorTarget).
 * - Every step is idempotent, so the runner may redo it after a power loss:
 *   downloads resume, transfers resume, activation skips ECUs already done.
 * - A step that fails throws its typed error (with `ecuSerial` when one ECU is
 *   concerned); the runner turns it into a `failed` event.
 */
import { randomBytes } from 'node:crypto';
import {
  ATTACK_RESULT_CODES,
  BadRoleError,
  RETRYABLE_RESULT_CODES,
  RepositoryError,
  TargetMismatchError,
  Updater,
  checkEcuReport,
  ecuIdentifiers,
  matchDirectorTarget,
  signVehicleManifest,
  type EcuInstallResult,
  type Fetcher,
  type InstallationResult,
  type SignedEcuReport,
  type Signer,
  type TargetFile,
} from '@upfleet/core';
import type { AgentConfig } from './config.ts';
import type { KeyValue } from './db.ts';
import { ImageTooLargeError, InstallError } from './errors.ts';
import type { ImageCache } from './image-cache.ts';
import type { SqliteMetadataStore } from './metadata-store.ts';
import type { Outbox } from './outbox.ts';
import type { Steps, StepResult } from './machine/runner.ts';
import type { FailureRecord, PlannedInstall, State } from './machine/states.ts';
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

/** Refuses director metadata signed for another device (replay across devices). */
export class DeviceMismatchError extends RepositoryError {
  override name = 'DeviceMismatchError';
  override readonly code = 'DEVICE_MISMATCH';
  constructor(readonly expected: string, readonly actual: string) {
    super(`director targets are for device ${actual}, this is ${expected}`);
  }
}

function sameImage(installed: { length: number; hashes: Record<string, string> } | null, target: { length: number; hashes: Record<string, string> }): boolean {
  if (!installed || installed.length !== target.length) return false;
  const common = Object.keys(target.hashes).filter((a) => a in installed.hashes);
  return common.length > 0 && common.every((a) => installed.hashes[a]!.toLowerCase() === target.hashes[a]!.toLowerCase());
}

/** Tags an error with the ECU it concerns, keeping its class. */
function forEcu<T>(ecuSerial: string, fn: () => Promise<T>): Promise<T> {
  return fn().catch((e: unknown) => {
    if (e instanceof Error && (e as { ecuSerial?: unknown }).ecuSerial === undefined) Object.assign(e, { ecuSerial });
    throw e;
  });
}

/** A length check that found more bytes than the signed length (the fetch cap is usually hit first). */
const longerThanSigned = (f: FailureRecord) =>
  f.code === 'LENGTH_OR_HASH_MISMATCH' && f.fields.field === 'length' && Number(f.fields.actual) > Number(f.fields.expected);

/**
 * How a failure is reported, first matching rule wins: the installation result
 * code the director sees; whether a later cycle may try the same director
 * targets version again follows from the code (core RETRYABLE_RESULT_CODES).
 * Uptane and TUF name endless data (more bytes than a cap or the signed length)
 * and slow retrieval (below the minimum speed) as attacks, so they carry attack
 * codes (core ATTACK_RESULT_CODES), not the transport failure code; slow
 * retrieval is retried (a bad link looks the same).
 */
const REPORT_RULES: ReadonlyArray<{ when: (f: FailureRecord) => boolean; code: string }> = [
  { when: (f) => f.code === 'LENGTH_LIMIT' || longerThanSigned(f), code: 'ENDLESS_DATA' },
  { when: (f) => f.code === 'SLOW_RETRIEVAL', code: 'SLOW_RETRIEVAL' },
  { when: (f) => f.attack, code: 'VERIFICATION_FAILED' },
  { when: (f) => f.code === 'DOWNLOAD' || f.code === 'HTTP', code: 'DOWNLOAD_FAILED' },
  { when: () => true, code: 'INSTALL_FAILED' },
];

/** The installation result code the director sees for a failure, and whether it may be retried (core RETRYABLE_RESULT_CODES, which the director shares). */
export function reportFor(failure: FailureRecord): { code: string; retryable: boolean; attack: boolean } {
  const rule = REPORT_RULES.find((r) => r.when(failure))!;
  return { code: rule.code, retryable: (RETRYABLE_RESULT_CODES as readonly string[]).includes(rule.code), attack: (ATTACK_RESULT_CODES as readonly string[]).includes(rule.code) };
}

export function buildSteps(d: CycleDeps): Steps {
  const primarySerial = d.config.ecus.primary.serial;
  const hardwareOf = new Map([d.config.ecus.primary, ...d.config.ecus.secondaries].map((e) => [e.serial, e.hardwareId]));

  const metadataCaps = { snapshot: d.config.limits.maxMetadataBytes, targets: d.config.limits.maxMetadataBytes };
  const directorUpdater = () =>
    new Updater({ metadataBaseUrl: `${d.directorBase}/metadata/`, fetcher: d.directorFetcher, store: d.directorStore, now: d.now(), maxLength: metadataCaps });
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

  /** Director targets for our ECUs, in install order: custom `order`, then listing order. */
  function directorPlan(targets: Record<string, TargetFile>): PlannedInstall[] {
    const entries = Object.entries(targets).map(([name, t], i) => ({ name, t, i, order: typeof t.custom?.order === 'number' ? t.custom.order : Infinity }));
    entries.sort((a, b) => a.order - b.order || a.i - b.i);
    const plan: PlannedInstall[] = [];
    for (const { name, t } of entries) {
      for (const [serial, hw] of Object.entries(ecuIdentifiers(t))) {
        const expected = hardwareOf.get(serial);
        if (expected === undefined) throw Object.assign(new TargetMismatchError(name, 'ecu', 'an ECU of this device', serial), { ecuSerial: serial });
        if (hw !== expected) throw Object.assign(new TargetMismatchError(name, 'hardwareId', expected, hw), { ecuSerial: serial });
        plan.push({ ecuSerial: serial, hardwareId: hw, name, length: t.length, hashes: t.hashes, releaseCounter: 0 });
      }
    }
    return plan;
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
      const targets = updater.trustedSet.targets!;
      const deviceId = targets.unrecognizedFields.deviceId;
      if (deviceId !== d.config.deviceId) throw new DeviceMismatchError(d.config.deviceId, String(deviceId));
      const plan = directorPlan(targets.targets);
      const pending: PlannedInstall[] = [];
      for (const p of plan) {
        const info = await forEcu(p.ecuSerial, () => ecu(p.ecuSerial).info());
        if (!sameImage(info.installed, p)) pending.push(p);
      }
      const last = d.kv.get<StoredResult>('lastResult');
      const handled = last && last.result.directorTargetsVersion === targets.version && !last.retryable;
      if (pending.length === 0 || handled) return { event: { type: 'noUpdate' } };
      return { event: { type: 'directorUpdated', directorTargetsVersion: targets.version, plan: pending } };
    },

    async checkingImages(state: State): Promise<StepResult> {
      const updater = imageUpdater();
      await updater.refresh();
      const director = directorUpdater();
      await director.refresh();
      const plan: PlannedInstall[] = [];
      for (const p of state.cycle.plan) {
        const directorTarget = director.trustedSet.targets!.targets[p.name];
        if (!directorTarget) throw Object.assign(new BadRoleError('targets', `${p.name} vanished from the director`), { ecuSerial: p.ecuSerial });
        const found = await updater.findTarget(p.name, { hardwareId: p.hardwareId });
        const info = await forEcu(p.ecuSerial, () => ecu(p.ecuSerial).info());
        const custom = await forEcu(p.ecuSerial, async () =>
          matchDirectorTarget({
            name: p.name,
            directorTarget,
            imageTarget: found?.info,
            ecuSerial: p.ecuSerial,
            hardwareId: p.hardwareId,
            installedReleaseCounter: info.releaseCounter,
          }),
        );
        if (p.length > d.config.limits.maxImageBytes) {
          throw Object.assign(new ImageTooLargeError(p.name, p.length, d.config.limits.maxImageBytes), { ecuSerial: p.ecuSerial });
        }
        plan.push({ ...p, releaseCounter: custom.releaseCounter, ...(custom.version !== undefined && { version: custom.version }) });
      }
      return { event: { type: 'targetsMatched', plan } };
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
      for (const p of state.cycle.plan) {
        const e = ecu(p.ecuSerial);
        await forEcu(p.ecuSerial, async () => {
          const info = await e.info();
          await e.putMetadata(bundle(info.verification === 'full'));
          await e.install(
            { name: p.name, length: p.length, hashes: p.hashes, open: (offset) => d.images.read(p, offset) },
            (pr: Progress) => d.onProgress({ ecuSerial: pr.ecuSerial, state: 'installing', done: pr.done, total: pr.total }),
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
        if (!sameImage((await e.info()).installed, next)) await e.activate();
        const info = await e.info();
        if (!sameImage(info.installed, next)) throw new InstallError(next.ecuSerial, 'activate', `runs ${info.installed?.filename ?? 'nothing'} after activating ${next.name}`);
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
