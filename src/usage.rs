//! Usage counting off the request path: every request of an API key is added to an
//! in-memory aggregate (per key, hour and route); a background task flushes the
//! aggregates to the store in one batch (and at shutdown), together with each key's
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
    let mut endpoints: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    for r in rows {
        *endpoints.entry(r.endpoint.as_str()).or_default() += r.total;
    }
    let mut top: Vec<(String, u64)> = endpoints
        .into_iter()
        .map(|(e, n)| (e.to_string(), n))
        .collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
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

/// One key's aggregates: a few (hour, endpoint) slots and its last use.
#[derive(Debug, Default)]
struct KeyUsage {
    last_used: i64,
    slots: Vec<(i64, String, Counts)>,
}

impl KeyUsage {
    fn add(&mut self, hour: i64, endpoint: &str, counts: Counts) {
        // A key uses few routes in an hour: a short scan, no allocation once seen.
        match self
            .slots
            .iter_mut()
            .find(|(h, e, _)| *h == hour && e == endpoint)
        {
            Some((_, _, c)) => c.add(counts),
            None => self.slots.push((hour, endpoint.to_string(), counts)),
        }
    }
}

/// Aggregates usage until flushed.
#[derive(Default)]
pub struct UsageRecorder {
    keys: DashMap<String, KeyUsage>,
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
            None => self.keys.entry(key_id.to_string()).or_default(),
        };
        entry.add(hour, endpoint, counts);
        entry.last_used = entry.last_used.max(ts);
    }

    /// Moves everything recorded so far into the store. On failure the batch is put
    /// back, so nothing is lost while the store is down.
    pub async fn flush(&self, store: &dyn KeyStore) {
        let ids: Vec<String> = self.keys.iter().map(|e| e.key().clone()).collect();
        let mut rows = Vec::new();
        let mut last = Vec::new();
        for (key_id, usage) in ids.into_iter().filter_map(|k| self.keys.remove(&k)) {
            for (hour, endpoint, c) in usage.slots {
                rows.push(UsageRow {
                    key_id: key_id.clone(),
                    hour: Utc.timestamp_opt(hour, 0).single().unwrap_or_default(),
                    endpoint,
                    total: c.total,
                    successful: c.successful,
                    failed: c.failed,
                    total_ms: c.total_ms,
                });
            }
            last.push((key_id, usage.last_used));
        }
        if rows.is_empty() && last.is_empty() {
            return;
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
                self.keys
                    .entry(r.key_id)
                    .or_default()
                    .add(r.hour.timestamp(), &r.endpoint, counts);
            }
            for (k, t) in last {
                let mut v = self.keys.entry(k).or_default();
                v.last_used = v.last_used.max(t);
            }
        }
    }
}

/// A shared recorder.
pub type SharedUsage = Arc<UsageRecorder>;
