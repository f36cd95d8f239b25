-- Every change to a key that the request path cares about is announced on the
-- `keygate_keys` channel as "<id> <unix ms>", delivered when the change commits, so
-- every replica drops its cached copy at once. Credit debits and last-used updates
-- are not announced (only a key becoming metered or unmetered is), which keeps
-- metered traffic from flooding the channel. Changes made outside keygate (psql,
-- scripts) are announced too.
CREATE FUNCTION keygate_announce_key_change() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify(
        'keygate_keys',
        COALESCE(NEW.id, OLD.id) || ' ' || floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint
    );
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER api_keys_changed AFTER UPDATE ON api_keys FOR EACH ROW
WHEN ((OLD.key_hash, OLD.prev_key_hash, OLD.prev_hash_expires_at, OLD.name, OLD.tier,
       OLD.scopes, OLD.environment, OLD.org, OLD.owner, OLD.status, OLD.allowed_ips,
       OLD.expires_at, OLD.credits IS NULL)
      IS DISTINCT FROM
      (NEW.key_hash, NEW.prev_key_hash, NEW.prev_hash_expires_at, NEW.name, NEW.tier,
       NEW.scopes, NEW.environment, NEW.org, NEW.owner, NEW.status, NEW.allowed_ips,
       NEW.expires_at, NEW.credits IS NULL))
EXECUTE FUNCTION keygate_announce_key_change();

CREATE TRIGGER api_keys_deleted AFTER DELETE ON api_keys FOR EACH ROW
EXECUTE FUNCTION keygate_announce_key_change();
