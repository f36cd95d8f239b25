//! Embedded SQLite key store: one file, WAL journal, numbered migrations.
//!
//! rusqlite is synchronous; every call runs on Tokio's blocking pool (when called from
//! a runtime) over a small pool of connections, so the proxy's event loop never waits
//! on disk.

use super::{
    decide_debits, import_upsert, refill_columns, refill_of, usage_columns, usage_counts,
    usage_values, DebitRequest, DebitResult, DecidedDebits, Holder, ImportFeed, ImportMsg,
    KeyStore, NewSecret, QuotaScope, StoreError,
};
use crate::clock::{Clock, SystemClock};
use crate::domain::{
    AccountGate, AccountStatus, AuditEntry, AuditOrigin, Environment, KeyCap, KeyHash, KeyPatch,
    KeyRecord, KeyStatus, PlanOverrides, UsageRow,
};
use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Migrations in order; `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[Migration] = &[
    Migration::Sql(include_str!("../migrations/sqlite/0001_keys.sql")),
    Migration::Sql(include_str!("../migrations/sqlite/0002_lifecycle.sql")),
    Migration::Sql(include_str!("../migrations/sqlite/0003_users.sql")),
    Migration::Sql(include_str!("../migrations/sqlite/0004_usage.sql")),
    Migration::Sql(include_str!("../migrations/sqlite/0005_changes.sql")),
    Migration::Sql(include_str!("../migrations/sqlite/0006_sessions.sql")),
    Migration::Sql(include_str!("../migrations/sqlite/0007_refill.sql")),
    Migration::CanonicalEmails,
    Migration::Sql(include_str!("../migrations/sqlite/0009_secrets.sql")),
    Migration::Sql(include_str!("../migrations/sqlite/0010_accounts.sql")),
    Migration::Sql(include_str!("../migrations/sqlite/0011_user_admin.sql")),
    Migration::Sql(include_str!("../migrations/sqlite/0012_key_cap.sql")),
    Migration::Sql(include_str!("../migrations/sqlite/0013_usage_detail.sql")),
    Migration::Sql(include_str!("../migrations/sqlite/0014_audit.sql")),
    Migration::Sql(include_str!("../migrations/sqlite/0015_events.sql")),
];

/// One schema migration, applied once in its own transaction.
enum Migration {
    /// A SQL script.
    Sql(&'static str),
    /// Every stored email in its canonical form ([`canonical_emails`]).
    CanonicalEmails,
}

/// Migration 8: stored emails move to their canonical form, or the migration fails
/// naming the accounts it would have to merge ([`super::users::canonical_email_updates`]).
fn canonical_emails(conn: &Connection) -> Result<(), String> {
    let users = conn
        .prepare("SELECT id, email FROM users")
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<(String, String)>>>()
        })
        .map_err(|e| e.to_string())?;
    for (id, email) in super::users::canonical_email_updates(users)? {
        conn.execute("UPDATE users SET email = ?1 WHERE id = ?2", [&email, &id])
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

pub(super) const COLUMNS: &str =
    "id, name, prefix, last4, tier, scopes, environment, org, owner, status, \
                       credits, allowed_ips, expires_at, created_at, last_used_at, \
                       refill_amount, refill_every, refilled_at, account, cap";

/// Gives every key without a stored account one, as migration 0010 did: an
/// account a key names is made on first use (on the key's tier), a key with an
/// owner joins the owner's account, any other key gets one of its own
/// (`acct_<key id>`). Run in an import's transaction, before it commits.
const ADOPT_KEYS: &str = "
INSERT OR IGNORE INTO accounts (id, plan, created_at)
SELECT account, MIN(tier), MIN(created_at) FROM api_keys
WHERE account IS NOT NULL AND account NOT IN (SELECT id FROM accounts) GROUP BY account;
INSERT INTO accounts (id, owner, plan, created_at)
SELECT 'acct_' || lower(hex(randomblob(10))), owner, MIN(tier), MIN(created_at) FROM api_keys
WHERE account IS NULL AND owner IS NOT NULL
  AND owner NOT IN (SELECT owner FROM accounts WHERE owner IS NOT NULL)
GROUP BY owner;
UPDATE api_keys SET account = (SELECT a.id FROM accounts a WHERE a.owner = api_keys.owner)
WHERE account IS NULL AND owner IS NOT NULL;
INSERT OR IGNORE INTO accounts (id, plan, created_at)
SELECT 'acct_' || id, tier, created_at FROM api_keys WHERE account IS NULL;
UPDATE api_keys SET account = 'acct_' || id WHERE account IS NULL;
";

/// The columns of a key's account the request path reads with the key
/// ([`AccountGate`]): three lookups by primary key.
const ACCOUNT_GATE: &str = "(SELECT status FROM accounts a WHERE a.id = api_keys.account), \
                            (SELECT overrides FROM accounts a WHERE a.id = api_keys.account), \
                            (SELECT credits FROM accounts a WHERE a.id = api_keys.account)";

/// Page cache of each reader connection, in KiB (as `PRAGMA cache_size`, negative);
/// the writer keeps SQLite's default (2 MiB).
const READER_CACHE_KIB: i64 = -256;

/// A SQLite-backed [`KeyStore`]: one writer connection and three readers.
pub struct SqliteStore {
    conns: Arc<Vec<Mutex<Connection>>>,
    next: AtomicUsize,
    path: std::path::PathBuf,
    /// Dropped with the store: the change feed, if started, stops then.
    alive: Arc<()>,
    /// Judges regenerate grace periods and refresh-token expiry.
    clock: Arc<dyn Clock>,
    /// How the writes are going.
    writes: super::write_health::WriteHealth,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and runs pending migrations.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| unavailable(format!("cannot create {}: {e}", dir.display())))?;
        }
        let first = Self::connect(path)?;
        migrate(&first)?;
        let mut conns = vec![Mutex::new(first)];
        for _ in 1..4 {
            let reader = Self::connect(path)?;
            // Readers look keys up by hash: a few index pages each, cached by the OS
            // anyway. A small page cache each keeps them from holding 2 MiB apiece
            // of a large store in the sidecar's memory.
            reader
                .pragma_update(None, "cache_size", READER_CACHE_KIB)
                .map_err(unavailable)?;
            conns.push(Mutex::new(reader));
        }
        Ok(SqliteStore {
            conns: Arc::new(conns),
            next: AtomicUsize::new(0),
            path: path.to_path_buf(),
            alive: Arc::new(()),
            clock: Arc::new(SystemClock),
            writes: Default::default(),
        })
    }

    /// The same store, judging time on `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    fn connect(path: &Path) -> Result<Connection, StoreError> {
        let conn = Connection::open(path)
            .map_err(|e| unavailable(format!("cannot open {}: {e}", path.display())))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(unavailable)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(unavailable)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(unavailable)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(unavailable)?;
        Ok(conn)
    }

    /// Runs a read on one of the reader connections, on the blocking pool when inside
    /// a runtime.
    async fn with_conn<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.run(false, f).await
    }

    /// Runs a write on the single writer connection. SQLite admits one writer at a
    /// time; queueing writers on a mutex here, instead of letting several connections
    /// race for the database lock, avoids SQLite's sleeping busy handler (which cost
    /// metered requests milliseconds each under load).
    async fn with_writer<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.writes.record(self.run(true, f).await)
    }

    /// Runs `f` and writes `audit` in one transaction on the writer: the change and
    /// its audit entry are kept or lost together.
    pub(super) async fn with_audited<T, F>(&self, audit: &AuditEntry, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let audit = audit.clone();
        self.with_writer(move |c| {
            let tx =
                rusqlite::Transaction::new_unchecked(c, rusqlite::TransactionBehavior::Immediate)
                    .map_err(unavailable)?;
            let out = f(&tx)?;
            write_audit(&tx, &audit)?;
            tx.commit().map_err(unavailable)?;
            Ok(out)
        })
        .await
    }

    async fn run<T, F>(&self, write: bool, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conns = self.conns.clone();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let run = move || {
            if write {
                return f(&conns[0].lock());
            }
            let readers = conns.len() - 1;
            for i in 0..readers {
                if let Some(conn) = conns[1 + (start + i) % readers].try_lock() {
                    return f(&conn);
                }
            }
            let conn = conns[1 + start % readers].lock();
            f(&conn)
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => handle
                .spawn_blocking(run)
                .await
                .map_err(|e| unavailable(format!("store task failed: {e}")))?,
            Err(_) => run(),
        }
    }
}

fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let done: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(unavailable)?;
    for (i, step) in MIGRATIONS.iter().enumerate().skip(done.max(0) as usize) {
        let version = i + 1;
        let failed = |e: String| unavailable(format!("migration {version} failed: {e}"));
        match step {
            Migration::Sql(sql) => {
                let batch = format!("BEGIN;\n{sql}\nPRAGMA user_version = {version};\nCOMMIT;");
                conn.execute_batch(&batch)
                    .map_err(|e| failed(e.to_string()))?;
            }
            Migration::CanonicalEmails => {
                conn.execute_batch("BEGIN IMMEDIATE;")
                    .map_err(|e| failed(e.to_string()))?;
                let done = canonical_emails(conn).and_then(|()| {
                    conn.execute_batch(&format!("PRAGMA user_version = {version};\nCOMMIT;"))
                        .map_err(|e| e.to_string())
                });
                if let Err(e) = done {
                    let _ = conn.execute_batch("ROLLBACK;");
                    return Err(failed(e));
                }
            }
        }
    }
    Ok(())
}

fn ts(secs: Option<i64>) -> Option<DateTime<Utc>> {
    secs.and_then(|s| Utc.timestamp_opt(s, 0).single())
}

pub(super) fn decode(row: &Row<'_>) -> rusqlite::Result<Result<KeyRecord, StoreError>> {
    let id: String = row.get(0)?;
    let corrupt = |reason: String| StoreError::Corrupt {
        id: id.clone(),
        reason,
    };
    let scopes: String = row.get(5)?;
    let env: String = row.get(6)?;
    let status: String = row.get(9)?;
    let ips: String = row.get(11)?;
    let created: i64 = row.get(13)?;
    // Only find_by_hash selects the columns after `cap` (20 on).
    let gate_status: Option<String> = row.get(21).unwrap_or(None);
    let cap: Option<String> = row.get(19)?;
    let record = (|| {
        Ok(KeyRecord {
            id: id.clone(),
            name: row.get(1).map_err(|e| corrupt(e.to_string()))?,
            prefix: row.get(2).map_err(|e| corrupt(e.to_string()))?,
            last4: row.get(3).map_err(|e| corrupt(e.to_string()))?,
            tier: row.get(4).map_err(|e| corrupt(e.to_string()))?,
            scopes: serde_json::from_str(&scopes).map_err(|e| corrupt(format!("scopes: {e}")))?,
            environment: Environment::parse(&env)
                .ok_or_else(|| corrupt(format!("environment `{env}`")))?,
            org: row.get(7).map_err(|e| corrupt(e.to_string()))?,
            owner: row.get(8).map_err(|e| corrupt(e.to_string()))?,
            status: KeyStatus::parse(&status)
                .ok_or_else(|| corrupt(format!("status `{status}`")))?,
            credits: row.get(10).map_err(|e| corrupt(e.to_string()))?,
            refill: refill_of(
                row.get(15).map_err(|e| corrupt(e.to_string()))?,
                row.get(16).map_err(|e| corrupt(e.to_string()))?,
            )
            .map_err(|e| corrupt(format!("refill: {e}")))?,
            refilled_at: ts(row.get(17).map_err(|e| corrupt(e.to_string()))?),
            allowed_ips: serde_json::from_str(&ips)
                .map_err(|e| corrupt(format!("allowed_ips: {e}")))?,
            expires_at: ts(row.get(12).map_err(|e| corrupt(e.to_string()))?),
            created_at: ts(Some(created)).unwrap_or_default(),
            last_used_at: ts(row.get(14).map_err(|e| corrupt(e.to_string()))?),
            account: row.get(18).map_err(|e| corrupt(e.to_string()))?,
            cap: cap
                .map(|c| KeyCap::from_json(&c))
                .transpose()
                .map_err(|e| corrupt(format!("cap: {e}")))?,
            secret_valid_until: ts(row.get::<_, Option<i64>>(20).unwrap_or(None)),
            account_gate: match (row.get::<_, Option<String>>(18).ok().flatten(), gate_status) {
                (Some(account), Some(status)) => Some(Box::new(AccountGate {
                    id: account,
                    status: AccountStatus::parse(&status)
                        .ok_or_else(|| corrupt(format!("account status `{status}`")))?,
                    overrides: PlanOverrides::from_json(
                        &row.get::<_, String>(22)
                            .map_err(|e| corrupt(e.to_string()))?,
                    )
                    .map_err(|e| corrupt(format!("account overrides: {e}")))?,
                    credits: row.get(23).map_err(|e| corrupt(e.to_string()))?,
                })),
                _ => None,
            },
        })
    })();
    Ok(record)
}

