//! Limits and credits, second edition (CONTRACT §10): sliding windows, monthly
//! quotas, credit refills and refunds, end to end on the real binary.

use crate::common::services::{PgDatabase, RedisServer};
use crate::common::*;
use chrono::Datelike;
use futures::future::join_all;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn millis_into_second() -> u64 {
    u64::from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_millis(),
    )
}

/// Sleeps until `ms` milliseconds into a wall-clock second.
async fn until_millis_into_second(ms: u64) {
    let now = millis_into_second();
    let wait = if now < ms { ms - now } else { 1_000 - now + ms };
    tokio::time::sleep(Duration::from_millis(wait)).await;
}

/// `n` concurrent GETs of `/a` with `key`, spread over `replicas`; the statuses.
async fn burst(replicas: &[&Keygate], key: &str, n: usize) -> Vec<u16> {
    join_all((0..n).map(|i| {
        let kg = replicas[i % replicas.len()];
        async move { kg.get_key("/a", key).await.status().as_u16() }
    }))
    .await
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

const EDGE_TIERS: &str = "tiers:\n  fixed: { per_second: 5 }\n  sliding: { per_second: 5, algorithm: sliding }\ndefault_tier: fixed\n";

/// N just before a second's boundary, N just after: the fixed tier admits both
/// batches (2N within half a second), the sliding tier refuses the second.
async fn n_before_and_after_a_boundary(replicas: &[&Keygate]) {
    let (_, fixed) = replicas[0].create_key(&["--tier", "fixed"]);
    let (_, sliding) = replicas[0].create_key(&["--tier", "sliding"]);
    // Warm the key cache so both batches cost the same.
    for kg in replicas {
        kg.get_key("/warm", "kg_sk_live_nope").await;
    }
    until_millis_into_second(750).await;
    let started = std::time::Instant::now();
    let (a, b) = tokio::join!(burst(replicas, &fixed, 5), burst(replicas, &sliding, 5));
    assert_eq!(count(&a, 200), 5, "{a:?}");
    assert_eq!(count(&b, 200), 5, "{b:?}");
    until_millis_into_second(150).await;
    let (a, b) = tokio::join!(burst(replicas, &fixed, 5), burst(replicas, &sliding, 5));
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(1_000),
        "the batches were {took:?} apart"
    );
    assert_eq!(
        count(&a, 200),
        5,
        "a fixed window resets at the boundary: {a:?}"
    );
    assert_eq!(count(&b, 429), 5, "the sliding window still holds 5: {b:?}");
    let r = replicas[0].get_key("/a", &sliding).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["x-ratelimit-remaining"], "0");
    let reset: u64 = r.headers()["x-ratelimit-reset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!((now..=now + 2).contains(&reset), "reset {reset}, now {now}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sliding_window_refuses_n_more_just_after_a_boundary_in_memory() {
    let up = start_upstream().await;
    let kg = Keygate::start(
        up,
        &format!("{EDGE_TIERS}rate_limit: {{ ip: {{ per_minute: 0 }} }}\n"),
    );
    n_before_and_after_a_boundary(&[&kg]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sliding_window_refuses_n_more_just_after_a_boundary_across_two_replicas_on_redis() {
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let up = format!("http://{}", start_upstream().await);
    let store = format!("store: {{ kind: postgres, url: \"{}\" }}\n", db.url);
    let policy = format!(
        "{EDGE_TIERS}rate_limit: {{ backend: redis, redis_url: \"{}\", ip: {{ per_minute: 0 }} }}\n",
        redis.url()
    );
    let a = Keygate::start_with_store(&up, &store, &policy);
    let b = Keygate::start_with_store(&up, &store, &policy);
    n_before_and_after_a_boundary(&[&a, &b]).await;
}

#[tokio::test]
async fn a_monthly_quota_is_named_in_the_policy_and_resets_on_the_first() {
    let up = start_upstream().await;
    let kg = Keygate::start(
        up,
        "tiers: { free: { per_minute: 100, per_month: 3 } }\nrate_limit: { headers: both }\n",
    );
    let (_, key) = kg.create_key(&[]);
    for left in [2, 1, 0] {
        let r = kg.get_key("/a", &key).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-ratelimit-remaining"], left.to_string());
    }
    let r = kg.get_key("/a", &key).await;
    assert_eq!(r.status(), 429);
    let policy = r.headers()["ratelimit-policy"]
        .to_str()
        .unwrap()
        .to_string();
    let now = chrono::Utc::now();
    let first_next = chrono::NaiveDate::from_ymd_opt(
        if now.month() == 12 {
            now.year() + 1
        } else {
            now.year()
        },
        if now.month() == 12 {
            1
        } else {
            now.month() + 1
        },
        1,
    )
    .unwrap()
    .and_hms_opt(0, 0, 0)
    .unwrap()
    .and_utc();
    let first_this = chrono::NaiveDate::from_ymd_opt(now.year(), now.month(), 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    let month_secs = (first_next - first_this).num_seconds();
    assert!(
        policy.contains(&format!("\"month\";q=3;w={month_secs}")),
        "{policy}"
    );
    assert_eq!(
        r.headers()["x-ratelimit-reset"].to_str().unwrap(),
        first_next.timestamp().to_string(),
        "the quota comes back on the first of next month, 00:00 UTC"
    );
}
