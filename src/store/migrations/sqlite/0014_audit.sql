-- The audit log (docs/operations.md, Audit log): one row per change, written in
-- the change's own transaction. `at` in Unix milliseconds; `fields` a JSON array
-- of the names the change set.
CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT NOT NULL,
    client_ip  TEXT,
    request_id TEXT,
    fields     TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX audit_log_at ON audit_log (at);
