//! API-key verification: format check, cache, store; then the key's own status checks.

use super::api_key::KeyShape;
use super::cache::{Cached, KeyCache, KeyChecks, KnownKey};
use super::key_format::KeyFormat;
use crate::domain::KeyHash;
use crate::obs::metrics;
use crate::store::{KeyStore, StoreError};
use std::net::IpAddr;
use std::sync::Arc;

/// Why a presented API key was not accepted.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Malformed, or not in the store.
    #[error("invalid API key")]
    Invalid,
    /// Past its expiry.
    #[error("API key has expired")]
    Expired,
    /// Revoked.
    #[error("API key has been revoked")]
    Revoked,
    /// The client IP is outside the key's allow-list.
    #[error("IP address not allowed")]
    IpNotAllowed,
    /// The store could not answer (and the key was not cached).
    #[error("key store unavailable")]
    StoreUnavailable,
    /// The key's account is suspended.
    #[error("Account is suspended")]
    AccountSuspended,
}

/// Turns API keys into stored records, through the cache.
#[derive(Clone)]
pub struct KeyVerifier {
    store: Arc<dyn KeyStore>,
    cache: KeyCache,
}

impl KeyVerifier {
    /// A verifier over `store` and `cache`.
    pub fn new(store: Arc<dyn KeyStore>, cache: KeyCache) -> Self {
        KeyVerifier { store, cache }
    }

    /// The cache (for invalidation and metrics).
    pub fn cache(&self) -> &KeyCache {
        &self.cache
    }

    /// Finds the record of `key`. Malformed keys never reach the cache or store.
    pub async fn lookup(&self, key: &str, format: &KeyFormat) -> Result<Arc<KnownKey>, KeyError> {
        if format.classify(key) == KeyShape::Malformed {
            return Err(KeyError::Invalid);
        }
        let hash = KeyHash::of(key);
        let stale = match self.cache.get(&hash) {
            Some(Cached::Known(r)) => {
                metrics::KEY_CACHE_HITS.inc();
                return Ok(r);
            }
            Some(Cached::Unknown) => {
                metrics::KEY_CACHE_NEGATIVE_HITS.inc();
                return Err(KeyError::Invalid);
            }
            Some(Cached::Stale(r)) => {
                metrics::KEY_CACHE_MISSES.inc();
                Some(r)
            }
            Some(Cached::Unwatched(r)) => {
                // A revocation made elsewhere would not be announced: ask the store.
                metrics::KEY_CACHE_UNWATCHED_READS.inc();
                Some(r)
            }
            None => {
                metrics::KEY_CACHE_MISSES.inc();
                None
            }
        };
        let mark = self.cache.changes_seen();
        let found = self.store.find_by_hash(&hash).await;
        metrics::count_store_query(metrics::StoreOp::FindByHash, found.is_ok());
        match found {
            Ok(Some(record)) => {
                let known = Arc::new(KnownKey::new(record, self.cache.now_ms()));
                self.cache.insert_known(hash, known.clone(), mark);
                Ok(known)
            }
            Ok(None) => {
                self.cache.insert_unknown(hash, mark);
                Err(KeyError::Invalid)
            }
            Err(e) => {
                log_store_error(&e);
                match stale {
                    // Stale-while-error: a key this replica knew keeps working while
                    // the store cannot answer, for at most `cache.stale_if_error` (the
                    // documented availability trade-off; while the store answers, its
                    // answer is what counts).
                    Some(r) => {
                        metrics::KEY_CACHE_STALE_SERVED.inc();
                        Ok(r)
                    }
                    // Never "invalid" for a key we cannot check: the caller may be
                    // a paying customer with a valid key.
                    None => Err(KeyError::StoreUnavailable),
                }
            }
        }
    }
}

fn log_store_error(e: &StoreError) {
    tracing::warn!(error = %e, "key lookup failed");
}

