-- The change log other processes follow (the CLI, a second keygate on the same file):
-- every change to a key that the request path cares about appends its id, in the
-- change's own transaction. Credit debits and last-used updates are not logged (only a
-- key becoming metered or unmetered is). Serving processes poll it and drop their
-- cached copy, as PostgreSQL's NOTIFY does for that store; old rows are pruned.
CREATE TABLE key_changes (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    key_id     TEXT NOT NULL,
    changed_at INTEGER NOT NULL   -- Unix ms
);
CREATE INDEX key_changes_changed_at ON key_changes (changed_at);

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
  OR OLD.status IS NOT NEW.status
  OR OLD.allowed_ips IS NOT NEW.allowed_ips
  OR OLD.expires_at IS NOT NEW.expires_at
  OR (OLD.credits IS NULL) IS NOT (NEW.credits IS NULL)
BEGIN
    INSERT INTO key_changes (key_id, changed_at)
    VALUES (NEW.id, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;

CREATE TRIGGER api_keys_deleted AFTER DELETE ON api_keys FOR EACH ROW
BEGIN
    INSERT INTO key_changes (key_id, changed_at)
    VALUES (OLD.id, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;
