-- The event log (package events) and the suppression lists with their
-- soft-bounce histories (package suppression). docs/storage.md explains the
-- design; internal/backend/postgres/events.go and suppressions.go the rows.

-- Event sequence numbers are taken from event_seq only while holding the
-- transaction-level advisory lock 0x686565642e657674 ("heed.evt"), which
-- is released at COMMIT or ROLLBACK: so they are assigned in commit
-- order, and a reader's cursor never passes an event committed late.
CREATE SEQUENCE event_seq AS bigint;

CREATE TABLE events (
    seq         bigint      PRIMARY KEY,
    tenant      text        NOT NULL,
    happened_at timestamptz NOT NULL,
    -- the event as JSON, as its webhooks carry it; its "seq" is 0, the
    -- column above is the event's sequence number
    body        text        NOT NULL
);
CREATE INDEX events_tenant_seq ON events (tenant, seq);
CREATE INDEX events_happened_at ON events (happened_at);

-- One row per tenant, address, scope and reason. The address is kept only
-- as addr_key, an HMAC of the normalised address under the server's key,
-- and in address until an erasure empties it.
CREATE TABLE suppressions (
    tenant     text        NOT NULL,
    addr_key   bytea       NOT NULL CHECK (length(addr_key) = 16),
    scope      text        COLLATE "C" NOT NULL, -- a list id or '*'
    -- 1 unsubscribe, 2 bounce, 3 complaint, 4 manual, 5 import
    reason     smallint    NOT NULL CHECK (reason BETWEEN 1 AND 5),
    address    text        NOT NULL, -- '' once erased
    channel    text        NOT NULL,
    message_id text        NOT NULL,
    link       text        NOT NULL, -- the opt-out link's list, '' for none
    created_at timestamptz NOT NULL,
    evidence   jsonb,                -- the soft bounces that escalated
    PRIMARY KEY (tenant, addr_key, scope, reason)
);
CREATE INDEX suppressions_scope ON suppressions (tenant, scope, addr_key, reason);
CREATE INDEX suppressions_addr_key ON suppressions (addr_key);

CREATE TABLE soft_bounces (
    tenant     text        NOT NULL,
    addr_key   bytea       NOT NULL CHECK (length(addr_key) = 16),
    bounces    jsonb       NOT NULL,
    delivered  text        NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (tenant, addr_key)
);
CREATE INDEX soft_bounces_addr_key ON soft_bounces (addr_key);
CREATE INDEX soft_bounces_updated_at ON soft_bounces (updated_at);
