//! Events for webhooks (docs/operations.md, Webhooks): what happened, as a receiver
//! is told it — `{id, type, created_at, data}`, never a secret.
//!
//! Events that follow a change (a key created, revoked, regenerated; an account's
//! plan changed or suspended; a refresh token reused) are derived from the change's
//! audit entry and the changed record, and written to the store's outbox in the
//! change's own transaction ([`events_of_change`]): a change and its event are kept
//! or lost together.

use super::{AccountRecord, AccountStatus, AuditEntry, KeyRecord};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

/// The kinds of event a receiver may ask for.
pub const EVENT_TYPES: [&str; 9] = [
    "key.created",
    "key.revoked",
    "key.regenerated",
    "key.expiring",
    "account.plan_changed",
    "account.suspended",
    "credits.low",
    "rate_limit.exceeded",
    "auth.refresh_reuse",
];

/// One event, as the outbox keeps it and a receiver gets it.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Its place in the outbox: larger is newer (0 before it is stored).
    pub seq: i64,
    /// Its id, the same on every delivery (receivers deduplicate by it).
    pub id: String,
    /// One of [`EVENT_TYPES`].
    pub kind: String,
    /// When it happened.
    pub created_at: DateTime<Utc>,
    /// What a receiver needs to act on it: never a secret.
    pub data: Value,
}

impl Event {
    /// A new event of `kind` at `at` (a fresh id).
    pub fn new(kind: &str, at: DateTime<Utc>, data: Value) -> Self {
        Event {
            seq: 0,
            id: super::id::new_id("evt"),
            kind: kind.to_string(),
            created_at: at,
            data,
        }
    }

    /// The JSON body a receiver is sent.
    pub fn body(&self) -> String {
        json!({
            "id": self.id,
            "type": self.kind,
            "created_at": self.created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            "data": self.data,
        })
        .to_string()
    }
}

/// A receiver's name in the store: its URL without credentials, query or fragment
/// (so neither lands in the deliveries' log). Errors say what is wrong with `url`.
pub fn receiver_name(url: &str) -> Result<String, String> {
    let mut u = url::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err(format!("`{url}` must be an http:// or https:// URL"));
    }
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.set_fragment(None);
    Ok(u.to_string())
}

/// The id of the `rate_limit.exceeded` event of `holder` (a key or an account id)
/// for the instance `instance` of its window `window`: one per window instance,
/// whoever announces it.
pub fn rate_limit_event_id(holder: &str, window: &str, instance: u64) -> String {
    format!("evt_rl_{holder}_{window}_{instance}")
}

/// The id of the `credits.low` event of `holder` for `threshold` (in credits) in
/// the refill period starting `period` (Unix seconds; 0 without refills).
pub fn credits_low_event_id(holder: &str, threshold: i64, period: i64) -> String {
    format!("evt_cl_{holder}_{threshold}_{period}")
}

/// A `credits.low` threshold: a share of the balance's refill, or a number of
/// credits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreditThreshold {
    /// This percentage of the refill amount (10 credits for a balance that is
    /// never refilled).
    Percent(u8),
    /// This many credits.
    Credits(i64),
}

impl CreditThreshold {
    /// The credits this threshold stands for on a balance refilled to `refill`.
    pub fn level(self, refill: Option<i64>) -> i64 {
        match (self, refill) {
            (CreditThreshold::Credits(n), _) => n,
            (CreditThreshold::Percent(p), Some(amount)) => amount * i64::from(p) / 100,
            (CreditThreshold::Percent(_), None) => 10,
        }
    }

    /// Parses `N%` (1 to 100) or a whole number of credits.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        match t.strip_suffix('%') {
            Some(p) => match p.trim().parse::<u8>() {
                Ok(p) if (1..=100).contains(&p) => Ok(CreditThreshold::Percent(p)),
                _ => Err(format!("`{text}`: a share is 1% to 100%")),
            },
            None => match t.parse::<i64>() {
                Ok(n) if n >= 0 => Ok(CreditThreshold::Credits(n)),
                _ => Err(format!(
                    "`{text}`: expected a share such as 10% or a number of credits"
                )),
            },
        }
    }
}

