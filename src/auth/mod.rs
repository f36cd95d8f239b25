//! Authentication: who is calling.
//!
//! [`credentials`] finds the credential in a request, [`api_key`] knows the key
//! format, [`cache`] and [`verify`] turn a key into a [`Principal`] through the
//! cache and the store.

pub mod api_key;
pub mod authenticator;
pub mod cache;
pub mod credentials;
pub mod jwt;
pub mod key_format;
pub mod verify;

use crate::domain::Environment;
use crate::limit::TierLimits;
use bytes::Bytes;
use http::HeaderValue;
use std::fmt;
use std::sync::Arc;

/// How the caller authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    /// An API key.
    ApiKey,
    /// A JSON Web Token.
    Jwt,
}

impl AuthMethod {
    /// `api_key` / `jwt`, as forwarded upstream.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ApiKey => "api_key",
            AuthMethod::Jwt => "jwt",
        }
    }
}

/// Who a verified credential belongs to. Built once per cached key (or token) and
/// shared by every request that presents it, so the request path copies no strings.
///
/// Its strings (key id, subject, org, scopes as forwarded, limit key) live end to
/// end in one buffer: a cached key's identity is two small allocations, not ten
/// (100k cached keys must fit a sidecar's memory). The forwarded header values are
/// slices of that buffer, so forwarding one copies nothing either.
pub struct Identity {
    /// How they authenticated.
    pub method: AuthMethod,
    /// Live or test.
    pub environment: Environment,
    /// Credits when the key was read (`None`: unmetered); the store holds the truth.
    pub credits: Option<i64>,
    /// The key's own credit refill, overriding its tier's (boxed: most keys have
    /// none, and every cached key holds this field).
    pub refill: Option<Box<crate::domain::Refill>>,
    /// What the key's account holds for its `pool: account` tiers (`None`: a JWT,
    /// a store without accounts, or an account that neither meters nor overrides).
    pub account: Option<Box<AccountHold>>,
    /// The key's own cap below its account's windows (boxed: most keys have none).
    pub cap: Option<Box<crate::domain::KeyCap>>,
    /// Granted scopes.
    scopes: Box<[String]>,
    /// The strings, end to end.
    text: Bytes,
    /// Where each [`Part`] lies in `text`; `None` when absent.
    parts: [Option<(u32, u32)>; 6],
}

/// A key's account as its cached identity holds it, when it holds anything the
/// request path needs: a pooled balance or limits of its own (most accounts have
/// neither, and then a cached key carries no hold at all: 100k cached keys must fit
/// a sidecar's memory).
#[derive(Debug)]
pub struct AccountHold {
    /// The pooled balance when the key was read (`None`: unmetered).
    pub credits: Option<i64>,
    /// The account's own values for its plan's limits, if any.
    pub overrides: Option<Box<crate::domain::PlanOverrides>>,
    /// The last tier these overrides were applied to, and the result.
    limits: parking_lot::Mutex<Option<(Arc<TierLimits>, Arc<TierLimits>)>>,
}

impl AccountHold {
    /// The hold of an account with this balance and these overrides; `None` when
    /// the account is unmetered and overrides nothing.
    pub fn of(credits: Option<i64>, overrides: crate::domain::PlanOverrides) -> Option<Self> {
        if credits.is_none() && overrides.is_empty() {
            return None;
        }
        Some(AccountHold {
            credits,
            overrides: (!overrides.is_empty()).then(|| Box::new(overrides)),
            limits: parking_lot::Mutex::new(None),
        })
    }

    /// `tier` with the account's overrides: `tier` itself when they change nothing,
    /// else built once and kept until the tier is replaced (a reload).
    pub fn limits_on(&self, tier: &Arc<TierLimits>) -> Arc<TierLimits> {
        let Some(overrides) = self
            .overrides
            .as_deref()
            .filter(|o| o.changes_windows() || o.refill.is_some())
        else {
            return tier.clone();
        };
        let mut memo = self.limits.lock();
        if let Some((base, built)) = &*memo {
            if Arc::ptr_eq(base, tier) {
                return built.clone();
            }
        }
        let built = Arc::new(tier.with_overrides(overrides));
        *memo = Some((tier.clone(), built.clone()));
        built
    }
}

/// The strings of an [`Identity`], in `text` order.
#[derive(Clone, Copy)]
enum Part {
    KeyId = 0,
    Subject = 1,
    Org = 2,
    Scopes = 3,
    LimitKey = 4,
    /// `acct:<account id>`: the account's limit key; the id is what follows `acct:`.
    AccountLimitKey = 5,
}

/// The prefix of an account's rate-limit counters: `acct:<id>`.
pub const ACCOUNT_LIMIT_PREFIX: &str = "acct:";

/// An identity field forwarded upstream as a header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentityField {
    /// The subject.
    Subject,
    /// The key id.
    KeyId,
    /// The organisation.
    Org,
    /// The scopes, space-separated.
    Scopes,
    /// The account id.
    Account,
}

