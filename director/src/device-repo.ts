/**
 * Per-device director repositories. Every device shares the fleet root and has
 * its own targets, snapshot and timestamp, signed with the online keys:
 * - targets lists one entry per assigned image with custom.ecuIdentifiers;
 * - targets, snapshot and timestamp each carry `signed.deviceId`: the online keys
 *   are shared across the fleet, so without it device A's timestamp and snapshot
 *   (higher versions) would verify on device B, which would store them and then
 *   be unable to accept its own lower versions (rollback check, TUF 5.4.3/5.5.3);
 * - each publish bumps targets, snapshot and timestamp versions together, and
 *   `refresh` re-signs whichever roles have less than half their lifetime left,
 *   and (once per device and process) a snapshot signed before it named the
 *   device, with its timestamp, so a device never waits for expiry to be bound;
 * - old targets/snapshot versions are pruned past KEEP_VERSIONS (a client only
 *   ever needs the versions the newest timestamp/snapshot name).
 * Callers run `publish`/`refresh` inside a store transaction; both lock the
 * device's row first, so the versions of one device stay strictly increasing
 * when several director processes sign for it at once.
 */
import { digestHex, expiresIn, Metadata, MetaFile, Snapshot, Targets, Timestamp, type Signer, type TargetFile } from '@upfleet/core';
import type { OnlineRole } from './key-store.ts';
import type { DirectorStore, RepoState } from './store.ts';

export interface Expiries {
  targets: number;
  snapshot: number;
  timestamp: number;
}

export const DEFAULT_EXPIRIES: Expiries = { targets: 7 * 86400, snapshot: 7 * 86400, timestamp: 86400 };
const KEEP_VERSIONS = 3;

export class DeviceRepository {
  constructor(
    private readonly store: DirectorStore,
    private readonly signers: Record<OnlineRole, Signer>,
    private readonly expiries: Expiries,
    private readonly now: () => Date,
  ) {}

  /** Signs and stores a new targets (with `targets`), snapshot and timestamp for the device. */
  async publish(deviceId: string, targets: Record<string, TargetFile>): Promise<RepoState> {
    await this.store.lockDevice(deviceId);
    const prev = await this.store.getRepoState(deviceId);
    const now = this.now();
    const targetsMd = new Metadata(
      new Targets((prev?.targetsVersion ?? 0) + 1, expiresIn(now, this.expiries.targets), targets, undefined, undefined, { deviceId }),
    );
    targetsMd.sign(this.signers.targets);
    const targetsBytes = targetsMd.toBytes();
    await this.store.putMetadataFile(deviceId, `${targetsMd.signed.version}.targets.json`, targetsBytes);
    if (prev) await this.#prune(deviceId, 'targets', targetsMd.signed.version);
    const state = await this.#signSnapshotAndTimestamp(deviceId, prev, targetsMd.signed.version, targetsMd.signed.expires, targetsBytes, now);
    return state;
  }

  /** Devices whose current snapshot is known to name them (checked once per process). */
  #named = new Set<string>();

