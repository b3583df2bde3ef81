-- Campaign waves launch in chunks, each in a transaction of its own (campaigns.ts): how many
-- devices of the group, in rollout order, are launched so far. A launch cut short (a director
-- killed mid-wave) is resumed from here by any director process.
ALTER TABLE campaigns ADD COLUMN launched_count INTEGER NOT NULL DEFAULT 0;
-- Campaigns started before launched each wave whole: their count is the end of their latest wave,
-- ceil(waves[k] * group / 100) as campaigns.ts computes it (no ceil() in every SQLite build).
UPDATE campaigns SET launched_count = MIN(group_size,
    CAST(json_extract(spec, '$.waves[' || (waves_launched - 1) || ']') * group_size / 100.0 AS INTEGER)
  + (json_extract(spec, '$.waves[' || (waves_launched - 1) || ']') * group_size / 100.0
     > CAST(json_extract(spec, '$.waves[' || (waves_launched - 1) || ']') * group_size / 100.0 AS INTEGER)))
  WHERE waves_launched > 0;
-- The periodic sweep for launches cut short reads only the running campaigns.
CREATE INDEX campaigns_status ON campaigns(status);