/// Inserts one key row (the caller holds the writer).
/// Appends `audit` to the log, inside the caller's transaction.
/// Writes `audit`, and the events its change announces (read from the changed
/// record, as it is now, in the same transaction).
pub(super) fn write_audit(c: &Connection, audit: &AuditEntry) -> Result<(), StoreError> {
    insert_audit(c, audit)?;
    use crate::domain::event::{events_of_change, subject_of, Subject};
    let events = match subject_of(audit) {
        Subject::None => return Ok(()),
        Subject::Key => {
            let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE id = ?1");
            let key = query_one(c, &sql, &audit.target)?;
            events_of_change(audit, key.as_ref(), None)
        }
        Subject::Account => {
            let account = accounts::account_where(c, "id = ?1", &audit.target)?;
            events_of_change(audit, None, account.as_ref())
        }
        Subject::Entry => events_of_change(audit, None, None),
    };
    events.iter().try_for_each(|e| write_event(c, e))
}

/// Adds `event` to the outbox, unless an event with its id is there already.
pub(super) fn write_event(
    c: &Connection,
    event: &crate::domain::event::Event,
) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT OR IGNORE INTO events (id, type, created_at, data) VALUES (?1, ?2, ?3, ?4)",
    )
    .and_then(|mut s| {
        s.execute(params![
            event.id,
            event.kind,
            event.created_at.timestamp_millis(),
            event.data.to_string()
        ])
    })
    .map(drop)
    .map_err(unavailable)
}

