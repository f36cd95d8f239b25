-- Webhooks (docs/operations.md, Webhooks): the outbox, each receiver's cursor, the
-- deliveries, and the lease that lets one replica deliver at a time. (The same model
-- as SQLite's migration 0015.)
CREATE TABLE events (
    seq        BIGSERIAL PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    type       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    data       TEXT NOT NULL
);
CREATE INDEX events_created_at ON events (created_at);
CREATE TABLE webhook_cursors (
    receiver        TEXT PRIMARY KEY,
    seq             BIGINT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT 'epoch'
);
CREATE TABLE webhook_deliveries (
    id       BIGSERIAL PRIMARY KEY,
    at       TIMESTAMPTZ NOT NULL,
    receiver TEXT NOT NULL,
    event_id TEXT NOT NULL,
    type     TEXT NOT NULL,
    attempt  INTEGER NOT NULL,
    outcome  TEXT NOT NULL CHECK (outcome IN ('delivered', 'failed', 'given_up')),
    status   INTEGER,
    error    TEXT
);
CREATE INDEX webhook_deliveries_at ON webhook_deliveries (at);
CREATE TABLE leases (
    name   TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until  TIMESTAMPTZ NOT NULL
);
