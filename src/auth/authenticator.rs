//! The authenticator: a presented credential → who is calling and their tier.
//!
//! One for the whole process, used by the data plane and the management API alike.
//! A credential shaped like a JWT is verified as a token when JWTs are on (or
//! keygate issues its own); anything else is an API key, looked up through the
//! cache and the store, then checked for its status, expiry and IP allow-list on
//! the injected clock.

use super::credentials::{extract, CredentialError, Source};
use super::jwt::{looks_like_jwt, JwtVerifier, TokenError};
use super::key_format::KeyFormat;
use super::verify::{check_key, KeyError, KeyVerifier};
use super::Principal;
use crate::clock::Clock;
use crate::limit::Tiers;
use arc_swap::ArcSwapOption;
use http::HeaderMap;
use std::net::IpAddr;
use std::sync::Arc;

/// Why a caller could not be authenticated.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credential, or two different ones.
    #[error(transparent)]
    Credential(#[from] CredentialError),
    /// An API key that is unknown, revoked, expired or used from the wrong network
    /// (or the store could not say).
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A JWT that failed a check.
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// What authentication reads from the running config (swapped on reload).
#[derive(Clone, Copy, Debug)]
pub struct AuthSettings<'a> {
    /// Where credentials are looked for, in order.
    pub sources: &'a [Source],
    /// The API-key format.
    pub key_format: &'a KeyFormat,
    /// The tiers callers are limited by.
    pub tiers: &'a Tiers,
}

/// Turns credentials into principals.
pub struct Authenticator {
    keys: KeyVerifier,
    jwt: ArcSwapOption<JwtVerifier>,
    clock: Arc<dyn Clock>,
}

impl Authenticator {
    /// API keys through `keys`, tokens through `jwt` (replaceable on reload), key
    /// expiry judged on `clock`.
    pub fn new(keys: KeyVerifier, jwt: Option<Arc<JwtVerifier>>, clock: Arc<dyn Clock>) -> Self {
        Authenticator {
            keys,
            jwt: ArcSwapOption::new(jwt),
            clock,
        }
    }

    /// The API-key verifier (its cache, for invalidation and metrics).
    pub fn keys(&self) -> &KeyVerifier {
        &self.keys
    }

    /// The JWT verifier in force, swapped whole by a reload.
    pub fn jwt(&self) -> &ArcSwapOption<JwtVerifier> {
        &self.jwt
    }

    /// Finds the credential in a request (`settings.sources`) and authenticates it.
    pub async fn authenticate_request(
        &self,
        settings: &AuthSettings<'_>,
        headers: &HeaderMap,
        query: Option<&str>,
        client_ip: Option<IpAddr>,
    ) -> Result<Principal, AuthError> {
        let credential = extract(settings.sources, headers, query)?;
        self.authenticate(settings, &credential.value, client_ip)
            .await
    }

