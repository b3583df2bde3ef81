/**
 * Manifest ingestion (Uptane 5.4.2.1): everything a manifest must pass before
 * it changes anything, then, in one commit, what it records.
 * Checks, in order (each refusal is a typed error and changes nothing): one
 * store read (store ingestionView: the device, its ECUs and keys), then the
 * rules of manifest-checks.ts (parse, device, primary, signatures, counter,
 * ECUs), run by the verify pool (verify-pool.ts: worker threads, or inline);
 * then, inside the commit against the stored memory, each report's freshness (report-memory.ts:
 * signed within the window of the director's clock and of the manifest's time,
 * a nonce not seen from that ECU within the window).
 * Then: installed images, history, security events (deduplicated), assignment
 * outcomes (a retryable failure, core RETRYABLE_RESULT_CODES, leaves the
 * assignment open: the device tries again), campaign progress. Signature verification happens
 * before the commit, so a burst of manifests verifies without holding the store. Commits are
 * grouped (group-commit.ts): manifests verified meanwhile share one transaction, each in its own
 * savepoint, and each caller hears only after that transaction committed. Each takes the
 * device's row lock first, so concurrent manifests of one device (several director processes)
 * are recorded one after the other.
 * A refusal is recorded as a `manifest_refused` security event of the device
 * only when the sender is authenticated as that device (a device token, or the
 * embedded broker's per-device rule), so nobody else can fill its log; a copy
 * of the manifest accepted last is a retransmission (lost response, MQTT
 * redelivery), refused but not recorded.
 */
import { RETRYABLE_RESULT_CODES, isAttackResultCode, type SignedVehicleManifest } from '@upfleet/core';
import { ForbiddenError, ManifestRejectedError, NotFoundError } from './errors.ts';
import type { Context } from './context.ts';
import { runsImage, sameImage, type Assignments } from './assignments.ts';
import type { AssignmentRecord, EcuRecord, EventKind } from './store.ts';
import { checkReport, readMemory, rememberReport, type ReportMemory } from './report-memory.ts';
import { checkCounter, digestOf } from './manifest-checks.ts';
import { GroupCommit } from './group-commit.ts';
import { VerifyPool } from './verify-pool.ts';

export type Via = 'http' | 'mqtt' | 'function';
/** Longest `detail` of a recorded refusal (the error message, cut). */
const DETAIL_LIMIT = 300;
const RETRYABLE_CODES: ReadonlySet<string> = new Set(RETRYABLE_RESULT_CODES);
type Signed = SignedVehicleManifest['signed'];

export interface IngestResult {
  deviceId: string;
  counter: number;
  /** Assignments whose status changed. */
  changed: Array<{ id: string; status: string }>;
}

/** A failed installation result is an attack when its code names one (core attack-codes.ts: METADATA_ROLLBACK, FREEZE...). */
function resultKind(code: string): EventKind {
  return isAttackResultCode(code) ? 'attack' : 'installation_failure';
}

export class Manifests {
  /** Called with the campaign IDs whose assignments changed (set by the wiring). */
  onCampaignChange: (campaignIds: Set<string>) => Promise<void> = async () => {};
  /** Checks signatures (manifest-checks.ts); inline until the wiring starts a pool of workers. */
  verifier: Pick<VerifyPool, 'check' | 'queued'> = VerifyPool.inline();
  readonly #commits: GroupCommit;

  constructor(
    private readonly ctx: Context,
    private readonly assignments: Assignments,
  ) {
    // A batch waits for the manifests still being verified (they would commit next anyway).
    this.#commits = new GroupCommit((fn) => ctx.commit(fn), { pending: () => this.verifier.queued });
  }

