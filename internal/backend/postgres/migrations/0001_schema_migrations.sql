-- The record of the schema: one row per migration applied, written in the
-- migration's own transaction. Migrate reads it to find what is missing and
-- to refuse a database a newer Heed has migrated. The stores' tables come
-- in later migrations, each with the code that uses them.
CREATE TABLE schema_migrations (
    version    integer     PRIMARY KEY CHECK (version > 0),
    name       text        NOT NULL,
    checksum   text        NOT NULL, -- hex SHA-256 of the migration file
    applied_at timestamptz NOT NULL DEFAULT now()
);
