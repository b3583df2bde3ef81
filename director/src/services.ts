/**
 * The director's services wired together over one store: inventory,
 * assignments, manifests, campaigns, device repositories and authentication.
 * Transport-free: the HTTP API and the MQTT consumer both call into this, and
 * so do the benchmark and the tests.
 */
import type { Logger } from 'pino';
import { Metadata, type Signer } from '@upfleet/core';
import { Assignments } from './assignments.ts';
import { Authenticator } from './auth.ts';
import { Campaigns } from './campaigns.ts';
import { Context, type ImageRepository } from './context.ts';
import { DeviceRepository, type Expiries } from './device-repo.ts';
import { BadRequestError } from './errors.ts';
import { Inventory } from './inventory.ts';
import type { OnlineRole } from './key-store.ts';
import { Manifests } from './manifests.ts';
import { DirectorMetrics } from './metrics.ts';
import type { DeviceView, PublicDevice } from './admin-records.ts';
import type { DeviceRecord, DirectorStore } from './store.ts';

/** The fleet's root versions (shared by every device). */
export class Roots {
  constructor(private readonly versions: Map<number, Uint8Array>) {}
  get latestVersion(): number {
    return Math.max(...this.versions.keys());
  }
  get(version: number): Uint8Array | undefined {
    return this.versions.get(version);
  }
}

export interface ProgressEvent {
  ecuSerial?: string;
  state: 'downloading' | 'installing';
  done?: number;
  total?: number;
}

/** @throws BadRequestError */
export function parseProgress(json: unknown): ProgressEvent {
  const o = json as Record<string, unknown>;
  if (typeof o !== 'object' || o === null) throw new BadRequestError('progress is not an object');
  if (o.state !== 'downloading' && o.state !== 'installing') throw new BadRequestError('state must be downloading or installing', { field: 'state' });
  if (o.ecuSerial !== undefined && typeof o.ecuSerial !== 'string') throw new BadRequestError('ecuSerial is not a string', { field: 'ecuSerial' });
  for (const f of ['done', 'total'] as const) {
    if (o[f] !== undefined && (typeof o[f] !== 'number' || !Number.isSafeInteger(o[f]) || (o[f] as number) < 0)) throw new BadRequestError(`${f} is not a count`, { field: f });
  }
  if (typeof o.done === 'number' && typeof o.total === 'number' && o.done > o.total) throw new BadRequestError('done is more than total', { field: 'done' });
  return o as unknown as ProgressEvent;
}

/** A device record as admins see it (without the nonce memory). */
export function publicDevice({ recentNonces: _n, ...device }: DeviceRecord): PublicDevice {
  return device;
}

export interface ServicesOptions {
  store: DirectorStore;
  signers: Record<OnlineRole, Signer>;
  roots: Map<number, Uint8Array>;
  imageRepo: ImageRepository;
  expiries: Expiries;
  approval: 'auto' | 'manual';
  adminToken: string;
  provisioningToken: string;
  now: () => Date;
  log: Logger;
  /** Devices a campaign launches per transaction (default campaigns.ts LAUNCH_CHUNK). */
  campaignLaunchChunk?: number;
}

export class DirectorServices {
  readonly store: DirectorStore;
  readonly metrics = new DirectorMetrics();
  readonly ctx: Context;
  readonly repo: DeviceRepository;
  readonly roots: Roots;
  readonly inventory: Inventory;
  readonly assignments: Assignments;
  readonly manifests: Manifests;
  readonly campaigns: Campaigns;
  readonly auth: Authenticator;

  constructor(o: ServicesOptions) {
    this.store = o.store;
    this.roots = new Roots(o.roots);
    this.repo = new DeviceRepository(o.store, o.signers, o.expiries, o.now);
    this.ctx = new Context(o.store, this.repo, o.imageRepo, o.now, o.log, this.metrics);
    this.inventory = new Inventory(this.ctx, o.approval);
    this.assignments = new Assignments(this.ctx, this.inventory);
    this.inventory.assignments = this.assignments;
    this.manifests = new Manifests(this.ctx, this.assignments);
    this.campaigns = new Campaigns(this.ctx, this.assignments, o.campaignLaunchChunk);
    this.manifests.onCampaignChange = (ids) => this.campaigns.onAssignmentsChanged(ids);
    // Counted when scraped (one aggregate query), not on every status message.
    this.metrics.countOnline = async () => (await o.store.countDevices()).online;
    this.auth = new Authenticator(o.store, o.adminToken, o.provisioningToken, () => Math.floor(o.now().getTime() / 1000));
  }

  /** The device's timestamp, re-signed first when a role nears expiry (a transaction only then). */
  async metadataTimestamp(deviceId: string): Promise<Uint8Array | undefined> {
    if (await this.repo.needsRefresh(deviceId)) {
      const state = await this.ctx.commit(() => this.repo.refresh(deviceId));
      if (state) this.metrics.metadataPublished.inc();
    }
    return this.store.getMetadataFile(deviceId, 'timestamp.json');
  }

  /**
   * Applies a progress event to the device's open assignments: the status moves
   * forward to the event's phase, and an ECU's counts become its latest progress.
   * @throws BadRequestError, ForbiddenError, NotFoundError
   */
  async progress(deviceId: string, json: unknown): Promise<void> {
    const event = parseProgress(json);
    await this.inventory.requireActive(deviceId);
    const { ecuSerial, state, done, total } = event;
    await this.ctx.commit(async () => {
      await this.store.lockDevice(deviceId);
      for (const a of await this.store.openAssignmentsOf(deviceId)) {
        if (ecuSerial !== undefined && !a.items.some((i) => i.ecuSerial === ecuSerial)) continue;
        await this.assignments.setStatus(a, state);
        if (ecuSerial !== undefined && done !== undefined && total !== undefined) await this.assignments.recordProgress(a, ecuSerial, { phase: state, done, total });
      }
    });
  }

  /** Marks a device online/offline from its MQTT status. */
  async setOnline(deviceId: string, online: boolean): Promise<void> {
    const device = await this.store.getDevice(deviceId);
    if (!device || device.online === online) return;
    await this.ctx.commit(() => this.store.updateDevice(deviceId, { online, lastSeen: this.ctx.nowIso(), updatedAt: this.ctx.nowIso() }));
  }

  /** Everything an admin sees about one device. @throws NotFoundError */
  async deviceView(deviceId: string): Promise<DeviceView> {
    const device = await this.inventory.get(deviceId);
    const state = await this.store.getRepoState(deviceId);
    const targetsBytes = state && (await this.store.getMetadataFile(deviceId, `${state.targetsVersion}.targets.json`));
    return {
      ...publicDevice(device),
      ecus: await this.store.ecusOf(deviceId),
      assignments: await this.store.assignmentsOf(deviceId),
      events: await this.store.eventsOf(deviceId),
      metadata: state ?? null,
      targets: targetsBytes ? Metadata.fromBytes(targetsBytes, 'targets').signed.toJSON().targets : {},
    };
  }
}
