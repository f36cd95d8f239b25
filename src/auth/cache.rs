//! The key cache: moka in front of the store, with known keys kept for `ttl` and
//! unknown keys remembered for `negative_ttl` so a flood of invented keys never
//! reaches the store.

use super::{AuthMethod, Identity};
use crate::clock::Clock;
use crate::config::CacheConfig;
use crate::domain::KeyHash;
use crate::domain::{KeyRecord, KeyStatus};
use moka::sync::Cache;
use std::sync::Arc;

/// The name of an API key's rate-limit counters (`key:<id>`): what its requests
/// count against, and what the portal peeks at.
pub fn limit_key_of_key(id: &str) -> String {
    format!("key:{id}")
}

/// What the request path checks of a stored key, in as few bytes as it can: no
/// name, prefix, owner or dates it does not need (100k cached keys must fit a
/// sidecar's memory).
#[derive(Debug)]
pub struct KeyChecks {
    /// The key was revoked.
    pub revoked: bool,
    /// When the key expires, in Unix ms (`i64::MAX`: never).
    pub expires_at_ms: i64,
    /// When this (previous) secret stops working, in Unix ms (`i64::MAX`: never).
    pub secret_valid_until_ms: i64,
    /// The IP allow-list (empty: any address).
    pub allowed_ips: Box<[ipnet::IpNet]>,
    /// The key's tier name, shared by every key of the tier.
    pub tier: Arc<str>,
}

impl KeyChecks {
    /// The checks of `record`.
    pub fn of(record: &KeyRecord) -> Self {
        let ms =
            |t: Option<chrono::DateTime<chrono::Utc>>| t.map_or(i64::MAX, |t| t.timestamp_millis());
        KeyChecks {
            revoked: record.status == KeyStatus::Revoked,
            expires_at_ms: ms(record.expires_at),
            secret_valid_until_ms: ms(record.secret_valid_until),
            allowed_ips: record.allowed_ips.clone().into_boxed_slice(),
            tier: crate::intern::name(&record.tier),
        }
    }
}

/// A stored key as the cache holds it: what its requests are checked against and
/// the identity built from it.
#[derive(Debug)]
pub struct KnownKey {
    /// What each request is checked against.
    pub checks: KeyChecks,
    /// Its identity, shared by every request presenting the key.
    pub identity: Arc<Identity>,
    /// When the record was read from the store, in Unix ms on the cache's clock
    /// (the cache re-reads it after `ttl`).
    pub fetched_at_ms: u64,
}

impl KnownKey {
    /// Builds the checks and identity of `record`, read from the store at
    /// `fetched_at_ms`.
    pub fn new(record: KeyRecord, fetched_at_ms: u64) -> Self {
        let checks = KeyChecks::of(&record);
        let limit_key = limit_key_of_key(&record.id);
        let subject = record.owner.unwrap_or_else(|| record.id.clone());
        let refill = record.refill.map(Box::new);
        let mut identity = Identity::new(
            AuthMethod::ApiKey,
            Some(record.id),
            subject,
            record.org,
            record.scopes,
            record.environment,
            record.credits,
            limit_key,
        );
        identity.refill = refill;
        KnownKey {
            checks,
            identity: Arc::new(identity),
            fetched_at_ms,
        }
    }

    /// The key's id.
    pub fn id(&self) -> &str {
        self.identity.key_id().unwrap_or_default()
    }
}

/// What the cache knows about a key hash.
#[derive(Clone, Debug)]
pub enum Cached {
    /// A stored key, read from the store less than `ttl` ago.
    Known(Arc<KnownKey>),
    /// A stored key past `ttl`: re-read it, but use it if the store is failing.
    Stale(Arc<KnownKey>),
    /// Recently looked up and not found.
    Unknown,
}

/// Positive and negative key caches.
#[derive(Clone)]
pub struct KeyCache {
    known: Cache<KeyHash, Arc<KnownKey>>,
    unknown: Cache<KeyHash, ()>,
    ttl: std::time::Duration,
    /// Decides when a known key is due to be re-read (moka's own expiry, which
    /// only bounds memory, runs on its own clock).
    clock: Arc<dyn Clock>,
}

