//! What a door asks of a key, and the one validation of it.
//!
//! Each door turns its own syntax into a [`KeyInput`] or a [`KeyChange`]: the
//! management API from JSON (refusing wrong JSON types itself), the CLI from its
//! flags (turning `--expires-in 30d` into a time), the portal from a form. Every
//! rule on the values — lengths, tiers, environments, scopes, credits, expiry,
//! networks — is checked here, once, with the same message whichever door asked;
//! each refusal is keyed by the canonical field name (`expires_at`), which a door may
//! show as its own spelling (`--expires-in`).

use crate::domain::{Environment, KeyCap, KeyPatch, Refill, RefillEvery};
use chrono::{DateTime, Utc};
use ipnet::IpNet;
use std::collections::BTreeMap;

/// Longest key name, org or owner.
pub const MAX_TEXT: usize = 200;
/// Most scopes on a key.
pub const MAX_SCOPES: usize = 100;
/// Longest scope.
pub const MAX_SCOPE_LEN: usize = 100;
/// Most networks in an allow-list.
pub const MAX_NETWORKS: usize = 100;

/// Problems with a request, by canonical field name, in field order.
pub type FieldErrors = BTreeMap<String, String>;

/// A refill, as asked: an amount and a period (`day`, `month`, or a duration).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RefillInput {
    /// Credits each period starts with.
    pub amount: Option<i64>,
    /// `day`, `month`, or a duration such as `7d`.
    pub every: Option<String>,
}

/// A new key, as asked; `None` where the request did not say.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KeyInput {
    /// Display name (required).
    pub name: Option<String>,
    /// Tier (default: `default_tier`).
    pub tier: Option<String>,
    /// Scopes.
    pub scopes: Option<Vec<String>>,
    /// `live` (default) or `test`.
    pub environment: Option<String>,
    /// Credits (`Some(None)`: unmetered; the default is the refill amount when a
    /// refill applies, else unmetered).
    pub credits: Option<Option<i64>>,
    /// A refill of the key's own (`Some(None)`: the tier's, the default).
    pub refill: Option<Option<RefillInput>>,
    /// Expiry (`Some(None)`: never, the default).
    pub expires_at: Option<Option<DateTime<Utc>>>,
    /// Client networks (`10.0.0.0/8`) or addresses allowed to use the key.
    pub allowed_ips: Option<Vec<String>>,
    /// Organisation.
    pub org: Option<String>,
    /// Owner.
    pub owner: Option<String>,
    /// The account it joins: an id (made on first use) or a user's email.
    pub account: Option<String>,
    /// Its own cap below its account's windows.
    pub cap: Option<KeyCap>,
}

/// A change to a key, as asked; `None` where the request did not say.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KeyChange {
    /// New name.
    pub name: Option<String>,
    /// New tier.
    pub tier: Option<String>,
    /// New scopes.
    pub scopes: Option<Vec<String>>,
    /// New credits (`Some(None)`: unmetered).
    pub credits: Option<Option<i64>>,
    /// New refill of the key's own (`Some(None)`: the tier's again).
    pub refill: Option<Option<RefillInput>>,
    /// New networks (empty: any).
    pub allowed_ips: Option<Vec<String>>,
    /// New expiry (`Some(None)`: never).
    pub expires_at: Option<Option<DateTime<Utc>>>,
    /// New cap (`Some(None)`: none).
    pub cap: Option<Option<KeyCap>>,
}

/// A [`KeyInput`] whose values are all valid.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidKey {
    /// Display name, trimmed.
    pub name: String,
    /// Tier, if one was named (a configured one).
    pub tier: Option<String>,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Environment.
    pub environment: Environment,
    /// Credits, if set (`Some(None)`: unmetered).
    pub credits: Option<Option<i64>>,
    /// The key's own refill, if set (`Some(None)`: the tier's).
    pub refill: Option<Option<Refill>>,
    /// Expiry, if set (`Some(None)`: never).
    pub expires_at: Option<Option<DateTime<Utc>>>,
    /// Allowed networks.
    pub allowed_ips: Vec<IpNet>,
    /// Organisation, trimmed.
    pub org: Option<String>,
    /// Owner, trimmed.
    pub owner: Option<String>,
    /// The account named, trimmed.
    pub account: Option<String>,
    /// Its own cap, checked.
    pub cap: Option<KeyCap>,
}

/// Collects the problems of one request.
struct Check<'a> {
    tiers: &'a [&'a str],
    now: DateTime<Utc>,
    errors: FieldErrors,
}