fn insert_audit(c: &Connection, audit: &AuditEntry) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO audit_log (at, actor, action, target, client_ip, request_id, fields) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            audit.at.timestamp_millis(),
            audit.origin.actor,
            audit.action,
            audit.target,
            audit.origin.client_ip,
            audit.origin.request_id,
            audit.fields_json()
        ],
    )
    .map(drop)
    .map_err(unavailable)
}

fn insert_row(c: &Connection, r: &KeyRecord, hash: &[u8; 32]) -> Result<(), StoreError> {
    write_row(c, &insert_sql(""), r, hash)
        .map(drop)
        .map_err(unavailable)
}

/// The `INSERT` of one key row, followed by `on_conflict` (empty: fail on a conflict).
fn insert_sql(on_conflict: &str) -> String {
    format!(
        "INSERT INTO api_keys (key_hash, {COLUMNS}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, \
         ?17, ?18, ?19, ?20, ?21){on_conflict}"
    )
}

/// Runs `sql`, an [`insert_sql`], for one key row; returns the first column of the
/// row it answers, if it has a `RETURNING` clause.
fn write_row(
    c: &Connection,
    sql: &str,
    r: &KeyRecord,
    hash: &[u8; 32],
) -> rusqlite::Result<Option<String>> {
    let scopes = serde_json::to_string(&r.scopes).unwrap_or_else(|_| "[]".into());
    let ips = serde_json::to_string(&r.allowed_ips).unwrap_or_else(|_| "[]".into());
    let refill = refill_columns(r.refill);
    c.prepare_cached(sql).and_then(|mut s| {
        let mut rows = s.query(params![
            hash.as_slice(),
            r.id,
            r.name,
            r.prefix,
            r.last4,
            r.tier,
            scopes,
            r.environment.as_str(),
            r.org,
            r.owner,
            r.status.as_str(),
            r.credits,
            ips,
            r.expires_at.map(|t| t.timestamp()),
            r.created_at.timestamp(),
            r.last_used_at.map(|t| t.timestamp()),
            refill.0,
            refill.1,
            r.refilled_at.map(|t| t.timestamp()),
            r.account,
            r.cap.map(|c| c.to_json()),
        ])?;
        match rows.next()? {
            Some(row) => row.get(0).map(Some),
            None => Ok(None),
        }
    })
}

