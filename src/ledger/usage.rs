//! Usage counting off the request path: every request of an API key is added to an
//! in-memory aggregate (per key, hour and endpoint); a background task flushes the
//! aggregates to the store in batches (and at shutdown), together with each key's
//! `last_used_at`.

pub use crate::domain::Totals;
use crate::domain::{UsageClass, UsageRow};
use crate::store::KeyStore;
use chrono::{DateTime, TimeZone, Utc};
use dashmap::DashMap;
use std::borrow::Cow;
use std::sync::Arc;

/// The `n` endpoints with the most requests in `rows`, busiest first (ties by
/// name), each with its totals and average response time.
pub fn top_endpoints_timed(rows: &[UsageRow], n: usize) -> Vec<(String, Totals)> {
    let mut endpoints: std::collections::BTreeMap<&str, Vec<&UsageRow>> =
        std::collections::BTreeMap::new();
    for r in rows {
        endpoints.entry(r.endpoint.as_str()).or_default().push(r);
    }
    let mut top: Vec<(String, Totals)> = endpoints
        .into_iter()
        .map(|(e, rows)| (e.to_string(), Totals::of(rows)))
        .collect();
    top.sort_by(|a, b| b.1.total.cmp(&a.1.total).then(a.0.cmp(&b.0)));
    top.truncate(n);
    top
}

/// Distinct endpoints one key keeps in one hour; its requests on any further
/// path count under [`OTHER_PATHS`]. A client walking random paths cannot grow
/// the recorder or the store without bound.
pub const MAX_ENDPOINTS_PER_HOUR: usize = 32;

/// The endpoint of a key's requests past [`MAX_ENDPOINTS_PER_HOUR`] in an hour.
pub const OTHER_PATHS: &str = "(other paths)";

/// Longest endpoint kept, in bytes; a longer path is cut (at a `/` when it can be)
/// and ends in `…`.
const MAX_ENDPOINT_BYTES: usize = 96;

/// Whether a path segment names one thing rather than a kind of thing: a number,
/// a UUID, or a long token with digits in it (a hash, a ULID, a key id).
fn is_id_segment(seg: &str) -> bool {
    let b = seg.as_bytes();
    if b.is_empty() {
        return false;
    }
    if b.iter().all(u8::is_ascii_digit) {
        return true;
    }
    let uuid = b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        });
    uuid || (b.len() >= 16
        && b.iter().any(u8::is_ascii_digit)
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'~' | b'%')))
}

/// The endpoint a request of `path` counts under: the path (never its query),
/// with each segment that names one thing replaced by `{id}`, so that
/// `/v1/users/123` and `/v1/users/456` are one endpoint, and cut to
/// [`MAX_ENDPOINT_BYTES`]. Borrows `path` when nothing changes.
pub fn endpoint_of(path: &str) -> Cow<'_, str> {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let path = if path.is_empty() { "/" } else { path };
    let out: Cow<'_, str> = if path.split('/').any(is_id_segment) {
        let mut folded = String::with_capacity(path.len());
        for (i, seg) in path.split('/').enumerate() {
            if i > 0 {
                folded.push('/');
            }
            folded.push_str(if is_id_segment(seg) { "{id}" } else { seg });
        }
        Cow::Owned(folded)
    } else {
        Cow::Borrowed(path)
    };
    if out.len() <= MAX_ENDPOINT_BYTES {
        return out;
    }
    let mut cut = MAX_ENDPOINT_BYTES;
    while !out.is_char_boundary(cut) {
        cut -= 1;
    }
    let cut = out[..cut].rfind('/').filter(|&i| i > 0).unwrap_or(cut);
    Cow::Owned(format!("{}…", &out[..cut]))
}

/// One key's aggregates: a few (hour, endpoint) slots and its last use. Most keys
/// call one or two paths in an hour, so one slot is held inline (no allocation),
/// and a slot's endpoint is shared by every key calling it.
#[derive(Debug, Default)]
struct KeyUsage {
    /// The key's latest request (Unix s).
    last_used: i64,
    /// The `last_used` the store was last given (0: none yet).
    last_used_stored: i64,
    slots: smallvec::SmallVec<[(i64, Arc<str>, Totals); 1]>,
}

impl KeyUsage {
    fn add(&mut self, hour: i64, endpoint: &str, counts: &Totals) {
        // A key uses few paths in an hour: a short scan, no allocation once seen.
        if let Some((_, _, c)) = self
            .slots
            .iter_mut()
            .find(|(h, e, _)| *h == hour && &**e == endpoint)
        {
            c.add(counts);
            return;
        }
        let in_hour = self.slots.iter().filter(|(h, _, _)| *h == hour).count();
        if in_hour >= MAX_ENDPOINTS_PER_HOUR && endpoint != OTHER_PATHS {
            return self.add(hour, OTHER_PATHS, counts);
        }
        self.slots
            .push((hour, crate::intern::endpoint(endpoint), *counts));
    }
}

