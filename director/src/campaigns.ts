/**
 * Campaigns: images for a group of devices (by tags and hardware IDs) rolled
 * out in waves. Invariants:
 * - `create` checks every image against the image repository (it exists and is
 *   for the hardware ID), so a typo fails at once, not at `start`.
 * - `start` checks every image against the image repository again, fixes the
 *   group and its order (by sha256 of campaign ID and device ID, so waves are a
 *   fair sample), and launches wave 1.
 * - Wave k covers the first ceil(waves[k] * N / 100) devices (cumulative).
 *   The next wave launches only when the current wave's launch is complete, every
 *   launched device is terminal (succeeded, failed or cancelled) and
 *   succeeded / launched >= successThreshold; below the threshold the campaign
 *   halts (`resume` overrides the gate).
 * - A wave launches in chunks of at most `chunk` devices (LAUNCH_CHUNK), each in a
 *   transaction of its own under the campaign's lock, which records the devices
 *   launched so far (`launchedCount`) with their assignments: the campaign's row is
 *   never held for a whole wave, and a device is never assigned twice. The
 *   transaction that opens a wave (start, resume, or the manifest whose settlement
 *   passes the gate) launches the first chunk; the rest runs after its commit, in
 *   the background of that process. A launch cut short (a process killed mid-wave)
 *   is resumed by any director process: at start-up and every LAUNCH_SWEEP_MS, and
 *   by the next manifest that settles an assignment of the campaign.
 * - pause stops launching waves and chunks (open assignments go on); abort cancels
 *   the assignments still pending (in-flight installs finish) and launches nothing more.
 * - A device that cannot take the image (release counter, hardware) gets a failed
 *   assignment with the refusal code; one that already runs it, a succeeded one.
 * - The gate, run for every manifest that settles one of the campaign's assignments,
 *   reads the campaign without its group and the store's counters of its assignments
 *   by status: its cost does not grow with the group (one assignment per device and
 *   campaign, so the counts are the devices' statuses).
 */
import { createHash, randomUUID } from 'node:crypto';
import { TargetFile } from '@upfleet/core';
import { AssignmentRefusedError, BadRequestError, ConflictError, NotFoundError } from './errors.ts';
import type { Context } from './context.ts';
import { runsImage, type Assignments } from './assignments.ts';
import { parseTags } from './inventory.ts';
import { ACTIVE_STATUSES, type AssignmentItem, type AssignmentRecord, type AssignmentStatus, type CampaignRecord, type CampaignSpec, type CampaignState } from './store.ts';
import type { CampaignDeviceView, CampaignStatusView } from './admin-records.ts';

export const DEFAULT_WAVES = [1, 10, 50, 100];
export const DEFAULT_SUCCESS_THRESHOLD = 0.9;
/**
 * Devices launched per transaction. Each costs its lock, its reads and a targets signature
 * (a few ms): 100 keep a transaction, and the campaign's lock it holds, well under a second.
 * A 5,000-device wave in one transaction held the lock for tens of seconds, while every
 * manifest settling an assignment of the campaign waited for it and the PostgreSQL pools
 * filled with waiters (STORE_UNAVAILABLE).
 */
export const LAUNCH_CHUNK = 100;
/** How often each director process looks for launches cut short (a process killed mid-wave). */
export const LAUNCH_SWEEP_MS = 3000;

type ResolvedImage = NonNullable<CampaignSpec['resolved']>[number];

