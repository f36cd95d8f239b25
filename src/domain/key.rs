//! Keys as every layer sees them: [`KeyRecord`] (everything but the secret), its
//! [`KeyStatus`] and [`Environment`], and [`KeyPatch`] (a change to one).

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use serde::Serialize;
use std::fmt;

/// Key environment: live traffic or the sandbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// Production keys.
    Live,
    /// Test keys; routed to `sandbox_url` when set.
    Test,
}

impl Environment {
    /// `live` or `test`.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Live => "live",
            Environment::Test => "test",
        }
    }

    /// Parses `live` / `test`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "live" => Some(Environment::Live),
            "test" => Some(Environment::Test),
            _ => None,
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    /// The key's own credit refill, overriding its tier's (`None`: the tier's, if
    /// any). Records a service presents carry the refill in force.
    pub refill: Option<crate::domain::Refill>,
    /// Start of the period the credits were last refilled in.
    pub refilled_at: Option<DateTime<Utc>>,
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

impl KeyRecord {
    /// A live, active key `id` on `tier`, created at `created_at`, named after its
    /// id, with nothing else set: no prefix or last four (no secret was made), no
    /// scopes, org, owner, credits, refill, IP list or expiry, never used. For
    /// tests and benchmarks, which set what they need with struct update syntax;
    /// the services that make keys set every field themselves.
    pub fn active(id: &str, tier: &str, created_at: DateTime<Utc>) -> Self {
        KeyRecord {
            id: id.to_owned(),
            name: id.to_owned(),
            prefix: String::new(),
            last4: String::new(),
            tier: tier.to_owned(),
            scopes: Vec::new(),
            environment: Environment::Live,
            org: None,
            owner: None,
            status: KeyStatus::Active,
            credits: None,
            refill: None,
            refilled_at: None,
            allowed_ips: Vec::new(),
            expires_at: None,
            created_at,
            last_used_at: None,
            secret_valid_until: None,
        }
    }
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
    /// New refill of the key's own (`Some(None)`: its tier's again).
    pub refill: Option<Option<crate::domain::Refill>>,
    /// New allowed networks.
    pub allowed_ips: Option<Vec<IpNet>>,
    /// New expiry (`Some(None)`: never).
    pub expires_at: Option<Option<DateTime<Utc>>>,
}

/// A key brought in by an import (CONTRACT §9), checked and ready to store.
#[derive(Clone, Debug)]
pub struct ImportedKey {
    /// Its line in the import, for errors the store finds (a hash held by another id).
    pub line: u64,
    /// The record; `id` is the given one, or a fresh one when `id_given` is false.
    pub record: KeyRecord,
    /// Whether the line named the id: a re-import of that id replaces its record.
    /// Without one, a re-import of the same secret replaces the record stored under
    /// its hash (keeping that record's id).
    pub id_given: bool,
    /// The hash the key is stored under.
    pub hash: super::KeyHash,
}