fn query_one(
    conn: &Connection,
    sql: &str,
    arg: &dyn rusqlite::ToSql,
) -> Result<Option<KeyRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(unavailable)?;
    stmt.query_row([arg], decode)
        .optional()
        .map_err(unavailable)?
        .transpose()
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn find_by_hash(&self, hash: &KeyHash) -> Result<Option<KeyRecord>, StoreError> {
        let hash = hash.0;
        let now = self.clock.now_secs() as i64;
        self.with_conn(move |c| {
            let sql = format!(
                "SELECT {COLUMNS}, CASE WHEN key_hash = ?1 THEN NULL ELSE prev_hash_expires_at END, \
                 {ACCOUNT_GATE} FROM api_keys WHERE key_hash = ?1 \
                 OR (prev_key_hash = ?1 AND prev_hash_expires_at > ?2)"
            );
            let mut stmt = c.prepare_cached(&sql).map_err(unavailable)?;
            stmt.query_row(params![hash.as_slice(), now], decode)
                .optional()
                .map_err(unavailable)?
                .transpose()
        })
        .await
    }

    async fn get(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        let id = id.to_string();
        self.with_conn(move |c| {
            query_one(
                c,
                &format!("SELECT {COLUMNS} FROM api_keys WHERE id = ?1"),
                &id,
            )
        })
        .await
    }

    async fn list(&self) -> Result<Vec<KeyRecord>, StoreError> {
        self.with_conn(|c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM api_keys ORDER BY created_at DESC, id"
                ))
                .map_err(unavailable)?;
            let rows = stmt.query_map([], decode).map_err(unavailable)?;
            rows.map(|r| r.map_err(unavailable)?).collect()
        })
        .await
    }

    async fn list_by_owner(&self, owner: &str) -> Result<Vec<KeyRecord>, StoreError> {
        let owner = owner.to_string();
        self.with_conn(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM api_keys WHERE owner = ?1 ORDER BY created_at DESC, id"
                ))
                .map_err(unavailable)?;
            let rows = stmt.query_map([&owner], decode).map_err(unavailable)?;
            rows.map(|r| r.map_err(unavailable)?).collect()
        })
        .await
    }

    async fn list_page(
        &self,
        owner: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<KeyRecord>, StoreError> {
        let (owner, after) = (owner.map(str::to_string), after.map(str::to_string));
        self.with_conn(move |c| {
            // Keyset pagination in (created_at DESC, id) order, from the cursor's row.
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM api_keys k WHERE (?1 IS NULL OR owner = ?1) \
                     AND (?2 IS NULL OR EXISTS (SELECT 1 FROM api_keys c WHERE c.id = ?2 \
                          AND (?1 IS NULL OR c.owner = ?1) \
                          AND (k.created_at < c.created_at \
                               OR (k.created_at = c.created_at AND k.id > c.id)))) \
                     ORDER BY created_at DESC, id LIMIT ?3"
                ))
                .map_err(unavailable)?;
            let rows = stmt
                .query_map(params![owner, after, limit as i64], decode)
                .map_err(unavailable)?;
            rows.map(|r| r.map_err(unavailable)?).collect()
        })
        .await
    }

    async fn count_active(&self, owner: &str, tier: &str) -> Result<u64, StoreError> {
        let (owner, tier) = (owner.to_string(), tier.to_string());
        self.with_conn(move |c| {
            c.query_row(
                "SELECT COUNT(*) FROM api_keys WHERE owner = ?1 AND tier = ?2 AND status = 'active'",
                params![owner, tier],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n.max(0) as u64)
            .map_err(unavailable)
        })
        .await
    }

    async fn update(
        &self,
        id: &str,
        patch: &KeyPatch,
        audit: &AuditEntry,
    ) -> Result<KeyRecord, StoreError> {
        let (id, patch) = (id.to_string(), patch.clone());
        self.with_audited(audit, move |c| {
            let mut sets: Vec<&str> = Vec::new();
            let mut values: Vec<Box<dyn rusqlite::ToSql>> = Vec::new();
            if let Some(v) = patch.name {
                sets.push("name = ?");
                values.push(Box::new(v));
            }
            if let Some(v) = patch.tier {
                sets.push("tier = ?");
                values.push(Box::new(v));
            }
            if let Some(v) = patch.scopes {
                sets.push("scopes = ?");
                values.push(Box::new(
                    serde_json::to_string(&v).unwrap_or_else(|_| "[]".into()),
                ));
            }
            if let Some(v) = patch.credits {
                sets.push("credits = ?");
                values.push(Box::new(v));
            }
            if let Some(v) = patch.refill {
                let (amount, every) = refill_columns(v);
                sets.push("refill_amount = ?");
                values.push(Box::new(amount));
                sets.push("refill_every = ?");
                values.push(Box::new(every));
            }
            if let Some(v) = patch.allowed_ips {
                sets.push("allowed_ips = ?");
                values.push(Box::new(
                    serde_json::to_string(&v).unwrap_or_else(|_| "[]".into()),
                ));
            }
            if let Some(v) = patch.expires_at {
                sets.push("expires_at = ?");
                values.push(Box::new(v.map(|t| t.timestamp())));
            }
            if let Some(v) = patch.cap {
                sets.push("cap = ?");
                values.push(Box::new(v.map(|c| c.to_json())));
            }
            if !sets.is_empty() {
                let sql = format!("UPDATE api_keys SET {} WHERE id = ?", sets.join(", "));
                values.push(Box::new(id.clone()));
                let params: Vec<&dyn rusqlite::ToSql> = values.iter().map(|b| b.as_ref()).collect();
                c.execute(&sql, params.as_slice()).map_err(unavailable)?;
            }
            query_one(
                c,
                &format!("SELECT {COLUMNS} FROM api_keys WHERE id = ?1"),
                &id,
            )?
            .ok_or(StoreError::NotFound(id))
        })
        .await
    }

    async fn insert(
        &self,
        r: &KeyRecord,
        hash: &KeyHash,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let (r, hash) = (r.clone(), hash.0);
        self.with_audited(audit, move |c| insert_row(c, &r, &hash))
            .await
    }

    async fn insert_within_quota(
        &self,
        r: &KeyRecord,
        hash: &KeyHash,
        max_active: u64,
        scope: QuotaScope,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let (r, hash, audit) = (r.clone(), hash.0, audit.clone());
        self.with_writer(move |c| {
            // IMMEDIATE takes the write lock first: no other process can insert
            // between the count and the insert.
            let tx = rusqlite::Transaction::new_unchecked(c, rusqlite::TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            let (sql, holder) = match scope {
                QuotaScope::Owner => (
                    "SELECT COUNT(*) FROM api_keys WHERE owner IS ?1 AND tier = ?2 AND status = 'active'",
                    &r.owner,
                ),
                QuotaScope::Account => (
                    "SELECT COUNT(*) FROM api_keys WHERE account IS ?1 AND tier = ?2 AND status = 'active'",
                    &r.account,
                ),
                // The tier is bound but does not narrow the count.
                QuotaScope::OwnerAnyTier => (
                    "SELECT COUNT(*) FROM api_keys WHERE owner IS ?1 AND ?2 IS NOT NULL AND status = 'active'",
                    &r.owner,
                ),
            };
            let held: i64 = tx
                .query_row(sql, params![holder, r.tier], |row| row.get(0))
                .map_err(unavailable)?;
            if held.max(0) as u64 >= max_active {
                return Err(StoreError::QuotaExceeded { max: max_active });
            }
            insert_row(&tx, &r, &hash)?;
            write_audit(&tx, &audit)?;
            tx.commit().map_err(unavailable)
        })
        .await
    }

    async fn import(&self, mut feed: ImportFeed) -> Result<u64, StoreError> {
        let now = self.clock.now_secs() as i64;
        self.with_writer(move |c| {
            // One IMMEDIATE transaction: all of it or nothing, and no other writer in
            // between. Dropped without commit, it rolls back.
            let tx =
                rusqlite::Transaction::new_unchecked(c, rusqlite::TransactionBehavior::Immediate)
                    .map_err(unavailable)?;
            // The ids written, once each: the same key on two lines is one key.
            tx.execute_batch(
                "CREATE TEMP TABLE IF NOT EXISTS import_written (id TEXT PRIMARY KEY);
                 DELETE FROM temp.import_written;",
            )
            .map_err(unavailable)?;
            let mut statements = std::collections::HashMap::new();
            while let Some(msg) = feed.blocking_recv() {
                match msg {
                    ImportMsg::Accounts(settings, fallback) => {
                        let mut stmt = tx
                            .prepare_cached(&super::import_account_sql('?'))
                            .map_err(unavailable)?;
                        for a in &settings {
                            stmt.execute(params![
                                a.id,
                                a.plan,
                                a.credits.flatten(),
                                a.credits.is_some(),
                                now,
                                fallback,
                                a.status.map(|st| st.as_str())
                            ])
                            .map_err(unavailable)?;
                        }
                    }
                    ImportMsg::Keys(keys) => {
                        for k in &keys {
                            let sql = statements
                                .entry((k.id_given, k.given))
                                .or_insert_with(|| insert_sql(&import_upsert(k.id_given, k.given)));
                            let id = write_row(&tx, sql, &k.record, &k.hash.0)
                                .map_err(|e| match e {
                                    rusqlite::Error::SqliteFailure(f, _)
                                        if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                                    {
                                        StoreError::ImportConflict { line: k.line }
                                    }
                                    e => unavailable(e),
                                })?
                                .ok_or_else(|| unavailable("the import wrote no row"))?;
                            tx.prepare_cached(
                                "INSERT OR IGNORE INTO temp.import_written (id) VALUES (?1)",
                            )
                            .and_then(|mut s| s.execute([id]))
                            .map_err(unavailable)?;
                        }
                    }
                    ImportMsg::Commit(mut audit) => {
                        let written: i64 = tx
                            .query_row("SELECT COUNT(*) FROM temp.import_written", [], |r| r.get(0))
                            .map_err(unavailable)?;
                        tx.execute_batch("DELETE FROM temp.import_written;")
                            .map_err(unavailable)?;
                        tx.execute_batch(ADOPT_KEYS).map_err(unavailable)?;
                        audit.target = AuditEntry::imported_target(written.max(0) as u64);
                        write_audit(&tx, &audit)?;
                        tx.commit().map_err(unavailable)?;
                        return Ok(written.max(0) as u64);
                    }
                }
            }
            Err(StoreError::Unavailable(
                "the import was abandoned; nothing was written".into(),
            ))
        })
        .await
    }

    async fn revoke(&self, id: &str, audit: &AuditEntry) -> Result<(), StoreError> {
        let id = id.to_string();
        self.with_audited(audit, move |c| {
            let n = c
                .execute(
                    "UPDATE api_keys SET status = 'revoked' WHERE id = ?1",
                    [&id],
                )
                .map_err(unavailable)?;
            if n == 0 {
                Err(StoreError::NotFound(id))
            } else {
                Ok(())
            }
        })
        .await
    }

    async fn replace_secret(
        &self,
        id: &str,
        secret: &NewSecret<'_>,
        old_valid_until: Option<DateTime<Utc>>,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let (id, hash, prefix, last4) = (
            id.to_string(),
            secret.hash.0,
            secret.prefix.to_string(),
            secret.last4.to_string(),
        );
        let grace_end = old_valid_until.map(|t| t.timestamp());
        self.with_audited(audit, move |c| {
            // With a grace period the current hash becomes the previous one; without,
            // any previous hash is dropped too, so only the new secret works.
            let n = c
                .execute(
                    "UPDATE api_keys SET \
                       prev_key_hash = CASE WHEN ?5 IS NULL THEN NULL ELSE key_hash END, \
                       prev_hash_expires_at = ?5, \
                       key_hash = ?2, prefix = ?3, last4 = ?4 \
                     WHERE id = ?1",
                    params![id, hash.as_slice(), prefix, last4, grace_end],
                )
                .map_err(unavailable)?;
            if n == 0 {
                Err(StoreError::NotFound(id))
            } else {
                Ok(())
            }
        })
        .await
    }

    async fn debit_batch(&self, debits: &[DebitRequest]) -> Result<Vec<DebitResult>, StoreError> {
        let debits = debits.to_vec();
        self.with_writer(move |c| {
            let tx =
                rusqlite::Transaction::new_unchecked(c, rusqlite::TransactionBehavior::Immediate)
                    .map_err(unavailable)?;
            let DecidedDebits {
                answers,
                balances: changed,
            } = {
                let mut read_key = tx
                    .prepare_cached("SELECT credits, refilled_at FROM api_keys WHERE id = ?1")
                    .map_err(unavailable)?;
                let mut read_account = tx
                    .prepare_cached("SELECT credits, refilled_at FROM accounts WHERE id = ?1")
                    .map_err(unavailable)?;
                decide_debits(&debits, |holder, id| {
                    let read = match holder {
                        Holder::Key => &mut read_key,
                        Holder::Account => &mut read_account,
                    };
                    read.query_row([id], |r| {
                        Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, Option<i64>>(1)?))
                    })
                    .optional()
                    .map_err(unavailable)
                })?
            };
            if !changed.is_empty() {
                for b in &changed {
                    let sql = match b.holder {
                        Holder::Key => {
                            "UPDATE api_keys SET credits = ?2, refilled_at = ?3 WHERE id = ?1"
                        }
                        Holder::Account => {
                            "UPDATE accounts SET credits = ?2, refilled_at = ?3 WHERE id = ?1"
                        }
                    };
                    tx.prepare_cached(sql)
                        .and_then(|mut w| w.execute(params![b.id, b.credits, b.refilled_at]))
                        .map_err(unavailable)?;
                }
                tx.commit().map_err(unavailable)?;
            }
            Ok(answers)
        })
        .await
    }

    async fn refund_credits(
        &self,
        holder: Holder,
        id: &str,
        cost: u64,
        debited_at: i64,
    ) -> Result<(), StoreError> {
        let (id, cost) = (id.to_string(), i64::try_from(cost).unwrap_or(i64::MAX));
        let table = match holder {
            Holder::Key => "api_keys",
            Holder::Account => "accounts",
        };
        self.with_writer(move |c| {
            c.prepare_cached(&format!(
                "UPDATE {table} SET credits = credits + ?2 WHERE id = ?1 AND credits IS NOT NULL \
                 AND (refilled_at IS NULL OR refilled_at <= ?3)"
            ))
            .and_then(|mut s| s.execute(params![id, cost, debited_at]))
            .map(drop)
            .map_err(unavailable)
        })
        .await
    }

    async fn record_usage(
        &self,
        rows: &[UsageRow],
        last_used: &[(String, i64)],
    ) -> Result<(), StoreError> {
        let (rows, last_used) = (rows.to_vec(), last_used.to_vec());
        self.with_writer(move |c| {
            let tx = rusqlite::Transaction::new_unchecked(c, rusqlite::TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            {
                let mut add = tx
                    .prepare_cached(concat!(
                        "INSERT INTO usage (key_id, hour, endpoint, ",
                        usage_columns!(),
                        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
                         ON CONFLICT (key_id, hour, endpoint) DO UPDATE SET \
                           total = total + excluded.total, successful = successful + excluded.successful, \
                           failed = failed + excluded.failed, rate_limited = rate_limited + excluded.rate_limited, \
                           no_credits = no_credits + excluded.no_credits, refused = refused + excluded.refused, \
                           api_error = api_error + excluded.api_error, total_us = total_us + excluded.total_us"
                    ))
                    .map_err(unavailable)?;
                for r in &rows {
                    let [a, b, c, d, e, f, g, h] = usage_values(&r.counts);
                    add.execute(params![
                        r.key_id,
                        r.hour.timestamp(),
                        r.endpoint,
                        a,
                        b,
                        c,
                        d,
                        e,
                        f,
                        g,
                        h
                    ])
                    .map_err(unavailable)?;
                }
                let mut touch = tx
                    .prepare_cached(
                        "UPDATE api_keys SET last_used_at = MAX(COALESCE(last_used_at, 0), ?2) WHERE id = ?1",
                    )
                    .map_err(unavailable)?;
                for (id, t) in &last_used {
                    touch.execute(params![id, t]).map_err(unavailable)?;
                }
            }
            tx.commit().map_err(unavailable)
        })
        .await
    }

    async fn usage(
        &self,
        key_id: Option<&str>,
        since: DateTime<Utc>,
    ) -> Result<Vec<UsageRow>, StoreError> {
        let key_id = key_id.map(str::to_string);
        let since = since.timestamp();
        self.with_conn(move |c| {
            let mut stmt = c
                .prepare_cached(concat!(
                    "SELECT key_id, hour, endpoint, ",
                    usage_columns!(),
                    " FROM usage WHERE (?1 IS NULL OR key_id = ?1) AND hour >= ?2 \
                     ORDER BY hour, endpoint, key_id"
                ))
                .map_err(unavailable)?;
            let rows = stmt
                .query_map(params![key_id, since], |r| {
                    let mut v = [0i64; 8];
                    for (i, slot) in v.iter_mut().enumerate() {
                        *slot = r.get(3 + i)?;
                    }
                    Ok(UsageRow {
                        key_id: r.get(0)?,
                        hour: Utc.timestamp_opt(r.get(1)?, 0).single().unwrap_or_default(),
                        endpoint: r.get(2)?,
                        counts: usage_counts(v),
                    })
                })
                .map_err(unavailable)?;
            rows.map(|r| r.map_err(unavailable)).collect()
        })
        .await
    }

    async fn audit_log(
        &self,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let limit = limit.min(i64::MAX as usize) as i64;
        self.with_conn(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT id, at, actor, action, target, client_ip, request_id, fields \
                     FROM audit_log WHERE (?1 IS NULL OR id < ?1) ORDER BY id DESC LIMIT ?2",
                )
                .map_err(unavailable)?;
            let rows = stmt
                .query_map(params![before, limit], |r| {
                    let fields: String = r.get(7)?;
                    Ok(AuditEntry {
                        id: r.get(0)?,
                        at: Utc
                            .timestamp_millis_opt(r.get(1)?)
                            .single()
                            .unwrap_or_default(),
                        origin: AuditOrigin {
                            actor: r.get(2)?,
                            client_ip: r.get(5)?,
                            request_id: r.get(6)?,
                        },
                        action: r.get(3)?,
                        target: r.get(4)?,
                        fields: serde_json::from_str(&fields).unwrap_or_default(),
                    })
                })
                .map_err(unavailable)?;
            rows.map(|r| r.map_err(unavailable)).collect()
        })
        .await
    }

    async fn prune_audit(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        let before = before.timestamp_millis();
        self.with_writer(move |c| {
            c.execute(
                "DELETE FROM audit_log WHERE id IN \
                   (SELECT id FROM audit_log WHERE at < ?1 ORDER BY at LIMIT ?2)",
                params![before, limit],
            )
            .map(|n| n as u64)
            .map_err(unavailable)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.with_conn(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(unavailable))
            .await
    }

    /// Other processes write the same file (the CLI, another keygate): follow
    /// their changes through the `key_changes` log.
    fn watch(&self, handler: crate::store::ChangeHandler) {
        feed::spawn(self.path.clone(), handler, Arc::downgrade(&self.alive));
    }

    fn write_health(&self) -> Option<&super::write_health::WriteHealth> {
        Some(&self.writes)
    }
}

mod accounts;
mod events;
mod feed;
mod users;

#[cfg(test)]
mod tests;
