-- The webhook store (package webhooks: endpoints, deliveries with their
-- attempts, the retry schedule, dead letters) and the admin API's audit
-- log (package audit). internal/backend/postgres/webhooks.go and audit.go
-- have the rows; docs/storage.md the design.

-- Ids hold no 0x00 and sort bytewise (COLLATE "C"), as bbolt's keys do,
-- so listings and cursors mean the same on both backends.
CREATE TABLE webhook_endpoints (
    tenant text COLLATE "C" NOT NULL,
    id     text COLLATE "C" NOT NULL,
    body   text NOT NULL, -- the webhooks.Endpoint as JSON (secrets sealed)
    PRIMARY KEY (tenant, id)
);

-- One row per event and endpoint that has been attempted, resent or
-- replayed. The schedule is the rows with a due time (pending or
-- retrying); the dead letters the rows of status 'failed'. Times are
-- Unix nanoseconds, as the schedule compares them exactly (webhooks.Hold).
CREATE TABLE webhook_deliveries (
    tenant     text COLLATE "C" NOT NULL,
    endpoint   text COLLATE "C" NOT NULL,
    seq        bigint NOT NULL,  -- the event's
    status     text NOT NULL,
    due        bigint,           -- NextAttempt while pending or retrying
    updated_ns bigint NOT NULL,
    body       text NOT NULL,    -- the webhooks.Delivery as JSON
    PRIMARY KEY (tenant, endpoint, seq)
);
-- The dispatcher's Due, Held and Scheduled.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (due, tenant, endpoint, seq) WHERE due IS NOT NULL;
-- The dead letters' listing.
CREATE INDEX webhook_deliveries_dead ON webhook_deliveries (tenant, endpoint, seq) WHERE status = 'failed';
-- Retention's purge of finished deliveries.
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (updated_ns) WHERE due IS NULL;

-- Audit sequence numbers, like the events', are taken only while holding
-- the transaction-level advisory lock 0x686565642e617564 ("heed.aud"), so
-- they are assigned in commit order and GET /api/v1/audit?after= never
-- passes a record committed late.
CREATE SEQUENCE audit_seq AS bigint;

CREATE TABLE audit (
    seq    bigint PRIMARY KEY,
    tenant text NOT NULL, -- '' for a change of no tenant
    body   text NOT NULL  -- the audit.Record as JSON
);
CREATE INDEX audit_tenant_seq ON audit (tenant, seq);
