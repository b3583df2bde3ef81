/**
 * Assignments: which image each ECU of a device should run.
 * - Creation checks every (ECU, image) against the verified image repository
 *   with core `matchDirectorTarget` (exists, same length and hashes, the ECU's
 *   hardware ID, release counter not below the installed one); any refusal
 *   refuses the whole assignment and changes nothing.
 * - A new assignment on an ECU supersedes (cancels) the open one on that ECU.
 * - The device's targets list, per ECU, the image of the latest assignment that
 *   names it, while that assignment is open or succeeded (`targetsFor`). Each
 *   target's custom carries, beside `ecuIdentifiers`, the image repository's
 *   `releaseCounter` (and `version`) as checked at assignment: a
 *   partial-verification ECU sees only these targets, and needs the counter for
 *   its own image rollback check (Uptane 5.4.4.2 partial verification).
 *   `sync` re-signs the device's targets when that list changes and queues a notify.
 * - Status moves forward only: pending -> downloading -> installing -> succeeded |
 *   failed | cancelled. Progress events move it to downloading and installing, and
 *   keep each ECU's latest progress (phase, done, total, time) on the assignment.
 */
import { randomUUID } from 'node:crypto';
import { canonicalString, imageCustom, matchDirectorTarget, TargetFile, TargetMismatchError, type InstalledImage } from '@upfleet/core';
import { AssignmentRefusedError, BadRequestError, ConflictError, NotFoundError } from './errors.ts';
import type { Context } from './context.ts';
import type { Inventory } from './inventory.ts';
import { ACTIVE_STATUSES, type AssignmentItem, type AssignmentRecord, type AssignmentStatus, type EcuProgress, type EcuRecord } from './store.ts';

export interface AssignmentRequest {
  ecuSerial: string;
  image: string;
  /** When given, the image repository must list exactly this length / these hashes. */
  length?: number;
  hashes?: Record<string, string>;
}

const ORDER: Record<AssignmentStatus, number> = { pending: 0, downloading: 1, installing: 2, succeeded: 3, failed: 3, cancelled: 3 };

export function isOpen(status: AssignmentStatus): boolean {
  return ACTIVE_STATUSES.includes(status);
}

/** Whether an ECU's installed image is the item's image (name, length, every common hash). */
export function runsImage(installed: InstalledImage | null, item: Pick<AssignmentItem, 'image' | 'length' | 'hashes'>): boolean {
  if (!installed || installed.filename !== item.image || installed.length !== item.length) return false;
  const common = Object.keys(item.hashes).filter((a) => a in installed.hashes);
  return common.length > 0 && common.every((a) => installed.hashes[a]!.toLowerCase() === item.hashes[a]!.toLowerCase());
}

export function sameImage(a: InstalledImage | null, b: InstalledImage | null): boolean {
  if (a === null || b === null) return a === b;
  return runsImage(a, { image: b.filename, length: b.length, hashes: b.hashes });
}

export class Assignments {
  constructor(
    private readonly ctx: Context,
    private readonly inventory: Inventory,
  ) {}

  /**
   * Checks requests against the image repository and returns the items to assign.
   * Async (it may refresh the image repository); stores nothing.
   * @throws AssignmentRefusedError, BadRequestError, NotFoundError
   */
  async resolve(deviceId: string, requests: AssignmentRequest[]): Promise<AssignmentItem[]> {
    if (requests.length === 0) throw new BadRequestError('an assignment needs at least one ECU');
    const ecus = await this.ctx.store.ecusOf(deviceId);
    const seen = new Set<string>();
    const items: AssignmentItem[] = [];
    for (const r of requests) {
      if (seen.has(r.ecuSerial)) throw new BadRequestError(`ECU ${r.ecuSerial} appears twice`, { ecuSerial: r.ecuSerial });
      seen.add(r.ecuSerial);
      const ecu = ecus.find((e) => e.serial === r.ecuSerial);
      if (!ecu) throw new NotFoundError('ECU', `${deviceId}/${r.ecuSerial}`);
      const imageTarget = await this.ctx.imageRepo.findTarget(r.image, ecu.hardwareId);
      items.push(this.checkItem(deviceId, ecu, r, imageTarget));
    }
    return items;
  }

