//! The shared PostgreSQL key store: every replica reads and writes one database.
//!
//! Same behaviour as the SQLite store (one [`KeyStore`] trait, the same tests in
//! `store::conformance`), in PostgreSQL's types. Credit debits are one conditional
//! `UPDATE ... RETURNING`, so they are exact across replicas. Usage is added with
//! `INSERT ... ON CONFLICT DO UPDATE SET total = usage.total + excluded.total`, so
//! flushes from many replicas never lose each other's counts. Key changes are
//! announced by a trigger and delivered by [`listen`] to every replica.

mod accounts;
mod events;
mod listen;
mod migrate;
mod pool;
pub mod target;
mod users;

use super::{
    decide_debits, import_upsert, refill_columns, usage_columns, usage_counts, usage_values,
    ChangeHandler, DebitRequest, DebitResult, DecidedDebits, Holder, ImportFeed, ImportMsg,
    KeyStore, NewSecret, QuotaScope, StoreError,
};
use crate::clock::{Clock, SystemClock};
use crate::domain::{
    AccountGate, AccountStatus, AuditEntry, AuditOrigin, Environment, KeyCap, KeyHash, KeyPatch,
    KeyRecord, KeyStatus, PlanOverrides, UsageRow,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pool::{db_error, PgPool};
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

/// A PostgreSQL-backed [`KeyStore`] and [`super::users::UserStore`].
pub struct PostgresStore {
    pool: PgPool,
    /// Dropped with the store: stops the change feed.
    stop: tokio::sync::watch::Sender<()>,
    /// Judges regenerate grace periods and refresh-token expiry.
    clock: Arc<dyn Clock>,
}

impl PostgresStore {
    /// Connects to `url`, applies pending migrations, and keeps `pool_size` shared
    /// connections; every query waits at most `timeout`. Fails when the database
    /// cannot be reached, so a misconfigured replica never starts half-working.
    pub fn open(url: &str, pool_size: usize, timeout: Duration) -> Result<Self, StoreError> {
        let target = target::PgTarget::parse(url)
            .map_err(|e| StoreError::Unavailable(format!("invalid store.url: {e}")))?;
        Self::open_target(target, pool_size, timeout)
    }

    /// [`open`](Self::open) with `store.url` already parsed (by the compile).
    pub fn open_target(
        target: target::PgTarget,
        pool_size: usize,
        timeout: Duration,
    ) -> Result<Self, StoreError> {
        if let Some(warning) = target.warning() {
            tracing::warn!("{warning}");
        }
        let migrate_target = target.clone();
        crate::net::io_runtime::block_on(async move {
            let mut client = pool::connect(&migrate_target, timeout).await?;
            migrate::migrate(&mut client).await
        })
        .map_err(|e| StoreError::Unavailable(e.to_string()))?
        .map_err(|e| match e {
            StoreError::Unavailable(m) => {
                StoreError::Unavailable(format!("cannot open the PostgreSQL store: {m}"))
            }
            other => other,
        })?;
        let (stop, _) = tokio::sync::watch::channel(());
        Ok(PostgresStore {
            pool: PgPool::new(target, pool_size, timeout),
            stop,
            clock: Arc::new(SystemClock),
        })
    }

    /// The same store, judging time on `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
}

fn corrupt(id: &str, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        id: id.to_string(),
        reason: reason.to_string(),
    }
}