  /** Whether `refresh` would re-sign anything now (reads only: the hot path of every timestamp request). */
  async needsRefresh(deviceId: string): Promise<boolean> {
    const state = await this.store.getRepoState(deviceId);
    if (!state) return false;
    if (!this.#named.has(deviceId)) return true;
    const now = this.now().getTime();
    const stale = (expires: string, lifetime: number) => Date.parse(expires) - now < (lifetime * 1000) / 2;
    return stale(state.targetsExpires, this.expiries.targets) || stale(state.snapshotExpires, this.expiries.snapshot)
      || stale(state.timestampExpires, this.expiries.timestamp);
  }

  /** Re-signs the roles close to expiry; returns the new state, or undefined when nothing changed. */
  async refresh(deviceId: string): Promise<RepoState | undefined> {
    await this.store.lockDevice(deviceId);
    const state = await this.store.getRepoState(deviceId);
    if (!state) return undefined;
    const now = this.now();
    if (!this.#named.has(deviceId)) {
      const snapshotBytes = await this.store.getMetadataFile(deviceId, `${state.snapshotVersion}.snapshot.json`);
      const named = snapshotBytes !== undefined && Metadata.fromBytes(snapshotBytes, 'snapshot').signed.unrecognizedFields.deviceId === deviceId;
      if (!named) {
        // Written before snapshot and timestamp named the device: the targets already did.
        const targetsBytes = (await this.store.getMetadataFile(deviceId, `${state.targetsVersion}.targets.json`))!;
        const next = await this.#signSnapshotAndTimestamp(deviceId, state, state.targetsVersion, state.targetsExpires, targetsBytes, now);
        this.#named.add(deviceId);
        return next;
      }
      this.#named.add(deviceId);
    }
    const stale = (expires: string, lifetime: number) => Date.parse(expires) - now.getTime() < (lifetime * 1000) / 2;
    if (stale(state.targetsExpires, this.expiries.targets)) {
      const current = await this.currentTargets(deviceId, state);
      return this.publish(deviceId, current.signed.targets);
    }
    if (stale(state.snapshotExpires, this.expiries.snapshot)) {
      const targetsBytes = (await this.store.getMetadataFile(deviceId, `${state.targetsVersion}.targets.json`))!;
      return this.#signSnapshotAndTimestamp(deviceId, state, state.targetsVersion, state.targetsExpires, targetsBytes, now);
    }
    if (stale(state.timestampExpires, this.expiries.timestamp)) {
      const snapshotBytes = (await this.store.getMetadataFile(deviceId, `${state.snapshotVersion}.snapshot.json`))!;
      const next = { ...state, ...(await this.#signTimestamp(deviceId, state.timestampVersion + 1, state.snapshotVersion, snapshotBytes, now)) };
      await this.store.putRepoState(next);
      return next;
    }
    return undefined;
  }

  async currentTargets(deviceId: string, known?: RepoState): Promise<Metadata<Targets>> {
    const state = known ?? (await this.store.getRepoState(deviceId));
    const bytes = state && (await this.store.getMetadataFile(deviceId, `${state.targetsVersion}.targets.json`));
    if (!bytes) return new Metadata(new Targets(1, expiresIn(this.now(), this.expiries.targets)));
    return Metadata.fromBytes(bytes, 'targets');
  }

  async #signSnapshotAndTimestamp(
    deviceId: string, prev: RepoState | undefined, targetsVersion: number, targetsExpires: string, targetsBytes: Uint8Array, now: Date,
  ): Promise<RepoState> {
    const snapshotMd = new Metadata(
      new Snapshot((prev?.snapshotVersion ?? 0) + 1, expiresIn(now, this.expiries.snapshot), {
        'targets.json': new MetaFile(targetsVersion, targetsBytes.byteLength, { sha256: digestHex('sha256', targetsBytes) }),
      }, undefined, { deviceId }),
    );
    snapshotMd.sign(this.signers.snapshot);
    const snapshotBytes = snapshotMd.toBytes();
    await this.store.putMetadataFile(deviceId, `${snapshotMd.signed.version}.snapshot.json`, snapshotBytes);
    if (prev) await this.#prune(deviceId, 'snapshot', snapshotMd.signed.version);
    const ts = await this.#signTimestamp(deviceId, (prev?.timestampVersion ?? 0) + 1, snapshotMd.signed.version, snapshotBytes, now);
    const state: RepoState = {
      deviceId, targetsVersion, targetsExpires,
      snapshotVersion: snapshotMd.signed.version, snapshotExpires: snapshotMd.signed.expires, ...ts,
    };
    await this.store.putRepoState(state);
    return state;
  }

  async #signTimestamp(deviceId: string, version: number, snapshotVersion: number, snapshotBytes: Uint8Array, now: Date) {
    const md = new Metadata(
      new Timestamp(version, expiresIn(now, this.expiries.timestamp),
        new MetaFile(snapshotVersion, snapshotBytes.byteLength, { sha256: digestHex('sha256', snapshotBytes) }), undefined, { deviceId }),
    );
    md.sign(this.signers.timestamp);
    await this.store.putMetadataFile(deviceId, 'timestamp.json', md.toBytes());
    return { timestampVersion: version, timestampExpires: md.signed.expires };
  }

  async #prune(deviceId: string, role: 'targets' | 'snapshot', newest: number): Promise<void> {
    const old = newest - KEEP_VERSIONS;
    if (old >= 1) await this.store.deleteMetadataFile(deviceId, `${old}.${role}.json`);
  }
}