  /** One (ECU, image) against the image repository's target. @throws AssignmentRefusedError */
  checkItem(deviceId: string, ecu: EcuRecord, r: AssignmentRequest, imageTarget: TargetFile | undefined): AssignmentItem {
    const length = r.length ?? imageTarget?.length ?? 0;
    const hashes = r.hashes ?? imageTarget?.hashes ?? {};
    try {
      // The director copies the image repository's release counter into its own target.
      const releaseCounter = imageTarget ? imageCustom(imageTarget, r.image).releaseCounter : 0;
      const directorTarget = new TargetFile(length, hashes, { ecuIdentifiers: { [ecu.serial]: { hardwareId: ecu.hardwareId } }, releaseCounter });
      const custom = matchDirectorTarget({
        director: { name: r.image, target: directorTarget, ecuSerial: ecu.serial, hardwareId: ecu.hardwareId, releaseCounter },
        imageTarget, hardwareId: ecu.hardwareId, installedReleaseCounter: ecu.releaseCounter,
      });
      return { ecuSerial: ecu.serial, hardwareId: ecu.hardwareId, image: r.image, length, hashes: { ...hashes },
        releaseCounter: custom.releaseCounter, ...(custom.version !== undefined && { version: custom.version }), previous: ecu.installed };
    } catch (cause) {
      if (cause instanceof TargetMismatchError) {
        throw new AssignmentRefusedError(deviceId, ecu.serial, r.image, cause.field, cause.message, { cause });
      }
      throw cause;
    }
  }

  /**
   * Creates an assignment from checked items (inside the caller's commit or its own).
   * @throws ForbiddenError (device not active), ConflictError (an ECU left the device meanwhile)
   */
  insert(deviceId: string, items: AssignmentItem[], campaignId: string | null = null, status: AssignmentStatus = 'pending', error?: { code: string; message: string }): Promise<AssignmentRecord> {
    return this.ctx.commit(() => this.insertInCommit(deviceId, items, campaignId, status, error));
  }

  /**
   * As insert, as part of the caller's commit without a savepoint of its own: a campaign
   * wave creates thousands in one transaction, and PostgreSQL slows every session once a
   * transaction holds more than 64 subtransactions. An error aborts the caller's commit.
   */
  async insertInCommit(deviceId: string, items: AssignmentItem[], campaignId: string | null = null, status: AssignmentStatus = 'pending', error?: { code: string; message: string }): Promise<AssignmentRecord> {
    await this.ctx.store.lockDevice(deviceId);
    await this.inventory.requireActive(deviceId);
    const serials = new Set((await this.ctx.store.ecusOf(deviceId)).map((e) => e.serial));
    for (const item of items) {
      if (!serials.has(item.ecuSerial)) throw new ConflictError('ECU_GONE', `ECU ${item.ecuSerial} is no longer on ${deviceId}`, { ecuSerial: item.ecuSerial });
    }
    if (isOpen(status)) for (const item of items) await this.cancelOpen(deviceId, 'SUPERSEDED', item.ecuSerial);
    const now = this.ctx.nowIso();
    const a: AssignmentRecord = {
      id: randomUUID(), deviceId, campaignId, status, items, targetsVersion: 0,
      errorCode: error?.code ?? null, errorMessage: error?.message ?? null, createdAt: now, updatedAt: now, progress: {},
    };
    await this.ctx.store.insertAssignment(a);
    this.ctx.metrics.assignments.inc({ status });
    const state = await this.sync(deviceId);
    const targetsVersion = state?.targetsVersion ?? (await this.ctx.store.getRepoState(deviceId))?.targetsVersion ?? 0;
    await this.ctx.store.updateAssignment(a.id, { targetsVersion });
    return { ...a, targetsVersion };
  }

  /** Checks against the image repository, then creates. */
  async create(deviceId: string, requests: AssignmentRequest[]): Promise<AssignmentRecord> {
    await this.inventory.requireActive(deviceId);
    return this.insert(deviceId, await this.resolve(deviceId, requests));
  }

