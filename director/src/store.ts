/**
 * The director's persistence interface and its records. Services call only
 * this interface; `SqlStore` (sql-store.ts) implements it over SQLite
 * (sqlite-store.ts, the embedded default) and PostgreSQL (pg-store.ts).
 * Invariants:
 * - Every method is asynchronous. Every multi-step change runs inside
 *   `transaction(fn)`: fn is async and its store calls join the transaction
 *   (the stores follow the async context, so callers pass no handle); a crash
 *   or a throw leaves either all of a change or none of it.
 * - A transaction inside a transaction is a savepoint of the outer one; callers
 *   run nested transactions one at a time.
 * - Several processes may share one database. A change that reads and then
 *   writes a device's rows first takes `lockDevice` (a campaign's: `lockCampaign`),
 *   so two processes never both build on the same version. A transaction that
 *   loses a race with another (a serialization failure or a deadlock)
 *   is run again from the start: fn may run more than once, and must keep its
 *   effects outside the store for after the commit.
 */
import type { ReportMemory } from './report-memory.ts';
import type {
  AssignmentRecord, AssignmentStatus, CampaignRecord, DeviceCounts, DeviceStatus, EcuRecord, EcuVersionCount, EventRecord, ManifestRecord, PublicDevice, RepoState,
} from './admin-records.ts';

/** The records the admin API sends (admin-records.ts), most of them the store's own. */
export type * from './admin-records.ts';

/** A device as manifest checks see it (manifest-checks.ts). */
export interface IngestionView {
  device: Pick<DeviceRecord, 'id' | 'status' | 'manifestCounter'> | undefined;
  ecus: EcuRecord[];
}

export interface DeviceRecord extends PublicDevice {
  /**
   * ECU serial -> the nonces (with report times) accepted from it within the report
   * window (report-memory.ts), one row write per manifest. Rows written before
   * reports were timed hold a plain list of nonces; readMemory accepts both.
   */
  recentNonces: Record<string, ReportMemory>;
}

export const ACTIVE_STATUSES: readonly AssignmentStatus[] = ['pending', 'downloading', 'installing'];

/** The security event log keeps this many events per device, the newest. */
export const EVENTS_PER_DEVICE = 1000;

/** A campaign without its group's list (which grows with the fleet): what the wave gate reads. */
export interface CampaignState extends Omit<CampaignRecord, 'devices'> {
  /** Number of devices in the group (`devices.length`). */
  groupSize: number;
}

/**
 * The records written since a cursor, by ID. `cursor` is opaque: pass it to the next call.
 * A record may be named again by the next call although unchanged (PostgreSQL reads
 * from the oldest transaction still running); `stamps` tell such repeats apart.
 */
export interface ChangeBatch {
  cursor: string;
  changes: Array<{ kind: 'devices' | 'assignments' | 'campaigns'; id: string; stamp: string }>;
}

export interface DirectorStore {
  /** Runs fn atomically (see the module comment). @throws StoreUnavailableError when the database cannot be reached or stays busy */
  transaction<T>(fn: () => Promise<T>): Promise<T>;
  close(): Promise<void>;
  /**
   * Inside a transaction: holds the device (its row, and its ID even before the row exists)
   * until the end, so concurrent changes to the device, its registration included, wait.
   */
  lockDevice(id: string): Promise<void>;
  /** Inside a transaction: holds the campaign's row until the end. */
  lockCampaign(id: string): Promise<void>;

  getDevice(id: string): Promise<DeviceRecord | undefined>;
  listDevices(filter?: { status?: DeviceStatus }): Promise<DeviceRecord[]>;
  /** Devices with `status` and at least one ECU of one of `hardwareIds`, by ID. */
  devicesWithHardware(status: DeviceStatus, hardwareIds: string[]): Promise<DeviceRecord[]>;
  /** One aggregate query (an index scan, no device rows sent). */
  countDevices(): Promise<DeviceCounts>;
  /** By hardware ID, then most ECUs first. */
  ecuVersions(): Promise<EcuVersionCount[]>;
  insertDevice(device: DeviceRecord): Promise<void>;
  updateDevice(id: string, fields: Partial<Omit<DeviceRecord, 'id' | 'createdAt'>>): Promise<void>;