/** @throws BadRequestError */
export function parseCampaignSpec(json: unknown): CampaignSpec {
  if (typeof json !== 'object' || json === null) throw new BadRequestError('campaign is not an object');
  const o = json as Record<string, unknown>;
  if (typeof o.name !== 'string' || o.name.length === 0) throw new BadRequestError('name is required', { field: 'name' });
  if (!Array.isArray(o.images) || o.images.length === 0) throw new BadRequestError('images must be a non-empty array', { field: 'images' });
  const images = o.images.map((x, i) => {
    const e = x as Record<string, unknown>;
    if (typeof e?.hardwareId !== 'string' || typeof e.image !== 'string') {
      throw new BadRequestError(`images[${i}] needs hardwareId and image`, { field: `images[${i}]` });
    }
    return { hardwareId: e.hardwareId, image: e.image };
  });
  if (new Set(images.map((i) => i.hardwareId)).size !== images.length) throw new BadRequestError('one image per hardware ID', { field: 'images' });
  const waves = o.waves ?? DEFAULT_WAVES;
  if (!Array.isArray(waves) || waves.length === 0 || waves.some((w, i) => typeof w !== 'number' || w <= 0 || w > 100 || (i > 0 && w <= (waves[i - 1] as number))) || waves.at(-1) !== 100) {
    throw new BadRequestError('waves must be ascending percentages ending at 100', { field: 'waves' });
  }
  const threshold = o.successThreshold ?? DEFAULT_SUCCESS_THRESHOLD;
  if (typeof threshold !== 'number' || threshold < 0 || threshold > 1) throw new BadRequestError('successThreshold must be within [0, 1]', { field: 'successThreshold' });
  return { name: o.name, images, tags: parseTags(o.tags), waves: waves as number[], successThreshold: threshold };
}

export class Campaigns {
  /** Images resolved at start, by campaign; rebuilt from the store after a restart. */
  #resolved = new Map<string, ResolvedImage[]>();
  /** Launches running in this process, by campaign; `again`: asked for once more meanwhile. */
  readonly #launches = new Map<string, { again: boolean; done: Promise<void> }>();
  #sweep: NodeJS.Timeout | undefined;
  /** The sweep's read in progress. */
  #sweeping: Promise<void> | undefined;
  #closed = false;

  constructor(
    private readonly ctx: Context,
    private readonly assignments: Assignments,
    /** Devices launched per transaction (LAUNCH_CHUNK). */
    private readonly chunk = LAUNCH_CHUNK,
  ) {
    if (!Number.isSafeInteger(chunk) || chunk < 1) throw new RangeError(`the campaign launch chunk must be a positive integer, not ${chunk}`);
  }

  /** @throws AssignmentRefusedError when the image repository lacks an image or lists it for other hardware */
  async create(spec: CampaignSpec): Promise<CampaignRecord> {
    await this.#resolve(spec);
    const now = this.ctx.nowIso();
    const c: CampaignRecord = { id: randomUUID(), status: 'draft', spec, devices: [], wavesLaunched: 0, launchedCount: 0, reason: null, createdAt: now, updatedAt: now };
    await this.ctx.commit(() => this.ctx.store.insertCampaign(c));
    return c;
  }

  /** @throws NotFoundError */
  async get(id: string): Promise<CampaignRecord> {
    const c = await this.ctx.store.getCampaign(id);
    if (!c) throw new NotFoundError('campaign', id);
    return c;
  }

  async list(): Promise<CampaignStatusView[]> {
    const views: CampaignStatusView[] = [];
    for (const c of await this.ctx.store.listCampaigns()) views.push(await this.status(c.id));
    return views;
  }