  /** @throws NotFoundError */
  async get(id: string): Promise<AssignmentRecord> {
    const a = await this.ctx.store.getAssignment(id);
    if (!a) throw new NotFoundError('assignment', id);
    return a;
  }

  /** Moves an assignment to a new status (forward only; terminal states stay). Returns whether it moved. */
  async setStatus(a: AssignmentRecord, status: AssignmentStatus, error?: { code: string; message: string }): Promise<boolean> {
    if (!isOpen(a.status) || ORDER[status] <= ORDER[a.status]) return false;
    await this.ctx.store.updateAssignment(a.id, { status, errorCode: error?.code ?? null, errorMessage: error?.message ?? null, updatedAt: this.ctx.nowIso() });
    a.status = status;
    this.ctx.metrics.assignments.inc({ status });
    this.ctx.log.info({ assignment: a.id, deviceId: a.deviceId, status, error }, 'assignment status');
    return true;
  }

  /** Keeps an ECU's latest progress on an assignment (one entry per ECU, the newest wins). Call inside a commit. */
  async recordProgress(a: AssignmentRecord, ecuSerial: string, p: Omit<EcuProgress, 'at'>): Promise<void> {
    // A computed key is an own property, also for a serial like "__proto__".
    a.progress = { ...a.progress, [ecuSerial]: { ...p, at: this.ctx.nowIso() } };
    await this.ctx.store.updateAssignment(a.id, { progress: a.progress });
  }

  /** Cancels the open assignments of a device (only those naming `ecuSerial`, when given). Call inside a commit. */
  async cancelOpen(deviceId: string, code: string, ecuSerial?: string): Promise<AssignmentRecord[]> {
    const cancelled = (await this.ctx.store.openAssignmentsOf(deviceId)).filter(
      (a) => ecuSerial === undefined || a.items.some((i) => i.ecuSerial === ecuSerial),
    );
    for (const a of cancelled) await this.setStatus(a, 'cancelled', { code, message: `cancelled: ${code}` });
    if (cancelled.length > 0) await this.sync(deviceId);
    return cancelled;
  }

  /** What the device's targets should list now. */
  async targetsFor(deviceId: string): Promise<Record<string, TargetFile>> {
    const assignments = await this.ctx.store.assignmentsOf(deviceId);
    const targets: Record<string, TargetFile> = Object.create(null); // image names come from operators
    for (const ecu of await this.ctx.store.ecusOf(deviceId)) {
      const latest = assignments.findLast((a) => a.items.some((i) => i.ecuSerial === ecu.serial));
      if (!latest || latest.status === 'failed' || latest.status === 'cancelled') continue;
      const item = latest.items.find((i) => i.ecuSerial === ecu.serial)!;
      const target = (targets[item.image] ??= new TargetFile(item.length, { ...item.hashes }, {
        ecuIdentifiers: {}, releaseCounter: item.releaseCounter, ...(item.version !== undefined && { version: item.version }),
      }));
      (target.custom!.ecuIdentifiers as Record<string, unknown>)[ecu.serial] = { hardwareId: ecu.hardwareId };
    }
    return targets;
  }

  /** Re-signs the device's targets if what they should list changed; queues a notify. Call inside a commit. */
  async sync(deviceId: string) {
    await this.ctx.store.lockDevice(deviceId);
    const wanted = await this.targetsFor(deviceId);
    const current = await this.ctx.repo.currentTargets(deviceId);
    const asJson = (t: Record<string, TargetFile>) => canonicalString(Object.fromEntries(Object.entries(t).map(([n, f]) => [n, f.toJSON()])));
    if ((await this.ctx.store.getRepoState(deviceId)) && asJson(wanted) === asJson(current.signed.targets)) return undefined;
    const state = await this.ctx.repo.publish(deviceId, wanted);
    this.ctx.metrics.metadataPublished.inc();
    this.ctx.queueNotify(deviceId, state);
    return state;
  }
}
