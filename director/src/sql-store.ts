/**
 * DirectorStore over SQL, shared by the SQLite and PostgreSQL stores: the
 * queries, the row mapping and the column encoders live here once; a
 * `SqlConnection` supplies the dialect's transactions, locks and placeholders.
 * Invariants:
 * - Records with nested shapes (tags, keys, items, specs) are JSON text columns
 *   on both databases, so a record reads back the same from either.
 * - Queries use `?` placeholders; the PostgreSQL connection numbers them.
 * - Booleans are JS booleans here; the SQLite connection binds them as 0/1.
 * - Nothing a manifest, a progress event or a status message causes reads rows in
 *   proportion to the fleet (issue 12): a campaign's assignments are counted by
 *   status in `campaign_counts`, kept here in the transaction of every assignment
 *   write; every write to a device, assignment or campaign stamps its row's
 *   `change_seq`, so the change feed reads only what changed.
 */
import {
  EVENTS_PER_DEVICE,
  type AssignmentRecord,
  type AssignmentStatus,
  type CampaignState,
  type ChangeBatch,
  type DeviceCounts,
  type EcuVersionCount,
  type CampaignRecord,
  type DeviceRecord,
  type DeviceStatus,
  type DirectorStore,
  type EcuRecord,
  type EventRecord,
  type IngestionView,
  type ManifestRecord,
  type RepoState,
} from './store.ts';

export type Row = Record<string, unknown>;

/** One database: queries that join the async context's transaction, when there is one. */
export interface SqlConnection {
  readonly dialect: 'sqlite' | 'postgres';
  all(sql: string, params?: unknown[]): Promise<Row[]>;
  run(sql: string, params?: unknown[]): Promise<void>;
  /** Several statements without parameters (a migration file). */
  exec(sql: string): Promise<void>;
  transaction<T>(fn: () => Promise<T>): Promise<T>;
  /** Whether the calling async context is inside a transaction of this connection. */
  inTransaction(): boolean;
  /** Inside a transaction: holds one row of `table` (keyed by `id`) until the end. */
  lockRow(table: 'devices' | 'campaigns', id: string): Promise<void>;
  close(): Promise<void>;
}

const json = (v: unknown) => JSON.stringify(v);
const same = (v: unknown) => v;
const parse = (v: unknown) => JSON.parse(v as string);
const text = (v: unknown) => (v as string | null) ?? null;

const deviceFrom = (r: Row): DeviceRecord => ({
  id: r.id as string,
  status: r.status as DeviceStatus,
  tags: parse(r.tags),
  manifestCounter: Number(r.manifest_counter),
  recentNonces: parse(r.recent_nonces),
  online: Boolean(r.online),
  lastSeen: text(r.last_seen),
  createdAt: r.created_at as string,
  updatedAt: r.updated_at as string,
});

const ecuFrom = (r: Row): EcuRecord => ({
  serial: r.serial as string,
  deviceId: r.device_id as string,
  hardwareId: r.hardware_id as string,
  publicKey: parse(r.public_key),
  primary: Boolean(r.is_primary),
  installed: r.installed === null ? null : parse(r.installed),
  releaseCounter: Number(r.release_counter),
});

const assignmentFrom = (r: Row): AssignmentRecord => ({
  id: r.id as string,
  deviceId: r.device_id as string,
  campaignId: text(r.campaign_id),
  status: r.status as AssignmentRecord['status'],
  items: parse(r.items),
  targetsVersion: Number(r.targets_version),
  errorCode: text(r.error_code),
  errorMessage: text(r.error_message),
  createdAt: r.created_at as string,
  updatedAt: r.updated_at as string,
  progress: parse(r.progress),
});

/** The columns a campaign record and a campaign's state share. */
const campaignColumns = (r: Row): Omit<CampaignState, 'groupSize'> => ({
  id: r.id as string,
  status: r.status as CampaignRecord['status'],
  spec: parse(r.spec),
  wavesLaunched: Number(r.waves_launched),
  launchedCount: Number(r.launched_count),
  reason: text(r.reason),
  createdAt: r.created_at as string,
  updatedAt: r.updated_at as string,
});

const campaignFrom = (r: Row): CampaignRecord => ({ ...campaignColumns(r), devices: parse(r.devices) });

const campaignStateFrom = (r: Row): CampaignState => ({ ...campaignColumns(r), groupSize: Number(r.group_size) });