/// Decodes a row of the 20 key columns (and, from `find_by_hash`, a 21st column:
/// when the matched previous secret stops working, and three of its account's).
pub(super) fn decode(row: &Row) -> Result<KeyRecord, StoreError> {
    let id: String = row.try_get(0).map_err(db_error)?;
    let get = |e: tokio_postgres::Error| corrupt(&id, e);
    let env: String = row.try_get(6).map_err(get)?;
    let status: String = row.try_get(9).map_err(get)?;
    let ips: Vec<String> = row.try_get(11).map_err(get)?;
    let allowed_ips = ips
        .iter()
        .map(|s| {
            s.parse()
                .map_err(|e| corrupt(&id, format!("allowed_ips `{s}`: {e}")))
        })
        .collect::<Result<_, _>>()?;
    Ok(KeyRecord {
        name: row.try_get(1).map_err(get)?,
        prefix: row.try_get(2).map_err(get)?,
        last4: row.try_get(3).map_err(get)?,
        tier: row.try_get(4).map_err(get)?,
        scopes: row.try_get(5).map_err(get)?,
        environment: Environment::parse(&env)
            .ok_or_else(|| corrupt(&id, format!("environment `{env}`")))?,
        org: row.try_get(7).map_err(get)?,
        owner: row.try_get(8).map_err(get)?,
        status: KeyStatus::parse(&status)
            .ok_or_else(|| corrupt(&id, format!("status `{status}`")))?,
        credits: row.try_get(10).map_err(get)?,
        allowed_ips,
        expires_at: row.try_get(12).map_err(get)?,
        created_at: row.try_get(13).map_err(get)?,
        last_used_at: row.try_get(14).map_err(get)?,
        refill: super::refill_of(row.try_get(15).map_err(get)?, row.try_get(16).map_err(get)?)
            .map_err(|e| corrupt(&id, format!("refill: {e}")))?,
        refilled_at: row.try_get(17).map_err(get)?,
        account: row.try_get(18).map_err(get)?,
        cap: row
            .try_get::<_, Option<String>>(19)
            .map_err(get)?
            .map(|c| KeyCap::from_json(&c))
            .transpose()
            .map_err(|e| corrupt(&id, format!("cap: {e}")))?,
        secret_valid_until: if row.len() > 20 {
            row.try_get(20).map_err(get)?
        } else {
            None
        },
        account_gate: match (row.len() > 21).then(|| row.try_get::<_, Option<String>>(21)) {
            Some(status) => match (
                row.try_get::<_, Option<String>>(18).map_err(get)?,
                status.map_err(get)?,
            ) {
                (Some(account), Some(status)) => Some(Box::new(AccountGate {
                    id: account,
                    status: AccountStatus::parse(&status)
                        .ok_or_else(|| corrupt(&id, format!("account status `{status}`")))?,
                    overrides: PlanOverrides::from_json(
                        &row.try_get::<_, String>(22).map_err(get)?,
                    )
                    .map_err(|e| corrupt(&id, format!("account overrides: {e}")))?,
                    credits: row.try_get(23).map_err(get)?,
                })),
                _ => None,
            },
            None => None,
        },
        id,
    })
}

const INSERT_KEY: &str = "INSERT INTO api_keys (key_hash, id, name, prefix, last4, tier, scopes, \
     environment, org, owner, status, credits, allowed_ips, expires_at, created_at, \
     last_used_at, refill_amount, refill_every, refilled_at, account, cap) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, \
     $20, $21)";

/// The parameters of [`INSERT_KEY`] for `r` (`refill` from [`refill_columns`]).
fn insert_params<'a>(
    r: &'a KeyRecord,
    hash: &'a &[u8],
    ips: &'a Vec<String>,
    env: &'a &str,
    status: &'a &str,
    refill: &'a (Option<i64>, Option<String>),
    cap: &'a Option<String>,
) -> [&'a (dyn ToSql + Sync); 21] {
    [
        hash,
        &r.id,
        &r.name,
        &r.prefix,
        &r.last4,
        &r.tier,
        &r.scopes,
        env,
        &r.org,
        &r.owner,
        status,
        &r.credits,
        ips,
        &r.expires_at,
        &r.created_at,
        &r.last_used_at,
        &refill.0,
        &refill.1,
        &r.refilled_at,
        &r.account,
        cap,
    ]
}

/// Gives every key without a stored account one, as migration 0007 did: an
/// account a key names is made on first use (on the key's tier), a key with an
/// owner joins the owner's account, any other key gets one of its own
/// (`acct_<key id>`). Run in an import's transaction, before it commits.
const ADOPT_KEYS: &str = "
INSERT INTO accounts (id, plan, created_at)
SELECT account, MIN(tier), MIN(created_at) FROM api_keys
WHERE account IS NOT NULL AND account NOT IN (SELECT id FROM accounts) GROUP BY account
ON CONFLICT DO NOTHING;
INSERT INTO accounts (id, owner, plan, created_at)
SELECT 'acct_' || substr(md5(random()::text || owner), 1, 20), owner, MIN(tier), MIN(created_at)
FROM api_keys
WHERE account IS NULL AND owner IS NOT NULL
  AND owner NOT IN (SELECT owner FROM accounts WHERE owner IS NOT NULL)
GROUP BY owner
ON CONFLICT DO NOTHING;
UPDATE api_keys SET account = a.id FROM accounts a
WHERE api_keys.account IS NULL AND a.owner = api_keys.owner;
INSERT INTO accounts (id, plan, created_at)
SELECT 'acct_' || id, tier, created_at FROM api_keys WHERE account IS NULL
ON CONFLICT DO NOTHING;
UPDATE api_keys SET account = 'acct_' || id WHERE account IS NULL;
";

fn ips_text(ips: &[ipnet::IpNet]) -> Vec<String> {
    ips.iter().map(|n| n.to_string()).collect()
}