impl Check<'_> {
    /// A cap: every window it sets at least 1 (an empty cap is none).
    fn cap(&mut self, cap: KeyCap) -> Option<KeyCap> {
        if cap.windows().any(|(_, limit)| limit == 0) {
            self.refuse("cap", "a window's cap is at least 1 request");
            return None;
        }
        Some(cap).filter(|c| !c.is_empty())
    }

    fn refuse(&mut self, field: &str, why: impl Into<String>) {
        self.errors
            .entry(field.to_string())
            .or_insert_with(|| why.into());
    }

    fn text(&mut self, field: &str, value: Option<&String>) -> Option<String> {
        let v = value?.trim();
        if v.is_empty() || v.chars().count() > MAX_TEXT {
            self.refuse(field, format!("must be 1 to {MAX_TEXT} characters"));
            return None;
        }
        Some(v.to_string())
    }

    fn tier(&mut self, value: Option<&String>) -> Option<String> {
        let v = value?;
        if self.tiers.contains(&v.as_str()) {
            Some(v.clone())
        } else {
            self.refuse("tier", format!("must be one of: {}", self.tiers.join(", ")));
            None
        }
    }

    fn scopes(&mut self, value: Option<&Vec<String>>) -> Option<Vec<String>> {
        let v = value?;
        let bad = v.iter().find(|s| {
            s.is_empty() || s.len() > MAX_SCOPE_LEN || !s.bytes().all(|b| b.is_ascii_graphic())
        });
        if bad.is_some() || v.len() > MAX_SCOPES {
            self.refuse(
                "scopes",
                format!(
                    "must be at most {MAX_SCOPES} scopes of 1-{MAX_SCOPE_LEN} visible ASCII characters"
                ),
            );
            return None;
        }
        let mut unique: Vec<String> = Vec::with_capacity(v.len());
        for s in v {
            if !unique.contains(s) {
                unique.push(s.clone());
            }
        }
        Some(unique)
    }

    fn credits(&mut self, value: Option<Option<i64>>) -> Option<Option<i64>> {
        match value? {
            Some(c) if c < 0 => {
                self.refuse("credits", "must be a non-negative integer or null");
                None
            }
            v => Some(v),
        }
    }

    fn refill(&mut self, value: Option<&Option<RefillInput>>) -> Option<Option<Refill>> {
        let Some(input) = value? else {
            return Some(None);
        };
        let amount = match input.amount {
            Some(a) if a >= 0 => Some(a as u64),
            _ => {
                self.refuse("refill", "amount must be a non-negative integer");
                None
            }
        };
        let every = match input.every.as_deref().map(RefillEvery::parse) {
            Some(Ok(every)) => Some(every),
            Some(Err(why)) => {
                self.refuse("refill", format!("every: {why}"));
                None
            }
            None => {
                self.refuse("refill", "every is required: day, month, or a duration");
                None
            }
        };
        Some(Some(Refill {
            amount: amount?,
            every: every?,
        }))
    }

    /// An expiry in the future, kept to the second as every store keeps it: a
    /// fraction is rounded up (never earlier than asked), so the answer that
    /// shows `expires_at` shows the instant the key stops working.
    fn expiry(&mut self, value: Option<Option<DateTime<Utc>>>) -> Option<Option<DateTime<Utc>>> {
        match value? {
            Some(t) if t <= self.now => {
                self.refuse("expires_at", "must be in the future");
                None
            }
            Some(t) => {
                let up = i64::from(t.timestamp_subsec_nanos() > 0);
                Some(DateTime::from_timestamp(t.timestamp() + up, 0).or(Some(t)))
            }
            None => Some(None),
        }
    }

    fn networks(&mut self, value: Option<&Vec<String>>) -> Option<Vec<IpNet>> {
        let v = value?;
        let mut nets = Vec::with_capacity(v.len());
        for text in v {
            match crate::domain::key::parse_network(text) {
                Some(n) => nets.push(n),
                None => {
                    self.refuse(
                        "allowed_ips",
                        format!("`{text}` is not an IP address or CIDR network"),
                    );
                    return None;
                }
            }
        }
        if nets.len() > MAX_NETWORKS {
            self.refuse("allowed_ips", format!("at most {MAX_NETWORKS} networks"));
            return None;
        }
        Some(nets)
    }

    fn finish<T>(self, value: T) -> Result<T, FieldErrors> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(self.errors)
        }
    }
}

