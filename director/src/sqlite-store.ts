/**
 * DirectorStore on SQLite (better-sqlite3), one file, WAL journal. Records with
 * nested shapes (tags, keys, items, specs) are JSON columns; everything queried
 * by key is a real column. Statements are prepared once.
 */
import Database from 'better-sqlite3';
import {
  EVENTS_PER_DEVICE,
  type AssignmentRecord,
  type CampaignRecord,
  type DeviceRecord,
  type DeviceStatus,
  type DirectorStore,
  type EcuRecord,
  type EventRecord,
  type ManifestRecord,
  type RepoState,
} from './store.ts';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS devices (
  id TEXT PRIMARY KEY, status TEXT NOT NULL, tags TEXT NOT NULL, manifest_counter INTEGER NOT NULL,
  recent_nonces TEXT NOT NULL, online INTEGER NOT NULL, last_seen TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ecus (
  serial TEXT PRIMARY KEY, device_id TEXT NOT NULL REFERENCES devices(id), hardware_id TEXT NOT NULL,
  public_key TEXT NOT NULL, is_primary INTEGER NOT NULL, installed TEXT, release_counter INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS ecus_device ON ecus(device_id);
CREATE TABLE IF NOT EXISTS assignments (
  id TEXT PRIMARY KEY, device_id TEXT NOT NULL, campaign_id TEXT, status TEXT NOT NULL, items TEXT NOT NULL,
  targets_version INTEGER NOT NULL, error_code TEXT, error_message TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
  seq INTEGER NOT NULL, progress TEXT NOT NULL DEFAULT '{}');
CREATE INDEX IF NOT EXISTS assignments_device ON assignments(device_id, seq);
CREATE INDEX IF NOT EXISTS assignments_campaign ON assignments(campaign_id);
CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY AUTOINCREMENT, device_id TEXT NOT NULL, ecu_serial TEXT, kind TEXT NOT NULL,
  code TEXT NOT NULL, detail TEXT NOT NULL, at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_device ON events(device_id);
CREATE TABLE IF NOT EXISTS manifests (
  id INTEGER PRIMARY KEY AUTOINCREMENT, device_id TEXT NOT NULL, counter INTEGER NOT NULL, received_at TEXT NOT NULL,
  via TEXT NOT NULL, summary TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS manifests_device ON manifests(device_id, id);
CREATE TABLE IF NOT EXISTS repo_state (
  device_id TEXT PRIMARY KEY, targets_version INTEGER NOT NULL, targets_expires TEXT NOT NULL,
  snapshot_version INTEGER NOT NULL, snapshot_expires TEXT NOT NULL,
  timestamp_version INTEGER NOT NULL, timestamp_expires TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS metadata_files (
  device_id TEXT NOT NULL, name TEXT NOT NULL, bytes BLOB NOT NULL, PRIMARY KEY (device_id, name));
CREATE TABLE IF NOT EXISTS campaigns (
  id TEXT PRIMARY KEY, status TEXT NOT NULL, spec TEXT NOT NULL, devices TEXT NOT NULL, waves_launched INTEGER NOT NULL,
  reason TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
`;

type Row = Record<string, unknown>;

const deviceFrom = (r: Row): DeviceRecord => ({
  id: r.id as string,
  status: r.status as DeviceStatus,
  tags: JSON.parse(r.tags as string),
  manifestCounter: r.manifest_counter as number,
  recentNonces: JSON.parse(r.recent_nonces as string),
  online: r.online === 1,
  lastSeen: (r.last_seen as string | null) ?? null,
  createdAt: r.created_at as string,
  updatedAt: r.updated_at as string,
});

const ecuFrom = (r: Row): EcuRecord => ({
  serial: r.serial as string,
  deviceId: r.device_id as string,
  hardwareId: r.hardware_id as string,
  publicKey: JSON.parse(r.public_key as string),
  primary: r.is_primary === 1,
  installed: r.installed === null ? null : JSON.parse(r.installed as string),
  releaseCounter: r.release_counter as number,
});

const assignmentFrom = (r: Row): AssignmentRecord => ({
  id: r.id as string,
  deviceId: r.device_id as string,
  campaignId: (r.campaign_id as string | null) ?? null,
  status: r.status as AssignmentRecord['status'],
  items: JSON.parse(r.items as string),
  targetsVersion: r.targets_version as number,
  errorCode: (r.error_code as string | null) ?? null,
  errorMessage: (r.error_message as string | null) ?? null,
  createdAt: r.created_at as string,
  updatedAt: r.updated_at as string,
  progress: JSON.parse(r.progress as string),
});

const campaignFrom = (r: Row): CampaignRecord => ({
  id: r.id as string,
  status: r.status as CampaignRecord['status'],
  spec: JSON.parse(r.spec as string),
  devices: JSON.parse(r.devices as string),
  wavesLaunched: r.waves_launched as number,
  reason: (r.reason as string | null) ?? null,
  createdAt: r.created_at as string,
  updatedAt: r.updated_at as string,
});

/** Column name and encoder for each updatable field of a record type. */
type Columns = Record<string, [string, (v: unknown) => unknown]>;
const same = (v: unknown) => v;
const json = (v: unknown) => JSON.stringify(v);
const bool = (v: unknown) => (v ? 1 : 0);

const DEVICE_COLUMNS: Columns = {
  status: ['status', same], tags: ['tags', json], manifestCounter: ['manifest_counter', same], recentNonces: ['recent_nonces', json],
  online: ['online', bool], lastSeen: ['last_seen', same], updatedAt: ['updated_at', same],
};
const ECU_COLUMNS: Columns = {
  hardwareId: ['hardware_id', same], publicKey: ['public_key', json], primary: ['is_primary', bool],
  installed: ['installed', (v) => (v === null ? null : JSON.stringify(v))], releaseCounter: ['release_counter', same],
};
const ASSIGNMENT_COLUMNS: Columns = {
  status: ['status', same], errorCode: ['error_code', same], errorMessage: ['error_message', same],
  updatedAt: ['updated_at', same], targetsVersion: ['targets_version', same], progress: ['progress', json],
};
const CAMPAIGN_COLUMNS: Columns = {
  status: ['status', same], spec: ['spec', json], devices: ['devices', json], wavesLaunched: ['waves_launched', same],
  reason: ['reason', same], updatedAt: ['updated_at', same],
};

export class SqliteStore implements DirectorStore {
  readonly #db: Database.Database;
  readonly #stmts = new Map<string, Database.Statement>();
  #seq = 0;

  constructor(path: string) {
    this.#db = new Database(path);
    this.#db.pragma('journal_mode = WAL');
    this.#db.pragma('synchronous = NORMAL');
    this.#db.pragma('foreign_keys = ON');
    this.#db.exec(SCHEMA);
    // Added after the first release: an older database gains the column in place.
    if (!(this.#db.prepare("SELECT name FROM pragma_table_info('assignments')").all() as Array<{ name: string }>).some((c) => c.name === 'progress')) {
      this.#db.exec("ALTER TABLE assignments ADD COLUMN progress TEXT NOT NULL DEFAULT '{}'");
    }
    this.#seq = (this.#db.prepare('SELECT COALESCE(MAX(seq), 0) AS s FROM assignments').get() as { s: number }).s;
  }

  #stmt(sql: string): Database.Statement {
    let s = this.#stmts.get(sql);
    if (!s) {
      s = this.#db.prepare(sql);
      this.#stmts.set(sql, s);
    }
    return s;
  }

  #update(table: string, keyColumn: string, key: string, columns: Columns, fields: Record<string, unknown>): void {
    const entries = Object.entries(fields).filter(([k, v]) => v !== undefined && columns[k]);
    if (entries.length === 0) return;
    const sets = entries.map(([k]) => `${columns[k]![0]} = ?`).join(', ');
    this.#stmt(`UPDATE ${table} SET ${sets} WHERE ${keyColumn} = ?`).run(...entries.map(([k, v]) => columns[k]![1](v)), key);
  }

  transaction<T>(fn: () => T): T {
    return this.#db.transaction(fn)();
  }

  close(): void {
    this.#db.close();
  }

  getDevice(id: string): DeviceRecord | undefined {
    const r = this.#stmt('SELECT * FROM devices WHERE id = ?').get(id) as Row | undefined;
    return r && deviceFrom(r);
  }

  listDevices(filter: { status?: DeviceStatus } = {}): DeviceRecord[] {
    const rows = filter.status
      ? this.#stmt('SELECT * FROM devices WHERE status = ? ORDER BY id').all(filter.status)
      : this.#stmt('SELECT * FROM devices ORDER BY id').all();
    return (rows as Row[]).map(deviceFrom);
  }

  insertDevice(d: DeviceRecord): void {
    this.#stmt('INSERT INTO devices VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)').run(
      d.id, d.status, JSON.stringify(d.tags), d.manifestCounter, JSON.stringify(d.recentNonces), d.online ? 1 : 0, d.lastSeen, d.createdAt, d.updatedAt);
  }

  updateDevice(id: string, fields: Partial<DeviceRecord>): void {
    this.#update('devices', 'id', id, DEVICE_COLUMNS, fields);
  }

  getEcu(serial: string): EcuRecord | undefined {
    const r = this.#stmt('SELECT * FROM ecus WHERE serial = ?').get(serial) as Row | undefined;
    return r && ecuFrom(r);
  }

  ecusOf(deviceId: string): EcuRecord[] {
    return (this.#stmt('SELECT * FROM ecus WHERE device_id = ? ORDER BY is_primary DESC, serial').all(deviceId) as Row[]).map(ecuFrom);
  }

  insertEcu(e: EcuRecord): void {
    this.#stmt('INSERT INTO ecus VALUES (?, ?, ?, ?, ?, ?, ?)').run(
      e.serial, e.deviceId, e.hardwareId, JSON.stringify(e.publicKey), e.primary ? 1 : 0,
      e.installed === null ? null : JSON.stringify(e.installed), e.releaseCounter);
  }

  updateEcu(serial: string, fields: Partial<EcuRecord>): void {
    this.#update('ecus', 'serial', serial, ECU_COLUMNS, fields);
  }

  deleteEcu(serial: string): void {
    this.#stmt('DELETE FROM ecus WHERE serial = ?').run(serial);
  }

  insertAssignment(a: AssignmentRecord): void {
    this.#stmt('INSERT INTO assignments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)').run(
      a.id, a.deviceId, a.campaignId, a.status, JSON.stringify(a.items), a.targetsVersion, a.errorCode, a.errorMessage,
      a.createdAt, a.updatedAt, ++this.#seq, JSON.stringify(a.progress));
  }

  updateAssignment(id: string, fields: Partial<AssignmentRecord>): void {
    this.#update('assignments', 'id', id, ASSIGNMENT_COLUMNS, fields);
  }

  getAssignment(id: string): AssignmentRecord | undefined {
    const r = this.#stmt('SELECT * FROM assignments WHERE id = ?').get(id) as Row | undefined;
    return r && assignmentFrom(r);
  }

  assignmentsOf(deviceId: string): AssignmentRecord[] {
    return (this.#stmt('SELECT * FROM assignments WHERE device_id = ? ORDER BY seq').all(deviceId) as Row[]).map(assignmentFrom);
  }

  openAssignmentsOf(deviceId: string): AssignmentRecord[] {
    return (this.#stmt("SELECT * FROM assignments WHERE device_id = ? AND status IN ('pending', 'downloading', 'installing') ORDER BY seq")
      .all(deviceId) as Row[]).map(assignmentFrom);
  }

  assignmentsOfCampaign(campaignId: string): AssignmentRecord[] {
    return (this.#stmt('SELECT * FROM assignments WHERE campaign_id = ? ORDER BY seq').all(campaignId) as Row[]).map(assignmentFrom);
  }

  insertEvent(e: Omit<EventRecord, 'id'>): void {
    this.transaction(() => {
      this.#stmt('INSERT INTO events (device_id, ecu_serial, kind, code, detail, at) VALUES (?, ?, ?, ?, ?, ?)').run(
        e.deviceId, e.ecuSerial, e.kind, e.code, e.detail, e.at);
      // Bounded per device: a flood of events costs the device its oldest ones, never the store.
      this.#stmt(`DELETE FROM events WHERE device_id = ? AND id <= (
        SELECT id FROM events WHERE device_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)`).run(e.deviceId, e.deviceId, EVENTS_PER_DEVICE);
    });
  }

  eventsOf(deviceId: string): EventRecord[] {
    return (this.#stmt('SELECT * FROM events WHERE device_id = ? ORDER BY id').all(deviceId) as Row[]).map((r) => ({
      id: r.id as number, deviceId: r.device_id as string, ecuSerial: (r.ecu_serial as string | null) ?? null,
      kind: r.kind as EventRecord['kind'], code: r.code as string, detail: r.detail as string, at: r.at as string,
    }));
  }

  insertManifest(m: Omit<ManifestRecord, 'id'>): void {
    this.#stmt('INSERT INTO manifests (device_id, counter, received_at, via, summary) VALUES (?, ?, ?, ?, ?)').run(
      m.deviceId, m.counter, m.receivedAt, m.via, JSON.stringify(m.summary));
  }

  manifestsOf(deviceId: string, limit: number): ManifestRecord[] {
    return (this.#stmt('SELECT * FROM manifests WHERE device_id = ? ORDER BY id DESC LIMIT ?').all(deviceId, limit) as Row[]).map((r) => ({
      id: r.id as number, deviceId: r.device_id as string, counter: r.counter as number, receivedAt: r.received_at as string,
      via: r.via as ManifestRecord['via'], summary: JSON.parse(r.summary as string),
    }));
  }

  getRepoState(deviceId: string): RepoState | undefined {
    const r = this.#stmt('SELECT * FROM repo_state WHERE device_id = ?').get(deviceId) as Row | undefined;
    return r && {
      deviceId, targetsVersion: r.targets_version as number, targetsExpires: r.targets_expires as string,
      snapshotVersion: r.snapshot_version as number, snapshotExpires: r.snapshot_expires as string,
      timestampVersion: r.timestamp_version as number, timestampExpires: r.timestamp_expires as string,
    };
  }

  putRepoState(s: RepoState): void {
    this.#stmt('INSERT OR REPLACE INTO repo_state VALUES (?, ?, ?, ?, ?, ?, ?)').run(
      s.deviceId, s.targetsVersion, s.targetsExpires, s.snapshotVersion, s.snapshotExpires, s.timestampVersion, s.timestampExpires);
  }

  putMetadataFile(deviceId: string, name: string, bytes: Uint8Array): void {
    this.#stmt('INSERT OR REPLACE INTO metadata_files VALUES (?, ?, ?)').run(deviceId, name, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  }

  getMetadataFile(deviceId: string, name: string): Uint8Array | undefined {
    const r = this.#stmt('SELECT bytes FROM metadata_files WHERE device_id = ? AND name = ?').get(deviceId, name) as { bytes: Buffer } | undefined;
    return r && new Uint8Array(r.bytes.buffer, r.bytes.byteOffset, r.bytes.byteLength);
  }

  deleteMetadataFile(deviceId: string, name: string): void {
    this.#stmt('DELETE FROM metadata_files WHERE device_id = ? AND name = ?').run(deviceId, name);
  }

  insertCampaign(c: CampaignRecord): void {
    this.#stmt('INSERT INTO campaigns VALUES (?, ?, ?, ?, ?, ?, ?, ?)').run(
      c.id, c.status, JSON.stringify(c.spec), JSON.stringify(c.devices), c.wavesLaunched, c.reason, c.createdAt, c.updatedAt);
  }

  updateCampaign(id: string, fields: Partial<CampaignRecord>): void {
    this.#update('campaigns', 'id', id, CAMPAIGN_COLUMNS, fields);
  }

  getCampaign(id: string): CampaignRecord | undefined {
    const r = this.#stmt('SELECT * FROM campaigns WHERE id = ?').get(id) as Row | undefined;
    return r && campaignFrom(r);
  }

  listCampaigns(): CampaignRecord[] {
    return (this.#stmt('SELECT * FROM campaigns ORDER BY created_at, id').all() as Row[]).map(campaignFrom);
  }
}
