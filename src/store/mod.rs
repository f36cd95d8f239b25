//! Key storage: the [`KeyStore`] trait and its backends.
//!
//! Keys are only ever stored as SHA-256 hashes. Every backend gives the same
//! behaviour; the request path only calls [`KeyStore::find_by_hash`] (on a cache miss)
//! and [`KeyStore::debit_batch`] (on metered routes, through `credits::CreditLedger`).

pub mod accounts;
pub mod events;
pub mod file;
pub mod postgres;
pub mod sqlite;
pub mod users;
pub mod write_health;

#[cfg(test)]
pub(crate) mod conformance;

use crate::domain::{AuditEntry, ImportedKey, KeyHash, KeyPatch, KeyRecord, RefillDue, UsageRow};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::Arc;

/// Result of an atomic credit debit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Debit {
    /// Debited; this many remain.
    Done {
        /// Credits left after the debit.
        remaining: i64,
    },
    /// Not enough credits; nothing was debited.
    Insufficient {
        /// Credits the key has.
        remaining: i64,
    },
    /// The key has no credit limit.
    Unmetered,
}

/// One debit's answer within a batch.
pub type DebitResult = Result<Debit, StoreError>;

/// Whose keys a tier's `max_keys` counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum QuotaScope {
    /// The owner's (`pool: key`).
    #[default]
    Owner,
    /// The account's (`pool: account`).
    Account,
    /// The owner's in every tier: a user's first key (`POST /keys/first`).
    OwnerAnyTier,
}

/// Whose balance a debit or refund moves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Holder {
    /// A key's own (`pool: key`).
    #[default]
    Key,
    /// An account's pooled balance (`pool: account`).
    Account,
}

/// One debit of a batch: `cost` credits from the balance of key or account `id`,
/// after its refill if one is due ([`crate::domain::refill`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebitRequest {
    /// The key or account.
    pub id: String,
    /// Whose balance `id` names.
    pub holder: Holder,
    /// Credits to spend.
    pub cost: u64,
    /// The refill in force for the key now, if any.
    pub refill: Option<RefillDue>,
}

impl DebitRequest {
    /// A debit from a key's own balance with no refill.
    pub fn new(id: impl Into<String>, cost: u64) -> Self {
        DebitRequest {
            id: id.into(),
            holder: Holder::Key,
            cost,
            refill: None,
        }
    }
}

/// A balance as a batch changed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewBalance {
    /// The key or account.
    pub id: String,
    /// Whose balance `id` names.
    pub holder: Holder,
    /// Its credits now.
    pub credits: i64,
    /// The start (Unix seconds) of the period it was last refilled in.
    pub refilled_at: Option<i64>,
}

/// A batch of debits decided by [`decide_debits`], ready to be written.
pub struct DecidedDebits {
    /// Each debit's answer, in the batch's order.
    pub answers: Vec<DebitResult>,
    /// Every key that was debited or refilled, with its new balance.
    pub balances: Vec<NewBalance>,
}

/// A key's stored credits and `refilled_at` (Unix seconds), as a batch reads them.
pub type StoredBalance = (Option<i64>, Option<i64>);

