/**
 * The records the admin API sends (/api/v1/admin/...): most as the store keeps
 * them (store.ts re-exports those), the rest as the services build them. The web
 * console (director/console) and the tests read the replies with these same types.
 * Types only, and nothing imported that needs Node: the console's DOM-only
 * tsconfig checks every file this one reaches.
 */
import type { InstalledImage } from '@upfleet/core/uptane/installed-image.ts';

export type DeviceStatus = 'pending' | 'preregistered' | 'active' | 'decommissioned';

/** A device as the admin API shows it (`publicDevice`: the store's record without its report memory). */
export interface PublicDevice {
  id: string;
  status: DeviceStatus;
  tags: string[];
  /** Highest accepted manifest counter; -1 before the first. */
  manifestCounter: number;
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

/** Everything an admin sees about one device (GET /api/v1/admin/devices/{deviceId}). */
export interface DeviceView extends PublicDevice {
  ecus: EcuRecord[];
  assignments: AssignmentRecord[];
  events: EventRecord[];
  metadata: RepoState | null;
  /** The `targets` of the device's current director targets metadata, as signed (none yet: `{}`). */
  targets: unknown;
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
  /** Number of waves whose launch has begun. */
  wavesLaunched: number;
  /**
   * Devices of the group, in rollout order, launched so far (assigned, or passed over when
   * not active). A wave launches in chunks, each in a transaction of its own: its launch is
   * complete when this reaches the wave's end.
   */
  launchedCount: number;
  reason: string | null;
  createdAt: string;
  updatedAt: string;
}

export interface CampaignStatusView extends CampaignRecord {
  counts: Record<AssignmentStatus | 'waiting', number>;
  currentWave: number;
  totalWaves: number;
}

/** One device of a started campaign: its wave (1-based) and where its latest assignment stands. */
export interface CampaignDeviceView {
  deviceId: string;
  wave: number;
  status: AssignmentStatus | 'waiting';
  assignmentId: string | null;
  errorCode: string | null;
  updatedAt: string | null;
  /** Its ECUs' latest download or install progress on that assignment. */
  progress: AssignmentRecord['progress'];
}

/** One campaign with its devices (GET /api/v1/admin/campaigns/{id}). */
export interface CampaignDetail extends CampaignStatusView {
  deviceStatus: CampaignDeviceView[];
}

/**
 * An image repository target as the admin API lists it (GET /api/v1/admin/images,
 * image-list.ts): the Upfleet custom fields, and the role that signed the entry
 * (`targets`, or a supplier's delegated role).
 */
export interface ImageView {
  name: string;
  length: number;
  hashes: Record<string, string>;
  hardwareIds: string[];
  version: string | null;
  releaseCounter: number | null;
  role: string;
}

/** Devices counted by status and by MQTT status. */
export interface DeviceCounts {
  total: number;
  online: number;
  byStatus: Record<DeviceStatus, number>;
}

/** Per hardware ID and installed image (null: nothing reported yet), the ECUs of devices not decommissioned. */
export interface EcuVersionCount {
  hardwareId: string;
  image: string | null;
  releaseCounter: number;
  ecus: number;
}

/** The fleet at a glance (GET /api/v1/admin/fleet, fleet-summary.ts). */
export interface FleetSummary {
  devices: DeviceCounts;
  /** By hardware ID, then most ECUs first. */
  versions: EcuVersionCount[];
  /** Failed assignments, newest first. */
  recentFailures: Array<{ deviceId: string; assignmentId: string; campaignId: string | null; errorCode: string | null; errorMessage: string | null; at: string }>;
  /** Security events of every device, newest first. */
  recentEvents: EventRecord[];
}

/** The IDs of the records written since the previous event of the live stream (GET /api/v1/admin/events/stream, change-feed.ts). */
export interface FleetChange {
  devices: string[];
  assignments: string[];
  campaigns: string[];
}
