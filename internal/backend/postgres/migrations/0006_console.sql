-- The console's accounts and sessions (package consoleusers, issue 19);
-- internal/backend/postgres/consoleusers.go has the rows.

CREATE TABLE console_users (
    username   text        COLLATE "C" PRIMARY KEY,
    operator   boolean     NOT NULL,
    tenant     text        NOT NULL, -- '' for an operator
    access     text        NOT NULL, -- '' for an operator
    password   text        NOT NULL, -- argon2id, PHC string format
    totp       bytea       NOT NULL, -- the TOTP secret, sealed (AES-GCM)
    totp_step  bigint      NOT NULL, -- the time step of the last code accepted
    created_at timestamptz NOT NULL
);

-- id is the SHA-256 of the cookie's token; the token is never stored.
CREATE TABLE console_sessions (
    id         bytea       PRIMARY KEY CHECK (length(id) = 32),
    username   text        COLLATE "C" NOT NULL REFERENCES console_users ON DELETE CASCADE,
    csrf       text        NOT NULL,
    verified   boolean     NOT NULL,
    created_at timestamptz NOT NULL,
    seen_at    timestamptz NOT NULL
);
CREATE INDEX console_sessions_username ON console_sessions (username);
