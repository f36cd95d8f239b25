-- Accounts (docs/configuration.md, Accounts): the customer that holds keys, with the
-- plan, its overrides and the pooled credit balance. Every key belongs to one.
-- (The same model as SQLite's migration 0010, in PostgreSQL's own types.)
CREATE TABLE accounts (
    id          TEXT PRIMARY KEY,
    owner       TEXT UNIQUE,   -- the user whose own account it is
    plan        TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    overrides   TEXT NOT NULL DEFAULT '{}',
    credits     BIGINT CHECK (credits IS NULL OR credits >= 0),
    refilled_at TIMESTAMPTZ,
    metadata    TEXT NOT NULL DEFAULT '{}',
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX accounts_plan ON accounts (plan, status);

ALTER TABLE api_keys ADD COLUMN account TEXT;
CREATE INDEX api_keys_account ON api_keys (account, tier, status);

-- Every owner becomes an account. Its plan is its keys' tier when they agree (when
-- they do not, each key keeps its own tier and the plan is the tier most of them
-- have); its pooled balance starts as the sum of its active metered keys' credits
-- (none metered: unmetered), so pooling a tier later gives nobody free requests.
INSERT INTO accounts (id, owner, plan, credits, created_at)
SELECT 'acct_' || substr(md5(random()::text || k.owner), 1, 20), k.owner,
       (SELECT tier FROM api_keys t WHERE t.owner = k.owner
        GROUP BY tier ORDER BY COUNT(*) DESC, tier LIMIT 1),
       SUM(CASE WHEN k.status = 'active' THEN k.credits END),
       MIN(k.created_at)
FROM api_keys k WHERE k.owner IS NOT NULL GROUP BY k.owner;
UPDATE api_keys SET account = a.id FROM accounts a WHERE a.owner = api_keys.owner;

-- A key without an owner is an account of its own, named after the key.
INSERT INTO accounts (id, plan, credits, created_at)
SELECT 'acct_' || id, tier, CASE WHEN status = 'active' THEN credits END, created_at
FROM api_keys WHERE owner IS NULL;
UPDATE api_keys SET account = 'acct_' || id WHERE owner IS NULL;

-- A key moved to another account is a change the request path cares about.
DROP TRIGGER IF EXISTS api_keys_changed ON api_keys;
CREATE TRIGGER api_keys_changed AFTER UPDATE ON api_keys FOR EACH ROW
WHEN ((OLD.key_hash, OLD.prev_key_hash, OLD.prev_hash_expires_at, OLD.name, OLD.tier,
       OLD.scopes, OLD.environment, OLD.org, OLD.owner, OLD.account, OLD.status,
       OLD.allowed_ips, OLD.expires_at, OLD.credits IS NULL)
      IS DISTINCT FROM
      (NEW.key_hash, NEW.prev_key_hash, NEW.prev_hash_expires_at, NEW.name, NEW.tier,
       NEW.scopes, NEW.environment, NEW.org, NEW.owner, NEW.account, NEW.status,
       NEW.allowed_ips, NEW.expires_at, NEW.credits IS NULL))
EXECUTE FUNCTION keygate_announce_key_change();

-- A change to an account that the request path cares about is announced on the same
-- channel as `account:<id> <unix ms>`: every replica drops the account's cached keys.
CREATE FUNCTION keygate_announce_account_change() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify(
        'keygate_keys',
        'account:' || COALESCE(NEW.id, OLD.id) || ' '
            || floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint
    );
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER accounts_changed AFTER UPDATE ON accounts FOR EACH ROW
WHEN ((OLD.plan, OLD.status, OLD.overrides, OLD.credits IS NULL)
      IS DISTINCT FROM (NEW.plan, NEW.status, NEW.overrides, NEW.credits IS NULL))
EXECUTE FUNCTION keygate_announce_account_change();

CREATE TRIGGER accounts_deleted AFTER DELETE ON accounts FOR EACH ROW
EXECUTE FUNCTION keygate_announce_account_change();
