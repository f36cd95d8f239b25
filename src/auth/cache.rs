//! The key cache: moka in front of the store, with known keys kept for `ttl` and
//! unknown keys remembered for `negative_ttl` so a flood of invented keys never
//! reaches the store.
//!
//! A cached key is trusted only while the store's change feed is listening: a
//! revocation made on another replica reaches this one through the feed, so while
//! the feed is down (a database restart, a lost connection, before it first comes
//! up) every cached key is read again from the store on each use, and served from the
//! cache alone only when the store cannot answer (`cache.stale_if_error`, the
//! documented availability trade-off). A read that a change overtook (the change was
//! announced while the read was in flight) is not trusted either.

use super::{AccountHold, AuthMethod, Identity};
use crate::clock::Clock;
use crate::config::CacheConfig;
use crate::domain::KeyHash;
use crate::domain::{KeyRecord, KeyStatus};
use moka::sync::Cache;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    /// The key's account is suspended.
    pub suspended: bool,
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
            suspended: record
                .account_gate
                .as_ref()
                .is_some_and(|a| a.status == crate::domain::AccountStatus::Suspended),
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
        let cap = record.cap.filter(|c| !c.is_empty()).map(Box::new);
        let mut identity = Identity::new(
            AuthMethod::ApiKey,
            Some(record.id),
            subject,
            record.org,
            record.scopes,
            record.environment,
            record.credits,
            limit_key,
            record.account.as_deref(),
        );
        identity.refill = refill;
        identity.cap = cap;
        identity.account = record
            .account_gate
            .and_then(|a| AccountHold::of(a.credits, a.overrides))
            .map(Box::new);
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
    /// A stored key, read from the store less than `ttl` ago while the change feed
    /// listened.
    Known(Arc<KnownKey>),
    /// A stored key past `ttl`: re-read it, but use it if the store is failing.
    Stale(Arc<KnownKey>),
    /// A stored key within `ttl`, but the change feed is not listening, so a change
    /// made elsewhere would go unseen: re-read it, but use it if the store is failing.
    Unwatched(Arc<KnownKey>),
    /// Recently looked up and not found.
    Unknown,
}

/// Whether cached keys can be trusted: shared by every clone of a [`KeyCache`].
#[derive(Debug)]
struct Trust {
    /// The change feed is listening.
    watched: AtomicBool,
    /// Counts the changes announced (and the feed's ups and downs): a read during
    /// which it moved may hold what the change replaced.
    changes: AtomicU64,
}

/// The number of changes announced so far, taken before a store read
/// ([`KeyCache::changes_seen`]) and handed back with its result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChangeMark(u64);

