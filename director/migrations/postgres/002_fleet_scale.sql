-- Work per manifest independent of the fleet's size (issue 12); see sqlite/004_fleet_scale.sql.
CREATE TABLE campaign_counts (
  campaign_id TEXT COLLATE "C" NOT NULL, status TEXT NOT NULL, n BIGINT NOT NULL, PRIMARY KEY (campaign_id, status));
INSERT INTO campaign_counts (campaign_id, status, n)
  SELECT campaign_id, status, COUNT(*) FROM assignments WHERE campaign_id IS NOT NULL GROUP BY campaign_id, status;
ALTER TABLE campaigns ADD COLUMN group_size BIGINT NOT NULL DEFAULT 0;
UPDATE campaigns SET group_size = json_array_length(devices::json);
-- The transaction that last wrote each row. Transaction IDs are not handed out in commit
-- order, so the change feed reads from the oldest transaction of this database still running
-- at its previous read, never from the highest ID it saw (sql-store.ts changesSince).
ALTER TABLE devices ADD COLUMN change_seq xid8 NOT NULL DEFAULT pg_current_xact_id();
ALTER TABLE assignments ADD COLUMN change_seq xid8 NOT NULL DEFAULT pg_current_xact_id();
ALTER TABLE campaigns ADD COLUMN change_seq xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX devices_change ON devices(change_seq);
CREATE INDEX assignments_change ON assignments(change_seq);
CREATE INDEX campaigns_change ON campaigns(change_seq);
CREATE INDEX devices_status_online ON devices(status, online);
CREATE INDEX assignments_status_updated ON assignments(status, updated_at);
CREATE INDEX events_at ON events(at);