/// Decides a run of debits against balances read once per key, in order: the
/// arithmetic every store's [`KeyStore::debit_batch`] shares. `balance(id)` reads a
/// key's credits and `refilled_at` (`None`: no such key; credits `None`:
/// unmetered) and `holder` says whose. A due refill is applied before the debit that
/// carries it, once per period (a later debit in the batch finds it done).
pub fn decide_debits<E>(
    debits: &[DebitRequest],
    mut balance: impl FnMut(Holder, &str) -> Result<Option<StoredBalance>, E>,
) -> Result<DecidedDebits, E> {
    struct Entry {
        stored: Option<StoredBalance>,
        changed: bool,
    }
    let mut entries: std::collections::HashMap<(Holder, &str), Entry> =
        std::collections::HashMap::new();
    let mut answers = Vec::with_capacity(debits.len());
    for d in debits {
        let entry = match entries.entry((d.holder, d.id.as_str())) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(Entry {
                stored: balance(d.holder, &d.id)?,
                changed: false,
            }),
        };
        if let (Some(due), Some(stored)) = (d.refill, entry.stored.as_mut()) {
            let refilled = due.apply(stored.0, stored.1);
            if refilled != *stored {
                *stored = refilled;
                entry.changed = true;
            }
        }
        let cost = i64::try_from(d.cost).unwrap_or(i64::MAX);
        answers.push(match &mut entry.stored {
            None => Err(StoreError::NotFound(d.id.clone())),
            Some((None, _)) => Ok(Debit::Unmetered),
            Some((Some(left), _)) if *left >= cost => {
                *left -= cost;
                entry.changed = true;
                Ok(Debit::Done { remaining: *left })
            }
            Some((Some(left), _)) => Ok(Debit::Insufficient { remaining: *left }),
        });
    }
    let balances = entries
        .into_iter()
        .filter_map(|((holder, id), e)| match e.stored {
            Some((Some(credits), refilled_at)) if e.changed => Some(NewBalance {
                id: id.to_string(),
                holder,
                credits,
                refilled_at,
            }),
            _ => None,
        })
        .collect();
    Ok(DecidedDebits { answers, balances })
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached or failed; the request path answers 503.
    #[error("key store unavailable: {0}")]
    Unavailable(String),
    /// No such key id.
    #[error("no such key: {0}")]
    NotFound(String),
    /// The change conflicts with stored data (e.g. a duplicate email).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The owner already holds the tier's `max_keys` active keys; nothing was stored.
    #[error("key quota reached: {max} active keys")]
    QuotaExceeded {
        /// The quota.
        max: u64,
    },
    /// The secret on this line of an import is already stored under another key id;
    /// nothing of the import was written.
    #[error("line {line}: hash: {IMPORT_CONFLICT}")]
    ImportConflict {
        /// The import line.
        line: u64,
    },
    /// The store cannot be written (the file store).
    #[error("{0}")]
    ReadOnly(String),
    /// A stored row could not be decoded.
    #[error("corrupt key record {id}: {reason}")]
    Corrupt {
        /// The row's id.
        id: String,
        /// What was wrong.
        reason: String,
    },
}

/// A change announced by a shared store, so that every replica drops stale copies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreChange {
    /// Key `id` changed (revoked, regenerated, re-tiered, ...).
    Key {
        /// The key's id.
        id: String,
        /// When the change happened (Unix ms, the store host's clock), if known.
        changed_at_ms: Option<u64>,
    },
    /// Account `id` changed (plan, status, overrides, metered or not): every key of
    /// it must be read again.
    Account {
        /// The account's id.
        id: String,
        /// When the change happened (Unix ms, the store host's clock), if known.
        changed_at_ms: Option<u64>,
    },
    /// The feed is listening (for the first time, or again): changes made before
    /// may have been missed, so forget everything; from now on every change is
    /// announced.
    All,
    /// The feed stopped listening (its connection was lost, or it has not started
    /// yet): changes made from now on may go unannounced, so no cached key may be
    /// trusted without reading it again, until [`StoreChange::All`].
    Unwatched,
}

/// How the change logs name an account (a key id never holds a `:`).
pub const ACCOUNT_CHANGE_PREFIX: &str = "account:";

impl StoreChange {
    /// The change a log entry or notification names: `account:<id>` an account,
    /// anything else a key id.
    pub fn logged(name: &str, changed_at_ms: Option<u64>) -> StoreChange {
        match name.strip_prefix(ACCOUNT_CHANGE_PREFIX) {
            Some(id) => StoreChange::Account {
                id: id.to_string(),
                changed_at_ms,
            },
            None => StoreChange::Key {
                id: name.to_string(),
                changed_at_ms,
            },
        }
    }
}

/// What [`StoreError::ImportConflict`] says of the line's `hash`.
pub const IMPORT_CONFLICT: &str = "this secret is already stored under another key id";

/// One message of an import feed ([`KeyStore::import`]).
#[derive(Debug)]
pub enum ImportMsg {
    /// Keys to write, in order.
    Keys(Vec<ImportedKey>),
    /// What the lines said of accounts (plan, pooled balance), after every key:
    /// an account not stored yet is made (on the plan said, else its oldest key's
    /// tier, else the tier given here: `default_tier`).
    Accounts(Vec<crate::domain::AccountSetting>, String),
    /// Every key has been sent: commit, with the audit log's entry for the import
    /// (its target becomes "<n> keys", n the keys written).
    Commit(crate::domain::AuditEntry),
}

