//! Authentication: who is calling.
//!
//! [`credentials`] finds the credential in a request, [`api_key`] knows the key
//! format, [`cache`] and [`verify`] turn a key into a [`Principal`] through the
//! cache and the store.

pub mod api_key;
pub mod cache;
pub mod credentials;
pub mod verify;

use api_key::Environment;
use std::fmt;

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

/// An authenticated caller, as the rest of the request path sees it.
#[derive(Clone, PartialEq)]
pub struct Principal {
    /// How they authenticated.
    pub method: AuthMethod,
    /// Key id (API keys only).
    pub key_id: Option<String>,
    /// Subject: the key's owner (or id when it has none), or the JWT subject.
    pub subject: String,
    /// Organisation.
    pub org: Option<String>,
    /// Tier name (always one configured in `tiers`).
    pub tier: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Live or test.
    pub environment: Environment,
    /// Remaining credits when the key is metered.
    pub credits: Option<i64>,
    /// Identity whose counters the rate limiter uses.
    pub limit_key: String,
}

impl Principal {
    /// True when the caller holds `scope` (or the `admin` scope).
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope || s == "admin")
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("method", &self.method)
            .field("key_id", &self.key_id)
            .field("subject", &self.subject)
            .field("tier", &self.tier)
            .field("environment", &self.environment)
            .finish_non_exhaustive()
    }
}
