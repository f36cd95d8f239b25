-- Secrets keygate makes for itself and shares between every replica (the portal's
-- form-token key): made once, by whichever replica needs it first.
CREATE TABLE secrets (
    name       TEXT PRIMARY KEY,
    value      BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
