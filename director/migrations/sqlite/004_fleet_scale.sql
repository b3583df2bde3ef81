-- Work per manifest independent of the fleet's size (issue 12).
-- Each campaign's assignments counted by status, kept by the store in the transaction that
-- writes the assignment: the wave gate reads a handful of counters, not the campaign's rows.
CREATE TABLE campaign_counts (
  campaign_id TEXT NOT NULL, status TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (campaign_id, status));
INSERT INTO campaign_counts (campaign_id, status, n)
  SELECT campaign_id, status, COUNT(*) FROM assignments WHERE campaign_id IS NOT NULL GROUP BY campaign_id, status;
-- The size of a campaign's group, so the gate need not read the group's list.
ALTER TABLE campaigns ADD COLUMN group_size INTEGER NOT NULL DEFAULT 0;
UPDATE campaigns SET group_size = json_array_length(devices);
-- Change sequence per table (MAX + 1 under the write lock, so commit order): the console's
-- change feed reads only the rows changed since its last read.
ALTER TABLE devices ADD COLUMN change_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE assignments ADD COLUMN change_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE campaigns ADD COLUMN change_seq INTEGER NOT NULL DEFAULT 0;
CREATE INDEX devices_change ON devices(change_seq);
CREATE INDEX assignments_change ON assignments(change_seq);
CREATE INDEX campaigns_change ON campaigns(change_seq);
-- Fleet summary aggregates: devices by status and online, the newest failures and events.
CREATE INDEX devices_status_online ON devices(status, online);
CREATE INDEX assignments_status_updated ON assignments(status, updated_at);
CREATE INDEX events_at ON events(at);