  /**
   * Resolves images, fixes the group, launches wave 1 (its first chunk; the rest after the commit).
   * @throws ConflictError unless draft, AssignmentRefusedError when the image repository lacks an image
   */
  async start(id: string): Promise<CampaignStatusView> {
    const c = await this.get(id);
    if (c.status !== 'draft') throw new ConflictError('BAD_STATE', `campaign ${id} is ${c.status}`, { status: c.status });
    // Again: the image repository may have changed since create.
    const resolved = await this.#resolve(c.spec);
    await this.ctx.commit(async () => {
      await this.ctx.store.lockCampaign(id);
      const fresh = await this.get(id);
      if (fresh.status !== 'draft') throw new ConflictError('BAD_STATE', `campaign ${id} is ${fresh.status}`, { status: fresh.status });
      const hw = new Set(resolved.map((r) => r.hardwareId));
      const group: string[] = [];
      for (const d of await this.ctx.store.devicesWithHardware('active', [...hw])) {
        if (c.spec.tags.every((t) => d.tags.includes(t))) group.push(d.id);
      }
      group.sort((a, b) => this.#rank(id, a).localeCompare(this.#rank(id, b)));
      this.#resolved.set(id, resolved);
      await this.ctx.store.updateCampaign(id, { status: 'running', devices: group, spec: { ...fresh.spec, resolved }, updatedAt: this.ctx.nowIso() });
      await this.#advance(id);
    });
    return this.status(id);
  }

  /** Each image of `spec` as the image repository lists it. @throws AssignmentRefusedError */
  async #resolve(spec: CampaignSpec): Promise<ResolvedImage[]> {
    const resolved: ResolvedImage[] = [];
    for (const { hardwareId, image } of spec.images) {
      const t = await this.ctx.imageRepo.findTarget(image);
      const hardwareIds = Array.isArray(t?.custom?.hardwareIds) ? (t.custom.hardwareIds as unknown[]) : [];
      if (!t) throw new AssignmentRefusedError('*', '*', image, 'missing', 'the image repository does not list it');
      if (!hardwareIds.includes(hardwareId)) throw new AssignmentRefusedError('*', '*', image, 'hardwareId', `not for hardware ${hardwareId}`);
      resolved.push({ hardwareId, image, length: t.length, hashes: { ...t.hashes }, custom: { ...t.custom } });
    }
    return resolved;
  }

  /** @throws ConflictError unless running */
  pause(id: string): Promise<CampaignStatusView> {
    return this.#transition(id, ['running'], 'paused');
  }

