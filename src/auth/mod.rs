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
pub mod verify;

use crate::domain::Environment;
use crate::limit::TierLimits;
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
pub struct Identity {
    /// How they authenticated.
    pub method: AuthMethod,
    /// Key id (API keys only).
    pub key_id: Option<String>,
    /// Subject: the key's owner (or id when it has none), or the JWT subject.
    pub subject: String,
    /// Organisation.
    pub org: Option<String>,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Live or test.
    pub environment: Environment,
    /// Credits when the key was read (`None`: unmetered); the store holds the truth.
    pub credits: Option<i64>,
    /// Identity whose counters the rate limiter uses.
    pub limit_key: String,
    /// The fields above, encoded once as header values for forwarding.
    pub header_values: IdentityHeaderValues,
}

/// Identity fields pre-encoded as header values (`None` when absent or not
/// representable in a header).
#[derive(Clone, Debug, Default)]
pub struct IdentityHeaderValues {
    /// Subject.
    pub subject: Option<HeaderValue>,
    /// Key id.
    pub key_id: Option<HeaderValue>,
    /// Organisation.
    pub org: Option<HeaderValue>,
    /// Space-separated scopes.
    pub scopes: Option<HeaderValue>,
}

impl Identity {
    /// An identity; `limit_key` names its rate-limit counters.
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
    ) -> Self {
        let value = |s: &str| HeaderValue::from_str(s).ok();
        let header_values = IdentityHeaderValues {
            subject: value(&subject),
            key_id: key_id.as_deref().and_then(value),
            org: org.as_deref().and_then(value),
            scopes: value(&scopes.join(" ")),
        };
        Identity {
            method,
            key_id,
            subject,
            org,
            scopes,
            environment,
            credits,
            limit_key,
            header_values,
        }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("method", &self.method)
            .field("key_id", &self.key_id)
            .field("subject", &self.subject)
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
}

impl Principal {
    /// True when the caller holds `scope` (or the `admin` scope).
    pub fn has_scope(&self, scope: &str) -> bool {
        self.identity
            .scopes
            .iter()
            .any(|s| s == scope || s == "admin")
    }

    /// The tier's name.
    pub fn tier_name(&self) -> &str {
        &self.tier.name
    }
}
