-- A key's own cap below its account's windows (docs/configuration.md, Accounts):
-- JSON of the windows it caps, NULL: none. A change is a change the request path
-- cares about: the change log's trigger names it too.
ALTER TABLE api_keys ADD COLUMN cap TEXT;

DROP TRIGGER IF EXISTS api_keys_changed;
CREATE TRIGGER api_keys_changed AFTER UPDATE ON api_keys FOR EACH ROW
WHEN OLD.key_hash IS NOT NEW.key_hash
  OR OLD.prev_key_hash IS NOT NEW.prev_key_hash
  OR OLD.prev_hash_expires_at IS NOT NEW.prev_hash_expires_at
  OR OLD.name IS NOT NEW.name
  OR OLD.tier IS NOT NEW.tier
  OR OLD.scopes IS NOT NEW.scopes
  OR OLD.environment IS NOT NEW.environment
  OR OLD.org IS NOT NEW.org
  OR OLD.owner IS NOT NEW.owner
  OR OLD.account IS NOT NEW.account
  OR OLD.cap IS NOT NEW.cap
  OR OLD.status IS NOT NEW.status
  OR OLD.allowed_ips IS NOT NEW.allowed_ips
  OR OLD.expires_at IS NOT NEW.expires_at
  OR (OLD.credits IS NULL) IS NOT (NEW.credits IS NULL)
BEGIN
    INSERT INTO key_changes (key_id, changed_at)
    VALUES (NEW.id, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;
