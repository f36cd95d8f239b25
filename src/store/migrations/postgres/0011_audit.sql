-- The audit log (docs/operations.md, Audit log): one row per change, written in
-- the change's own transaction. (The same model as SQLite's migration 0014.)
CREATE TABLE audit_log (
    id         BIGSERIAL PRIMARY KEY,
    at         TIMESTAMPTZ NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT NOT NULL,
    client_ip  TEXT,
    request_id TEXT,
    fields     TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX audit_log_at ON audit_log (at);