/// The receiving end of an import: batches of keys, then [`ImportMsg::Commit`].
pub type ImportFeed = tokio::sync::mpsc::Receiver<ImportMsg>;

/// A regenerated key's new secret as the store keeps it.
#[derive(Clone, Copy, Debug)]
pub struct NewSecret<'a> {
    /// Its hash.
    pub hash: &'a KeyHash,
    /// Its visible prefix.
    pub prefix: &'a str,
    /// Its last four characters.
    pub last4: &'a str,
}

/// The usage table's count columns, in the order of [`usage_values`] and
/// [`usage_counts`] (a macro, so that statements can `concat!` it).
macro_rules! usage_columns {
    () => {
        "total, successful, failed, rate_limited, no_credits, refused, api_error, total_us"
    };
}
pub(crate) use usage_columns;

/// A row's counts as the usage table's columns ([`usage_columns!`]), each at most
/// `i64::MAX`.
pub fn usage_values(t: &crate::domain::Totals) -> [i64; 8] {
    [
        t.total,
        t.successful,
        t.failed,
        t.rate_limited,
        t.no_credits,
        t.refused,
        t.api_error,
        t.total_us,
    ]
    .map(|v| v.min(i64::MAX as u64) as i64)
}

/// Counts read back from the usage table's columns ([`usage_columns!`]); a
/// negative value (never written by keygate) reads as 0.
pub fn usage_counts(v: [i64; 8]) -> crate::domain::Totals {
    let [total, successful, failed, rate_limited, no_credits, refused, api_error, total_us] =
        v.map(|v| v.max(0) as u64);
    crate::domain::Totals {
        total,
        successful,
        failed,
        rate_limited,
        no_credits,
        refused,
        api_error,
        total_us,
    }
}

/// The statement an import runs for each account setting, the same text for
/// SQLite and PostgreSQL but for the markers (`?N` or `$N`): `1` id, `2` plan (or
/// null), `3` credits, `4` whether credits were given, `5` now, `6` the fallback
/// plan, `7` status (or null). Credits given count as this period's refill, as a
/// key's imported credits do.
pub fn import_account_sql(marker: char) -> String {
    let m = |n: u8| format!("{marker}{n}");
    let (id, plan, credits, given, now, fallback, status) =
        (m(1), m(2), m(3), m(4), m(5), m(6), m(7));
    format!(
        "INSERT INTO accounts (id, plan, credits, refilled_at, status, created_at) VALUES ({id}, \
         COALESCE({plan}, (SELECT tier FROM api_keys WHERE account = {id} \
                           ORDER BY created_at, id LIMIT 1), {fallback}), \
         CASE WHEN {given} THEN {credits} ELSE NULL END, \
         CASE WHEN {given} THEN {now} ELSE NULL END, COALESCE({status}, 'active'), {now}) \
         ON CONFLICT (id) DO UPDATE SET plan = COALESCE({plan}, accounts.plan), \
         credits = CASE WHEN {given} THEN {credits} ELSE accounts.credits END, \
         refilled_at = CASE WHEN {given} THEN {now} ELSE accounts.refilled_at END, \
         status = COALESCE({status}, accounts.status)"
    )
}

/// The clause an import appends to a key's `INSERT`, the same text for SQLite and
/// PostgreSQL. A line matching a stored key updates only the fields it carried
/// (`given`): by id (`by_id`) the secret is replaced too and any regenerate grace
/// ended; by hash, the record stored under the same secret keeps its id. Usage,
/// credits history and `last_used_at` stay either way. The statement answers the
/// id of the key it wrote, so an import counts keys, not lines.
pub fn import_upsert(by_id: bool, given: crate::domain::ImportFields) -> String {
    let mut sets = vec!["key_hash = excluded.key_hash".to_string()];
    sets.extend(given.columns().map(|c| format!("{c} = excluded.{c}")));
    if by_id {
        sets.push("prev_key_hash = NULL, prev_hash_expires_at = NULL".into());
    }
    let target = if by_id { "id" } else { "key_hash" };
    format!(
        " ON CONFLICT ({target}) DO UPDATE SET {} RETURNING id",
        sets.join(", ")
    )
}

