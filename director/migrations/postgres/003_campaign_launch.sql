-- Campaign waves launch in chunks, each in a transaction of its own; see sqlite/005_campaign_launch.sql.
ALTER TABLE campaigns ADD COLUMN launched_count BIGINT NOT NULL DEFAULT 0;
UPDATE campaigns SET launched_count = LEAST(group_size,
  ceil(((spec::json -> 'waves' ->> (waves_launched - 1)::int)::float8 * group_size) / 100))
  WHERE waves_launched > 0;
CREATE INDEX campaigns_status ON campaigns(status);