    /// Verifies `credential`: a JWT when JWTs are on and it has a token's shape,
    /// else an API key (then its status, expiry and IP allow-list).
    pub async fn authenticate(
        &self,
        settings: &AuthSettings<'_>,
        credential: &str,
        client_ip: Option<IpAddr>,
    ) -> Result<Principal, AuthError> {
        let jwt = self.jwt.load();
        if let Some(jwt) = jwt.as_deref().filter(|_| looks_like_jwt(credential)) {
            let token = jwt.verify(credential).await?;
            let tier = match &token.tier {
                Some(name) => settings.tiers.get(name),
                None => settings.tiers.default_tier(),
            };
            return Ok(Principal {
                identity: token.identity.clone(),
                tier: tier.clone(),
                valid_until_ms: i64::try_from(token.exp.saturating_mul(1000)).unwrap_or(i64::MAX),
            });
        }
        let known = self.keys.lookup(credential, settings.key_format).await?;
        let now_ms = i64::try_from(self.clock.now_ms()).unwrap_or(i64::MAX);
        check_key(&known.checks, now_ms, client_ip)?;
        let tier = settings.tiers.get(&known.checks.tier);
        let tier = match &known.identity.account {
            Some(account) => account.limits_on(tier),
            None => tier.clone(),
        };
        Ok(Principal {
            identity: known.identity.clone(),
            tier,
            valid_until_ms: known
                .checks
                .expires_at_ms
                .min(known.checks.secret_valid_until_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::cache::KeyCache;
    use crate::auth::key_format::generate;
    use crate::clock::ManualClock;
    use crate::config::CacheConfig;
    use crate::domain::{Environment, KeyRecord};
    use crate::store::sqlite::SqliteStore;
    use crate::store::KeyStore;
    use chrono::{TimeZone, Utc};

    const START: u64 = 1_800_000_000_000;

    fn record(id: &str, expires_at_ms: Option<u64>) -> KeyRecord {
        KeyRecord {
            expires_at: expires_at_ms.and_then(|ms| Utc.timestamp_millis_opt(ms as i64).single()),
            ..KeyRecord::active(id, "free", Utc.timestamp_millis_opt(START as i64).unwrap())
        }
    }

    /// An authenticator over a fresh SQLite store, on a manual clock.
    fn setup() -> (
        tempfile::TempDir,
        ManualClock,
        Arc<SqliteStore>,
        Authenticator,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::at(START);
        let store = Arc::new(SqliteStore::open(&dir.path().join("k.db")).unwrap());
        let cache = KeyCache::new(&CacheConfig::default(), Arc::new(clock.clone()));
        let auth = Authenticator::new(
            KeyVerifier::new(store.clone(), cache),
            None,
            Arc::new(clock.clone()),
        );
        (dir, clock, store, auth)
    }

    fn tiers() -> Tiers {
        let tiers = serde_yaml::from_str("{ free: { per_minute: 1 } }").unwrap();
        Tiers::from_config(&tiers, "free")
    }

    #[tokio::test]
    async fn a_key_is_refused_as_expired_once_the_clock_passes_its_expiry() {
        let (_dir, clock, store, auth) = setup();
        let key = generate("kg", Environment::Live);
        store
            .insert(
                &record("key_a", Some(START + 1_000)),
                &key.hash,
                &crate::store::conformance::audited(),
            )
            .await
            .unwrap();
        let format = KeyFormat::default();
        let tiers = tiers();
        let settings = AuthSettings {
            sources: &[],
            key_format: &format,
            tiers: &tiers,
        };
        assert!(auth
            .authenticate(&settings, &key.plaintext, None)
            .await
            .is_ok());
        clock.advance_ms(1_000);
        let refused = auth.authenticate(&settings, &key.plaintext, None).await;
        assert_eq!(refused.err(), Some(AuthError::Key(KeyError::Expired)));
        assert_eq!(
            crate::error::GateError::from(AuthError::Key(KeyError::Expired)).message(),
            "API key has expired"
        );
    }

    #[tokio::test]
    async fn a_change_nobody_announced_is_read_from_the_store_after_cache_ttl() {
        let (_dir, clock, store, auth) = setup();
        let key = generate("kg", Environment::Live);
        store
            .insert(
                &record("key_b", None),
                &key.hash,
                &crate::store::conformance::audited(),
            )
            .await
            .unwrap();
        let format = KeyFormat::default();
        let tiers = tiers();
        let settings = AuthSettings {
            sources: &[],
            key_format: &format,
            tiers: &tiers,
        };
        assert!(auth
            .authenticate(&settings, &key.plaintext, None)
            .await
            .is_ok());
        // Revoked behind the cache's back (no change feed here).
        store
            .revoke("key_b", &crate::store::conformance::audited())
            .await
            .unwrap();
        clock.advance_ms(29_000);
        assert!(
            auth.authenticate(&settings, &key.plaintext, None)
                .await
                .is_ok(),
            "still the cached copy within cache.ttl (30 s)"
        );
        clock.advance_ms(1_000);
        assert_eq!(
            auth.authenticate(&settings, &key.plaintext, None)
                .await
                .err(),
            Some(AuthError::Key(KeyError::Revoked))
        );
    }
}
