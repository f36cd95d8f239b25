-- Portal sign-ins: the session token is stored hashed; a row lives until sign-out
-- or its expiry. Every replica reads the same rows, so a sign-out ends it everywhere.
CREATE TABLE portal_sessions (
    token_hash BYTEA PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX portal_sessions_user ON portal_sessions (user_id);
CREATE INDEX portal_sessions_expiry ON portal_sessions (expires_at);
