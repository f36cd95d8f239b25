-- Regenerate with a grace period: the previous secret keeps working until it ends.
ALTER TABLE api_keys ADD COLUMN prev_key_hash BLOB;
ALTER TABLE api_keys ADD COLUMN prev_hash_expires_at INTEGER;
CREATE INDEX api_keys_prev_hash ON api_keys (prev_key_hash) WHERE prev_key_hash IS NOT NULL;
CREATE INDEX api_keys_owner_tier ON api_keys (owner, tier, status);