/// The thresholds a debit from `before` to `after` credits took the balance to or
/// below (it was above them), as levels in credits.
pub fn thresholds_crossed(
    thresholds: &[CreditThreshold],
    refill: Option<i64>,
    before: i64,
    after: i64,
) -> Vec<i64> {
    let mut levels: Vec<i64> = thresholds
        .iter()
        .map(|t| t.level(refill))
        .filter(|level| before > *level && after <= *level)
        .collect();
    levels.sort_unstable();
    levels.dedup();
    levels
}

/// How long before its `expires_at` a key's `key.expiring` event is sent.
pub const EXPIRING_NOTICE: chrono::TimeDelta = chrono::TimeDelta::days(7);

/// The `key.expiring` event of `k` (it expires within [`EXPIRING_NOTICE`]): one
/// per key and expiry, whoever announces it.
pub fn key_expiring(k: &KeyRecord, at: DateTime<Utc>) -> Option<Event> {
    let expires = k.expires_at?;
    Some(Event {
        id: format!("evt_ke_{}_{}", k.id, expires.timestamp()),
        ..Event::new("key.expiring", at, json!({ "key": key_data(k) }))
    })
}

/// What the store must read, after a change, to write its events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject {
    /// Nothing: the change announces no event.
    None,
    /// The key the entry names.
    Key,
    /// The account the entry names.
    Account,
    /// Nothing more than the entry (it names a user).
    Entry,
}

/// What the store reads to write the events of the change `audit` records.
pub fn subject_of(audit: &AuditEntry) -> Subject {
    match audit.action.as_str() {
        "key.created" | "key.revoked" | "key.regenerated" => Subject::Key,
        "account.updated" if audit.fields.iter().any(|f| f == "plan" || f == "status") => {
            Subject::Account
        }
        "auth.refresh_reuse" => Subject::Entry,
        _ => Subject::None,
    }
}

/// A key as events show it: what identifies it and what it is on, never its
/// secret or hash.
pub fn key_data(k: &KeyRecord) -> Value {
    json!({
        "id": k.id,
        "name": k.name,
        "prefix": k.prefix,
        "last4": k.last4,
        "tier": k.tier,
        "environment": k.environment.as_str(),
        "owner": k.owner,
        "account": k.account,
        "status": k.status.as_str(),
        "expires_at": k.expires_at.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)),
    })
}

/// An account as events show it.
pub fn account_data(a: &AccountRecord) -> Value {
    json!({
        "id": a.id,
        "plan": a.plan,
        "status": a.status.as_str(),
        "owner": a.owner,
        "credits": a.credits,
    })
}