  /**
   * Verifies and records a manifest sent by `deviceId`. `authenticated`: the
   * channel proved the sender is `deviceId` (then a refusal is recorded as a
   * security event of the device; otherwise it is only counted). Resolves once
   * the manifest's transaction has committed (several manifests may share one).
   * @throws ManifestRejectedError, ForbiddenError, NotFoundError, VerifierUnavailableError, StoreUnavailableError
   */
  async ingest(deviceId: string, bytes: Uint8Array, via: Via, authenticated: boolean): Promise<IngestResult> {
    try {
      // One read for every check before the commit; the checks themselves may run on a worker.
      const view = await this.ctx.store.ingestionView(deviceId);
      const { signed, digest } = await this.verifier.check(deviceId, bytes, view);
      const ecus = new Map(view.ecus.map((e) => [e.serial, e]));
      const result = await this.#commits.run(() => this.#record(deviceId, signed, ecus, via, digest));
      this.ctx.metrics.manifestsAccepted.inc({ via });
      this.ctx.log.info({ deviceId, via, counter: result.counter, changed: result.changed }, 'manifest accepted');
      return result;
    } catch (error) {
      const code = error instanceof ManifestRejectedError || error instanceof ForbiddenError || error instanceof NotFoundError ? error.code : 'ERROR';
      this.ctx.metrics.manifestsRejected.inc({ via, code });
      this.ctx.log.warn({ deviceId, via, code, err: error }, 'manifest refused');
      if (error instanceof ManifestRejectedError && authenticated) await this.#recordRefusal(deviceId, error, bytes, via);
      throw error;
    }
  }

