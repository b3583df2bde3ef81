-- The director's first schema (before assignments kept progress). Records with nested
-- shapes are JSON text columns; everything queried by key is a real column.
CREATE TABLE devices (
  id TEXT PRIMARY KEY, status TEXT NOT NULL, tags TEXT NOT NULL, manifest_counter INTEGER NOT NULL,
  recent_nonces TEXT NOT NULL, online INTEGER NOT NULL, last_seen TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE ecus (
  serial TEXT PRIMARY KEY, device_id TEXT NOT NULL REFERENCES devices(id), hardware_id TEXT NOT NULL,
  public_key TEXT NOT NULL, is_primary INTEGER NOT NULL, installed TEXT, release_counter INTEGER NOT NULL);
CREATE INDEX ecus_device ON ecus(device_id);
CREATE TABLE assignments (
  id TEXT PRIMARY KEY, device_id TEXT NOT NULL, campaign_id TEXT, status TEXT NOT NULL, items TEXT NOT NULL,
  targets_version INTEGER NOT NULL, error_code TEXT, error_message TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
  seq INTEGER NOT NULL);
CREATE INDEX assignments_device ON assignments(device_id, seq);
CREATE INDEX assignments_campaign ON assignments(campaign_id);
CREATE TABLE events (
  id INTEGER PRIMARY KEY AUTOINCREMENT, device_id TEXT NOT NULL, ecu_serial TEXT, kind TEXT NOT NULL,
  code TEXT NOT NULL, detail TEXT NOT NULL, at TEXT NOT NULL);
CREATE INDEX events_device ON events(device_id);
CREATE TABLE manifests (
  id INTEGER PRIMARY KEY AUTOINCREMENT, device_id TEXT NOT NULL, counter INTEGER NOT NULL, received_at TEXT NOT NULL,
  via TEXT NOT NULL, summary TEXT NOT NULL);
CREATE INDEX manifests_device ON manifests(device_id, id);
CREATE TABLE repo_state (
  device_id TEXT PRIMARY KEY, targets_version INTEGER NOT NULL, targets_expires TEXT NOT NULL,
  snapshot_version INTEGER NOT NULL, snapshot_expires TEXT NOT NULL,
  timestamp_version INTEGER NOT NULL, timestamp_expires TEXT NOT NULL);
CREATE TABLE metadata_files (
  device_id TEXT NOT NULL, name TEXT NOT NULL, bytes BLOB NOT NULL, PRIMARY KEY (device_id, name));
CREATE TABLE campaigns (
  id TEXT PRIMARY KEY, status TEXT NOT NULL, spec TEXT NOT NULL, devices TEXT NOT NULL, waves_launched INTEGER NOT NULL,
  reason TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