/// The events a change announces: `audit` is its entry, `key` or `account` the
/// record it changed as it is after the change ([`subject_of`] says which is read).
pub fn events_of_change(
    audit: &AuditEntry,
    key: Option<&KeyRecord>,
    account: Option<&AccountRecord>,
) -> Vec<Event> {
    let at = audit.at;
    let by = json!({ "actor": audit.origin.actor, "request_id": audit.origin.request_id });
    let with = |mut data: Value| {
        if let (Value::Object(d), Value::Object(b)) = (&mut data, &by) {
            d.extend(b.clone());
        }
        data
    };
    match (subject_of(audit), key, account) {
        (Subject::Key, Some(k), _) => {
            vec![Event::new(
                &audit.action,
                at,
                with(json!({ "key": key_data(k) })),
            )]
        }
        (Subject::Account, _, Some(a)) => {
            let mut out = Vec::new();
            if audit.fields.iter().any(|f| f == "plan") {
                out.push(Event::new(
                    "account.plan_changed",
                    at,
                    with(json!({ "account": account_data(a) })),
                ));
            }
            if audit.fields.iter().any(|f| f == "status") && a.status == AccountStatus::Suspended {
                out.push(Event::new(
                    "account.suspended",
                    at,
                    with(json!({ "account": account_data(a) })),
                ));
            }
            out
        }
        (Subject::Entry, _, _) => vec![Event::new(
            &audit.action,
            at,
            with(json!({ "user_id": audit.target, "client_ip": audit.origin.client_ip })),
        )],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::AuditOrigin;
    use chrono::TimeZone;

    fn entry(action: &'static str, fields: &[&str]) -> AuditEntry {
        AuditEntry::new(
            &AuditOrigin {
                actor: "key_admin".into(),
                client_ip: Some("203.0.113.5".into()),
                request_id: Some("req-9".into()),
            },
            action,
            "acct_1",
            fields.iter().map(|f| f.to_string()).collect(),
            Utc.timestamp_opt(1_800_000_000, 0).unwrap(),
        )
    }

    fn account(status: AccountStatus) -> AccountRecord {
        AccountRecord {
            status,
            ..AccountRecord::new("acct_1", "pro", Utc.timestamp_opt(0, 0).unwrap())
        }
    }

    #[test]
    fn a_debit_crosses_each_threshold_once_on_its_way_down() {
        let t = [
            CreditThreshold::parse("20%").unwrap(),
            CreditThreshold::parse("0").unwrap(),
        ];
        assert_eq!(thresholds_crossed(&t, Some(100), 25, 20), [20]);
        assert_eq!(thresholds_crossed(&t, Some(100), 20, 19), Vec::<i64>::new());
        assert_eq!(thresholds_crossed(&t, Some(100), 21, 0), [0, 20]);
        assert_eq!(
            thresholds_crossed(&t, None, 11, 10),
            [10],
            "a share of a balance never refilled is 10 credits"
        );
        assert!(CreditThreshold::parse("0%").is_err());
        assert!(CreditThreshold::parse("-3").is_err());
        assert!(CreditThreshold::parse("lots").is_err());
    }

    #[test]
    fn a_receivers_name_keeps_no_credential_or_query() {
        assert_eq!(
            receiver_name("https://user:pw@hooks.example.com/in?token=abc#x").unwrap(),
            "https://hooks.example.com/in"
        );
        assert!(receiver_name("ftp://example.com/").is_err());
        assert!(receiver_name("not a url").is_err());
    }

    #[test]
    fn an_account_change_announces_a_plan_change_and_a_suspension_only() {
        let both = entry("account.updated", &["plan", "status"]);
        let kinds = |events: Vec<Event>| events.into_iter().map(|e| e.kind).collect::<Vec<_>>();
        assert_eq!(
            kinds(events_of_change(
                &both,
                None,
                Some(&account(AccountStatus::Suspended))
            )),
            ["account.plan_changed", "account.suspended"]
        );
        assert_eq!(
            kinds(events_of_change(
                &both,
                None,
                Some(&account(AccountStatus::Active))
            )),
            ["account.plan_changed"],
            "a resumption is no suspension"
        );
        let metadata = entry("account.updated", &["metadata"]);
        assert_eq!(subject_of(&metadata), Subject::None);
        assert!(
            events_of_change(&metadata, None, Some(&account(AccountStatus::Active))).is_empty()
        );
    }

    #[test]
    fn a_keys_event_shows_the_key_and_who_changed_it_never_its_secret() {
        let k = KeyRecord::active("key_1", "free", Utc.timestamp_opt(0, 0).unwrap());
        let e = &events_of_change(&entry("key.revoked", &["status"]), Some(&k), None)[0];
        assert_eq!(e.kind, "key.revoked");
        assert!(e.id.starts_with("evt_"));
        let body: Value = serde_json::from_str(&e.body()).unwrap();
        assert_eq!(body["type"], "key.revoked");
        assert_eq!(body["created_at"], "2027-01-15T08:00:00.000Z");
        assert_eq!(body["data"]["key"]["id"], "key_1");
        assert_eq!(body["data"]["actor"], "key_admin");
        assert_eq!(body["data"]["request_id"], "req-9");
        assert!(body["data"]["key"].get("key_hash").is_none());
    }
}