/// Appends `audit` to the log, inside the caller's transaction.
/// Writes `audit`, and the events its change announces (read from the changed
/// record, as it is now, in the same transaction).
pub(super) async fn write_audit(
    tx: &tokio_postgres::Transaction<'_>,
    audit: &AuditEntry,
) -> Result<(), tokio_postgres::Error> {
    insert_audit(tx, audit).await?;
    use crate::domain::event::{events_of_change, subject_of, Subject};
    // A row that does not decode announces nothing rather than failing the change.
    let events = match subject_of(audit) {
        Subject::None => return Ok(()),
        Subject::Key => {
            const SQL: &str =
                "SELECT id, name, prefix, last4, tier, scopes, environment, org, owner, \
                 status, credits, allowed_ips, expires_at, created_at, last_used_at, \
                 refill_amount, refill_every, refilled_at, account, cap \
                 FROM api_keys WHERE id = $1";
            let row = tx.query_opt(SQL, &[&audit.target]).await?;
            let key = row.and_then(|r| decode(&r).ok());
            events_of_change(audit, key.as_ref(), None)
        }
        Subject::Account => {
            let account = accounts::read_account(tx, &audit.target).await?;
            events_of_change(audit, None, account.as_ref())
        }
        Subject::Entry => events_of_change(audit, None, None),
    };
    for e in &events {
        write_event(tx, e).await?;
    }
    Ok(())
}

/// The advisory lock that event writers hold until they commit.
const EVENTS_LOCK: i64 = 0x6b67_6576_656e_7473; // "kgevents"

/// Adds `event` to the outbox, unless an event with its id is there already.
///
/// Receivers read the outbox in `seq` order from a cursor, so an event must never
/// become visible after one with a larger `seq`: two transactions could take
/// sequence numbers in one order and commit in the other, and the first event
/// would be passed over. Every writer takes one transaction-scoped advisory lock
/// before it takes its number, so numbers are taken in commit order. (Events
/// follow management changes, a few a second at most; SQLite has one writer.)
pub(super) async fn write_event(
    tx: &tokio_postgres::Transaction<'_>,
    event: &crate::domain::event::Event,
) -> Result<(), tokio_postgres::Error> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&EVENTS_LOCK])
        .await?;
    const SQL: &str = "INSERT INTO events (id, type, created_at, data) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (id) DO NOTHING";
    let data = event.data.to_string();
    tx.execute(SQL, &[&event.id, &event.kind, &event.created_at, &data])
        .await
        .map(drop)
}

async fn insert_audit(
    tx: &tokio_postgres::Transaction<'_>,
    audit: &AuditEntry,
) -> Result<(), tokio_postgres::Error> {
    const SQL: &str = "INSERT INTO audit_log \
         (at, actor, action, target, client_ip, request_id, fields) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)";
    let fields = audit.fields_json();
    tx.execute(
        SQL,
        &[
            &audit.at,
            &audit.origin.actor,
            &audit.action,
            &audit.target,
            &audit.origin.client_ip,
            &audit.origin.request_id,
            &fields,
        ],
    )
    .await
    .map(drop)
}

#[async_trait]
impl KeyStore for PostgresStore {
    async fn find_by_hash(&self, hash: &KeyHash) -> Result<Option<KeyRecord>, StoreError> {
        const SQL: &str = "SELECT id, name, prefix, last4, tier, scopes, environment, org, owner, \
             status, credits, allowed_ips, expires_at, created_at, last_used_at, \
             refill_amount, refill_every, refilled_at, account, cap, \
             CASE WHEN key_hash = $1 THEN NULL ELSE prev_hash_expires_at END, \
             a.a_status, a.a_overrides, a.a_credits \
             FROM api_keys LEFT JOIN LATERAL (SELECT status AS a_status, overrides AS a_overrides, \
               credits AS a_credits FROM accounts WHERE accounts.id = api_keys.account) a ON true \
             WHERE key_hash = $1 \
             OR (prev_key_hash = $1 AND prev_hash_expires_at > $2)";
        let hash = hash.0.as_slice();
        let now = self.clock.now_utc();
        self.pool
            .query_opt(SQL, &[&hash, &now])
            .await?
            .map(|r| decode(&r))
            .transpose()
    }

    async fn get(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        const SQL: &str = "SELECT id, name, prefix, last4, tier, scopes, environment, org, owner, \
             status, credits, allowed_ips, expires_at, created_at, last_used_at, \
             refill_amount, refill_every, refilled_at, account, cap \
             FROM api_keys WHERE id = $1";
        self.pool
            .query_opt(SQL, &[&id])
            .await?
            .map(|r| decode(&r))
            .transpose()
    }

    async fn list(&self) -> Result<Vec<KeyRecord>, StoreError> {
        const SQL: &str = "SELECT id, name, prefix, last4, tier, scopes, environment, org, owner, \
             status, credits, allowed_ips, expires_at, created_at, last_used_at, \
             refill_amount, refill_every, refilled_at, account, cap \
             FROM api_keys ORDER BY created_at DESC, id";
        self.pool
            .query(SQL, &[])
            .await?
            .iter()
            .map(decode)
            .collect()
    }

