//! Usage counting off the request path: every request of an API key is added to an
//! in-memory aggregate (per key, hour and route); a background task flushes the
//! aggregates to the store in batches (and at shutdown), together with each key's
//! `last_used_at`.

use crate::domain::UsageRow;
use crate::store::KeyStore;
use chrono::{DateTime, TimeZone, Utc};
use dashmap::DashMap;
use std::sync::Arc;

/// Requests over some usage rows: what the management API's usage answer and the
/// portal's pages both report.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Totals {
    /// Requests.
    pub total: u64,
    /// Answered 2xx/3xx.
    pub successful: u64,
    /// Answered 4xx/5xx.
    pub failed: u64,
    /// Average response time, ms (0 with no requests).
    pub average_ms: f64,
}

impl Totals {
    /// The totals of `rows`.
    pub fn of<'a>(rows: impl IntoIterator<Item = &'a UsageRow>) -> Self {
        let (mut t, mut ms) = (Totals::default(), 0u64);
        for r in rows {
            t.total += r.total;
            t.successful += r.successful;
            t.failed += r.failed;
            ms += r.total_ms;
        }
        if t.total > 0 {
            t.average_ms = ms as f64 / t.total as f64;
        }
        t
    }
}

/// The `n` endpoints of `rows` with the most requests, busiest first (ties by name).
pub fn top_endpoints(rows: &[UsageRow], n: usize) -> Vec<(String, u64)> {
    top_endpoints_timed(rows, n)
        .into_iter()
        .map(|(e, t)| (e, t.total))
        .collect()
}

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

#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    total: u64,
    successful: u64,
    failed: u64,
    total_ms: u64,
}

impl Counts {
    fn add(&mut self, other: Counts) {
        self.total += other.total;
        self.successful += other.successful;
        self.failed += other.failed;
        self.total_ms += other.total_ms;
    }
}

/// One key's aggregates: a few (hour, endpoint) slots and its last use. Most keys
/// use one route in an hour, so one slot is held inline (no allocation), and the
/// endpoint is the route's shared name.
#[derive(Debug, Default)]
struct KeyUsage {
    /// The key's latest request (Unix s).
    last_used: i64,
    /// The `last_used` the store was last given (0: none yet).
    last_used_stored: i64,
    slots: smallvec::SmallVec<[(i64, Arc<str>, Counts); 1]>,
}

impl KeyUsage {
    fn add(&mut self, hour: i64, endpoint: &str, counts: Counts) {
        // A key uses few routes in an hour: a short scan, no allocation once seen.
        match self
            .slots
            .iter_mut()
            .find(|(h, e, _)| *h == hour && &**e == endpoint)
        {
            Some((_, _, c)) => c.add(counts),
            None => self
                .slots
                .push((hour, crate::intern::name(endpoint), counts)),
        }
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

    /// Counts one request of `key_id` on `endpoint` (a route name). After a key's first
    /// request in an hour on a route, this allocates nothing.
    pub fn record(
        &self,
        key_id: &str,
        endpoint: &str,
        status: u16,
        elapsed_ms: u64,
        now: DateTime<Utc>,
    ) {
        let ts = now.timestamp();
        let hour = ts - ts.rem_euclid(3600);
        let ok = (200..400).contains(&status);
        let counts = Counts {
            total: 1,
            successful: ok as u64,
            failed: !ok as u64,
            total_ms: elapsed_ms,
        };
        let mut entry = match self.keys.get_mut(key_id) {
            Some(e) => e,
            None => self.keys.entry(Box::from(key_id)).or_default(),
        };
        entry.add(hour, endpoint, counts);
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
                    total: c.total,
                    successful: c.successful,
                    failed: c.failed,
                    total_ms: c.total_ms,
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
                let counts = Counts {
                    total: r.total,
                    successful: r.successful,
                    failed: r.failed,
                    total_ms: r.total_ms,
                };
                self.keys.entry(r.key_id.into_boxed_str()).or_default().add(
                    r.hour.timestamp(),
                    &r.endpoint,
                    counts,
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
            .insert(&record("key_a", None), &KeyHash::of("a"))
            .await
            .unwrap();
        let usage = UsageRecorder::new();
        let at = |s: i64| Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap();
        usage.record("key_a", "search", 200, 3, at(0));
        usage.flush(&store, Flush::Routine).await;
        assert_eq!(
            last_used(&store).await,
            Some(at(0).timestamp()),
            "the first use is written"
        );
        usage.record("key_a", "search", 500, 5, at(30));
        usage.flush(&store, Flush::Routine).await;
        assert_eq!(
            last_used(&store).await,
            Some(at(0).timestamp()),
            "30 s later: not yet"
        );
        usage.record("key_a", "search", 200, 1, at(61));
        usage.flush(&store, Flush::Routine).await;
        assert_eq!(last_used(&store).await, Some(at(61).timestamp()));
        usage.record("key_a", "search", 200, 1, at(62));
        usage.flush(&store, Flush::Exact).await;
        assert_eq!(last_used(&store).await, Some(at(62).timestamp()));
        let rows = store.usage(Some("key_a"), at(-3600)).await.unwrap();
        assert_eq!(
            Totals::of(&rows),
            Totals {
                total: 4,
                successful: 3,
                failed: 1,
                average_ms: 2.5
            },
            "every request counted once"
        );
        // Nothing new: the key is forgotten; used again, it is counted again.
        usage.flush(&store, Flush::Routine).await;
        assert!(usage.keys.is_empty());
        usage.record("key_a", "search", 200, 1, at(63));
        usage.flush(&store, Flush::Exact).await;
        let rows = store.usage(Some("key_a"), at(-3600)).await.unwrap();
        assert_eq!(Totals::of(&rows).total, 5);
        assert_eq!(last_used(&store).await, Some(at(63).timestamp()));
    }
}
