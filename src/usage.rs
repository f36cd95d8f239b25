//! Usage counting off the request path: every request of an API key is added to an
//! in-memory aggregate (per key, hour and route); a background task flushes the
//! aggregates to the store in one batch (and at shutdown), together with each key's
//! `last_used_at`.

use crate::store::{KeyStore, UsageRow};
use chrono::{DateTime, TimeZone, Utc};
use dashmap::DashMap;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    total: u64,
    successful: u64,
    failed: u64,
    total_ms: u64,
}

/// Aggregates usage until flushed.
#[derive(Default)]
pub struct UsageRecorder {
    counts: DashMap<(String, i64, String), Counts>,
    last_used: DashMap<String, i64>,
}

impl UsageRecorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one request of `key_id` on `endpoint` (a route name).
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
        let mut entry = self
            .counts
            .entry((key_id.to_string(), hour, endpoint.to_string()))
            .or_default();
        entry.total += 1;
        if (200..400).contains(&status) {
            entry.successful += 1;
        } else {
            entry.failed += 1;
        }
        entry.total_ms += elapsed_ms;
        drop(entry);
        let mut last = self.last_used.entry(key_id.to_string()).or_insert(ts);
        *last = (*last).max(ts);
    }

    /// Moves everything recorded so far into the store. On failure the batch is put
    /// back, so nothing is lost while the store is down.
    pub async fn flush(&self, store: &dyn KeyStore) {
        let rows: Vec<UsageRow> = {
            let keys: Vec<_> = self.counts.iter().map(|e| e.key().clone()).collect();
            keys.into_iter()
                .filter_map(|k| self.counts.remove(&k))
                .map(|((key_id, hour, endpoint), c)| UsageRow {
                    key_id,
                    hour: Utc.timestamp_opt(hour, 0).single().unwrap_or_default(),
                    endpoint,
                    total: c.total,
                    successful: c.successful,
                    failed: c.failed,
                    total_ms: c.total_ms,
                })
                .collect()
        };
        let last: Vec<(String, i64)> = {
            let keys: Vec<_> = self.last_used.iter().map(|e| e.key().clone()).collect();
            keys.into_iter()
                .filter_map(|k| self.last_used.remove(&k))
                .collect()
        };
        if rows.is_empty() && last.is_empty() {
            return;
        }
        if let Err(e) = store.record_usage(&rows, &last).await {
            tracing::warn!(error = %e, rows = rows.len(), "usage flush failed; keeping the batch for the next one");
            for r in rows {
                let mut c = self
                    .counts
                    .entry((r.key_id, r.hour.timestamp(), r.endpoint))
                    .or_default();
                c.total += r.total;
                c.successful += r.successful;
                c.failed += r.failed;
                c.total_ms += r.total_ms;
            }
            for (k, t) in last {
                let mut v = self.last_used.entry(k).or_insert(t);
                *v = (*v).max(t);
            }
        }
    }
}

/// A shared recorder.
pub type SharedUsage = Arc<UsageRecorder>;
