-- Secrets keygate makes for itself and shares between every process on the store
-- (the portal's form-token key): made once, by whichever process needs it first.
CREATE TABLE secrets (
    name       TEXT PRIMARY KEY,
    value      BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