  /** A refused manifest as a security event of the device, unless it is a retransmission of the last accepted one. */
  async #recordRefusal(deviceId: string, error: ManifestRejectedError, bytes: Uint8Array, via: Via): Promise<void> {
    await this.ctx.commit(async () => {
      const { store } = this.ctx;
      const device = await store.getDevice(deviceId);
      if (!device) return;
      if (error.code === 'MANIFEST_REPLAY' && error.fields.counter === device.manifestCounter) {
        const last = (await store.manifestsOf(deviceId, 1))[0];
        if (last && last.counter === device.manifestCounter && last.summary.digest === digestOf(bytes)) return;
      }
      const ecuSerial = typeof error.fields.ecuSerial === 'string' ? error.fields.ecuSerial : null;
      const detail = `${error.message} (via ${via})`;
      await store.insertEvent({ deviceId, ecuSerial, kind: 'manifest_refused', code: error.code, detail: detail.slice(0, DETAIL_LIMIT), at: this.ctx.nowIso() });
    });
  }

  async #record(deviceId: string, s: Signed, ecus: Map<string, EcuRecord>, via: Via, digest: string): Promise<IngestResult> {
    const { store } = this.ctx;
    const now = this.ctx.nowIso();
    // Re-check inside the transaction, under the device's lock: another manifest may have been accepted since the checks.
    await store.lockDevice(deviceId);
    const device = (await store.getDevice(deviceId))!;
    checkCounter(deviceId, s.counter, device.manifestCounter);
    // Checked here, against the memory this transaction will write, so two manifests cannot both pass with one report.
    const nowMs = this.ctx.now().getTime();
    const recentNonces: Record<string, ReportMemory> = {};
    for (const serial of ecus.keys()) {
      const r = s.ecuVersionReports[serial]!.signed;
      const memory = readMemory(device.recentNonces[serial], nowMs);
      const refusal = checkReport(memory, r);
      if (refusal) throw new ManifestRejectedError(deviceId, refusal.code, `ECU ${serial}: ${refusal.message}`, { ecuSerial: serial, ...refusal.fields });
      recentNonces[serial] = rememberReport(memory, r, nowMs);
    }
    for (const [serial, ecu] of ecus) {
      const r = s.ecuVersionReports[serial]!.signed;
      // The inventory shows what the ECU reports (signed by its own key), not the highest it ever
      // reported: an operator must see an ECU whose counter went down.
      if (JSON.stringify(ecu.installed) !== JSON.stringify(r.installedImage) || r.releaseCounter !== ecu.releaseCounter) {
        await store.updateEcu(serial, { installed: r.installedImage, releaseCounter: r.releaseCounter });
      }
      if (r.attacksDetected !== '') await this.#event(deviceId, serial, 'attack', 'ATTACK_DETECTED', r.attacksDetected, now);
    }
    await store.updateDevice(deviceId, { manifestCounter: s.counter, recentNonces, lastSeen: now, updatedAt: now });
    const ir = s.installationResult;
    if (ir) {
      for (const e of ir.ecus) {
        if (e.success) continue;
        await this.#event(deviceId, e.ecuSerial, resultKind(e.code), e.code, `targets v${ir.directorTargetsVersion}: ${e.filename ?? ''} ${e.description}`.trim(), now);
      }
      if (!ir.success && ir.ecus.length === 0) {
        await this.#event(deviceId, null, resultKind(ir.code), ir.code, `targets v${ir.directorTargetsVersion}: ${ir.description}`, now);
      }
    }
    await store.insertManifest({
      deviceId, counter: s.counter, receivedAt: now, via,
      summary: {
        digest,
        installed: Object.fromEntries(Object.entries(s.ecuVersionReports).map(([k, r]) => [k, r.signed.installedImage])),
        ...(ir && { installationResult: ir }),
      },
    });
    const changed = await this.#settleAssignments(deviceId, s, ecus);
    return { deviceId, counter: s.counter, changed };
  }

  /** Records a security event unless the same one is on record (devices repeat their last result). */
  async #event(deviceId: string, ecuSerial: string | null, kind: EventKind, code: string, detail: string, at: string): Promise<void> {
    const known = (await this.ctx.store.eventsOf(deviceId)).some((e) => e.ecuSerial === ecuSerial && e.code === code && e.detail === detail);
    if (known) return;
    await this.ctx.store.insertEvent({ deviceId, ecuSerial, kind, code, detail, at });
    if (kind === 'attack') this.ctx.metrics.attacks.inc({ code });
  }

  /** Completes or fails open assignments from what the manifest says. */
  async #settleAssignments(deviceId: string, s: Signed, before: Map<string, EcuRecord>): Promise<IngestResult['changed']> {
    const ir = s.installationResult;
    const changed: IngestResult['changed'] = [];
    const campaigns = new Set<string>();
    for (const a of await this.ctx.store.openAssignmentsOf(deviceId)) {
      const finishedOlderTargets = ir !== undefined && ir.directorTargetsVersion < a.targetsVersion;
      const outcome = this.#outcome(a, s, finishedOlderTargets ? undefined : ir, before, finishedOlderTargets);
      if (outcome && (await this.assignments.setStatus(a, outcome.status, outcome.error))) {
        changed.push({ id: a.id, status: a.status });
        if (a.campaignId) campaigns.add(a.campaignId);
      }
    }
    if (changed.some((c) => c.status === 'failed')) await this.assignments.sync(deviceId);
    if (campaigns.size > 0) await this.onCampaignChange(campaigns);
    return changed;
  }

  #outcome(
    a: AssignmentRecord,
    s: Signed,
    ir: NonNullable<Signed['installationResult']> | undefined,
    before: Map<string, EcuRecord>,
    finishedOlderTargets: boolean,
  ): { status: 'succeeded' | 'failed'; error?: { code: string; message: string } } | undefined {
    const reports = s.ecuVersionReports;
    // A retryable failure (its cause, the result's code, is a transport failure or slow
    // retrieval) is tried again by the device's next cycle: the event is on record, the
    // assignment stays open, and a later manifest settles it.
    const retrying = ir !== undefined && !ir.success && RETRYABLE_CODES.has(ir.code);
    const failedEcu = retrying ? undefined : ir?.ecus.find((e) => !e.success && a.items.some((i) => i.ecuSerial === e.ecuSerial));
    if (failedEcu) return { status: 'failed', error: { code: failedEcu.code, message: `${failedEcu.ecuSerial}: ${failedEcu.description}` } };
    if (ir && !ir.success && ir.ecus.length === 0 && !retrying) return { status: 'failed', error: { code: ir.code, message: ir.description } };
    const installed = (serial: string) => reports[serial]?.signed.installedImage ?? null;
    if (a.items.every((i) => runsImage(installed(i.ecuSerial), i))) return { status: 'succeeded' };
    // The device finished a cycle it began on older targets (this assignment was made
    // while it was updating): whatever it runs now says nothing about this one yet.
    if (finishedOlderTargets) return undefined;
    for (const i of a.items) {
      const now = installed(i.ecuSerial);
      // An ECU whose image was unknown at assignment time has no baseline to differ from yet.
      if (i.previous === null) continue;
      if (!runsImage(now, i) && !sameImage(now, i.previous) && !sameImage(now, before.get(i.ecuSerial)?.installed ?? null)) {
        return { status: 'failed', error: { code: 'UNEXPECTED_IMAGE', message: `${i.ecuSerial} runs ${now?.filename ?? 'nothing'}, not ${i.image}` } };
      }
    }
    if (ir?.success) {
      const wrong = a.items.find((i) => !runsImage(installed(i.ecuSerial), i))!;
      return { status: 'failed', error: { code: 'INSTALLED_IMAGE_MISMATCH', message: `${wrong.ecuSerial} reports success but does not run ${wrong.image}` } };
    }
    return undefined;
  }
}
