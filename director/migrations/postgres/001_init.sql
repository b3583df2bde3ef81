-- The director's schema on PostgreSQL: the same tables and columns as on SQLite (JSON text
-- columns included, so one row mapping serves both). Keys sort bytewise (COLLATE "C"), as
-- on SQLite; counters are BIGINT; assignment order is an identity column.
CREATE TABLE devices (
  id TEXT COLLATE "C" PRIMARY KEY, status TEXT NOT NULL, tags TEXT NOT NULL, manifest_counter BIGINT NOT NULL,
  recent_nonces TEXT NOT NULL, online BOOLEAN NOT NULL, last_seen TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE INDEX devices_status ON devices(status);
CREATE TABLE ecus (
  serial TEXT COLLATE "C" PRIMARY KEY, device_id TEXT COLLATE "C" NOT NULL REFERENCES devices(id), hardware_id TEXT NOT NULL,
  public_key TEXT NOT NULL, is_primary BOOLEAN NOT NULL, installed TEXT, release_counter BIGINT NOT NULL);
CREATE INDEX ecus_device ON ecus(device_id);
CREATE TABLE assignments (
  id TEXT COLLATE "C" PRIMARY KEY, device_id TEXT COLLATE "C" NOT NULL, campaign_id TEXT COLLATE "C", status TEXT NOT NULL,
  items TEXT NOT NULL, targets_version BIGINT NOT NULL, error_code TEXT, error_message TEXT, created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL, seq BIGINT GENERATED ALWAYS AS IDENTITY, progress TEXT NOT NULL DEFAULT '{}');
CREATE INDEX assignments_device ON assignments(device_id, seq);
CREATE INDEX assignments_campaign ON assignments(campaign_id, seq);
CREATE TABLE events (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, device_id TEXT COLLATE "C" NOT NULL, ecu_serial TEXT, kind TEXT NOT NULL,
  code TEXT NOT NULL, detail TEXT NOT NULL, at TEXT NOT NULL);
CREATE INDEX events_device ON events(device_id, id);
CREATE TABLE manifests (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, device_id TEXT COLLATE "C" NOT NULL, counter BIGINT NOT NULL,
  received_at TEXT NOT NULL, via TEXT NOT NULL, summary TEXT NOT NULL);
CREATE INDEX manifests_device ON manifests(device_id, id);
CREATE TABLE repo_state (
  device_id TEXT COLLATE "C" PRIMARY KEY, targets_version BIGINT NOT NULL, targets_expires TEXT NOT NULL,
  snapshot_version BIGINT NOT NULL, snapshot_expires TEXT NOT NULL,
  timestamp_version BIGINT NOT NULL, timestamp_expires TEXT NOT NULL);
CREATE TABLE metadata_files (
  device_id TEXT COLLATE "C" NOT NULL, name TEXT COLLATE "C" NOT NULL, bytes BYTEA NOT NULL, PRIMARY KEY (device_id, name));
CREATE TABLE campaigns (
  id TEXT COLLATE "C" PRIMARY KEY, status TEXT NOT NULL, spec TEXT NOT NULL, devices TEXT NOT NULL, waves_launched BIGINT NOT NULL,
  reason TEXT, created_at TEXT COLLATE "C" NOT NULL, updated_at TEXT NOT NULL);
