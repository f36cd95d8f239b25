//! Usage rows turned into what the pages show: hourly and daily buckets, totals,
//! top endpoints, busiest keys; and this process's request counters.

use super::chart::Bucket;
use super::pages::KeyUsage;
use crate::domain::UsageRow;
use crate::ledger::usage::{top_endpoints_timed, Totals};
use chrono::{DateTime, Duration, Timelike, Utc};
use std::collections::BTreeMap;

/// Hours in the hourly chart.
const HOURS: i64 = 24;
/// Days in the daily chart.
const DAYS: i64 = 30;

fn hour_floor(t: DateTime<Utc>) -> DateTime<Utc> {
    t - Duration::seconds(t.timestamp().rem_euclid(3600))
        - Duration::nanoseconds(t.nanosecond() as i64)
}

fn day_floor(t: DateTime<Utc>) -> DateTime<Utc> {
    t - Duration::seconds(t.timestamp().rem_euclid(86_400))
        - Duration::nanoseconds(t.nanosecond() as i64)
}

/// Start of the first hour of the hourly chart (23 hours before the current one).
pub fn day_start(now: DateTime<Utc>) -> DateTime<Utc> {
    hour_floor(now) - Duration::hours(HOURS - 1)
}

/// Start of the first day of the daily chart (29 days before today, UTC).
pub fn month_start(now: DateTime<Utc>) -> DateTime<Utc> {
    day_floor(now) - Duration::days(DAYS - 1)
}

/// Buckets of `len` starting at `start`, `n` of them, labelled by `label`.
fn buckets(
    rows: &[UsageRow],
    start: DateTime<Utc>,
    len: Duration,
    n: i64,
    label: &str,
) -> Vec<Bucket> {
    let mut out: Vec<Bucket> = (0..n)
        .map(|i| Bucket {
            label: (start + len * i as i32).format(label).to_string(),
            ..Bucket::default()
        })
        .collect();
    for r in rows {
        let offset = (r.hour - start).num_seconds();
        if offset < 0 {
            continue;
        }
        let i = (offset / len.num_seconds()) as usize;
        if let Some(b) = out.get_mut(i) {
            b.counts.add(&r.counts);
        }
    }
    out
}

/// Usage of the rows (one key's, or every key's) as of `now`: the last 24 hours
/// by hour, the last 30 days by day, totals, and the ten busiest endpoints.
pub fn key_usage(rows: &[UsageRow], now: DateTime<Utc>) -> KeyUsage {
    let day = day_start(now);
    KeyUsage {
        hourly: buckets(rows, day, Duration::hours(1), HOURS, "%H:00"),
        daily: buckets(rows, month_start(now), Duration::days(1), DAYS, "%b %d"),
        day: Totals::of(rows.iter().filter(|r| r.hour >= day)),
        month: Totals::of(rows),
        top: top_endpoints_timed(rows, 10),
    }
}

/// The `n` keys with the most requests in `rows`: (id, requests, failed).
pub fn busiest(rows: &[UsageRow], n: usize) -> Vec<(String, u64, u64)> {
    let mut by_key: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for r in rows {
        let e = by_key.entry(r.key_id.as_str()).or_default();
        e.0 += r.counts.total;
        e.1 += r.counts.failed;
    }
    let mut keys: Vec<(String, u64, u64)> = by_key
        .into_iter()
        .map(|(k, (n, f))| (k.to_string(), n, f))
        .collect();
    keys.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    keys.truncate(n);
    keys
}

/// Sums a counter family by one label, largest first, skipping `skip`.
fn sum_by_label(collector: &dyn prometheus::core::Collector, label: &str, skip: &str) -> Counts {
    let mut sums: BTreeMap<String, u64> = BTreeMap::new();
    for family in collector.collect() {
        for m in family.get_metric() {
            let value = m.get_counter().value() as u64;
            if let Some(l) = m.get_label().iter().find(|l| l.name() == label) {
                if l.value() != skip && value > 0 {
                    *sums.entry(l.value().to_string()).or_default() += value;
                }
            }
        }
    }
    let mut out: Vec<(String, u64)> = sums.into_iter().collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    out
}

/// Counts by label value, largest first.
pub type Counts = Vec<(String, u64)>;

/// This process's requests by outcome, and its refusals by reason.
pub fn process_counts() -> (Counts, Counts) {
    use crate::obs::metrics::{reason, DECISIONS, REQUESTS};
    (
        sum_by_label(&*REQUESTS, "outcome", ""),
        sum_by_label(&*DECISIONS, "reason", reason::ALLOWED),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn row(key: &str, hour: DateTime<Utc>, ok: u64, failed: u64) -> UsageRow {
        UsageRow {
            key_id: key.into(),
            hour,
            endpoint: "/search".into(),
            counts: Totals {
                total: ok + failed,
                successful: ok,
                failed,
                rate_limited: failed,
                total_us: 10_000 * (ok + failed),
                ..Totals::default()
            },
        }
    }

    #[test]
    fn rows_land_in_their_hour_and_day() {
        let now = Utc.with_ymd_and_hms(2026, 12, 1, 17, 42, 5).unwrap();
        let this_hour = Utc.with_ymd_and_hms(2026, 12, 1, 17, 0, 0).unwrap();
        let rows = vec![
            row("key_a", this_hour, 3, 1),
            row("key_a", this_hour - Duration::hours(23), 2, 0),
            // Older than a day: only in the daily chart.
            row("key_a", this_hour - Duration::days(3), 5, 5),
        ];
        let u = key_usage(&rows, now);
        assert_eq!(u.hourly.len(), 24);
        assert_eq!(u.hourly[23].label, "17:00");
        let h = &u.hourly[23].counts;
        assert_eq!((h.successful, h.failed, h.rate_limited), (3, 1, 1));
        assert_eq!(u.hourly[0].counts.successful, 2);
        assert_eq!(u.daily.len(), 30);
        assert_eq!(u.daily[29].label, "Dec 01");
        assert_eq!(u.daily[29].counts.total, 4);
        assert_eq!(u.daily[26].counts.failed, 5);
        assert_eq!((u.day.total, u.day.failed), (6, 1));
        assert_eq!(u.month.total, 16);
        assert_eq!(u.month.average_ms(), 10.0);
        assert_eq!(u.top.len(), 1);
        assert_eq!((u.top[0].0.as_str(), u.top[0].1.total), ("/search", 16));
    }

    #[test]
    fn busiest_keys_come_first() {
        let h = Utc.with_ymd_and_hms(2026, 12, 1, 17, 0, 0).unwrap();
        let rows = vec![
            row("key_a", h, 1, 0),
            row("key_b", h, 5, 2),
            row("key_a", h, 1, 0),
        ];
        assert_eq!(
            busiest(&rows, 10),
            [("key_b".into(), 7, 2), ("key_a".into(), 2, 0)]
        );
    }
}
