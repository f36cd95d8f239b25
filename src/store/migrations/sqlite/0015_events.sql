-- Webhooks (docs/operations.md, Webhooks). `events` is the outbox: an event that
-- follows a change is written in the change's own transaction; `id` is unique, so
-- an event announced twice (by two replicas) is kept once. Each receiver reads it
-- in `seq` order from its cursor in `webhook_cursors`; `webhook_deliveries` keeps
-- every attempt's outcome; `leases` lets one process deliver at a time. Times in
-- Unix milliseconds.
CREATE TABLE events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    type       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    data       TEXT NOT NULL
);
CREATE INDEX events_created_at ON events (created_at);
CREATE TABLE webhook_cursors (
    receiver        TEXT PRIMARY KEY,
    seq             INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE webhook_deliveries (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       INTEGER NOT NULL,
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
    until  INTEGER NOT NULL
);
