-- The tenant registry (package tenant): tenants, their credentials (SMTP
-- passwords, API keys, ip networks), sending domains with their DKIM keys,
-- and lists. internal/backend/postgres/tenants.go has the rows; the rules
-- (which names are taken, the ip credentials' limits and overlap check,
-- what deleting a tenant removes) are package tenant's, which is why no
-- foreign key or cascade is declared here: a rule kept in two places
-- drifts, and bbolt, which has none, must behave the same.
--
-- Ids, names and selectors are COLLATE "C" so that listings sort bytewise,
-- as bbolt's keys do.

CREATE TABLE tenants (
    id             text        COLLATE "C" PRIMARY KEY,
    name           text        NOT NULL,
    postal_address text        NOT NULL,
    created_at     timestamptz NOT NULL
);

CREATE TABLE credentials (
    tenant       text        COLLATE "C" NOT NULL,
    id           text        COLLATE "C" NOT NULL,
    kind         text        NOT NULL, -- 'password', 'ip' or 'api_key'
    username     text        COLLATE "C" NOT NULL, -- a password's, else ''
    -- SHA-256 of the password or API key secret; the secret itself is
    -- never stored
    secret_hash  bytea,
    network      text        COLLATE "C" NOT NULL, -- an ip credential's, as written (netip.Prefix), else ''
    default_list text        NOT NULL,
    access       text        NOT NULL, -- an API key's
    name         text        NOT NULL, -- an API key's
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant, id)
);
-- AUTH (every SMTP login) and every admin API call with a key look a
-- credential up without knowing its tenant; the ip networks are read
-- into the relay's network index, and checked for overlap, whole.
CREATE UNIQUE INDEX credentials_username ON credentials (username) WHERE kind NOT IN ('ip', 'api_key');
CREATE UNIQUE INDEX credentials_api_key ON credentials (id) WHERE kind = 'api_key';
CREATE INDEX credentials_network ON credentials (network, id) WHERE kind = 'ip';

CREATE TABLE domains (
    name       text        COLLATE "C" PRIMARY KEY,
    tenant     text        COLLATE "C" NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX domains_tenant ON domains (tenant, name);

CREATE TABLE dkim_keys (
    domain       text        COLLATE "C" NOT NULL,
    selector     text        COLLATE "C" NOT NULL,
    algorithm    text        NOT NULL,
    state        text        NOT NULL, -- 'published', 'active' or 'retired'
    txt          text        NOT NULL, -- the record's value
    -- the PKCS#8 private key sealed with AES-GCM under a key derived from
    -- the server key, bound to domain and selector (package tenant); never
    -- in the clear here
    sealed       bytea,
    created_at   timestamptz NOT NULL,
    activated_at timestamptz,
    retired_at   timestamptz,
    PRIMARY KEY (domain, selector)
);

CREATE TABLE lists (
    tenant      text        COLLATE "C" NOT NULL,
    id          text        COLLATE "C" NOT NULL,
    name        text        NOT NULL,
    kind        text        NOT NULL, -- 'marketing' or 'transactional'
    unsubscribe boolean     NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant, id)
);
