/** The admin API's records, as the console reads them (director/src/store.ts, campaigns.ts, image-list.ts). */
export interface Device {
  id: string;
  status: 'preregistered' | 'pending' | 'active' | 'decommissioned';
  tags: string[];
  manifestCounter: number;
  online: boolean;
  lastSeen: string | null;
  createdAt: string;
  updatedAt: string;
}

export interface InstalledImage {
  filename: string;
  length: number;
  hashes: Record<string, string>;
}

export interface Ecu {
  serial: string;
  hardwareId: string;
  primary: boolean;
  installed: InstalledImage | null;
  releaseCounter: number;
}

export interface EcuProgress {
  phase: 'downloading' | 'installing';
  done: number;
  total: number;
  at: string;
}

export type AssignmentStatus = 'pending' | 'downloading' | 'installing' | 'succeeded' | 'failed' | 'cancelled';

export interface Assignment {
  id: string;
  deviceId: string;
  campaignId: string | null;
  status: AssignmentStatus;
  items: Array<{ ecuSerial: string; hardwareId: string; image: string; length: number; releaseCounter: number; version?: string }>;
  errorCode: string | null;
  errorMessage: string | null;
  createdAt: string;
  updatedAt: string;
  progress: Record<string, EcuProgress>;
}

export interface SecurityEvent {
  id: number;
  deviceId: string;
  ecuSerial: string | null;
  kind: 'attack' | 'manifest_refused' | 'installation_failure';
  code: string;
  detail: string;
  at: string;
}

export interface DeviceView extends Device {
  ecus: Ecu[];
  assignments: Assignment[];
  events: SecurityEvent[];
}

export interface ManifestRecord {
  id: number;
  counter: number;
  receivedAt: string;
  via: string;
  summary: Record<string, unknown>;
}

export interface Image {
  name: string;
  length: number;
  hashes: Record<string, string>;
  hardwareIds: string[];
  version: string | null;
  releaseCounter: number | null;
  role: string;
}

export type CampaignStatus = 'draft' | 'running' | 'paused' | 'halted' | 'completed' | 'aborted';

export interface CampaignDevice {
  deviceId: string;
  wave: number;
  status: AssignmentStatus | 'waiting';
  assignmentId: string | null;
  errorCode: string | null;
  updatedAt: string | null;
  progress: Record<string, EcuProgress>;
}

export interface Campaign {
  id: string;
  status: CampaignStatus;
  spec: { name: string; images: Array<{ hardwareId: string; image: string }>; tags: string[]; waves: number[]; successThreshold: number };
  devices: string[];
  wavesLaunched: number;
  /** Devices of the group launched so far (a wave launches in chunks). */
  launchedCount: number;
  reason: string | null;
  createdAt: string;
  updatedAt: string;
  counts: Record<AssignmentStatus | 'waiting', number>;
  currentWave: number;
  totalWaves: number;
  deviceStatus?: CampaignDevice[];
}

export interface FleetSummary {
  devices: { total: number; online: number; byStatus: Record<Device['status'], number> };
  versions: Array<{ hardwareId: string; image: string | null; releaseCounter: number; ecus: number }>;
  recentFailures: Array<{ deviceId: string; assignmentId: string; campaignId: string | null; errorCode: string | null; errorMessage: string | null; at: string }>;
  recentEvents: SecurityEvent[];
}
