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

/// A key's own cap on a `pool: account` tier: windows of its own, below the
/// account's, counted for the key alone (`None`: no cap in that window).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyCap {
    /// Requests per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_second: Option<u64>,
    /// Requests per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_minute: Option<u64>,
    /// Requests per hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_hour: Option<u64>,
    /// Requests per day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_day: Option<u64>,
    /// Requests per month.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_month: Option<u64>,
}

impl KeyCap {
    /// True when it caps no window.
    pub fn is_empty(&self) -> bool {
        *self == KeyCap::default()
    }

    /// The windows it caps, as (window name, limit), shortest first.
    pub fn windows(&self) -> impl Iterator<Item = (&'static str, u64)> {
        [
            ("second", self.per_second),
            ("minute", self.per_minute),
            ("hour", self.per_hour),
            ("day", self.per_day),
            ("month", self.per_month),
        ]
        .into_iter()
        .filter_map(|(w, l)| l.map(|l| (w, l)))
    }

    /// The stored form: compact JSON of the windows set.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }

    /// Parses the stored form; the error says what is wrong.
    pub fn from_json(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }
}

/// Everything known about a key except its secret (the key object of
/// docs/configuration.md, Management API).
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
    /// The account the key belongs to (`None` only on stores without accounts).
    pub account: Option<String>,
    /// Its own cap below its account's windows (`pool: account` tiers).
    pub cap: Option<KeyCap>,
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
    /// Set only on a record read by the store's `find_by_hash`: what the
    /// request path needs of the key's account (boxed: most records carry none).
    #[serde(skip)]
    pub account_gate: Option<Box<crate::domain::AccountGate>>,
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
            account: None,
            cap: None,
            status: KeyStatus::Active,
            credits: None,
            refill: None,
            refilled_at: None,
            allowed_ips: Vec::new(),
            expires_at: None,
            created_at,
            last_used_at: None,
            secret_valid_until: None,
            account_gate: None,
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
    /// New cap (`Some(None)`: none).
    pub cap: Option<Option<KeyCap>>,
}

impl KeyPatch {
    /// The names of the fields this patch sets, as the API spells them (what an
    /// audit entry records: names, never values).
    pub fn field_names(&self) -> Vec<String> {
        [
            ("name", self.name.is_some()),
            ("tier", self.tier.is_some()),
            ("scopes", self.scopes.is_some()),
            ("credits", self.credits.is_some()),
            ("refill", self.refill.is_some()),
            ("allowed_ips", self.allowed_ips.is_some()),
            ("expires_at", self.expires_at.is_some()),
            ("cap", self.cap.is_some()),
        ]
        .into_iter()
        .filter(|(_, set)| *set)
        .map(|(name, _)| name.to_string())
        .collect()
    }
}

/// The fields an import line carried. A line that matches a stored key (by id, or
/// by its secret) changes only these; what the line does not say keeps its value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ImportFields(u16);

impl ImportFields {
    /// `name`.
    pub const NAME: ImportFields = ImportFields(1);
    /// `prefix` (given, or shown from a plaintext `key`).
    pub const PREFIX: ImportFields = ImportFields(1 << 1);
    /// `last4` (given, or shown from a plaintext `key`).
    pub const LAST4: ImportFields = ImportFields(1 << 2);
    /// `tier`.
    pub const TIER: ImportFields = ImportFields(1 << 3);
    /// `scopes`.
    pub const SCOPES: ImportFields = ImportFields(1 << 4);
    /// `environment`.
    pub const ENVIRONMENT: ImportFields = ImportFields(1 << 5);
    /// `org`.
    pub const ORG: ImportFields = ImportFields(1 << 6);
    /// `owner`.
    pub const OWNER: ImportFields = ImportFields(1 << 7);
    /// `status`.
    pub const STATUS: ImportFields = ImportFields(1 << 8);
    /// `credits` (a number, or `null` for unmetered), with when they were set.
    pub const CREDITS: ImportFields = ImportFields(1 << 9);
    /// `allowed_ips`.
    pub const ALLOWED_IPS: ImportFields = ImportFields(1 << 10);
    /// `expires_at`.
    pub const EXPIRES_AT: ImportFields = ImportFields(1 << 11);
    /// `created_at`.
    pub const CREATED_AT: ImportFields = ImportFields(1 << 12);
    /// `account`.
    pub const ACCOUNT: ImportFields = ImportFields(1 << 13);
    /// Every field.
    pub const ALL: ImportFields = ImportFields((1 << 14) - 1);

    /// The stored columns of each field.
    pub const COLUMNS: [(ImportFields, &'static [&'static str]); 14] = [
        (Self::NAME, &["name"]),
        (Self::PREFIX, &["prefix"]),
        (Self::LAST4, &["last4"]),
        (Self::TIER, &["tier"]),
        (Self::SCOPES, &["scopes"]),
        (Self::ENVIRONMENT, &["environment"]),
        (Self::ORG, &["org"]),
        (Self::OWNER, &["owner"]),
        (Self::STATUS, &["status"]),
        (Self::CREDITS, &["credits", "refilled_at"]),
        (Self::ALLOWED_IPS, &["allowed_ips"]),
        (Self::EXPIRES_AT, &["expires_at"]),
        (Self::CREATED_AT, &["created_at"]),
        (Self::ACCOUNT, &["account"]),
    ];

    /// True when every field of `other` is among these.
    pub fn contains(self, other: ImportFields) -> bool {
        self.0 & other.0 == other.0
    }

    /// Adds `other`'s fields when `given`.
    pub fn set(&mut self, other: ImportFields, given: bool) {
        if given {
            self.0 |= other.0;
        }
    }

    /// The stored columns of these fields, in a fixed order.
    pub fn columns(self) -> impl Iterator<Item = &'static str> {
        Self::COLUMNS
            .into_iter()
            .filter(move |(f, _)| self.contains(*f))
            .flat_map(|(_, columns)| columns.iter().copied())
    }
}

/// A key brought in by an import (docs/configuration.md, Importing keys), checked and
/// ready to store.
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
    /// The fields the line carried: an update of a stored key changes only these
    /// (a new key takes the defaults for the others).
    pub given: ImportFields,
    /// What the line says of the key's account (`plan`, `account_credits`).
    pub account_setting: Option<crate::domain::AccountSetting>,
}

/// An IP network as keys' `allowed_ips` and trusted-peer lists write it: a CIDR
/// range (`10.0.0.0/8`) or one address (`10.0.0.1`, a network of one).
pub fn parse_network(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}
