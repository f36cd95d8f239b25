-- Keys, stored only by the SHA-256 of the whole key string (same model as SQLite's
-- migrations 0001-0004, in PostgreSQL's own types).
CREATE TABLE api_keys (
    id                   TEXT PRIMARY KEY,
    key_hash             BYTEA NOT NULL UNIQUE,
    prev_key_hash        BYTEA,
    prev_hash_expires_at TIMESTAMPTZ,
    name                 TEXT NOT NULL,
    prefix               TEXT NOT NULL,
    last4                TEXT NOT NULL,
    tier                 TEXT NOT NULL,
    scopes               TEXT[] NOT NULL DEFAULT '{}',
    environment          TEXT NOT NULL CHECK (environment IN ('live', 'test')),
    org                  TEXT,
    owner                TEXT,
    status               TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
    credits              BIGINT CHECK (credits IS NULL OR credits >= 0),
    allowed_ips          TEXT[] NOT NULL DEFAULT '{}',
    expires_at           TIMESTAMPTZ,
    created_at           TIMESTAMPTZ NOT NULL,
    last_used_at         TIMESTAMPTZ
);
CREATE INDEX api_keys_prev_hash ON api_keys (prev_key_hash) WHERE prev_key_hash IS NOT NULL;
CREATE INDEX api_keys_owner_tier ON api_keys (owner, tier, status);

-- Logins for the token endpoint, and refresh tokens (stored hashed) in rotation families.
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL,
    name          TEXT,
    password_hash TEXT NOT NULL,
    is_admin      BOOLEAN NOT NULL DEFAULT false,
    created_at    TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX users_email ON users (lower(email));
CREATE TABLE refresh_tokens (
    token_hash BYTEA PRIMARY KEY,
    family_id  TEXT NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    used_at    TIMESTAMPTZ,
    revoked    BOOLEAN NOT NULL DEFAULT false
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

-- Per-key usage, aggregated per hour and endpoint (route name), added to in batches
-- by every replica.
CREATE TABLE usage (
    key_id     TEXT NOT NULL,
    hour       TIMESTAMPTZ NOT NULL,
    endpoint   TEXT NOT NULL,
    total      BIGINT NOT NULL DEFAULT 0,
    successful BIGINT NOT NULL DEFAULT 0,
    failed     BIGINT NOT NULL DEFAULT 0,
    total_ms   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, hour, endpoint)
);
