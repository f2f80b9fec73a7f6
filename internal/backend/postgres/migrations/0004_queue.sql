-- The queue (package queue): message records, their recipients, the
-- bodies of messages (every body, on PostgreSQL: a node keeps no spool of
-- its own) and the schedule of next attempts. docs/storage.md explains
-- the design; internal/backend/postgres/queue.go the rows.
--
-- Message ids sort by acceptance time and are compared bytewise
-- (COLLATE "C"), as bbolt orders its keys: retention stops at the first
-- younger id on both backends.

CREATE TABLE messages (
    id      text COLLATE "C" PRIMARY KEY,
    tenant  text NOT NULL,
    -- the record as JSON (queue.Message without recipients or body)
    record  text NOT NULL
);
-- a tenant's messages, for its deletion
CREATE INDEX messages_tenant ON messages (tenant, id);

-- One row per recipient of a message; no foreign key, as on bbolt: a
-- row may outlive its message only until retention deletes both.
CREATE TABLE deliveries (
    message_id text    COLLATE "C" NOT NULL,
    idx        integer NOT NULL CHECK (idx >= 0),
    record     text    NOT NULL, -- queue.Recipient as JSON
    PRIMARY KEY (message_id, idx)
);

CREATE TABLE bodies (
    message_id text  COLLATE "C" PRIMARY KEY,
    body       bytea NOT NULL
);

-- A recipient waiting for an attempt, due at due. The primary key is the
-- scheduler's order and its index: it reads the earliest entries first.
-- Several nodes (issue 17) will add a lease column and claim entries with
-- SELECT ... FOR UPDATE SKIP LOCKED.
CREATE TABLE schedule (
    due        timestamptz NOT NULL,
    message_id text        COLLATE "C" NOT NULL,
    idx        integer     NOT NULL,
    domain     text        NOT NULL, -- the recipient's, for the per-domain cap
    PRIMARY KEY (due, message_id, idx)
);
