-- The bounce and complaint rates and the reputation guard's state
-- (package reputation, issue 18); internal/backend/postgres/reputation.go
-- has the rows.

-- One row per tenant, hour (since the Unix epoch, UTC) and sending
-- domain; a window is a range scan of the primary key.
CREATE TABLE reputation_rates (
    tenant      text   COLLATE "C" NOT NULL,
    hour        bigint NOT NULL,
    domain      text   COLLATE "C" NOT NULL,
    final       bigint NOT NULL,
    hard        bigint NOT NULL,
    delivered   bigint NOT NULL,
    complaints  bigint NOT NULL,
    PRIMARY KEY (tenant, hour, domain)
);
CREATE INDEX reputation_rates_hour ON reputation_rates (hour);

CREATE TABLE reputation_state (
    tenant text    COLLATE "C" PRIMARY KEY,
    paused boolean NOT NULL,
    body   jsonb   NOT NULL -- reputation.State
);
CREATE INDEX reputation_state_paused ON reputation_state (tenant) WHERE paused;