const eventFrom = (r: Row): EventRecord => ({
  id: Number(r.id), deviceId: r.device_id as string, ecuSerial: text(r.ecu_serial),
  kind: r.kind as EventRecord['kind'], code: r.code as string, detail: r.detail as string, at: r.at as string,
});

const manifestFrom = (r: Row): ManifestRecord => ({
  id: Number(r.id), deviceId: r.device_id as string, counter: Number(r.counter), receivedAt: r.received_at as string,
  via: r.via as ManifestRecord['via'], summary: parse(r.summary),
});

const repoStateFrom = (r: Row): RepoState => ({
  deviceId: r.device_id as string, targetsVersion: Number(r.targets_version), targetsExpires: r.targets_expires as string,
  snapshotVersion: Number(r.snapshot_version), snapshotExpires: r.snapshot_expires as string,
  timestampVersion: Number(r.timestamp_version), timestampExpires: r.timestamp_expires as string,
});

/** Column name and encoder for each updatable field of a record type. */
type Columns = Record<string, [string, (v: unknown) => unknown]>;

const DEVICE_COLUMNS: Columns = {
  status: ['status', same], tags: ['tags', json], manifestCounter: ['manifest_counter', same], recentNonces: ['recent_nonces', json],
  online: ['online', same], lastSeen: ['last_seen', same], updatedAt: ['updated_at', same],
};
const ECU_COLUMNS: Columns = {
  hardwareId: ['hardware_id', same], publicKey: ['public_key', json], primary: ['is_primary', same],
  installed: ['installed', (v) => (v === null ? null : JSON.stringify(v))], releaseCounter: ['release_counter', same],
};
const ASSIGNMENT_COLUMNS: Columns = {
  status: ['status', same], errorCode: ['error_code', same], errorMessage: ['error_message', same],
  updatedAt: ['updated_at', same], targetsVersion: ['targets_version', same], progress: ['progress', json],
};
const CAMPAIGN_COLUMNS: Columns = {
  status: ['status', same], spec: ['spec', json], devices: ['devices', json], wavesLaunched: ['waves_launched', same],
  launchedCount: ['launched_count', same], reason: ['reason', same], updatedAt: ['updated_at', same], groupSize: ['group_size', same],
};

/** A campaign's columns without its group's list (campaignStateFrom). */
const CAMPAIGN_STATE = 'id, status, spec, group_size, waves_launched, launched_count, reason, created_at, updated_at';

/** The tables whose rows carry a change stamp, as the change feed names them. */
const STAMPED = ['devices', 'assignments', 'campaigns'] as const;
type Stamped = (typeof STAMPED)[number];

const OPEN = "('pending', 'downloading', 'installing')";

export class SqlStore implements DirectorStore {
  constructor(protected readonly db: SqlConnection) {}

