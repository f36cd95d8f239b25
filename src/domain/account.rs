//! Accounts (docs/configuration.md, Accounts): the customer that holds keys, and
//! with them the plan, its overrides, the pooled credit balance and free-form
//! metadata. Every key belongs to one account; a user has one of their own, an org
//! may share one.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Largest `metadata`, as compact JSON.
pub const MAX_METADATA_BYTES: usize = 4096;

/// Whose counters a tier's windows and credits are (`tiers.<name>.pool`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pool {
    /// Each key has its own windows and balance.
    #[default]
    Key,
    /// Every key of an account shares the account's windows, block and balance.
    Account,
}

/// Whether an account's keys may be used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountStatus {
    /// Its keys work.
    #[default]
    Active,
    /// Every one of its keys is refused (`account_suspended`) until it is resumed.
    Suspended,
}

impl AccountStatus {
    /// `active` / `suspended`.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::Suspended => "suspended",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(AccountStatus::Active),
            "suspended" => Some(AccountStatus::Suspended),
            _ => None,
        }
    }
}

impl fmt::Display for AccountStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An account's own values for any of its plan's windows, `max_keys` and credit
/// refill (`None`: the plan's). Stored as a JSON object of the fields it sets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanOverrides {
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
    /// Most active keys the account may hold on the plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_keys: Option<u64>,
    /// The pooled balance's refill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refill: Option<crate::domain::Refill>,
}

impl PlanOverrides {
    /// True when it overrides nothing.
    pub fn is_empty(&self) -> bool {
        *self == PlanOverrides::default()
    }

    /// True when it overrides a window (the request path then builds the account's
    /// own limits).
    pub fn changes_windows(&self) -> bool {
        self.per_second.is_some()
            || self.per_minute.is_some()
            || self.per_hour.is_some()
            || self.per_day.is_some()
            || self.per_month.is_some()
    }

    /// The stored form: compact JSON of the fields set.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }

    /// Parses the stored form; the error says what is wrong.
    pub fn from_json(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }
}

/// An account (the account object of docs/configuration.md, Accounts).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AccountRecord {
    /// Stable id (`acct_…`, or the id it was first named by).
    pub id: String,
    /// The plan: a tier name, its keys' tier unless a key has its own.
    pub plan: String,
    /// Active or suspended.
    pub status: AccountStatus,
    /// Its own values for its plan's limits.
    pub overrides: PlanOverrides,
    /// The pooled credit balance (`None`: unmetered), used on `pool: account` tiers.
    pub credits: Option<i64>,
    /// Start (as a time) of the period the pooled balance was last refilled in.
    pub refilled_at: Option<DateTime<Utc>>,
    /// Free-form JSON object, at most [`MAX_METADATA_BYTES`].
    pub metadata: serde_json::Value,
    /// The user whose own account it is, if any.
    pub owner: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

impl AccountRecord {
    /// A new, active account `id` on `plan` with nothing else set.
    pub fn new(id: &str, plan: &str, created_at: DateTime<Utc>) -> Self {
        AccountRecord {
            id: id.to_owned(),
            plan: plan.to_owned(),
            status: AccountStatus::Active,
            overrides: PlanOverrides::default(),
            credits: None,
            refilled_at: None,
            metadata: serde_json::Value::Object(Default::default()),
            owner: None,
            created_at,
        }
    }
}

/// What the request path needs of a key's account, read with the key: kept small,
/// since every cached key of a pooled tier holds one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountGate {
    /// The account's id.
    pub id: String,
    /// Suspended accounts' keys are refused.
    pub status: AccountStatus,
    /// Its own limits.
    pub overrides: PlanOverrides,
    /// The pooled balance when the key was read (`None`: unmetered).
    pub credits: Option<i64>,
}

/// Changes to an account (`None`: unchanged).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AccountPatch {
    /// New plan.
    pub plan: Option<String>,
    /// New status.
    pub status: Option<AccountStatus>,
    /// New overrides (replacing the old ones whole).
    pub overrides: Option<PlanOverrides>,
    /// New metadata.
    pub metadata: Option<serde_json::Value>,
}

impl AccountPatch {
    /// The names of the fields this patch sets (what an audit entry records).
    pub fn field_names(&self) -> Vec<String> {
        [
            ("plan", self.plan.is_some()),
            ("status", self.status.is_some()),
            ("overrides", self.overrides.is_some()),
            ("metadata", self.metadata.is_some()),
        ]
        .into_iter()
        .filter(|(_, set)| *set)
        .map(|(name, _)| name.to_string())
        .collect()
    }
}

/// A change to an account's pooled balance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreditChange {
    /// Adds this many (an increment; negative takes away, never below zero).
    Add(i64),
    /// Sets the balance (`None`: unmetered).
    Set(Option<i64>),
}

/// What an import line says of its account: the plan and the pooled balance
/// (`None`: not said; `credits: Some(None)`: unmetered).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountSetting {
    /// The account.
    pub id: String,
    /// Its plan.
    pub plan: Option<String>,
    /// Its balance.
    pub credits: Option<Option<i64>>,
    /// Its status.
    pub status: Option<AccountStatus>,
    /// The import line that said it first.
    pub line: u64,
}

/// Which accounts a listing returns, and from where.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountFilter {
    /// Only the account of the user with this id.
    pub owner: Option<String>,
    /// Only accounts on this plan.
    pub plan: Option<String>,
    /// Only accounts holding a key of this organisation.
    pub org: Option<String>,
    /// Only accounts in this status.
    pub status: Option<AccountStatus>,
    /// Only accounts whose id is after this one (the cursor), in id order.
    pub after: Option<String>,
    /// At most this many.
    pub limit: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_store_only_what_they_set() {
        let o = PlanOverrides {
            per_minute: Some(60),
            ..Default::default()
        };
        assert_eq!(o.to_json(), r#"{"per_minute":60}"#);
        assert_eq!(PlanOverrides::from_json(&o.to_json()).unwrap(), o);
        assert!(o.changes_windows());
        assert!(PlanOverrides::from_json("{}").unwrap().is_empty());
        assert!(PlanOverrides::from_json(r#"{"per_year":1}"#).is_err());
    }

    #[test]
    fn status_round_trips() {
        for s in [AccountStatus::Active, AccountStatus::Suspended] {
            assert_eq!(AccountStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(AccountStatus::parse("gone"), None);
    }
}
