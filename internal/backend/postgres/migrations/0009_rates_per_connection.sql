-- The reputation rates' counters get a shard: each connection adds to
-- its own row (its backend's process id), so that the outcomes of one
-- tenant, hour and domain recorded at once by many sessions do not queue
-- on one row's lock until each other's COMMIT (or, under SERIALIZABLE,
-- fail and run again). Readers sum the shards; rows already there are
-- shard 0. internal/backend/postgres/reputation.go has the rows.
ALTER TABLE reputation_rates ADD COLUMN shard integer NOT NULL DEFAULT 0;
ALTER TABLE reputation_rates DROP CONSTRAINT reputation_rates_pkey;
ALTER TABLE reputation_rates ADD PRIMARY KEY (tenant, hour, domain, shard);