  async #one<T>(sql: string, params: unknown[], from: (r: Row) => T): Promise<T | undefined> {
    const [r] = await this.db.all(sql, params);
    return r && from(r);
  }

  async #many<T>(sql: string, params: unknown[], from: (r: Row) => T): Promise<T[]> {
    return (await this.db.all(sql, params)).map(from);
  }

  async #update(table: string, keyColumn: string, key: string, columns: Columns, fields: Record<string, unknown>): Promise<void> {
    const entries = Object.entries(fields).filter(([k, v]) => v !== undefined && columns[k]);
    if (entries.length === 0) return;
    const sets = entries.map(([k]) => `${columns[k]![0]} = ?`);
    if ((STAMPED as readonly string[]).includes(table)) sets.push(`change_seq = ${this.#stamp(table as Stamped)}`);
    await this.db.run(`UPDATE ${table} SET ${sets.join(', ')} WHERE ${keyColumn} = ?`, [...entries.map(([k, v]) => columns[k]![1](v)), key]);
  }

  /**
   * The change stamp of a row written now. SQLite: the table's highest plus one, taken
   * under the write lock that orders every transaction, so stamps follow commit order
   * (an index keeps MAX cheap). PostgreSQL: the writing transaction's ID (see changesSince).
   */
  #stamp(table: Stamped): string {
    return this.db.dialect === 'postgres' ? 'pg_current_xact_id()' : `(SELECT COALESCE(MAX(change_seq), 0) + 1 FROM ${table})`;
  }

  /** fn atomically: on its own, or as part of the caller's transaction (no savepoint). */
  #atomic<T>(fn: () => Promise<T>): Promise<T> {
    return this.db.inTransaction() ? fn() : this.transaction(fn);
  }

  transaction<T>(fn: () => Promise<T>): Promise<T> {
    return this.db.transaction(fn);
  }

  close(): Promise<void> {
    return this.db.close();
  }

  lockDevice(id: string): Promise<void> {
    return this.db.lockRow('devices', id);
  }

  lockCampaign(id: string): Promise<void> {
    return this.db.lockRow('campaigns', id);
  }

  getDevice(id: string): Promise<DeviceRecord | undefined> {
    return this.#one('SELECT * FROM devices WHERE id = ?', [id], deviceFrom);
  }

  listDevices(filter: { status?: DeviceStatus } = {}): Promise<DeviceRecord[]> {
    return filter.status
      ? this.#many('SELECT * FROM devices WHERE status = ? ORDER BY id', [filter.status], deviceFrom)
      : this.#many('SELECT * FROM devices ORDER BY id', [], deviceFrom);
  }

  devicesWithHardware(status: DeviceStatus, hardwareIds: string[]): Promise<DeviceRecord[]> {
    if (hardwareIds.length === 0) return Promise.resolve([]);
    const list = hardwareIds.map(() => '?').join(', ');
    return this.#many(`SELECT * FROM devices WHERE status = ? AND id IN (SELECT device_id FROM ecus WHERE hardware_id IN (${list})) ORDER BY id`,
      [status, ...hardwareIds], deviceFrom);
  }

  async countDevices(): Promise<DeviceCounts> {
    const counts: DeviceCounts = { total: 0, online: 0, byStatus: { preregistered: 0, pending: 0, active: 0, decommissioned: 0 } };
    for (const r of await this.db.all('SELECT status, online, COUNT(*) AS n FROM devices GROUP BY status, online')) {
      const n = Number(r.n);
      counts.total += n;
      counts.byStatus[r.status as DeviceStatus] += n;
      if (r.online) counts.online += n;
    }
    return counts;
  }

  async ecuVersions(): Promise<EcuVersionCount[]> {
    const image = this.db.dialect === 'postgres' ? "(e.installed::json ->> 'filename')" : "json_extract(e.installed, '$.filename')";
    const rows = await this.db.all(`SELECT e.hardware_id, ${image} AS image, e.release_counter, COUNT(*) AS n FROM ecus e
      JOIN devices d ON d.id = e.device_id WHERE d.status <> 'decommissioned' GROUP BY e.hardware_id, ${image}, e.release_counter`);
    return rows
      .map((r) => ({ hardwareId: r.hardware_id as string, image: text(r.image), releaseCounter: Number(r.release_counter), ecus: Number(r.n) }))
      .sort((a, b) => a.hardwareId.localeCompare(b.hardwareId) || b.ecus - a.ecus);
  }

  insertDevice(d: DeviceRecord): Promise<void> {
    return this.db.run(`INSERT INTO devices (id, status, tags, manifest_counter, recent_nonces, online, last_seen, created_at, updated_at, change_seq)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ${this.#stamp('devices')})`, [
      d.id, d.status, json(d.tags), d.manifestCounter, json(d.recentNonces), d.online, d.lastSeen, d.createdAt, d.updatedAt]);
  }

  updateDevice(id: string, fields: Partial<DeviceRecord>): Promise<void> {
    return this.#update('devices', 'id', id, DEVICE_COLUMNS, fields);
  }

  async ingestionView(deviceId: string): Promise<IngestionView> {
    const rows = await this.db.all(`SELECT d.id, d.status, d.manifest_counter, e.serial, e.device_id, e.hardware_id, e.public_key, e.is_primary,
      e.installed, e.release_counter FROM devices d LEFT JOIN ecus e ON e.device_id = d.id WHERE d.id = ? ORDER BY e.is_primary DESC, e.serial`, [deviceId]);
    const [first] = rows;
    if (!first) return { device: undefined, ecus: [] };
    return {
      device: { id: first.id as string, status: first.status as DeviceStatus, manifestCounter: Number(first.manifest_counter) },
      ecus: rows.filter((r) => r.serial !== null).map(ecuFrom),
    };
  }

  getEcu(serial: string): Promise<EcuRecord | undefined> {
    return this.#one('SELECT * FROM ecus WHERE serial = ?', [serial], ecuFrom);
  }

  ecusOf(deviceId: string): Promise<EcuRecord[]> {
    return this.#many('SELECT * FROM ecus WHERE device_id = ? ORDER BY is_primary DESC, serial', [deviceId], ecuFrom);
  }

  async primaryKeyJson(deviceId: string): Promise<string | undefined> {
    const [row] = await this.db.all('SELECT public_key FROM ecus WHERE device_id = ? AND is_primary = ?', [deviceId, true]);
    return row ? (row.public_key as string) : undefined;
  }

  insertEcu(e: EcuRecord): Promise<void> {
    return this.db.run('INSERT INTO ecus (serial, device_id, hardware_id, public_key, is_primary, installed, release_counter) VALUES (?, ?, ?, ?, ?, ?, ?)', [
      e.serial, e.deviceId, e.hardwareId, json(e.publicKey), e.primary, e.installed === null ? null : json(e.installed), e.releaseCounter]);
  }

  updateEcu(serial: string, fields: Partial<EcuRecord>): Promise<void> {
    return this.#update('ecus', 'serial', serial, ECU_COLUMNS, fields);
  }

  deleteEcu(serial: string): Promise<void> {
    return this.db.run('DELETE FROM ecus WHERE serial = ?', [serial]);
  }

  insertAssignment(a: AssignmentRecord): Promise<void> {
    const columns = 'id, device_id, campaign_id, status, items, targets_version, error_code, error_message, created_at, updated_at, progress, change_seq';
    const values = [a.id, a.deviceId, a.campaignId, a.status, json(a.items), a.targetsVersion, a.errorCode, a.errorMessage, a.createdAt, a.updatedAt, json(a.progress)];
    const stamp = this.#stamp('assignments');
    return this.#atomic(async () => {
      // PostgreSQL numbers assignments with an identity column; SQLite takes the next under its write lock.
      await (this.db.dialect === 'postgres'
        ? this.db.run(`INSERT INTO assignments (${columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ${stamp})`, values)
        : this.db.run(`INSERT INTO assignments (${columns}, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ${stamp}, (SELECT COALESCE(MAX(seq), 0) + 1 FROM assignments))`, values));
      if (a.campaignId !== null) {
        await this.db.run(`INSERT INTO campaign_counts (campaign_id, status, n) VALUES (?, ?, 1)
          ON CONFLICT (campaign_id, status) DO UPDATE SET n = campaign_counts.n + 1`, [a.campaignId, a.status]);
      }
    });
  }

  updateAssignment(id: string, fields: Partial<AssignmentRecord>): Promise<void> {
    if (fields.status === undefined) return this.#update('assignments', 'id', id, ASSIGNMENT_COLUMNS, fields);
    // The campaign's counters move with the status: one down from the old, one up to the new.
    return this.#atomic(async () => {
      await this.db.run('UPDATE campaign_counts SET n = n - 1 WHERE (campaign_id, status) IN (SELECT campaign_id, status FROM assignments WHERE id = ?)', [id]);
      await this.#update('assignments', 'id', id, ASSIGNMENT_COLUMNS, fields);
      await this.db.run(`INSERT INTO campaign_counts (campaign_id, status, n) SELECT campaign_id, status, 1 FROM assignments WHERE id = ? AND campaign_id IS NOT NULL
        ON CONFLICT (campaign_id, status) DO UPDATE SET n = campaign_counts.n + 1`, [id]);
    });
  }

  getAssignment(id: string): Promise<AssignmentRecord | undefined> {
    return this.#one('SELECT * FROM assignments WHERE id = ?', [id], assignmentFrom);
  }

  assignmentsOf(deviceId: string): Promise<AssignmentRecord[]> {
    return this.#many('SELECT * FROM assignments WHERE device_id = ? ORDER BY seq', [deviceId], assignmentFrom);
  }

  openAssignmentsOf(deviceId: string): Promise<AssignmentRecord[]> {
    return this.#many(`SELECT * FROM assignments WHERE device_id = ? AND status IN ${OPEN} ORDER BY seq`, [deviceId], assignmentFrom);
  }

  assignmentsOfCampaign(campaignId: string): Promise<AssignmentRecord[]> {
    return this.#many('SELECT * FROM assignments WHERE campaign_id = ? ORDER BY seq', [campaignId], assignmentFrom);
  }

  async hasCampaignAssignment(campaignId: string, deviceId: string): Promise<boolean> {
    // By the device's index: a device has a handful of assignments, a campaign thousands.
    return (await this.db.all('SELECT 1 FROM assignments WHERE device_id = ? AND campaign_id = ? LIMIT 1', [deviceId, campaignId])).length > 0;
  }

  async campaignCounts(campaignId: string): Promise<Partial<Record<AssignmentStatus, number>>> {
    const rows = await this.db.all('SELECT status, n FROM campaign_counts WHERE campaign_id = ? AND n <> 0', [campaignId]);
    return Object.fromEntries(rows.map((r) => [r.status as AssignmentStatus, Number(r.n)]));
  }

  recentFailures(limit: number): Promise<AssignmentRecord[]> {
    return this.#many(`SELECT a.* FROM assignments a JOIN devices d ON d.id = a.device_id
      WHERE a.status = 'failed' AND d.status <> 'decommissioned' ORDER BY a.updated_at DESC, a.seq DESC LIMIT ?`, [limit], assignmentFrom);
  }

  insertEvent(e: Omit<EventRecord, 'id'>): Promise<void> {
    // Atomic on its own; inside a caller's transaction, part of it (no savepoint per event).
    return this.#atomic(async () => {
      await this.db.run('INSERT INTO events (device_id, ecu_serial, kind, code, detail, at) VALUES (?, ?, ?, ?, ?, ?)', [
        e.deviceId, e.ecuSerial, e.kind, e.code, e.detail, e.at]);
      // Bounded per device: a flood of events costs the device its oldest ones, never the store.
      await this.db.run(`DELETE FROM events WHERE device_id = ? AND id <= (
        SELECT id FROM events WHERE device_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)`, [e.deviceId, e.deviceId, EVENTS_PER_DEVICE]);
    });
  }

  eventsOf(deviceId: string): Promise<EventRecord[]> {
    return this.#many('SELECT * FROM events WHERE device_id = ? ORDER BY id', [deviceId], eventFrom);
  }

  recentEvents(limit: number): Promise<EventRecord[]> {
    return this.#many(`SELECT e.* FROM events e JOIN devices d ON d.id = e.device_id
      WHERE d.status <> 'decommissioned' ORDER BY e.at DESC, e.id DESC LIMIT ?`, [limit], eventFrom);
  }

  insertManifest(m: Omit<ManifestRecord, 'id'>): Promise<void> {
    return this.db.run('INSERT INTO manifests (device_id, counter, received_at, via, summary) VALUES (?, ?, ?, ?, ?)', [
      m.deviceId, m.counter, m.receivedAt, m.via, json(m.summary)]);
  }

  manifestsOf(deviceId: string, limit: number): Promise<ManifestRecord[]> {
    return this.#many('SELECT * FROM manifests WHERE device_id = ? ORDER BY id DESC LIMIT ?', [deviceId, limit], manifestFrom);
  }

  getRepoState(deviceId: string): Promise<RepoState | undefined> {
    return this.#one('SELECT * FROM repo_state WHERE device_id = ?', [deviceId], repoStateFrom);
  }

  putRepoState(s: RepoState): Promise<void> {
    return this.db.run(`INSERT INTO repo_state (device_id, targets_version, targets_expires, snapshot_version, snapshot_expires, timestamp_version, timestamp_expires)
      VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device_id) DO UPDATE SET targets_version = excluded.targets_version,
      targets_expires = excluded.targets_expires, snapshot_version = excluded.snapshot_version, snapshot_expires = excluded.snapshot_expires,
      timestamp_version = excluded.timestamp_version, timestamp_expires = excluded.timestamp_expires`, [
      s.deviceId, s.targetsVersion, s.targetsExpires, s.snapshotVersion, s.snapshotExpires, s.timestampVersion, s.timestampExpires]);
  }

  putMetadataFile(deviceId: string, name: string, bytes: Uint8Array): Promise<void> {
    return this.db.run('INSERT INTO metadata_files (device_id, name, bytes) VALUES (?, ?, ?) ON CONFLICT (device_id, name) DO UPDATE SET bytes = excluded.bytes', [
      deviceId, name, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)]);
  }

  async getMetadataFile(deviceId: string, name: string): Promise<Uint8Array | undefined> {
    const [r] = await this.db.all('SELECT bytes FROM metadata_files WHERE device_id = ? AND name = ?', [deviceId, name]);
    const b = r?.bytes as Buffer | undefined;
    return b && new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  }

  deleteMetadataFile(deviceId: string, name: string): Promise<void> {
    return this.db.run('DELETE FROM metadata_files WHERE device_id = ? AND name = ?', [deviceId, name]);
  }

  insertCampaign(c: CampaignRecord): Promise<void> {
    return this.db.run(`INSERT INTO campaigns (id, status, spec, devices, waves_launched, launched_count, reason, created_at, updated_at, group_size, change_seq)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ${this.#stamp('campaigns')})`, [
      c.id, c.status, json(c.spec), json(c.devices), c.wavesLaunched, c.launchedCount, c.reason, c.createdAt, c.updatedAt, c.devices.length]);
  }

  updateCampaign(id: string, fields: Partial<CampaignRecord>): Promise<void> {
    return this.#update('campaigns', 'id', id, CAMPAIGN_COLUMNS, { ...fields, ...(fields.devices && { groupSize: fields.devices.length }) });
  }

  getCampaignState(id: string): Promise<CampaignState | undefined> {
    return this.#one(`SELECT ${CAMPAIGN_STATE} FROM campaigns WHERE id = ?`, [id], campaignStateFrom);
  }

  runningCampaigns(): Promise<CampaignState[]> {
    return this.#many(`SELECT ${CAMPAIGN_STATE} FROM campaigns WHERE status = 'running' ORDER BY id`, [], campaignStateFrom);
  }

  getCampaign(id: string): Promise<CampaignRecord | undefined> {
    return this.#one('SELECT * FROM campaigns WHERE id = ?', [id], campaignFrom);
  }

  listCampaigns(): Promise<CampaignRecord[]> {
    return this.#many('SELECT * FROM campaigns ORDER BY created_at, id', [], campaignFrom);
  }

  async changesSince(cursor: string | undefined): Promise<ChangeBatch> {
    return this.db.dialect === 'postgres' ? this.#changesSincePg(cursor) : this.#changesSinceSqlite(cursor);
  }

  /** Cursor: the highest stamp seen per table, `devices,assignments,campaigns`. */
  async #changesSinceSqlite(cursor: string | undefined): Promise<ChangeBatch> {
    if (cursor === undefined) {
      const [r] = await this.db.all(`SELECT ${STAMPED.map((t) => `(SELECT COALESCE(MAX(change_seq), 0) FROM ${t}) AS ${t}`).join(', ')}`);
      return { cursor: STAMPED.map((t) => Number(r![t])).join(','), changes: [] };
    }
    const since = cursor.split(',').map(Number);
    const rows = await this.db.all(STAMPED.map((t) => `SELECT '${t}' AS kind, id, change_seq FROM ${t} WHERE change_seq > ?`).join(' UNION ALL '), since);
    const highest = [...since];
    const changes = rows.map((r) => {
      const i = STAMPED.indexOf(r.kind as Stamped);
      highest[i] = Math.max(highest[i]!, Number(r.change_seq));
      return { kind: r.kind as Stamped, id: r.id as string, stamp: String(r.change_seq) };
    });
    return { cursor: highest.join(','), changes };
  }

  /**
   * Cursor: the oldest transaction of this database still running at the previous call
   * (else the next transaction ID then). Every older one had finished, so what it wrote was
   * read then; rows of younger ones are read (again) now. Transactions of other databases
   * on the server never write here, so they do not hold the cursor back (which
   * pg_snapshot_xmin, server-wide, would). Taken first, so the rows come from a later snapshot.
   */
  async #changesSincePg(cursor: string | undefined): Promise<ChangeBatch> {
    const [h] = await this.db.all(`WITH s AS (SELECT pg_current_snapshot() AS snap),
      here AS (SELECT l.transactionid::text::bigint AS xid32 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'transactionid' AND l.mode = 'ExclusiveLock' AND l.granted AND a.datname = current_database())
      SELECT COALESCE((SELECT min(x) FROM pg_snapshot_xip(s.snap) x WHERE x::text::bigint % 4294967296 IN (SELECT xid32 FROM here)),
        pg_snapshot_xmax(s.snap))::text AS horizon FROM s`);
    const next = h!.horizon as string;
    if (cursor === undefined) return { cursor: next, changes: [] };
    const rows = await this.db.all(STAMPED.map((t) => `SELECT '${t}' AS kind, id, change_seq::text AS stamp FROM ${t} WHERE change_seq >= ?::xid8`).join(' UNION ALL '),
      STAMPED.map(() => cursor));
    return { cursor: next, changes: rows.map((r) => ({ kind: r.kind as Stamped, id: r.id as string, stamp: r.stamp as string })) };
  }
}
