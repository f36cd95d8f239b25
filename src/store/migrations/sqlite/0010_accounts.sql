-- Accounts (docs/configuration.md, Accounts): the customer that holds keys, with the
-- plan, its overrides and the pooled credit balance. Every key belongs to one.
CREATE TABLE accounts (
    id          TEXT PRIMARY KEY,
    owner       TEXT UNIQUE,   -- the user whose own account it is
    plan        TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    overrides   TEXT NOT NULL DEFAULT '{}',
    credits     INTEGER CHECK (credits IS NULL OR credits >= 0),
    refilled_at INTEGER,
    metadata    TEXT NOT NULL DEFAULT '{}',
    created_at  INTEGER NOT NULL
);
CREATE INDEX accounts_plan ON accounts (plan, status);

ALTER TABLE api_keys ADD COLUMN account TEXT;
CREATE INDEX api_keys_account ON api_keys (account, tier, status);

-- Every owner becomes an account. Its plan is its keys' tier when they agree (when
-- they do not, each key keeps its own tier and the plan is the tier most of them
-- have); its pooled balance starts as the sum of its active metered keys' credits
-- (none metered: unmetered), so pooling a tier later gives nobody free requests.
INSERT INTO accounts (id, owner, plan, credits, created_at)
SELECT 'acct_' || lower(hex(randomblob(10))), owner,
       (SELECT tier FROM api_keys t WHERE t.owner = k.owner
        GROUP BY tier ORDER BY COUNT(*) DESC, tier LIMIT 1),
       SUM(CASE WHEN status = 'active' THEN credits END),
       MIN(created_at)
FROM api_keys k WHERE owner IS NOT NULL GROUP BY owner;
UPDATE api_keys SET account = (SELECT a.id FROM accounts a WHERE a.owner = api_keys.owner)
WHERE owner IS NOT NULL;

-- A key without an owner is an account of its own, named after the key.
INSERT INTO accounts (id, plan, credits, created_at)
SELECT 'acct_' || id, tier, CASE WHEN status = 'active' THEN credits END, created_at
FROM api_keys WHERE owner IS NULL;
UPDATE api_keys SET account = 'acct_' || id WHERE owner IS NULL;

-- Users without keys get their account when they first need one.

-- A key moved to another account is a change the request path cares about.
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
  OR OLD.status IS NOT NEW.status
  OR OLD.allowed_ips IS NOT NEW.allowed_ips
  OR OLD.expires_at IS NOT NEW.expires_at
  OR (OLD.credits IS NULL) IS NOT (NEW.credits IS NULL)
BEGIN
    INSERT INTO key_changes (key_id, changed_at)
    VALUES (NEW.id, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;

-- A change to an account that the request path cares about is logged like a key's,
-- as `account:<id>`: every process drops the account's cached keys.
CREATE TRIGGER accounts_changed AFTER UPDATE ON accounts FOR EACH ROW
WHEN OLD.plan IS NOT NEW.plan
  OR OLD.status IS NOT NEW.status
  OR OLD.overrides IS NOT NEW.overrides
  OR (OLD.credits IS NULL) IS NOT (NEW.credits IS NULL)
BEGIN
    INSERT INTO key_changes (key_id, changed_at)
    VALUES ('account:' || NEW.id, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;

CREATE TRIGGER accounts_deleted AFTER DELETE ON accounts FOR EACH ROW
BEGIN
    INSERT INTO key_changes (key_id, changed_at)
    VALUES ('account:' || OLD.id, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;
