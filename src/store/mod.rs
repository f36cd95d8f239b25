//! Key storage: the [`KeyStore`] trait and its backends.
//!
//! Keys are only ever stored as SHA-256 hashes. Every backend gives the same
//! behaviour; the request path only calls [`KeyStore::find_by_hash`] (on a cache miss)
//! and [`KeyStore::debit_credits`] (on metered routes).

pub mod file;
pub mod postgres;
pub mod sqlite;
pub mod users;

#[cfg(test)]
pub(crate) mod conformance;

use crate::auth::api_key::{Environment, KeyHash};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ipnet::IpNet;
use serde::Serialize;
use std::sync::Arc;

/// Lifecycle state of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    /// Usable.
    Active,
    /// Refused with `API key has been revoked`.
    Revoked,
}

impl KeyStatus {
    /// `active` / `revoked`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Revoked => "revoked",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(KeyStatus::Active),
            "revoked" => Some(KeyStatus::Revoked),
            _ => None,
        }
    }
}

/// Everything known about a key except its secret (contract section 4's key object).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KeyRecord {
    /// Stable id (`key_…`).
    pub id: String,
    /// Human name.
    pub name: String,
    /// Visible prefix, e.g. `kg_sk_live_`.
    pub prefix: String,
    /// Last four characters of the secret.
    pub last4: String,
    /// Tier name.
    pub tier: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Live or test.
    pub environment: Environment,
    /// Organisation.
    pub org: Option<String>,
    /// Owning user.
    pub owner: Option<String>,
    /// Active or revoked.
    pub status: KeyStatus,
    /// Remaining credits; `None` means unmetered.
    pub credits: Option<i64>,
    /// Client networks allowed to use the key (empty: any).
    pub allowed_ips: Vec<IpNet>,
    /// Expiry, if any.
    pub expires_at: Option<DateTime<Utc>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last time the key was used.
    pub last_used_at: Option<DateTime<Utc>>,
    /// Set only on a record found by its previous secret during a regenerate grace
    /// period: when that secret stops working.
    #[serde(skip)]
    pub secret_valid_until: Option<DateTime<Utc>>,
}

/// Changes to a key (`None`: unchanged). `expires_at: Some(None)` removes the expiry.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KeyPatch {
    /// New name.
    pub name: Option<String>,
    /// New tier.
    pub tier: Option<String>,
    /// New scopes.
    pub scopes: Option<Vec<String>>,
    /// New credits (`Some(None)`: unmetered).
    pub credits: Option<Option<i64>>,
    /// New allowed networks.
    pub allowed_ips: Option<Vec<IpNet>>,
    /// New expiry (`Some(None)`: never).
    pub expires_at: Option<Option<DateTime<Utc>>>,
}

/// Usage of one key on one endpoint during one hour.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UsageRow {
    /// Key id.
    pub key_id: String,
    /// Start of the hour.
    pub hour: DateTime<Utc>,
    /// Route name.
    pub endpoint: String,
    /// Requests.
    pub total: u64,
    /// Requests answered 2xx/3xx.
    pub successful: u64,
    /// Requests answered 4xx/5xx.
    pub failed: u64,
    /// Sum of response times in milliseconds.
    pub total_ms: u64,
}

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
    /// Changes may have been missed (the feed reconnected): forget everything.
    All,
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
    /// Active keys of `owner` in `tier` (for `max_keys`).
    async fn count_active(&self, owner: &str, tier: &str) -> Result<u64, StoreError>;
    /// Applies `patch`; `NotFound` if there is no such id. Returns the updated key.
    async fn update(&self, id: &str, patch: &KeyPatch) -> Result<KeyRecord, StoreError>;
    /// Stores a new key under `hash`.
    async fn insert(&self, record: &KeyRecord, hash: &KeyHash) -> Result<(), StoreError>;
    /// Stores a new key under `hash` unless its owner already holds `max_active`
    /// active keys in its tier ([`StoreError::QuotaExceeded`]). Counting and
    /// inserting are one transaction, serialised per owner and tier, so concurrent
    /// creates (on any replica) never exceed the quota.
    async fn insert_within_quota(
        &self,
        record: &KeyRecord,
        hash: &KeyHash,
        max_active: u64,
    ) -> Result<(), StoreError>;
    /// Marks a key revoked; `NotFound` if there is no such id.
    async fn revoke(&self, id: &str) -> Result<(), StoreError>;
    /// Replaces a key's secret (regenerate). The old hash stops matching at once, or
    /// at `old_valid_until` when a grace period is given.
    async fn replace_secret(
        &self,
        id: &str,
        hash: &KeyHash,
        prefix: &str,
        last4: &str,
        old_valid_until: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError>;
    /// Debits `cost` credits in one atomic conditional update.
    async fn debit_credits(&self, id: &str, cost: u64) -> Result<Debit, StoreError>;
    /// Adds usage rows (summing into existing ones) and moves `last_used_at` forward,
    /// in one transaction.
    async fn record_usage(
        &self,
        rows: &[UsageRow],
        last_used: &[(String, i64)],
    ) -> Result<(), StoreError>;
    /// Usage rows of `key_id` from `since` on, oldest first.
    async fn usage(&self, key_id: &str, since: DateTime<Utc>) -> Result<Vec<UsageRow>, StoreError>;
    /// Checks the backend is reachable (for `/ready`).
    async fn ping(&self) -> Result<(), StoreError>;
    /// Starts delivering changes made by other processes to `handler`. Stores that
    /// only this process writes have none to announce.
    fn watch(&self, handler: ChangeHandler) {
        let _ = handler;
    }
}