    async fn list_by_owner(&self, owner: &str) -> Result<Vec<KeyRecord>, StoreError> {
        const SQL: &str = "SELECT id, name, prefix, last4, tier, scopes, environment, org, owner, \
             status, credits, allowed_ips, expires_at, created_at, last_used_at, \
             refill_amount, refill_every, refilled_at, account, cap \
             FROM api_keys WHERE owner = $1 ORDER BY created_at DESC, id";
        self.pool
            .query(SQL, &[&owner])
            .await?
            .iter()
            .map(decode)
            .collect()
    }

    async fn list_page(
        &self,
        owner: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<KeyRecord>, StoreError> {
        // Keyset pagination in (created_at DESC, id) order, from the cursor's row.
        const SQL: &str = "SELECT id, name, prefix, last4, tier, scopes, environment, org, owner, \
             status, credits, allowed_ips, expires_at, created_at, last_used_at, \
             refill_amount, refill_every, refilled_at, account, cap \
             FROM api_keys k WHERE ($1::text IS NULL OR owner = $1) \
             AND ($2::text IS NULL OR EXISTS (SELECT 1 FROM api_keys c WHERE c.id = $2 \
                  AND ($1::text IS NULL OR c.owner = $1) \
                  AND (k.created_at < c.created_at \
                       OR (k.created_at = c.created_at AND k.id > c.id)))) \
             ORDER BY created_at DESC, id LIMIT $3";
        let limit = limit as i64;
        self.pool
            .query(SQL, &[&owner, &after, &limit])
            .await?
            .iter()
            .map(decode)
            .collect()
    }

    async fn count_active(&self, owner: &str, tier: &str) -> Result<u64, StoreError> {
        const SQL: &str = "SELECT COUNT(*) FROM api_keys \
             WHERE owner = $1 AND tier = $2 AND status = 'active'";
        let rows = self.pool.query(SQL, &[&owner, &tier]).await?;
        let n: i64 = rows
            .first()
            .map(|r| r.try_get(0))
            .transpose()
            .map_err(db_error)?
            .unwrap_or(0);
        Ok(n.max(0) as u64)
    }

    async fn update(
        &self,
        id: &str,
        patch: &KeyPatch,
        audit: &AuditEntry,
    ) -> Result<KeyRecord, StoreError> {
        let mut sets: Vec<String> = Vec::new();
        let mut values: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        let mut set = |column: &str, value: Box<dyn ToSql + Sync + Send>| {
            values.push(value);
            sets.push(format!("{column} = ${}", values.len()));
        };
        if let Some(v) = &patch.name {
            set("name", Box::new(v.clone()));
        }
        if let Some(v) = &patch.tier {
            set("tier", Box::new(v.clone()));
        }
        if let Some(v) = &patch.scopes {
            set("scopes", Box::new(v.clone()));
        }
        if let Some(v) = patch.credits {
            set("credits", Box::new(v));
        }
        if let Some(v) = patch.refill {
            let (amount, every) = refill_columns(v);
            set("refill_amount", Box::new(amount));
            set("refill_every", Box::new(every));
        }
        if let Some(v) = &patch.allowed_ips {
            set("allowed_ips", Box::new(ips_text(v)));
        }
        if let Some(v) = patch.expires_at {
            set("expires_at", Box::new(v));
        }
        if let Some(v) = patch.cap {
            set("cap", Box::new(v.map(|c| c.to_json())));
        }
        values.push(Box::new(id.to_string()));
        // With nothing to set, the statement still finds (and locks) the row, so a
        // missing key writes no audit entry.
        let sql = match sets.is_empty() {
            true => format!(
                "SELECT 1 FROM api_keys WHERE id = ${} FOR UPDATE",
                values.len()
            ),
            false => format!(
                "UPDATE api_keys SET {} WHERE id = ${}",
                sets.join(", "),
                values.len()
            ),
        };
        let params: Vec<&(dyn ToSql + Sync)> = values
            .iter()
            .map(|b| b.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let work = async |client: &mut tokio_postgres::Client| {
            let tx = client.transaction().await?;
            if tx.execute(&sql, &params).await? == 0 {
                return Ok(false);
            }
            write_audit(&tx, audit).await?;
            tx.commit().await.map(|_| true)
        };
        if !self.pool.write_transaction("update", work).await? {
            return Err(StoreError::NotFound(id.to_string()));
        }
        self.get(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(id.to_string()))
    }

    async fn insert(
        &self,
        r: &KeyRecord,
        hash: &KeyHash,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let hash = hash.0.as_slice();
        let ips = ips_text(&r.allowed_ips);
        let env = r.environment.as_str();
        let status = r.status.as_str();
        let refill = refill_columns(r.refill);
        let cap = r.cap.map(|c| c.to_json());
        let work = async |client: &mut tokio_postgres::Client| {
            let tx = client.transaction().await?;
            tx.execute(
                INSERT_KEY,
                &insert_params(r, &hash, &ips, &env, &status, &refill, &cap),
            )
            .await?;
            write_audit(&tx, audit).await?;
            tx.commit().await
        };
        self.pool.write_transaction("insert", work).await
    }

    async fn insert_within_quota(
        &self,
        r: &KeyRecord,
        hash: &KeyHash,
        max_active: u64,
        scope: QuotaScope,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        // The advisory lock serialises creates for one owner (account) and tier
        // across every replica until the transaction ends; each statement then sees
        // what the previous holder committed (read committed), so the count is exact.
        const LOCK: &str = "SELECT pg_advisory_xact_lock(hashtextextended($1, 7001))";
        const COUNT_OWNER: &str = "SELECT COUNT(*) FROM api_keys \
             WHERE owner IS NOT DISTINCT FROM $1 AND tier = $2 AND status = 'active'";
        const COUNT_ACCOUNT: &str = "SELECT COUNT(*) FROM api_keys \
             WHERE account IS NOT DISTINCT FROM $1 AND tier = $2 AND status = 'active'";
        // The tier is bound but does not narrow the count.
        const COUNT_OWNER_ANY_TIER: &str = "SELECT COUNT(*) FROM api_keys \
             WHERE owner IS NOT DISTINCT FROM $1 AND $2::text IS NOT NULL AND status = 'active'";
        let (count, holder, kind) = match scope {
            QuotaScope::Owner => (COUNT_OWNER, &r.owner, "quota"),
            QuotaScope::Account => (COUNT_ACCOUNT, &r.account, "account quota"),
            QuotaScope::OwnerAnyTier => (COUNT_OWNER_ANY_TIER, &r.owner, "first key"),
        };
        let hash = hash.0.as_slice();
        let ips = ips_text(&r.allowed_ips);
        let env = r.environment.as_str();
        let status = r.status.as_str();
        let tier = if scope == QuotaScope::OwnerAnyTier {
            ""
        } else {
            r.tier.as_str()
        };
        let lock_key = format!("{kind}\n{}\n{tier}", holder.as_deref().unwrap_or(""));
        let work = async |client: &mut tokio_postgres::Client| {
            let tx = client.transaction().await?;
            tx.execute(LOCK, &[&lock_key]).await?;
            let held: i64 = tx.query_one(count, &[holder, &r.tier]).await?.try_get(0)?;
            if held.max(0) as u64 >= max_active {
                return Ok(false);
            }
            let refill = refill_columns(r.refill);
            let cap = r.cap.map(|c| c.to_json());
            tx.execute(
                INSERT_KEY,
                &insert_params(r, &hash, &ips, &env, &status, &refill, &cap),
            )
            .await?;
            write_audit(&tx, audit).await?;
            tx.commit().await.map(|_| true)
        };
        match self.pool.write_transaction("insert", work).await? {
            true => Ok(()),
            false => Err(StoreError::QuotaExceeded { max: max_active }),
        }
    }

    async fn import(&self, mut feed: ImportFeed) -> Result<u64, StoreError> {
        // A connection of its own: a long import holds no pooled connection, so the
        // request path (debits, lookups) goes on meanwhile.
        let mut client = self.pool.dedicated().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        // The ids written, once each: the same key on two lines is one key.
        tx.batch_execute("CREATE TEMP TABLE import_written (id text PRIMARY KEY) ON COMMIT DROP")
            .await
            .map_err(db_error)?;
        // One statement per combination of fields the lines carry (in practice a
        // file has one or two).
        let mut statements = std::collections::HashMap::new();
        while let Some(msg) = feed.recv().await {
            let keys = match msg {
                ImportMsg::Keys(keys) => keys,
                ImportMsg::Accounts(settings, fallback) => {
                    let sql = super::import_account_sql('$')
                        .replace("$4 THEN", "$4::boolean THEN")
                        .replace("VALUES ($1,", "VALUES ($1::text,")
                        .replace("COALESCE($7,", "COALESCE($7::text,");
                    let stmt = tx.prepare(&sql).await.map_err(db_error)?;
                    let now = self.clock.now_utc();
                    for a in &settings {
                        let (credits, given) = (a.credits.flatten(), a.credits.is_some());
                        tx.execute(&stmt, &[&a.id, &a.plan, &credits, &given, &now, &fallback])
                            .await
                            .map_err(db_error)?;
                    }
                    continue;
                }
                ImportMsg::Commit(mut audit) => {
                    let written: i64 = tx
                        .query_one("SELECT COUNT(*) FROM import_written", &[])
                        .await
                        .and_then(|r| r.try_get(0))
                        .map_err(db_error)?;
                    tx.batch_execute(ADOPT_KEYS).await.map_err(db_error)?;
                    audit.target = AuditEntry::imported_target(written.max(0) as u64);
                    write_audit(&tx, &audit).await.map_err(db_error)?;
                    tx.commit().await.map_err(db_error)?;
                    return Ok(written.max(0) as u64);
                }
            };
            for k in &keys {
                let shape = (k.id_given, k.given);
                if let std::collections::hash_map::Entry::Vacant(slot) = statements.entry(shape) {
                    let sql = format!(
                        "WITH up AS ({INSERT_KEY}{}) \
                         INSERT INTO import_written SELECT id FROM up ON CONFLICT DO NOTHING",
                        import_upsert(k.id_given, k.given)
                    );
                    slot.insert(tx.prepare(&sql).await.map_err(db_error)?);
                }
            }
            // Each batch is pipelined: every statement is sent before the first
            // answer is awaited. The first failure, in line order, aborts the import.
            let columns: Vec<_> = keys
                .iter()
                .map(|k| {
                    (
                        k.hash.0.as_slice(),
                        ips_text(&k.record.allowed_ips),
                        k.record.environment.as_str(),
                        k.record.status.as_str(),
                        refill_columns(k.record.refill),
                        k.record.cap.map(|c| c.to_json()),
                    )
                })
                .collect();
            let writes =
                keys.iter()
                    .zip(&columns)
                    .map(|(k, (hash, ips, env, status, refill, cap))| {
                        let statement = &statements[&(k.id_given, k.given)];
                        let params = insert_params(&k.record, hash, ips, env, status, refill, cap);
                        let tx = &tx;
                        async move {
                            tx.execute(statement, &params).await.map_err(|e| {
                                if e.code()
                                    == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
                                {
                                    StoreError::ImportConflict { line: k.line }
                                } else {
                                    db_error(e)
                                }
                            })
                        }
                    });
            futures_util::future::try_join_all(writes).await?;
        }
        Err(StoreError::Unavailable(
            "the import was abandoned; nothing was written".into(),
        ))
    }

    async fn revoke(&self, id: &str, audit: &AuditEntry) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE api_keys SET status = 'revoked' WHERE id = $1";
        let work = async |client: &mut tokio_postgres::Client| {
            let tx = client.transaction().await?;
            if tx.execute(SQL, &[&id]).await? == 0 {
                return Ok(false);
            }
            write_audit(&tx, audit).await?;
            tx.commit().await.map(|_| true)
        };
        match self.pool.write_transaction("revoke", work).await? {
            false => Err(StoreError::NotFound(id.to_string())),
            true => Ok(()),
        }
    }

    async fn replace_secret(
        &self,
        id: &str,
        secret: &NewSecret<'_>,
        old_valid_until: Option<DateTime<Utc>>,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        // With a grace period the current hash becomes the previous one; without,
        // any previous hash is dropped too, so only the new secret works.
        const SQL: &str = "UPDATE api_keys SET \
               prev_key_hash = CASE WHEN $5::timestamptz IS NULL THEN NULL ELSE key_hash END, \
               prev_hash_expires_at = $5, key_hash = $2, prefix = $3, last4 = $4 \
             WHERE id = $1";
        let (hash, prefix, last4) = (secret.hash.0.as_slice(), secret.prefix, secret.last4);
        let work = async |client: &mut tokio_postgres::Client| {
            let tx = client.transaction().await?;
            let params: [&(dyn ToSql + Sync); 5] = [&id, &hash, &prefix, &last4, &old_valid_until];
            if tx.execute(SQL, &params).await? == 0 {
                return Ok(false);
            }
            write_audit(&tx, audit).await?;
            tx.commit().await.map(|_| true)
        };
        match self.pool.write_transaction("regenerate", work).await? {
            false => Err(StoreError::NotFound(id.to_string())),
            true => Ok(()),
        }
    }

    async fn debit_batch(&self, debits: &[DebitRequest]) -> Result<Vec<DebitResult>, StoreError> {
        // The rows are locked in one order (keys, then accounts, each by id), so
        // replicas committing batches at once never deadlock, and each batch decides
        // against balances no one else can change until it commits: a credit is
        // never spent twice, nor a refill applied twice, across replicas.
        const LOCK_KEYS: &str = "SELECT id, credits, EXTRACT(EPOCH FROM refilled_at)::bigint \
             FROM api_keys WHERE id = ANY($1) ORDER BY id FOR UPDATE";
        const LOCK_ACCOUNTS: &str = "SELECT id, credits, EXTRACT(EPOCH FROM refilled_at)::bigint \
             FROM accounts WHERE id = ANY($1) ORDER BY id FOR UPDATE";
        const WRITE_KEYS: &str = "UPDATE api_keys k SET credits = t.credits, \
             refilled_at = to_timestamp(t.refilled_at) \
             FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS t(id, credits, refilled_at) \
             WHERE k.id = t.id";
        const WRITE_ACCOUNTS: &str = "UPDATE accounts k SET credits = t.credits, \
             refilled_at = to_timestamp(t.refilled_at) \
             FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS t(id, credits, refilled_at) \
             WHERE k.id = t.id";
        let ids_of = |holder: Holder| {
            let mut ids: Vec<&str> = debits
                .iter()
                .filter(|d| d.holder == holder)
                .map(|d| d.id.as_str())
                .collect();
            ids.sort_unstable();
            ids.dedup();
            ids
        };
        let (key_ids, account_ids) = (ids_of(Holder::Key), ids_of(Holder::Account));
        let work = async |client: &mut tokio_postgres::Client| {
            let tx = client.transaction().await?;
            let mut balances = std::collections::HashMap::with_capacity(debits.len());
            for (holder, lock, ids) in [
                (Holder::Key, LOCK_KEYS, &key_ids),
                (Holder::Account, LOCK_ACCOUNTS, &account_ids),
            ] {
                if ids.is_empty() {
                    continue;
                }
                for row in tx.query(lock, &[ids]).await? {
                    balances.insert(
                        (holder, row.try_get::<_, String>(0)?),
                        (
                            row.try_get::<_, Option<i64>>(1)?,
                            row.try_get::<_, Option<i64>>(2)?,
                        ),
                    );
                }
            }
            let DecidedDebits {
                answers,
                balances: changed,
            } = decide_debits(debits, |holder, id| {
                Ok::<_, tokio_postgres::Error>(balances.get(&(holder, id.to_string())).copied())
            })?;
            if !changed.is_empty() {
                for (holder, write) in
                    [(Holder::Key, WRITE_KEYS), (Holder::Account, WRITE_ACCOUNTS)]
                {
                    let of: Vec<_> = changed.iter().filter(|b| b.holder == holder).collect();
                    if of.is_empty() {
                        continue;
                    }
                    let ids: Vec<&str> = of.iter().map(|b| b.id.as_str()).collect();
                    let left: Vec<i64> = of.iter().map(|b| b.credits).collect();
                    let at: Vec<Option<i64>> = of.iter().map(|b| b.refilled_at).collect();
                    tx.execute(write, &[&ids, &left, &at]).await?;
                }
                tx.commit().await?;
            }
            Ok(answers)
        };
        self.pool.write_transaction("credit debit", work).await
    }

    async fn refund_credits(
        &self,
        holder: Holder,
        id: &str,
        cost: u64,
        debited_at: i64,
    ) -> Result<(), StoreError> {
        const REFUND_KEY: &str = "UPDATE api_keys SET credits = credits + $2 \
             WHERE id = $1 AND credits IS NOT NULL \
             AND (refilled_at IS NULL OR refilled_at <= to_timestamp($3))";
        const REFUND_ACCOUNT: &str = "UPDATE accounts SET credits = credits + $2 \
             WHERE id = $1 AND credits IS NOT NULL \
             AND (refilled_at IS NULL OR refilled_at <= to_timestamp($3))";
        let sql = match holder {
            Holder::Key => REFUND_KEY,
            Holder::Account => REFUND_ACCOUNT,
        };
        let cost = i64::try_from(cost).unwrap_or(i64::MAX);
        let at = debited_at as f64;
        self.pool.execute(sql, &[&id, &cost, &at]).await.map(drop)
    }

    async fn record_usage(
        &self,
        rows: &[UsageRow],
        last_used: &[(String, i64)],
    ) -> Result<(), StoreError> {
        // Rows go in sorted, so replicas flushing at once lock them in the same order
        // and never deadlock; each statement adds, so nothing is lost either way.
        const ADD: &str = concat!(
            "INSERT INTO usage (key_id, hour, endpoint, ",
            usage_columns!(),
            ") SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::bigint[], \
               $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], \
               $10::bigint[], $11::bigint[]) \
             ORDER BY 1, 2, 3 \
             ON CONFLICT (key_id, hour, endpoint) DO UPDATE SET \
               total = usage.total + excluded.total, \
               successful = usage.successful + excluded.successful, \
               failed = usage.failed + excluded.failed, \
               rate_limited = usage.rate_limited + excluded.rate_limited, \
               no_credits = usage.no_credits + excluded.no_credits, \
               refused = usage.refused + excluded.refused, \
               api_error = usage.api_error + excluded.api_error, \
               total_us = usage.total_us + excluded.total_us"
        );
        const TOUCH: &str = "UPDATE api_keys k SET last_used_at = GREATEST(k.last_used_at, t.at) \
             FROM (SELECT * FROM unnest($1::text[], $2::timestamptz[]) ORDER BY 1) AS t(id, at) \
             WHERE k.id = t.id";
        let mut sorted: Vec<&UsageRow> = rows.iter().collect();
        sorted.sort_by(|a, b| {
            (&a.key_id, a.hour, &a.endpoint).cmp(&(&b.key_id, b.hour, &b.endpoint))
        });
        let ids: Vec<&str> = sorted.iter().map(|r| r.key_id.as_str()).collect();
        let hours: Vec<DateTime<Utc>> = sorted.iter().map(|r| r.hour).collect();
        let endpoints: Vec<&str> = sorted.iter().map(|r| r.endpoint.as_str()).collect();
        // One array per count column, in `usage_columns!`'s order.
        let mut columns: [Vec<i64>; 8] = Default::default();
        for r in &sorted {
            for (column, v) in columns.iter_mut().zip(usage_values(&r.counts)) {
                column.push(v);
            }
        }
        let touch_ids: Vec<&str> = last_used.iter().map(|(id, _)| id.as_str()).collect();
        let touch_at: Vec<DateTime<Utc>> = last_used
            .iter()
            .map(|(_, t)| DateTime::from_timestamp(*t, 0).unwrap_or_default())
            .collect();
        // One transaction: a batch that fails is kept and sent again whole, so a
        // half-applied one would be counted twice.
        let work = async |client: &mut tokio_postgres::Client| {
            let tx = client.transaction().await?;
            if !sorted.is_empty() {
                let [a, b, c, d, e, f, g, h] = &columns;
                tx.execute(ADD, &[&ids, &hours, &endpoints, a, b, c, d, e, f, g, h])
                    .await?;
            }
            if !touch_ids.is_empty() {
                tx.execute(TOUCH, &[&touch_ids, &touch_at]).await?;
            }
            tx.commit().await
        };
        self.pool.write_transaction("usage flush", work).await
    }

    async fn usage(
        &self,
        key_id: Option<&str>,
        since: DateTime<Utc>,
    ) -> Result<Vec<UsageRow>, StoreError> {
        const SQL: &str = concat!(
            "SELECT key_id, hour, endpoint, ",
            usage_columns!(),
            " FROM usage WHERE ($1::text IS NULL OR key_id = $1) AND hour >= $2 \
             ORDER BY hour, endpoint, key_id"
        );
        let rows = self.pool.query(SQL, &[&key_id, &since]).await?;
        rows.iter()
            .map(|r| {
                let mut v = [0i64; 8];
                for (i, slot) in v.iter_mut().enumerate() {
                    *slot = r.try_get(3 + i)?;
                }
                Ok(UsageRow {
                    key_id: r.try_get(0)?,
                    hour: r.try_get(1)?,
                    endpoint: r.try_get(2)?,
                    counts: usage_counts(v),
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(db_error)
    }

    async fn audit_log(
        &self,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        const SQL: &str = "SELECT id, at, actor, action, target, client_ip, request_id, fields \
             FROM audit_log WHERE ($1::bigint IS NULL OR id < $1) ORDER BY id DESC LIMIT $2";
        let limit = limit.min(i64::MAX as usize) as i64;
        let rows = self.pool.query(SQL, &[&before, &limit]).await?;
        rows.iter()
            .map(|r| {
                let fields: String = r.try_get(7)?;
                Ok(AuditEntry {
                    id: r.try_get(0)?,
                    at: r.try_get(1)?,
                    origin: AuditOrigin {
                        actor: r.try_get(2)?,
                        client_ip: r.try_get(5)?,
                        request_id: r.try_get(6)?,
                    },
                    action: r.try_get(3)?,
                    target: r.try_get(4)?,
                    fields: serde_json::from_str(&fields).unwrap_or_default(),
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(db_error)
    }

    async fn prune_audit(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        let limit = i64::from(limit);
        self.pool
            .execute(
                "DELETE FROM audit_log WHERE id IN \
                   (SELECT id FROM audit_log WHERE at < $1 ORDER BY at LIMIT $2)",
                &[&before, &limit],
            )
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.pool.query("SELECT 1", &[]).await.map(drop)
    }

    fn write_health(&self) -> Option<&super::write_health::WriteHealth> {
        Some(self.pool.write_health())
    }

    fn watch(&self, handler: ChangeHandler) {
        listen::spawn(
            self.pool.target().clone(),
            self.pool.timeout(),
            handler,
            self.stop.subscribe(),
            self.pool.reachable(),
        );
    }
}

#[cfg(test)]
pub(crate) mod tests;
