-- The relay's own secrets (the server key, the opt-out token keys), which
-- on bbolt are files under data_dir/keys: on PostgreSQL a node holds no
-- state of its own, so every node reads them from here. A row is written
-- once, when the database holds nothing yet, and never replaced: what was
-- keyed or sealed under a secret (suppressed addresses' hashes, DKIM keys,
-- links in mail already sent) would silently stop working.
CREATE TABLE server_secrets (
    name       text PRIMARY KEY,
    value      bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
