/**
 * The director's persistence interface and its records. Services call only
 * this interface; `SqliteStore` implements it on better-sqlite3. The interface
 * is synchronous (better-sqlite3 is), and every multi-step change runs inside
 * `transaction(fn)`, so a crash leaves either all of a change or none of it.
 */
import type { InstalledImage } from '@upfleet/core';
import type { ReportMemory } from './report-memory.ts';

export type DeviceStatus = 'pending' | 'preregistered' | 'active' | 'decommissioned';

export interface DeviceRecord {
  id: string;
  status: DeviceStatus;
  tags: string[];
  /** Highest accepted manifest counter; -1 before the first. */
  manifestCounter: number;
  /**
   * ECU serial -> the nonces (with report times) accepted from it within the report
   * window (report-memory.ts), one row write per manifest. Rows written before
   * reports were timed hold a plain list of nonces; readMemory accepts both.
   */
  recentNonces: Record<string, ReportMemory>;
  online: boolean;
  lastSeen: string | null;
  createdAt: string;
  updatedAt: string;
}

export interface EcuRecord {
  serial: string;
  deviceId: string;
  hardwareId: string;
  /** TUF key JSON. */
  publicKey: Record<string, unknown>;
  primary: boolean;
  installed: InstalledImage | null;
  releaseCounter: number;
}

export type AssignmentStatus = 'pending' | 'downloading' | 'installing' | 'succeeded' | 'failed' | 'cancelled';
export const ACTIVE_STATUSES: readonly AssignmentStatus[] = ['pending', 'downloading', 'installing'];

export interface AssignmentItem {
  ecuSerial: string;
  hardwareId: string;
  image: string;
  length: number;
  hashes: Record<string, string>;
  /** The image repository target's release counter and version, copied into the director target's custom. */
  releaseCounter: number;
  version?: string;
  /** What the ECU ran when the assignment was made. */
  previous: InstalledImage | null;
}

/** The latest progress one ECU reported for an assignment: its phase, bytes done of total, when the director heard it. */
export interface EcuProgress {
  phase: 'downloading' | 'installing';
  done: number;
  total: number;
  at: string;
}

export interface AssignmentRecord {
  id: string;
  deviceId: string;
  campaignId: string | null;
  status: AssignmentStatus;
  items: AssignmentItem[];
  /** The first director targets version that lists it. */
  targetsVersion: number;
  errorCode: string | null;
  errorMessage: string | null;
  createdAt: string;
  updatedAt: string;
  /** ECU serial -> its latest progress while the assignment was open (ECUs that reported none are absent). */
  progress: Record<string, EcuProgress>;
}

/**
 * What a security event is:
 * - `attack`: the device reports one (an ECU's attacksDetected, or an
 *   installation result with an attack code: METADATA_ROLLBACK, FREEZE,
 *   MIX_AND_MATCH, ARBITRARY_SOFTWARE... core ATTACK_RESULT_CODES);
 * - `manifest_refused`: the director refused a manifest the device sent over an
 *   authenticated channel (code: the refusal, e.g. MANIFEST_REPLAY, BAD_ECU_SIGNATURE);
 * - `installation_failure`: any other failed installation result.
 */
export type EventKind = 'attack' | 'manifest_refused' | 'installation_failure';

/** The security event log keeps this many events per device, the newest. */
export const EVENTS_PER_DEVICE = 1000;

export interface EventRecord {
  id: number;
  deviceId: string;
  ecuSerial: string | null;
  kind: EventKind;
  code: string;
  detail: string;
  at: string;
}

export interface ManifestRecord {
  id: number;
  deviceId: string;
  counter: number;
  receivedAt: string;
  via: 'http' | 'mqtt' | 'function';
  /** ECU serial -> installed image, and the installation result, as the device reported them. */
  summary: Record<string, unknown>;
}

/** One device's repository state: the current versions and expiries per role. */
export interface RepoState {
  deviceId: string;
  targetsVersion: number;
  targetsExpires: string;
  snapshotVersion: number;
  snapshotExpires: string;
  timestampVersion: number;
  timestampExpires: string;
}

export type CampaignStatus = 'draft' | 'running' | 'paused' | 'halted' | 'completed' | 'aborted';

export interface CampaignSpec {
  name: string;
  images: Array<{ hardwareId: string; image: string }>;
  tags: string[];
  /** Cumulative percentages of the group, ascending, ending at 100. */
  waves: number[];
  /** Fraction of launched devices that must succeed before the next wave. */
  successThreshold: number;
  /** Filled at start: what the image repository listed for each image then. */
  resolved?: Array<{ hardwareId: string; image: string; length: number; hashes: Record<string, string>; custom: Record<string, unknown> }>;
}

export interface CampaignRecord {
  id: string;
  status: CampaignStatus;
  spec: CampaignSpec;
  /** The group in rollout order, fixed at start. */
  devices: string[];
  /** Number of waves launched so far. */
  wavesLaunched: number;
  reason: string | null;
  createdAt: string;
  updatedAt: string;
}

export interface DirectorStore {
  transaction<T>(fn: () => T): T;
  close(): void;

  getDevice(id: string): DeviceRecord | undefined;
  listDevices(filter?: { status?: DeviceStatus }): DeviceRecord[];
  insertDevice(device: DeviceRecord): void;
  updateDevice(id: string, fields: Partial<Omit<DeviceRecord, 'id' | 'createdAt'>>): void;

  getEcu(serial: string): EcuRecord | undefined;
  ecusOf(deviceId: string): EcuRecord[];
  insertEcu(ecu: EcuRecord): void;
  updateEcu(serial: string, fields: Partial<Omit<EcuRecord, 'serial' | 'deviceId'>>): void;
  deleteEcu(serial: string): void;

  insertAssignment(a: AssignmentRecord): void;
  updateAssignment(id: string, fields: Partial<Pick<AssignmentRecord, 'status' | 'errorCode' | 'errorMessage' | 'updatedAt' | 'targetsVersion' | 'progress'>>): void;
  getAssignment(id: string): AssignmentRecord | undefined;
  assignmentsOf(deviceId: string): AssignmentRecord[];
  assignmentsOfCampaign(campaignId: string): AssignmentRecord[];
  /** The device's pending, downloading and installing assignments, oldest first. */
  openAssignmentsOf(deviceId: string): AssignmentRecord[];

  /** Appends a security event, then drops the device's oldest beyond EVENTS_PER_DEVICE. */
  insertEvent(e: Omit<EventRecord, 'id'>): void;
  /** The device's security events, oldest first (at most EVENTS_PER_DEVICE). */
  eventsOf(deviceId: string): EventRecord[];
  insertManifest(m: Omit<ManifestRecord, 'id'>): void;
  manifestsOf(deviceId: string, limit: number): ManifestRecord[];

  getRepoState(deviceId: string): RepoState | undefined;
  putRepoState(state: RepoState): void;
  /** name: `N.targets.json`, `N.snapshot.json`, `timestamp.json`. */
  putMetadataFile(deviceId: string, name: string, bytes: Uint8Array): void;
  getMetadataFile(deviceId: string, name: string): Uint8Array | undefined;
  deleteMetadataFile(deviceId: string, name: string): void;

  insertCampaign(c: CampaignRecord): void;
  updateCampaign(id: string, fields: Partial<Pick<CampaignRecord, 'status' | 'spec' | 'devices' | 'wavesLaunched' | 'reason' | 'updatedAt'>>): void;
  getCampaign(id: string): CampaignRecord | undefined;
  listCampaigns(): CampaignRecord[];
}