/// Validates a new key against the configured `tiers` at `now`, listing every
/// problem.
pub fn validate_new(
    input: &KeyInput,
    tiers: &[&str],
    now: DateTime<Utc>,
) -> Result<ValidKey, FieldErrors> {
    let mut c = Check {
        tiers,
        now,
        errors: FieldErrors::new(),
    };
    let name = c.text("name", input.name.as_ref());
    if input.name.is_none() {
        c.refuse("name", "is required");
    }
    let tier = c.tier(input.tier.as_ref());
    let scopes = c.scopes(input.scopes.as_ref()).unwrap_or_default();
    let environment = match input.environment.as_deref() {
        None => Some(Environment::Live),
        Some(e) => Environment::parse(e).or_else(|| {
            c.refuse("environment", "must be one of: live, test");
            None
        }),
    };
    let credits = c.credits(input.credits);
    let refill = c.refill(input.refill.as_ref());
    let expires_at = c.expiry(input.expires_at);
    let allowed_ips = c.networks(input.allowed_ips.as_ref()).unwrap_or_default();
    let org = c.text("org", input.org.as_ref());
    let owner = c.text("owner", input.owner.as_ref());
    let account = c.text("account", input.account.as_ref());
    let cap = input.cap.and_then(|cap| c.cap(cap));
    let (Some(name), Some(environment)) = (name, environment) else {
        return Err(c.errors);
    };
    c.finish(ValidKey {
        name,
        tier,
        scopes,
        environment,
        credits,
        refill,
        expires_at,
        allowed_ips,
        org,
        owner,
        account,
        cap,
    })
}

/// Validates a change to a key, listing every problem.
pub fn validate_change(
    change: &KeyChange,
    tiers: &[&str],
    now: DateTime<Utc>,
) -> Result<KeyPatch, FieldErrors> {
    let mut c = Check {
        tiers,
        now,
        errors: FieldErrors::new(),
    };
    let patch = KeyPatch {
        name: c.text("name", change.name.as_ref()),
        tier: c.tier(change.tier.as_ref()),
        scopes: c.scopes(change.scopes.as_ref()),
        credits: c.credits(change.credits),
        refill: c.refill(change.refill.as_ref()),
        allowed_ips: c.networks(change.allowed_ips.as_ref()),
        expires_at: c.expiry(change.expires_at),
        cap: change.cap.map(|cap| cap.and_then(|cap| c.cap(cap))),
    };
    c.finish(patch)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIERS: &[&str] = &["free", "pro"];

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn every_problem_is_listed_by_field() {
        let now = Utc::now();
        let bad = KeyInput {
            name: Some("  ".into()),
            tier: Some("gold".into()),
            scopes: Some(strings(&["ok", "has space"])),
            environment: Some("prod".into()),
            credits: Some(Some(-1)),
            refill: Some(Some(RefillInput {
                amount: Some(10),
                every: Some("week".into()),
            })),
            expires_at: Some(Some(now - chrono::Duration::seconds(1))),
            allowed_ips: Some(strings(&["10.0.0.0/8", "nope"])),
            org: Some("x".repeat(201)),
            owner: None,
            account: None,
            cap: None,
        };
        let errors = validate_new(&bad, TIERS, now).unwrap_err();
        let fields: Vec<&str> = errors.keys().map(String::as_str).collect();
        assert_eq!(
            fields,
            [
                "allowed_ips",
                "credits",
                "environment",
                "expires_at",
                "name",
                "org",
                "refill",
                "scopes",
                "tier"
            ]
        );
        assert_eq!(errors["tier"], "must be one of: free, pro");
        assert!(
            errors["refill"].contains("or `day` or `month`"),
            "{}",
            errors["refill"]
        );
        assert_eq!(
            errors["allowed_ips"],
            "`nope` is not an IP address or CIDR network"
        );
        let missing = validate_new(&KeyInput::default(), TIERS, now).unwrap_err();
        assert_eq!(missing["name"], "is required");
    }

    #[test]
    fn good_input_is_normalised() {
        let now = Utc::now();
        let ok = validate_new(
            &KeyInput {
                name: Some("  ci  ".into()),
                scopes: Some(strings(&["a", "b", "a"])),
                allowed_ips: Some(strings(&["10.1.2.3"])),
                ..Default::default()
            },
            TIERS,
            now,
        )
        .unwrap();
        assert_eq!(ok.name, "ci");
        assert_eq!(ok.scopes, strings(&["a", "b"]), "duplicates dropped");
        assert_eq!(ok.environment, Environment::Live);
        assert_eq!(ok.allowed_ips[0].to_string(), "10.1.2.3/32");
        // An expiry is kept to the second, rounded up: never earlier than asked.
        let asked = DateTime::from_timestamp(now.timestamp() + 10, 250_000_000).unwrap();
        let expiring = validate_new(
            &KeyInput {
                name: Some("e".into()),
                expires_at: Some(Some(asked)),
                ..Default::default()
            },
            TIERS,
            now,
        )
        .unwrap();
        assert_eq!(
            expiring.expires_at,
            Some(DateTime::from_timestamp(now.timestamp() + 11, 0))
        );
        let too_many = KeyChange {
            scopes: Some((0..101).map(|i| format!("s{i}")).collect()),
            ..Default::default()
        };
        assert!(validate_change(&too_many, TIERS, now)
            .unwrap_err()
            .contains_key("scopes"));
        assert_eq!(
            validate_change(&KeyChange::default(), TIERS, now),
            Ok(KeyPatch::default())
        );
    }
}
