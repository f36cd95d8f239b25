-- Keys, stored only by the SHA-256 of the whole key string.
CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    key_hash     BLOB NOT NULL UNIQUE,
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    last4        TEXT NOT NULL,
    tier         TEXT NOT NULL,
    scopes       TEXT NOT NULL DEFAULT '[]',
    environment  TEXT NOT NULL CHECK (environment IN ('live', 'test')),
    org          TEXT,
    owner        TEXT,
    status       TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
    credits      INTEGER CHECK (credits IS NULL OR credits >= 0),
    allowed_ips  TEXT NOT NULL DEFAULT '[]',
    expires_at   INTEGER,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER
);
CREATE INDEX api_keys_owner ON api_keys (owner);