  /**
   * What manifest checks read, in one query: the device's status and counter (undefined when
   * unknown) and its ECUs with their keys, the primary first.
   */
  ingestionView(deviceId: string): Promise<IngestionView>;

  getEcu(serial: string): Promise<EcuRecord | undefined>;
  ecusOf(deviceId: string): Promise<EcuRecord[]>;
  /** The device's primary ECU's public key as stored (JSON text), undefined without one: device-token checks compare it per request. */
  primaryKeyJson(deviceId: string): Promise<string | undefined>;
  insertEcu(ecu: EcuRecord): Promise<void>;
  updateEcu(serial: string, fields: Partial<Omit<EcuRecord, 'serial' | 'deviceId'>>): Promise<void>;
  deleteEcu(serial: string): Promise<void>;

  insertAssignment(a: AssignmentRecord): Promise<void>;
  updateAssignment(id: string, fields: Partial<Pick<AssignmentRecord, 'status' | 'errorCode' | 'errorMessage' | 'updatedAt' | 'targetsVersion' | 'progress'>>): Promise<void>;
  getAssignment(id: string): Promise<AssignmentRecord | undefined>;
  assignmentsOf(deviceId: string): Promise<AssignmentRecord[]>;
  assignmentsOfCampaign(campaignId: string): Promise<AssignmentRecord[]>;
  /**
   * The campaign's assignments by status, from counters the store keeps in the same
   * transaction as every assignment write (statuses with none are absent).
   */
  campaignCounts(campaignId: string): Promise<Partial<Record<AssignmentStatus, number>>>;
  /** Whether the device has an assignment of the campaign (by the device's index). */
  hasCampaignAssignment(campaignId: string, deviceId: string): Promise<boolean>;
  /** Failed assignments of devices not decommissioned, newest first. */
  recentFailures(limit: number): Promise<AssignmentRecord[]>;
  /** The device's pending, downloading and installing assignments, oldest first. */
  openAssignmentsOf(deviceId: string): Promise<AssignmentRecord[]>;

  /** Appends a security event, then drops the device's oldest beyond EVENTS_PER_DEVICE. */
  insertEvent(e: Omit<EventRecord, 'id'>): Promise<void>;
  /** The device's security events, oldest first (at most EVENTS_PER_DEVICE). */
  eventsOf(deviceId: string): Promise<EventRecord[]>;
  /** Security events of devices not decommissioned, newest first. */
  recentEvents(limit: number): Promise<EventRecord[]>;
  insertManifest(m: Omit<ManifestRecord, 'id'>): Promise<void>;
  manifestsOf(deviceId: string, limit: number): Promise<ManifestRecord[]>;

  getRepoState(deviceId: string): Promise<RepoState | undefined>;
  putRepoState(state: RepoState): Promise<void>;
  /** name: `N.targets.json`, `N.snapshot.json`, `timestamp.json`. */
  putMetadataFile(deviceId: string, name: string, bytes: Uint8Array): Promise<void>;
  getMetadataFile(deviceId: string, name: string): Promise<Uint8Array | undefined>;
  deleteMetadataFile(deviceId: string, name: string): Promise<void>;

  insertCampaign(c: CampaignRecord): Promise<void>;
  updateCampaign(id: string, fields: Partial<Pick<CampaignRecord, 'status' | 'spec' | 'devices' | 'wavesLaunched' | 'launchedCount' | 'reason' | 'updatedAt'>>): Promise<void>;
  getCampaign(id: string): Promise<CampaignRecord | undefined>;
  getCampaignState(id: string): Promise<CampaignState | undefined>;
  /** The running campaigns without their groups' lists (by the status index). */
  runningCampaigns(): Promise<CampaignState[]>;
  listCampaigns(): Promise<CampaignRecord[]>;

  /**
   * Devices, assignments and campaigns written since `cursor` (committed ones only);
   * without a cursor, none: only the cursor of now.
   */
  changesSince(cursor: string | undefined): Promise<ChangeBatch>;
}