/// Positive and negative key caches.
#[derive(Clone)]
pub struct KeyCache {
    known: Cache<KeyHash, Arc<KnownKey>>,
    unknown: Cache<KeyHash, ()>,
    ttl: std::time::Duration,
    /// Decides when a known key is due to be re-read (moka's own expiry, which
    /// only bounds memory, runs on its own clock).
    clock: Arc<dyn Clock>,
    trust: Arc<Trust>,
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
            // Stores without a change feed never say otherwise; a feed says
            // `Unwatched` before it first listens.
            trust: Arc::new(Trust {
                watched: AtomicBool::new(true),
                changes: AtomicU64::new(0),
            }),
        }
    }

    /// Looks a hash up; `None` means the store must be asked.
    pub fn get(&self, hash: &KeyHash) -> Option<Cached> {
        if let Some(r) = self.known.get(hash) {
            let age_ms = self.clock.now_ms().saturating_sub(r.fetched_at_ms);
            return Some(if u128::from(age_ms) >= self.ttl.as_millis() {
                Cached::Stale(r)
            } else if !self.trust.watched.load(Ordering::SeqCst) {
                Cached::Unwatched(r)
            } else {
                Cached::Known(r)
            });
        }
        self.unknown.get(hash).map(|_| Cached::Unknown)
    }

    /// Now, on this cache's clock (when a record is read from the store).
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Marks the start of a store read whose result will be cached.
    pub fn changes_seen(&self) -> ChangeMark {
        ChangeMark(self.trust.changes.load(Ordering::SeqCst))
    }

    /// True when no change was announced since `mark`.
    fn unchanged_since(&self, mark: ChangeMark) -> bool {
        self.trust.changes.load(Ordering::SeqCst) == mark.0
    }

    /// Remembers a stored key read from the store after `mark`. If a change was
    /// announced meanwhile, the read may predate it: it is not kept.
    pub fn insert_known(&self, hash: KeyHash, key: Arc<KnownKey>, mark: ChangeMark) {
        self.unknown.invalidate(&hash);
        self.known.insert(hash, key);
        // Inserted first, checked after: a change announced after this check
        // invalidates the entry just inserted (moka applies an invalidation to every
        // entry written before it).
        if !self.unchanged_since(mark) {
            self.known.invalidate(&hash);
        }
    }

    /// Remembers that a hash was not in the store when read after `mark`.
    pub fn insert_unknown(&self, hash: KeyHash, mark: ChangeMark) {
        self.known.invalidate(&hash);
        self.unknown.insert(hash, ());
        if !self.unchanged_since(mark) {
            self.unknown.invalidate(&hash);
        }
    }

    /// The store's change feed stopped listening: no cached key is trusted without
    /// reading it again until [`Self::feed_listening`].
    pub fn feed_lost(&self) {
        self.trust.watched.store(false, Ordering::SeqCst);
        self.trust.changes.fetch_add(1, Ordering::SeqCst);
    }

    /// The store's change feed is listening (again): whatever was cached before may
    /// have missed a change, so everything is forgotten, and cached keys are trusted
    /// again from now on.
    pub fn feed_listening(&self) {
        self.invalidate_all();
        self.trust.watched.store(true, Ordering::SeqCst);
    }

    /// True while the store's change feed is listening (or the store has none).
    pub fn watched(&self) -> bool {
        self.trust.watched.load(Ordering::SeqCst)
    }

    /// Forgets one hash (after revoke or regenerate in this process).
    pub fn invalidate(&self, hash: &KeyHash) {
        self.trust.changes.fetch_add(1, Ordering::SeqCst);
        self.known.invalidate(hash);
        self.unknown.invalidate(hash);
    }

    /// Forgets every entry belonging to key `id`. Takes effect for lookups at once,
    /// and for reads of the store still in flight (see [`Self::insert_known`]).
    pub fn invalidate_key_id(&self, id: &str) {
        self.trust.changes.fetch_add(1, Ordering::SeqCst);
        let id = id.to_string();
        if let Err(e) = self.known.invalidate_entries_if(move |_, k| k.id() == id) {
            tracing::error!(error = %e, "key cache invalidation failed; changes show after cache.ttl");
        }
    }

    /// Forgets every key of account `id` (its plan, status or overrides changed),
    /// at once and for reads in flight, as [`Self::invalidate_key_id`] does.
    pub fn invalidate_account(&self, id: &str) {
        self.trust.changes.fetch_add(1, Ordering::SeqCst);
        let id = id.to_string();
        if let Err(e) = self
            .known
            .invalidate_entries_if(move |_, k| k.identity.account_id() == Some(id.as_str()))
        {
            tracing::error!(error = %e, "key cache invalidation failed; changes show after cache.ttl");
        }
    }

    /// Forgets everything (the store's change feed reconnected: changes may have been
    /// missed).
    pub fn invalidate_all(&self) {
        self.trust.changes.fetch_add(1, Ordering::SeqCst);
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
        for (secret, id) in [("old", "key_a"), ("new", "key_a"), ("other", "key_b")] {
            cache.insert_known(KeyHash::of(secret), known(id, 0), cache.changes_seen());
        }
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
        cache.insert_known(
            KeyHash::of("k"),
            known("key_a", cache.now_ms()),
            cache.changes_seen(),
        );
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

    #[test]
    fn while_the_feed_is_down_no_cached_key_is_trusted() {
        let cache = KeyCache::new(&CacheConfig::default(), Arc::new(ManualClock::at(0)));
        cache.insert_known(KeyHash::of("k"), known("key_a", 0), cache.changes_seen());
        cache.feed_lost();
        assert!(
            matches!(cache.get(&KeyHash::of("k")), Some(Cached::Unwatched(_))),
            "re-read, served alone only if the store fails"
        );
        let read_while_down = cache.changes_seen();
        cache.insert_known(KeyHash::of("k"), known("key_a", 0), read_while_down);
        assert!(matches!(
            cache.get(&KeyHash::of("k")),
            Some(Cached::Unwatched(_))
        ));
        cache.feed_listening();
        assert!(
            cache.get(&KeyHash::of("k")).is_none(),
            "everything read before the feed listened is forgotten"
        );
        cache.insert_known(KeyHash::of("k"), known("key_a", 0), read_while_down);
        assert!(
            cache.get(&KeyHash::of("k")).is_none(),
            "a read that started before the feed listened is not kept"
        );
        cache.insert_known(KeyHash::of("k"), known("key_a", 0), cache.changes_seen());
        assert!(matches!(
            cache.get(&KeyHash::of("k")),
            Some(Cached::Known(_))
        ));
    }

    #[test]
    fn a_read_overtaken_by_a_change_is_not_kept() {
        let cache = KeyCache::new(&CacheConfig::default(), Arc::new(ManualClock::at(0)));
        let mark = cache.changes_seen();
        // The key is revoked elsewhere while this replica's read is in flight.
        cache.invalidate_key_id("key_a");
        cache.insert_known(KeyHash::of("k"), known("key_a", 0), mark);
        assert!(cache.get(&KeyHash::of("k")).is_none());
        let mark = cache.changes_seen();
        cache.insert_unknown(KeyHash::of("new"), mark);
        assert!(matches!(
            cache.get(&KeyHash::of("new")),
            Some(Cached::Unknown)
        ));
        let mark = cache.changes_seen();
        cache.invalidate_all();
        cache.insert_unknown(KeyHash::of("other"), mark);
        assert!(cache.get(&KeyHash::of("other")).is_none());
    }
}