/// A key's own refill from its two columns (both or neither); an error says what
/// is wrong with a stored period.
pub fn refill_of(
    amount: Option<i64>,
    every: Option<String>,
) -> Result<Option<crate::domain::Refill>, String> {
    match (amount, every) {
        (Some(amount), Some(every)) => Ok(Some(crate::domain::Refill {
            amount: u64::try_from(amount).map_err(|_| format!("amount {amount}"))?,
            every: crate::domain::RefillEvery::parse(&every)?,
        })),
        _ => Ok(None),
    }
}

/// A key's own refill as its two columns `(refill_amount, refill_every)`, both or
/// neither; the inverse of [`refill_of`]. An amount beyond `i64` is stored as
/// `i64::MAX` (validation keeps real amounts far below).
pub fn refill_columns(refill: Option<crate::domain::Refill>) -> (Option<i64>, Option<String>) {
    match refill {
        Some(f) => (
            Some(i64::try_from(f.amount).unwrap_or(i64::MAX)),
            Some(f.every.to_string()),
        ),
        None => (None, None),
    }
}

/// Receives [`StoreChange`]s.
pub type ChangeHandler = Arc<dyn Fn(StoreChange) + Send + Sync>;

/// A key store backend.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// The key whose secret hashes to `hash`, if any (revoked and expired keys included).
    async fn find_by_hash(&self, hash: &KeyHash) -> Result<Option<KeyRecord>, StoreError>;
    /// The key with this id.
    async fn get(&self, id: &str) -> Result<Option<KeyRecord>, StoreError>;
    /// All keys, newest first.
    async fn list(&self) -> Result<Vec<KeyRecord>, StoreError>;
    /// Keys of one owner, newest first.
    async fn list_by_owner(&self, owner: &str) -> Result<Vec<KeyRecord>, StoreError>;
    /// A page of keys (of one owner, or all), newest first as [`KeyStore::list`]
    /// orders them, starting after the key with id `after` (the cursor), at most
    /// `limit`. A cursor naming no key (or another owner's) starts nowhere: an
    /// empty page.
    async fn list_page(
        &self,
        owner: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<KeyRecord>, StoreError> {
        let all = match owner {
            Some(owner) => self.list_by_owner(owner).await?,
            None => self.list().await?,
        };
        let start = match after {
            None => 0,
            Some(id) => match all.iter().position(|r| r.id == id) {
                Some(i) => i + 1,
                None => return Ok(Vec::new()),
            },
        };
        Ok(all.into_iter().skip(start).take(limit).collect())
    }
    /// Active keys of `owner` in `tier` (for `max_keys`).
    async fn count_active(&self, owner: &str, tier: &str) -> Result<u64, StoreError>;
    /// Applies `patch`, and writes `audit` in the same transaction; `NotFound` if
    /// there is no such id. Returns the updated key.
    async fn update(
        &self,
        id: &str,
        patch: &KeyPatch,
        audit: &AuditEntry,
    ) -> Result<KeyRecord, StoreError>;
    /// Stores a new key under `hash`, and `audit` in the same transaction.
    async fn insert(
        &self,
        record: &KeyRecord,
        hash: &KeyHash,
        audit: &AuditEntry,
    ) -> Result<(), StoreError>;
    /// Stores a new key under `hash` unless its owner (or, with
    /// [`QuotaScope::Account`], its account) already holds `max_active` active keys
    /// in its tier (with [`QuotaScope::OwnerAnyTier`], in any tier)
    /// ([`StoreError::QuotaExceeded`]). Counting and inserting are one
    /// transaction, serialised per owner (account) and tier, so concurrent creates
    /// (on any replica) never exceed the quota. `audit` is written with the key.
    async fn insert_within_quota(
        &self,
        record: &KeyRecord,
        hash: &KeyHash,
        max_active: u64,
        scope: QuotaScope,
        audit: &AuditEntry,
    ) -> Result<(), StoreError>;
    /// Marks a key revoked, and writes `audit` in the same transaction; `NotFound`
    /// if there is no such id.
    async fn revoke(&self, id: &str, audit: &AuditEntry) -> Result<(), StoreError>;
    /// Replaces a key's secret (regenerate), and writes `audit` in the same
    /// transaction. The old hash stops matching at once, or at `old_valid_until`
    /// when a grace period is given.
    async fn replace_secret(
        &self,
        id: &str,
        secret: &NewSecret<'_>,
        old_valid_until: Option<DateTime<Utc>>,
        audit: &AuditEntry,
    ) -> Result<(), StoreError>;
    /// The audit log, newest first: at most `limit` entries older than the entry
    /// `before` (all when `None`).
    async fn audit_log(
        &self,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let _ = (before, limit);
        Err(StoreError::ReadOnly(
            "this store keeps no audit log: use store.kind sqlite or postgres".into(),
        ))
    }
    /// Deletes at most `limit` of the audit entries made before `before`, oldest
    /// first; returns how many (fewer than `limit`: none is left).
    async fn prune_audit(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        let _ = (before, limit);
        Ok(0)
    }
    /// Writes every key `feed` sends in one transaction, committed when
    /// [`ImportMsg::Commit`] arrives; if the feed closes first, nothing is written.
    /// A key whose id is given replaces that id's record (secret included, any
    /// regenerate grace ended); one without replaces the record stored under its hash,
    /// or is inserted. A hash held by another id fails the whole import with
    /// [`StoreError::ImportConflict`]. Returns how many keys were written.
    async fn import(&self, feed: ImportFeed) -> Result<u64, StoreError> {
        drop(feed);
        Err(StoreError::ReadOnly(
            "this store cannot import keys: use store.kind sqlite or postgres".into(),
        ))
    }
    /// Debits each request in turn, all in one transaction (group commit), under
    /// the keys' row locks: each entry gets what it would have got had the debits
    /// run one after another (a due refill applied first), and either all of them
    /// are durable (`Ok`) or none is (`Err`). An entry whose key does not exist gets
    /// `Err(NotFound)` and changes nothing.
    async fn debit_batch(&self, debits: &[DebitRequest]) -> Result<Vec<DebitResult>, StoreError>;
    /// Gives `cost` credits back to the balance of key or account `id` (`holder`
    /// says which: a debited request the upstream never answered), debited at
    /// `debited_at` (Unix seconds). A balance that is unmetered or gone changes
    /// nothing, nor one refilled since the debit (the refill already reset the
    /// balance the debit came out of).
    async fn refund_credits(
        &self,
        holder: Holder,
        id: &str,
        cost: u64,
        debited_at: i64,
    ) -> Result<(), StoreError>;
    /// Debits `cost` credits from one key: a batch of one.
    async fn debit_credits(&self, id: &str, cost: u64) -> Result<Debit, StoreError> {
        let mut answers = self.debit_batch(&[DebitRequest::new(id, cost)]).await?;
        answers
            .pop()
            .unwrap_or_else(|| Err(StoreError::Unavailable("the store gave no answer".into())))
    }
    /// Adds usage rows (summing into existing ones) and moves `last_used_at` forward,
    /// in one transaction.
    async fn record_usage(
        &self,
        rows: &[UsageRow],
        last_used: &[(String, i64)],
    ) -> Result<(), StoreError>;
    /// Usage rows from `since` on, oldest first: of one key, or (`None`) of every key.
    async fn usage(
        &self,
        key_id: Option<&str>,
        since: DateTime<Utc>,
    ) -> Result<Vec<UsageRow>, StoreError>;
    /// Checks the backend is reachable (for `/ready`).
    async fn ping(&self) -> Result<(), StoreError>;
    /// Starts delivering changes made by other processes to `handler`. Stores that
    /// only this process writes have none to announce.
    fn watch(&self, handler: ChangeHandler) {
        let _ = handler;
    }
    /// How the store's writes are going (`None`: a read-only store).
    fn write_health(&self) -> Option<&write_health::WriteHealth> {
        None
    }
}