impl Identity {
    /// An identity; `limit_key` names its own rate-limit counters, `account` the
    /// account whose counters its `pool: account` tiers use.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        method: AuthMethod,
        key_id: Option<String>,
        subject: String,
        org: Option<String>,
        scopes: Vec<String>,
        environment: Environment,
        credits: Option<i64>,
        limit_key: String,
        account: Option<&str>,
    ) -> Self {
        let joined = scopes.join(" ");
        let mut text = String::with_capacity(
            key_id.as_ref().map_or(0, String::len)
                + subject.len()
                + org.as_ref().map_or(0, String::len)
                + joined.len()
                + limit_key.len()
                + account.map_or(0, |a| a.len() + ACCOUNT_LIMIT_PREFIX.len()),
        );
        let mut put = |s: &str| {
            let start = text.len();
            text.push_str(s);
            Some((start as u32, text.len() as u32))
        };
        let key_range = key_id.as_deref().and_then(&mut put);
        // A key without an owner is its own subject: one copy serves both.
        let subject_range = match key_range {
            Some(r) if key_id.as_deref() == Some(subject.as_str()) => Some(r),
            _ => put(&subject),
        };
        let org_range = org.as_deref().and_then(&mut put);
        let scopes_range = put(&joined);
        let limit_range = put(&limit_key);
        let account_range = account.and_then(|a| put(&format!("{ACCOUNT_LIMIT_PREFIX}{a}")));
        Identity {
            method,
            environment,
            credits,
            refill: None,
            account: None,
            cap: None,
            scopes: scopes.into_boxed_slice(),
            text: Bytes::from(text),
            parts: [
                key_range,
                subject_range,
                org_range,
                scopes_range,
                limit_range,
                account_range,
            ],
        }
    }

    fn part(&self, part: Part) -> Option<&str> {
        let (start, end) = self.parts[part as usize]?;
        // Built from `String`s at char boundaries: always UTF-8.
        std::str::from_utf8(&self.text[start as usize..end as usize]).ok()
    }

    /// Key id (API keys only).
    pub fn key_id(&self) -> Option<&str> {
        self.part(Part::KeyId)
    }

    /// Subject: the key's owner (or id when it has none), or the JWT subject.
    pub fn subject(&self) -> &str {
        self.part(Part::Subject).unwrap_or_default()
    }

    /// Organisation.
    pub fn org(&self) -> Option<&str> {
        self.part(Part::Org)
    }

    /// Granted scopes.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// The caller's own rate-limit counters (a key's, a token subject's).
    pub fn limit_key(&self) -> &str {
        self.part(Part::LimitKey).unwrap_or_default()
    }

    /// The counters a request on `tier` counts against: the account's on a
    /// `pool: account` tier (when the caller has an account), else its own.
    pub fn limit_key_on(&self, tier: &TierLimits) -> &str {
        match tier.pool {
            crate::domain::Pool::Account => self
                .part(Part::AccountLimitKey)
                .unwrap_or_else(|| self.limit_key()),
            crate::domain::Pool::Key => self.limit_key(),
        }
    }

    /// The account id, if the caller has one.
    pub fn account_id(&self) -> Option<&str> {
        self.part(Part::AccountLimitKey)
            .map(|k| &k[ACCOUNT_LIMIT_PREFIX.len()..])
    }

    /// `field` as a header value (`None` when absent or not representable in a
    /// header): a slice of this identity's buffer, no copy.
    pub fn header_value(&self, field: IdentityField) -> Option<HeaderValue> {
        let part = match field {
            IdentityField::Subject => Part::Subject,
            IdentityField::KeyId => Part::KeyId,
            IdentityField::Org => Part::Org,
            IdentityField::Scopes => Part::Scopes,
            IdentityField::Account => Part::AccountLimitKey,
        };
        let (mut start, end) = self.parts[part as usize]?;
        if field == IdentityField::Account {
            start += ACCOUNT_LIMIT_PREFIX.len() as u32;
        }
        HeaderValue::from_maybe_shared(self.text.slice(start as usize..end as usize)).ok()
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("method", &self.method)
            .field("key_id", &self.key_id())
            .field("subject", &self.subject())
            .field("environment", &self.environment)
            .finish_non_exhaustive()
    }
}

/// An authenticated caller, as the rest of the request path sees it: a shared
/// identity and the configured tier it is limited by.
#[derive(Clone, Debug)]
pub struct Principal {
    /// Who they are.
    pub identity: Arc<Identity>,
    /// Their tier's limits (always a configured tier).
    pub tier: Arc<TierLimits>,
    /// Until when the credential stays good, in Unix ms (`i64::MAX`: no end known
    /// now): a key's expiry or the end of a regenerated secret's grace, a token's
    /// `exp`. A request that outlives its decision ends then.
    pub valid_until_ms: i64,
}

impl Principal {
    /// True when the caller holds `scope` (or the `admin` scope).
    pub fn has_scope(&self, scope: &str) -> bool {
        self.identity
            .scopes()
            .iter()
            .any(|s| s == scope || s == "admin")
    }

    /// The tier's name.
    pub fn tier_name(&self) -> &str {
        &self.tier.name
    }
}