/// Keys flushed per store transaction: bounds the memory a flush of many keys
/// borrows (rows and their copies), instead of one batch of every key used.
const FLUSH_CHUNK: usize = 2_000;

/// A routine flush moves a key's `last_used_at` only once it is this many seconds
/// behind: with 100k keys in use, rewriting every key's row at every flush cost a
/// third of the core. Flushes before a usage query and at shutdown are exact.
pub const LAST_USED_STEP_SECS: i64 = 60;

/// How exact a flush is about `last_used_at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flush {
    /// The periodic flush: `last_used_at` to within [`LAST_USED_STEP_SECS`].
    Routine,
    /// Before answering a usage query, and at shutdown: every latest use.
    Exact,
}

/// Aggregates usage until flushed.
#[derive(Default)]
pub struct UsageRecorder {
    keys: DashMap<Box<str>, KeyUsage>,
}

impl UsageRecorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one request of `key_id` on `endpoint` (see [`endpoint_of`]) that ended
    /// as `class` after `elapsed_us`. After a key's first request in an hour on an
    /// endpoint, this allocates nothing.
    pub fn record(
        &self,
        key_id: &str,
        endpoint: &str,
        class: UsageClass,
        elapsed_us: u64,
        now: DateTime<Utc>,
    ) {
        let ts = now.timestamp();
        let hour = ts - ts.rem_euclid(3600);
        let counts = Totals::one(class, elapsed_us);
        let mut entry = match self.keys.get_mut(key_id) {
            Some(e) => e,
            None => self.keys.entry(Box::from(key_id)).or_default(),
        };
        entry.add(hour, endpoint, &counts);
        entry.last_used = entry.last_used.max(ts);
    }

    /// Moves everything recorded so far into the store, [`FLUSH_CHUNK`] keys per
    /// transaction. A chunk that fails is put back whole (each chunk is one
    /// transaction, so nothing is counted twice) and the rest waits for the next
    /// flush, so nothing is lost while the store is down. A key with nothing new
    /// since the previous flush is forgotten.
    pub async fn flush(&self, store: &dyn KeyStore, how: Flush) {
        // Keys recorded while this runs wait for the next flush.
        let ids: Vec<Box<str>> = self.keys.iter().map(|e| e.key().clone()).collect();
        for chunk in ids.chunks(FLUSH_CHUNK) {
            if !self.flush_keys(store, chunk, how).await {
                return;
            }
        }
    }

    /// Flushes what `ids` hold in one transaction; false (with the rows put back)
    /// when the store failed.
    async fn flush_keys(&self, store: &dyn KeyStore, ids: &[Box<str>], how: Flush) -> bool {
        let mut rows = Vec::new();
        let mut last = Vec::new();
        for id in ids {
            let Some(mut usage) = self.keys.get_mut(id) else {
                continue;
            };
            let step = match how {
                Flush::Routine => LAST_USED_STEP_SECS,
                Flush::Exact => 1,
            };
            let touch = usage.last_used >= usage.last_used_stored + step;
            if usage.slots.is_empty() && !touch {
                if usage.last_used <= usage.last_used_stored {
                    drop(usage);
                    // Idle since the previous flush (unless it was used just now).
                    self.keys.remove_if(id, |_, u| {
                        u.slots.is_empty() && u.last_used <= u.last_used_stored
                    });
                }
                continue;
            }
            for (hour, endpoint, c) in usage.slots.drain(..) {
                rows.push(UsageRow {
                    key_id: id.to_string(),
                    hour: Utc.timestamp_opt(hour, 0).single().unwrap_or_default(),
                    endpoint: endpoint.to_string(),
                    counts: c,
                });
            }
            if touch {
                last.push((id.to_string(), usage.last_used));
            }
        }
        if rows.is_empty() && last.is_empty() {
            return true;
        }
        if let Err(e) = store.record_usage(&rows, &last).await {
            tracing::warn!(error = %e, rows = rows.len(), "usage flush failed; keeping the batch for the next one");
            for r in rows {
                self.keys.entry(r.key_id.into_boxed_str()).or_default().add(
                    r.hour.timestamp(),
                    &r.endpoint,
                    &r.counts,
                );
            }
            return false;
        }
        for (id, t) in last {
            if let Some(mut u) = self.keys.get_mut(id.as_str()) {
                u.last_used_stored = u.last_used_stored.max(t);
            }
        }
        true
    }
}