impl KeyCache {
    /// Builds the caches from `cache:` settings; freshness judged on `clock`.
    pub fn new(c: &CacheConfig, clock: Arc<dyn Clock>) -> Self {
        let negative_cap = c.capacity.clamp(1, 1_000_000);
        KeyCache {
            ttl: c.ttl.get(),
            clock,
            known: Cache::builder()
                .max_capacity(c.capacity)
                // Entries live past `ttl` only to serve while the store is failing.
                .time_to_live(c.ttl.get() + c.stale_if_error.get())
                // Needed by invalidate_key_id (revoke, update, regenerate).
                .support_invalidation_closures()
                .build(),
            unknown: Cache::builder()
                .max_capacity(negative_cap)
                .time_to_live(
                    c.negative_ttl
                        .get()
                        .max(std::time::Duration::from_millis(1)),
                )
                .build(),
        }
    }

    /// Looks a hash up; `None` means the store must be asked.
    pub fn get(&self, hash: &KeyHash) -> Option<Cached> {
        if let Some(r) = self.known.get(hash) {
            let age_ms = self.clock.now_ms().saturating_sub(r.fetched_at_ms);
            return Some(if u128::from(age_ms) < self.ttl.as_millis() {
                Cached::Known(r)
            } else {
                Cached::Stale(r)
            });
        }
        self.unknown.get(hash).map(|_| Cached::Unknown)
    }

    /// Now, on this cache's clock (when a record is read from the store).
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Remembers a stored key.
    pub fn insert_known(&self, hash: KeyHash, key: Arc<KnownKey>) {
        self.unknown.invalidate(&hash);
        self.known.insert(hash, key);
    }

    /// Remembers that a hash is not in the store.
    pub fn insert_unknown(&self, hash: KeyHash) {
        self.unknown.insert(hash, ());
    }

    /// Forgets one hash (after revoke or regenerate in this process).
    pub fn invalidate(&self, hash: &KeyHash) {
        self.known.invalidate(hash);
        self.unknown.invalidate(hash);
    }

    /// Forgets every entry belonging to key `id`. Takes effect for lookups at once.
    pub fn invalidate_key_id(&self, id: &str) {
        let id = id.to_string();
        if let Err(e) = self.known.invalidate_entries_if(move |_, k| k.id() == id) {
            tracing::error!(error = %e, "key cache invalidation failed; changes show after cache.ttl");
        }
    }

    /// Forgets everything (the store's change feed reconnected: changes may have been
    /// missed).
    pub fn invalidate_all(&self) {
        self.known.invalidate_all();
        self.unknown.invalidate_all();
    }

    /// Number of known keys held.
    pub fn len(&self) -> u64 {
        self.known.run_pending_tasks();
        self.known.entry_count()
    }

    /// True when no known key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn known(id: &str, fetched_at_ms: u64) -> Arc<KnownKey> {
        Arc::new(KnownKey::new(
            KeyRecord::active(id, "free", chrono::DateTime::default()),
            fetched_at_ms,
        ))
    }

    #[test]
    fn invalidating_a_key_id_forgets_every_secret_of_that_key_at_once() {
        let cache = KeyCache::new(&CacheConfig::default(), Arc::new(ManualClock::at(0)));
        cache.insert_known(KeyHash::of("old"), known("key_a", 0));
        cache.insert_known(KeyHash::of("new"), known("key_a", 0));
        cache.insert_known(KeyHash::of("other"), known("key_b", 0));
        cache.invalidate_key_id("key_a");
        assert!(cache.get(&KeyHash::of("old")).is_none());
        assert!(cache.get(&KeyHash::of("new")).is_none());
        assert!(matches!(
            cache.get(&KeyHash::of("other")),
            Some(Cached::Known(_))
        ));
    }

    #[test]
    fn a_known_key_turns_stale_after_ttl_on_the_clock() {
        let clock = ManualClock::at(1_000_000);
        let cache = KeyCache::new(&CacheConfig::default(), Arc::new(clock.clone()));
        cache.insert_known(KeyHash::of("k"), known("key_a", cache.now_ms()));
        assert!(matches!(
            cache.get(&KeyHash::of("k")),
            Some(Cached::Known(_))
        ));
        clock.advance_ms(29_999);
        assert!(matches!(
            cache.get(&KeyHash::of("k")),
            Some(Cached::Known(_))
        ));
        clock.advance_ms(1);
        assert!(
            matches!(cache.get(&KeyHash::of("k")), Some(Cached::Stale(_))),
            "re-read after cache.ttl (30s), kept while the store fails"
        );
    }
}