  /** Resumes a paused campaign (and a launch it cut short), or overrides the gate of a halted one (launches the next wave). */
  async resume(id: string): Promise<CampaignStatusView> {
    await this.ctx.commit(async () => {
      await this.ctx.store.lockCampaign(id);
      const c = await this.ctx.store.getCampaignState(id);
      if (!c) throw new NotFoundError('campaign', id);
      if (c.status !== 'paused' && c.status !== 'halted') throw new ConflictError('BAD_STATE', `campaign ${id} is ${c.status}`, { status: c.status });
      await this.ctx.store.updateCampaign(id, { status: 'running', reason: null, updatedAt: this.ctx.nowIso() });
      const opens = c.status === 'halted' && (await this.#openWave(c));
      await this.#advance(id, opens);
    });
    return this.status(id);
  }

  /** Aborts: no more waves, pending assignments cancelled. */
  async abort(id: string): Promise<CampaignStatusView> {
    await this.ctx.commit(async () => {
      await this.ctx.store.lockCampaign(id);
      const c = await this.get(id);
      if (c.status === 'completed' || c.status === 'aborted') throw new ConflictError('BAD_STATE', `campaign ${id} is ${c.status}`, { status: c.status });
      await this.ctx.store.updateCampaign(id, { status: 'aborted', reason: 'aborted by an admin', updatedAt: this.ctx.nowIso() });
      const devices = new Set<string>();
      for (const a of await this.ctx.store.assignmentsOfCampaign(id)) {
        if (a.status !== 'pending') continue;
        // Under the device's lock, and read again: a manifest of the device may have moved it on meanwhile.
        await this.ctx.store.lockDevice(a.deviceId);
        const fresh = await this.ctx.store.getAssignment(a.id);
        if (fresh && (await this.assignments.setStatus(fresh, 'cancelled', { code: 'CAMPAIGN_ABORTED', message: 'campaign aborted' }))) devices.add(a.deviceId);
      }
      for (const d of devices) await this.assignments.sync(d);
    });
    return this.status(id);
  }

  async status(id: string): Promise<CampaignStatusView> {
    const c = await this.get(id);
    const counts: CampaignStatusView['counts'] = { waiting: 0, pending: 0, downloading: 0, installing: 0, succeeded: 0, failed: 0, cancelled: 0 };
    Object.assign(counts, await this.ctx.store.campaignCounts(id));
    const assigned = Object.values(counts).reduce((n, k) => n + k, 0);
    counts.waiting = Math.max(0, c.devices.length - assigned);
    return { ...c, counts, currentWave: c.wavesLaunched, totalWaves: c.spec.waves.length };
  }

  /** Per device of the group, in rollout order: its wave and its latest assignment of this campaign. @throws NotFoundError */
  async devices(id: string): Promise<CampaignDeviceView[]> {
    const c = await this.get(id);
    const latest = new Map<string, AssignmentRecord>();
    for (const a of await this.ctx.store.assignmentsOfCampaign(id)) latest.set(a.deviceId, a);
    let wave = 0;
    return c.devices.map((deviceId, i) => {
      while (wave < c.spec.waves.length - 1 && i >= this.#waveEnd(c, wave)) wave++;
      const a = latest.get(deviceId);
      return { deviceId, wave: wave + 1, status: a ? a.status : 'waiting', assignmentId: a?.id ?? null, errorCode: a?.errorCode ?? null, updatedAt: a?.updatedAt ?? null, progress: a?.progress ?? {} };
    });
  }

  /** Re-evaluates gates after assignment changes (called inside the manifest commit). */
  async onAssignmentsChanged(ids: Set<string>): Promise<void> {
    for (const id of ids) {
      // Read without the campaign's lock: while a wave's launch is incomplete the gate cannot
      // pass, so the manifest need not wait for the chunk holding the lock. The launch is
      // asked for after this commit; it runs the gate under the lock when complete.
      const c = await this.ctx.store.getCampaignState(id);
      if (c?.status === 'running' && this.#launchIncomplete(c)) this.#launchAfterCommit(id);
      else await this.#advance(id);
    }
  }

  /**
   * Resumes the launches cut short (a director process killed mid-wave) now, then every
   * `intervalMs`: one indexed read of the running campaigns each time.
   */
  startLaunchSweep(intervalMs = LAUNCH_SWEEP_MS): void {
    const sweep = async () => {
      try {
        for (const c of await this.ctx.store.runningCampaigns()) if (this.#launchIncomplete(c)) this.#launch(c.id);
      } catch (err) {
        this.ctx.log.warn({ err }, 'campaign launch sweep failed; trying again later');
      }
    };
    const tick = () => {
      if (this.#sweeping || this.#closed) return;
      this.#sweeping = sweep().finally(() => (this.#sweeping = undefined));
    };
    tick();
    this.#sweep = setInterval(tick, intervalMs);
    this.#sweep.unref();
  }

  /** Waits until no launch runs in this process. */
  async launchesIdle(): Promise<void> {
    while (this.#launches.size > 0) await Promise.all([...this.#launches.values()].map((l) => l.done));
  }

  /** Stops the sweep and starts no more chunks; waits for the chunk running now. */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#sweep);
    await this.#sweeping;
    await this.launchesIdle();
  }

  async #transition(id: string, from: CampaignRecord['status'][], to: CampaignRecord['status']): Promise<CampaignStatusView> {
    await this.ctx.commit(async () => {
      await this.ctx.store.lockCampaign(id);
      const c = await this.get(id);
      if (!from.includes(c.status)) throw new ConflictError('BAD_STATE', `campaign ${id} is ${c.status}`, { status: c.status });
      await this.ctx.store.updateCampaign(id, { status: to, updatedAt: this.ctx.nowIso() });
    });
    return this.status(id);
  }

  #rank(campaignId: string, deviceId: string): string {
    return createHash('sha256').update(`${campaignId}/${deviceId}`).digest('hex');
  }

  async #latestByDevice(id: string) {
    const latest = new Map<string, { status: AssignmentStatus }>();
    for (const a of await this.ctx.store.assignmentsOfCampaign(id)) latest.set(a.deviceId, a);
    return latest;
  }

  /**
   * Launches waves while the gate allows; completes or halts. Inside a commit, under the
   * campaign's lock: of two processes settling the last devices of a wave at once, the
   * second waits for the first, then sees both settled and launches the next wave.
   * Launches at most `chunk` devices in this transaction: of a launch already begun only
   * when `launching` (the launcher's own transactions); of a wave it opens, its first chunk.
   * The rest of the launch is asked for after the commit.
   */
  async #advance(id: string, launching = false): Promise<void> {
    await this.ctx.store.lockCampaign(id);
    let allowed = launching ? this.chunk : 0;
    let launched = 0;
    for (;;) {
      const c = await this.ctx.store.getCampaignState(id);
      if (c?.status !== 'running') return;
      if (this.#launchIncomplete(c)) {
        if (launched >= allowed) return this.#launchAfterCommit(id);
        launched += await this.#launchChunk(id, allowed - launched);
        continue;
      }
      if (c.wavesLaunched > 0 && !(await this.#passesGate(c))) return;
      if (!(await this.#openWave(c))) return;
      allowed = this.chunk;
    }
  }

  /**
   * The gate of a wave whose launch is complete: false while an assignment is open or a
   * launched device awaits one; otherwise completes the campaign after its last wave, halts
   * it below the threshold, or answers true (open the next wave).
   */
  async #passesGate(c: CampaignState): Promise<boolean> {
    const launched = this.#waveEnd(c, c.wavesLaunched - 1);
    const counts = await this.ctx.store.campaignCounts(c.id);
    if (ACTIVE_STATUSES.some((s) => (counts[s] ?? 0) > 0)) return false;
    const assigned = Object.values(counts).reduce((n, k) => n + k, 0);
    // A launched device with no assignment left the fleet before its wave: it counts as not succeeded.
    // Looked for only once the wave is settled, and only when some launched device has none.
    if (assigned < launched && (await this.#unassignedActive(c.id, launched))) return false;
    const succeeded = counts.succeeded ?? 0;
    const ratio = launched === 0 ? 1 : succeeded / launched;
    const now = this.ctx.nowIso();
    if (c.wavesLaunched >= c.spec.waves.length) {
      await this.ctx.store.updateCampaign(c.id, { status: 'completed', reason: `success ratio ${ratio.toFixed(3)}`, updatedAt: now });
      return false;
    }
    if (ratio < c.spec.successThreshold) {
      await this.ctx.store.updateCampaign(c.id, { status: 'halted', reason: `wave ${c.wavesLaunched} success ratio ${ratio.toFixed(3)} below ${c.spec.successThreshold}`, updatedAt: now });
      this.ctx.log.warn({ campaign: c.id, ratio }, 'campaign halted by its gate');
      return false;
    }
    return true;
  }

  /** Whether a launched device of the campaign has no assignment of it and is active. */
  async #unassignedActive(id: string, launched: number): Promise<boolean> {
    const c = await this.get(id);
    const latest = await this.#latestByDevice(id);
    for (const d of c.devices.slice(0, launched)) {
      if (!latest.get(d) && (await this.ctx.store.getDevice(d))?.status === 'active') return true;
    }
    return false;
  }

  #waveEnd(c: Pick<CampaignRecord, 'spec'> & ({ devices: string[] } | { groupSize: number }), wave: number): number {
    const size = 'devices' in c ? c.devices.length : c.groupSize;
    return Math.min(size, Math.ceil((c.spec.waves[wave]! * size) / 100));
  }

  /** Whether the current wave's launch has begun and not reached the wave's end. */
  #launchIncomplete(c: CampaignState): boolean {
    return c.wavesLaunched > 0 && c.launchedCount < this.#waveEnd(c, c.wavesLaunched - 1);
  }

  /** Opens the next wave (its devices are launched by #advance); false after the last. */
  async #openWave(c: CampaignState): Promise<boolean> {
    if (c.wavesLaunched >= c.spec.waves.length) return false;
    const from = c.wavesLaunched === 0 ? 0 : this.#waveEnd(c, c.wavesLaunched - 1);
    const to = this.#waveEnd(c, c.wavesLaunched);
    await this.ctx.store.updateCampaign(c.id, { wavesLaunched: c.wavesLaunched + 1, updatedAt: this.ctx.nowIso() });
    this.ctx.log.info({ campaign: c.id, wave: c.wavesLaunched + 1, devices: to - from }, 'campaign wave launched');
    return true;
  }

  /**
   * Launches up to `max` more devices of the current wave, recording the count with their
   * assignments (under the campaign's lock, in the caller's transaction); returns how many.
   */
  async #launchChunk(id: string, max: number): Promise<number> {
    const c = await this.get(id);
    const from = c.launchedCount;
    const to = Math.min(this.#waveEnd(c, c.wavesLaunched - 1), from + max);
    for (const deviceId of c.devices.slice(from, to)) {
      // The count commits with the assignments, so a device below it is never launched again;
      // one that has an assignment of the campaign all the same is not assigned twice.
      if (await this.ctx.store.hasCampaignAssignment(id, deviceId)) continue;
      await this.#assignDevice(id, deviceId);
    }
    await this.ctx.store.updateCampaign(id, { launchedCount: to, updatedAt: this.ctx.nowIso() });
    this.ctx.log.info({ campaign: id, wave: c.wavesLaunched, launched: to, waveEnd: this.#waveEnd(c, c.wavesLaunched - 1) }, 'campaign launch chunk');
    return to - from;
  }

  /** Asks for the rest of the campaign's launch once the surrounding commit succeeds. */
  #launchAfterCommit(id: string): void {
    this.ctx.afterCommit(`campaign-launch:${id}`, () => this.#launch(id));
  }

  /**
   * Runs the rest of the campaign's launch in this process, one chunk per transaction
   * (each sends its notifications on commit), unless it runs here already.
   */
  #launch(id: string): void {
    const running = this.#launches.get(id);
    if (running) {
      running.again = true;
      return;
    }
    if (this.#closed) return;
    const l = { again: true, done: Promise.resolve() };
    this.#launches.set(id, l);
    l.done = (async () => {
      try {
        // A chunk that leaves the launch incomplete asks again (#advance), so this runs until it is
        // complete, the campaign stops running, or another process finishes it.
        while (l.again && !this.#closed) {
          l.again = false;
          await this.ctx.commit(() => this.#advance(id, true));
        }
      } catch (err) {
        this.ctx.log.warn({ campaign: id, err }, 'campaign launch interrupted; the next sweep resumes it');
      } finally {
        this.#launches.delete(id);
      }
    })();
  }

  async #assignDevice(campaignId: string, deviceId: string): Promise<void> {
    const resolved = await this.#resolvedImages(campaignId);
    await this.ctx.store.lockDevice(deviceId);
    const device = await this.ctx.store.getDevice(deviceId);
    const ecus = await this.ctx.store.ecusOf(deviceId);
    const items: AssignmentItem[] = [];
    try {
      if (device?.status !== 'active') return;
      for (const ecu of ecus) {
        const r = resolved.find((x) => x.hardwareId === ecu.hardwareId);
        if (!r) continue;
        const imageTarget = new TargetFile(r.length, r.hashes, r.custom);
        items.push(this.assignments.checkItem(deviceId, ecu, { ecuSerial: ecu.serial, image: r.image }, imageTarget));
      }
    } catch (error) {
      if (!(error instanceof AssignmentRefusedError)) throw error;
      await this.assignments.insertInCommit(deviceId, items, campaignId, 'failed', { code: `ASSIGNMENT_REFUSED:${error.field}`, message: error.message });
      return;
    }
    const done = items.every((i) => runsImage(ecus.find((e) => e.serial === i.ecuSerial)!.installed, i));
    await this.assignments.insertInCommit(deviceId, items, campaignId, done ? 'succeeded' : 'pending');
  }

  async #resolvedImages(id: string): Promise<ResolvedImage[]> {
    let r = this.#resolved.get(id);
    if (!r) {
      r = (await this.get(id)).spec.resolved ?? [];
      this.#resolved.set(id, r);
    }
    return r;
  }
}