/// A shared recorder.
pub type SharedUsage = Arc<UsageRecorder>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::KeyHash;
    use crate::store::conformance::record;
    use crate::store::sqlite::SqliteStore;

    const OK: UsageClass = UsageClass::Successful;

    async fn last_used(store: &SqliteStore) -> Option<i64> {
        store
            .get("key_a")
            .await
            .unwrap()
            .unwrap()
            .last_used_at
            .map(|t| t.timestamp())
    }

    #[tokio::test]
    async fn routine_flushes_move_last_used_a_minute_at_a_time_and_exact_ones_to_the_second() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("k.db")).unwrap();
        store
            .insert(
                &record("key_a", None),
                &KeyHash::of("a"),
                &crate::store::conformance::audited(),
            )
            .await
            .unwrap();
        let usage = UsageRecorder::new();
        let at = |s: i64| Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap();
        usage.record("key_a", "/search", OK, 3_000, at(0));
        usage.flush(&store, Flush::Routine).await;
        assert_eq!(
            last_used(&store).await,
            Some(at(0).timestamp()),
            "the first use is written"
        );
        usage.record("key_a", "/search", UsageClass::ApiError, 5_000, at(30));
        usage.flush(&store, Flush::Routine).await;
        assert_eq!(
            last_used(&store).await,
            Some(at(0).timestamp()),
            "30 s later: not yet"
        );
        usage.record("key_a", "/search", OK, 1_000, at(61));
        usage.flush(&store, Flush::Routine).await;
        assert_eq!(last_used(&store).await, Some(at(61).timestamp()));
        usage.record("key_a", "/search", OK, 1_000, at(62));
        usage.flush(&store, Flush::Exact).await;
        assert_eq!(last_used(&store).await, Some(at(62).timestamp()));
        let rows = store.usage(Some("key_a"), at(-3600)).await.unwrap();
        assert_eq!(
            Totals::of(&rows),
            Totals {
                total: 4,
                successful: 3,
                failed: 1,
                api_error: 1,
                total_us: 10_000,
                ..Totals::default()
            },
            "every request counted once"
        );
        // Nothing new: the key is forgotten; used again, it is counted again.
        usage.flush(&store, Flush::Routine).await;
        assert!(usage.keys.is_empty());
        usage.record("key_a", "/search", OK, 1_000, at(63));
        usage.flush(&store, Flush::Exact).await;
        let rows = store.usage(Some("key_a"), at(-3600)).await.unwrap();
        assert_eq!(Totals::of(&rows).total, 5);
        assert_eq!(last_used(&store).await, Some(at(63).timestamp()));
    }

    #[test]
    fn endpoints_are_paths_with_their_ids_folded() {
        for (path, endpoint) in [
            ("/v1/search", "/v1/search"),
            ("/", "/"),
            ("", "/"),
            ("/v1/users/123/orders", "/v1/users/{id}/orders"),
            (
                "/v1/keys/0b6f2c1e-3f7a-4f3e-9f55-2b7c7f7e2a10",
                "/v1/keys/{id}",
            ),
            ("/v1/keys/key_01hzx3k9q2m4n5p6", "/v1/keys/{id}"),
            ("/v1/search?q=secret&api_key=x", "/v1/search"),
            (
                "/v1/image-descriptions/latest",
                "/v1/image-descriptions/latest",
            ),
            ("/pkg.Service/Method", "/pkg.Service/Method"),
        ] {
            assert_eq!(endpoint_of(path), endpoint, "{path}");
        }
        assert!(matches!(endpoint_of("/v1/search"), Cow::Borrowed(_)));
        let long = format!("/v1/{}/tail", "segment/".repeat(30));
        let cut = endpoint_of(&long);
        assert!(cut.len() <= MAX_ENDPOINT_BYTES + '…'.len_utf8(), "{cut}");
        assert!(cut.ends_with('…') && long.starts_with(cut.trim_end_matches('…')));
    }

    #[test]
    fn a_key_walking_random_paths_keeps_a_bounded_number_of_endpoints() {
        let usage = UsageRecorder::new();
        let now = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
        for i in 0..500 {
            usage.record("key_a", &format!("/walk/p{i}x"), OK, 10, now);
        }
        let k = usage.keys.get("key_a").unwrap();
        assert_eq!(k.slots.len(), MAX_ENDPOINTS_PER_HOUR + 1);
        let other = k
            .slots
            .iter()
            .find(|(_, e, _)| &**e == OTHER_PATHS)
            .unwrap();
        assert_eq!(other.2.total, 500 - MAX_ENDPOINTS_PER_HOUR as u64);
        let sum: u64 = k.slots.iter().map(|(_, _, c)| c.total).sum();
        assert_eq!(sum, 500, "nothing is dropped");
    }
}
