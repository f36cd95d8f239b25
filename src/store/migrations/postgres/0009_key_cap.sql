-- A key's own cap below its account's windows (docs/configuration.md, Accounts):
-- JSON of the windows it caps, NULL: none. A change to it is announced.
-- (The same model as SQLite's migration 0012.)
ALTER TABLE api_keys ADD COLUMN cap TEXT;

DROP TRIGGER IF EXISTS api_keys_changed ON api_keys;
CREATE TRIGGER api_keys_changed AFTER UPDATE ON api_keys FOR EACH ROW
WHEN ((OLD.key_hash, OLD.prev_key_hash, OLD.prev_hash_expires_at, OLD.name, OLD.tier,
       OLD.scopes, OLD.environment, OLD.org, OLD.owner, OLD.account, OLD.cap, OLD.status,
       OLD.allowed_ips, OLD.expires_at, OLD.credits IS NULL)
      IS DISTINCT FROM
      (NEW.key_hash, NEW.prev_key_hash, NEW.prev_hash_expires_at, NEW.name, NEW.tier,
       NEW.scopes, NEW.environment, NEW.org, NEW.owner, NEW.account, NEW.cap, NEW.status,
       NEW.allowed_ips, NEW.expires_at, NEW.credits IS NULL))
EXECUTE FUNCTION keygate_announce_key_change();