/// The key's own checks, in contract order: revoked, its account suspended,
/// expired, IP allow-list, with
/// `now_ms` in Unix milliseconds.
pub fn check_key(key: &KeyChecks, now_ms: i64, client_ip: Option<IpAddr>) -> Result<(), KeyError> {
    if key.revoked {
        return Err(KeyError::Revoked);
    }
    if key.suspended {
        return Err(KeyError::AccountSuspended);
    }
    if key.secret_valid_until_ms <= now_ms {
        // A previous secret whose regenerate grace period ended (while cached).
        return Err(KeyError::Invalid);
    }
    if key.expires_at_ms <= now_ms {
        return Err(KeyError::Expired);
    }
    if !key.allowed_ips.is_empty() {
        let allowed = client_ip.is_some_and(|ip| {
            let ip = match ip {
                IpAddr::V6(v6) => v6
                    .to_ipv4_mapped()
                    .map(IpAddr::V4)
                    .unwrap_or(IpAddr::V6(v6)),
                v4 => v4,
            };
            key.allowed_ips.iter().any(|net| net.contains(&ip))
        });
        if !allowed {
            return Err(KeyError::IpNotAllowed);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::key_format::generate;
    use crate::domain::{Environment, KeyRecord, KeyStatus};
    use crate::store::sqlite::SqliteStore;
    use chrono::{DateTime, TimeZone, Utc};

    fn check_record(
        record: &KeyRecord,
        now: DateTime<Utc>,
        ip: Option<IpAddr>,
    ) -> Result<(), KeyError> {
        check_key(&KeyChecks::of(record), now.timestamp_millis(), ip)
    }

    fn record(status: KeyStatus, expires: Option<i64>, ips: &[&str]) -> KeyRecord {
        KeyRecord {
            status,
            allowed_ips: ips.iter().map(|s| s.parse().unwrap()).collect(),
            expires_at: expires.map(|s| Utc.timestamp_opt(s, 0).unwrap()),
            ..KeyRecord::active("key_1", "free", Utc.timestamp_opt(0, 0).unwrap())
        }
    }

    #[test]
    fn status_checks_run_in_contract_order() {
        let now = Utc.timestamp_opt(1000, 0).unwrap();
        let ip: IpAddr = "192.168.1.5".parse().unwrap();
        assert_eq!(
            check_record(
                &record(KeyStatus::Revoked, Some(1), &["10.0.0.0/8"]),
                now,
                Some(ip)
            ),
            Err(KeyError::Revoked)
        );
        assert_eq!(
            check_record(
                &record(KeyStatus::Active, Some(1000), &["10.0.0.0/8"]),
                now,
                Some(ip)
            ),
            Err(KeyError::Expired)
        );
        assert_eq!(
            check_record(
                &record(KeyStatus::Active, Some(2000), &["10.0.0.0/8"]),
                now,
                Some(ip)
            ),
            Err(KeyError::IpNotAllowed)
        );
        assert_eq!(
            check_record(
                &record(KeyStatus::Active, None, &["192.168.0.0/16"]),
                now,
                Some(ip)
            ),
            Ok(())
        );
        let mapped: IpAddr = "::ffff:192.168.1.5".parse().unwrap();
        assert_eq!(
            check_record(
                &record(KeyStatus::Active, None, &["192.168.0.0/16"]),
                now,
                Some(mapped)
            ),
            Ok(())
        );
        assert_eq!(
            check_record(&record(KeyStatus::Active, None, &[]), now, None),
            Ok(())
        );
    }

    #[tokio::test]
    async fn unknown_keys_are_remembered_and_malformed_keys_never_looked_up() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("k.db")).unwrap());
        let cache = KeyCache::new(&Default::default(), Arc::new(crate::clock::SystemClock));
        let v = KeyVerifier::new(store.clone(), cache);
        let f = KeyFormat::default();
        let real = generate("kg", Environment::Live);
        store
            .insert(
                &record(KeyStatus::Active, None, &[]),
                &real.hash,
                &crate::store::conformance::audited(),
            )
            .await
            .unwrap();
        assert_eq!(v.lookup(&real.plaintext, &f).await.unwrap().id(), "key_1");
        assert_eq!(v.cache().len(), 1);
        let unknown = generate("kg", Environment::Live).into_plaintext();
        assert_eq!(v.lookup(&unknown, &f).await.err(), Some(KeyError::Invalid));
        assert!(matches!(
            v.cache().get(&KeyHash::of(&unknown)),
            Some(Cached::Unknown)
        ));
        assert_eq!(v.lookup("garbage", &f).await.err(), Some(KeyError::Invalid));
        assert!(
            v.cache().get(&KeyHash::of("garbage")).is_none(),
            "malformed key was never looked up"
        );
    }
}
