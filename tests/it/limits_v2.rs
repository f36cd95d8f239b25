//! Limits and credits, second edition (docs/configuration.md, Limits and credits):
//! sliding windows, monthly quotas, credit refills and refunds, end to end on the real
//! binary.

use crate::common::services::{Backends, PgDatabase};
use crate::common::*;
use chrono::Datelike;
use futures::future::join_all;
use std::time::Duration;

fn millis_into_second() -> u64 {
    u64::from(since_epoch().subsec_millis())
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
/// batches (2N within half a second), the sliding tier refuses the second. The
/// timing is measured: an attempt whose first batch did not finish before the
/// boundary (a stalled machine) proves nothing and is run again, at most three times.
async fn n_before_and_after_a_boundary(replicas: &[&Keygate]) {
    // Warm the key cache path so both batches cost the same.
    for kg in replicas {
        kg.get_key("/warm", "kg_sk_live_nope").await;
    }
    for attempt in 0..3 {
        let (_, fixed) = replicas[0].create_key(&["--tier", "fixed"]);
        let (_, sliding) = replicas[0].create_key(&["--tier", "sliding"]);
        until_millis_into_second(750).await;
        let started = std::time::Instant::now();
        let (a, b) = tokio::join!(burst(replicas, &fixed, 5), burst(replicas, &sliding, 5));
        if started.elapsed() >= Duration::from_millis(240) {
            eprintln!("attempt {attempt}: the first batch crossed the boundary; again");
            continue;
        }
        assert_eq!(count(&a, 200), 5, "{a:?}");
        assert_eq!(count(&b, 200), 5, "{b:?}");
        until_millis_into_second(150).await;
        let (a, b) = tokio::join!(burst(replicas, &fixed, 5), burst(replicas, &sliding, 5));
        if started.elapsed() >= Duration::from_millis(1_000) {
            eprintln!("attempt {attempt}: the batches were a second apart; again");
            continue;
        }
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
        let now = unix_secs();
        assert!((now..=now + 2).contains(&reset), "reset {reset}, now {now}");
        return;
    }
    panic!("three attempts, none with both batches inside their half-seconds");
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
    let Some(Backends { db, redis }) = Backends::start().await else {
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

const METERED: &str = "tiers: { free: { per_second: 1000 } }\n\
     rate_limit: { ip: { per_minute: 0 } }\n\
     routes:\n  - { path: /paid, cost: 1 }\n  - { path: /status/*, cost: 1 }\n";

fn credits_of(kg: &Keygate, id: &str) -> u64 {
    let shown: serde_json::Value =
        serde_json::from_slice(&kg.cli(&["keys", "show", id]).stdout).unwrap();
    shown["credits"].as_u64().unwrap()
}

/// A TCP server that accepts connections and never answers.
async fn silent_upstream() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    (addr, task)
}

/// Debited requests whose upstream refuses the connection (502) or never answers
/// (504) get their credit back, once each, counted in the metric; a 502 that the
/// upstream itself sent is an answer and stays paid.
async fn failed_upstreams_refund(kg: Keygate, upstream: std::net::SocketAddr) {
    let (id, key) = kg.create_key(&["--credits", "10"]);
    assert_eq!(kg.get_key("/paid", &key).await.status(), 200);
    assert_eq!(credits_of(&kg, &id), 9);
    assert_eq!(kg.get_key("/status/502", &key).await.status(), 502);
    assert_eq!(credits_of(&kg, &id), 8, "the upstream answered: paid");

    // An upstream that refuses connections.
    let refused = format!("127.0.0.1:{}", free_port());
    let kg = kg.restart_with_config(|c| c.replace(&upstream.to_string(), &refused));
    let statuses = join_all((0..6).map(|_| kg.get_key("/paid", &key))).await;
    for r in statuses {
        expect_error(r, 502, "bad_gateway").await;
    }
    assert_eq!(credits_of(&kg, &id), 8, "every refused request refunded");
    assert_eq!(
        metric_sum(
            &kg.metrics().await,
            "keygate_credit_refunds_total{result=\"ok\"}"
        ),
        6.0
    );

    // An upstream that accepts and never answers (read_timeout 2 s).
    let (silent, _task) = silent_upstream().await;
    let kg = kg.restart_with_config(|c| c.replace(&refused, &silent.to_string()));
    let statuses = join_all((0..3).map(|_| kg.get_key("/paid", &key))).await;
    for r in statuses {
        expect_error(r, 504, "gateway_timeout").await;
    }
    assert_eq!(credits_of(&kg, &id), 8, "every timed-out request refunded");
    assert_eq!(
        metric_sum(
            &kg.metrics().await,
            "keygate_credit_refunds_total{result=\"ok\"}"
        ),
        3.0
    );

    // With refunds off, the failure is paid for.
    let kg =
        kg.restart_with_config(|c| format!("{c}credits: {{ refund_on_upstream_error: false }}\n"));
    expect_error(kg.get_key("/paid", &key).await, 504, "gateway_timeout").await;
    assert_eq!(credits_of(&kg, &id), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn credits_of_requests_the_upstream_never_answered_are_refunded_on_sqlite() {
    let up = start_upstream().await;
    failed_upstreams_refund(Keygate::start(up, METERED), up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn credits_of_requests_the_upstream_never_answered_are_refunded_on_postgres() {
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    let up = start_upstream().await;
    let store = format!("store: {{ kind: postgres, url: \"{}\" }}\n", db.url);
    let kg = Keygate::start_with_store(&format!("http://{up}"), &store, METERED);
    failed_upstreams_refund(kg, up).await;
}

/// The tiers of the refill tests: `refilled` gives 3 credits every 2 seconds.
const REFILL_POLICY: &str = "tiers:\n  refilled: { per_second: 1000, credits: { refill: 3, every: 2s } }\n  plain: { per_second: 1000 }\ndefault_tier: refilled\nrate_limit: { ip: { per_minute: 0 } }\nroutes:\n  - { path: /paid, cost: 1 }\n";

/// Sleeps until just after the next even second (a 2 s refill period starts).
async fn next_even_second() {
    let left = left_of_window(Duration::from_secs(2));
    tokio::time::sleep(left + Duration::from_millis(50)).await;
}

async fn paid(replicas: &[&Keygate], key: &str, n: usize) -> Vec<u16> {
    join_all((0..n).map(|i| {
        let kg = replicas[i % replicas.len()];
        async move { kg.get_key("/paid", key).await.status().as_u16() }
    }))
    .await
}

/// Two replicas on PostgreSQL: a key of a refilling tier starts with the refill,
/// gets exactly one refill per period however many requests race across the
/// replicas, and its key object shows the refill, `refilled_at` and its limits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tier_refill_happens_once_per_period_across_two_replicas() {
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    let up = format!("http://{}", start_upstream().await);
    let store = format!("store: {{ kind: postgres, url: \"{}\" }}\n", db.url);
    let a = Keygate::start_with_store(&up, &store, REFILL_POLICY);
    let b = Keygate::start_with_store(&up, &store, REFILL_POLICY);
    let (_, admin) = a.create_key(&["--scopes", "admin", "--tier", "plain"]);
    next_even_second().await;
    let (id, key) = a.create_key(&["--tier", "refilled"]);
    for period in 0..3 {
        let statuses = paid(&[&a, &b], &key, 12).await;
        assert_eq!(count(&statuses, 200), 3, "period {period}: {statuses:?}");
        assert_eq!(count(&statuses, 402), 9, "period {period}: {statuses:?}");
        let (status, shown) = b
            .api(
                reqwest::Method::GET,
                &format!("/keys/{id}"),
                Auth::Key(&admin),
                None,
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(shown["credits"], 0);
        assert_eq!(
            shown["refill"],
            serde_json::json!({"amount": 3, "every": "2s"})
        );
        assert_eq!(shown["limits"]["refill"]["amount"], 3);
        assert_eq!(shown["limits"]["algorithm"], "fixed");
        let at = chrono::DateTime::parse_from_rfc3339(shown["refilled_at"].as_str().unwrap())
            .unwrap()
            .timestamp();
        assert_eq!(at % 2, 0, "refilled_at is the period's start");
        next_even_second().await;
    }
    // Read lazily: a new period shows the refilled balance before any use.
    let (_, shown) = a
        .api(
            reqwest::Method::GET,
            &format!("/keys/{id}"),
            Auth::Key(&admin),
            None,
        )
        .await;
    assert_eq!(shown["credits"], 3, "{shown}");
    let (_, verified) = a
        .api(reqwest::Method::POST, "/keys/verify", Auth::Key(&key), None)
        .await;
    assert_eq!(verified["credits_remaining"], 3, "{verified}");
    assert_eq!(verified["limits"]["refill"]["every"], "2s");
}

/// A key's own refill, through the API and the CLI, overrides its tier's; bad
/// refills are refused with every problem named.
#[tokio::test]
async fn a_key_refill_overrides_the_tier_through_the_api_and_the_cli() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, REFILL_POLICY);
    let (_, admin) = kg.create_key(&["--scopes", "admin", "--tier", "plain"]);
    let (status, made) = kg
        .api(
            reqwest::Method::POST,
            "/keys",
            Auth::Key(&admin),
            Some(serde_json::json!({"name": "monthly", "tier": "plain", "refill": {"amount": 50, "every": "month"}})),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["credits"], 50, "a key under a refill starts with it");
    assert_eq!(
        made["refill"],
        serde_json::json!({"amount": 50, "every": "month"})
    );
    let id = made["id"].as_str().unwrap();
    let (status, changed) = kg
        .api(
            reqwest::Method::PUT,
            &format!("/keys/{id}"),
            Auth::Key(&admin),
            Some(serde_json::json!({"refill": {"amount": 7, "every": "7d"}})),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["refill"]["every"], "7d");
    for bad in [
        serde_json::json!({"name": "x", "refill": {"amount": 5, "every": "fortnight"}}),
        serde_json::json!({"name": "x", "refill": {"amount": -5, "every": "day"}}),
        serde_json::json!({"name": "x", "refill": 5}),
        serde_json::json!({"name": "x", "refill": {"amount": 5}}),
    ] {
        let (status, body) = kg
            .api(
                reqwest::Method::POST,
                "/keys",
                Auth::Key(&admin),
                Some(bad.clone()),
            )
            .await;
        assert_eq!(status, 422, "{bad} → {body}");
        assert!(body["details"]["refill"].is_string(), "{body}");
    }

    let out = kg.cli(&[
        "keys", "create", "--name", "cli", "--tier", "plain", "--refill", "20/day", "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let made: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(made["credits"], 20);
    assert_eq!(
        made["refill"],
        serde_json::json!({"amount": 20, "every": "day"})
    );
    let out = kg.cli(&[
        "keys", "create", "--name", "cli", "--tier", "plain", "--refill", "20-day",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("AMOUNT/EVERY"));
}

/// The policy sections (tiers, routes, credits, rate_limit) of a shipped example,
/// to start keygate with exactly the example's plans (the harness brings its own
/// server, upstream and store; client-IP limits are lifted for the test's bursts).
pub(crate) fn example_policy(file: &str) -> String {
    let text = std::fs::read_to_string(format!("conf/examples/{file}")).unwrap();
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let map = doc.as_mapping_mut().unwrap();
    let mut policy = serde_yaml::Mapping::new();
    for section in [
        "tiers",
        "default_tier",
        "routes",
        "credits",
        "rate_limit",
        "management",
    ] {
        if let Some(v) = map.remove(section) {
            policy.insert(section.into(), v);
        }
    }
    let rate_limit = policy
        .entry("rate_limit".into())
        .or_insert_with(|| serde_yaml::Value::Mapping(Default::default()));
    rate_limit.as_mapping_mut().unwrap().insert(
        "ip".into(),
        serde_yaml::from_str("{ per_minute: 0 }").unwrap(),
    );
    serde_yaml::to_string(&policy).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_altrixy_example_caps_bursts_per_second_in_sliding_windows() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, &example_policy("limits-altrixy.yaml"));
    let (_, key) = kg.create_key(&["--tier", "free"]);
    until_millis_into_second(100).await;
    let statuses = burst(&[&kg], &key, 14).await;
    assert_eq!(count(&statuses, 200), 10, "{statuses:?}");
    assert_eq!(count(&statuses, 429), 4, "{statuses:?}");
    let r = kg.get_key("/a", &key).await;
    let policy = r.headers()["ratelimit-policy"]
        .to_str()
        .unwrap()
        .to_string();
    for part in [
        "\"second\";q=10;w=1",
        "\"minute\";q=30;w=60",
        "\"day\";q=1000;w=86400",
    ] {
        assert!(policy.contains(part), "{policy}");
    }
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let statuses = burst(&[&kg], &key, 5).await;
    assert_eq!(count(&statuses, 200), 5, "a second later: {statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_altus4_example_locks_a_key_out_for_five_minutes_after_its_hourly_limit() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, &example_policy("limits-altus4.yaml"));
    let (_, key) = kg.create_key(&["--tier", "free"]);
    // Not across the turn of an hour: the 1,000 belong to one hour.
    if left_of_window(Duration::from_secs(3600)) < Duration::from_secs(30) {
        tokio::time::sleep(left_of_window(Duration::from_secs(3600))).await;
    }
    let mut admitted = 0;
    for _ in 0..20 {
        admitted += count(&burst(&[&kg], &key, 55).await, 200);
    }
    assert_eq!(admitted, 1000, "Free: 1,000 requests an hour");
    let r = kg.get_key("/a", &key).await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // Blocked for 5 minutes, or until the hour turns if that is later.
    let hour_left = left_of_window(Duration::from_secs(3600)).as_secs();
    let want = hour_left.max(300);
    assert!(
        (want.saturating_sub(2)..=want + 1).contains(&retry),
        "blocked for max(5 min, the rest of the hour) = {want}: {retry}"
    );
}

#[tokio::test]
async fn the_alttextai_example_charges_per_image_from_monthly_credits() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, &example_policy("limits-alttextai.yaml"));
    let (_, admin) = kg.create_key(&["--tier", "business", "--scopes", "admin"]);
    let (id, key) = kg.create_key(&["--tier", "free"]);
    // The credits are the account's, as AltTextAI documents: `GET /credits`.
    let account_credits = || async {
        let r = client()
            .get(kg.url("/keygate/v1/credits"))
            .header("X-API-Key", &key)
            .send()
            .await
            .unwrap();
        json(r).await["credits"].as_i64().unwrap()
    };
    assert_eq!(
        account_credits().await,
        50,
        "a free account starts with the month's 50"
    );
    assert_eq!(kg.post_key("/v1/describe", &key).await.status(), 200);
    assert_eq!(kg.post_key("/v1/describe/batch", &key).await.status(), 200);
    assert_eq!(account_credits().await, 39);
    let shown = json(
        client()
            .get(kg.url(&format!("/keygate/v1/keys/{id}")))
            .header("X-API-Key", &admin)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        shown["limits"]["refill"],
        serde_json::json!({"amount": 50, "every": "month"}),
        "{shown}"
    );
    let now = chrono::Utc::now();
    let first = chrono::NaiveDate::from_ymd_opt(now.year(), now.month(), 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    let account = shown["account"].as_str().unwrap();
    let account: serde_json::Value = json(
        client()
            .get(kg.url(&format!("/keygate/v1/accounts/{account}")))
            .header("X-API-Key", &admin)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let at =
        chrono::DateTime::parse_from_rfc3339(account["refilled_at"].as_str().unwrap()).unwrap();
    assert_eq!(at, first, "this month's refill: {account}");
    // 39 credits: three more batches, then not enough (one a second: the free
    // tier admits two a second).
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1_010)).await;
        assert_eq!(kg.post_key("/v1/describe/batch", &key).await.status(), 200);
    }
    tokio::time::sleep(Duration::from_millis(1_010)).await;
    let r = kg.post_key("/v1/describe/batch", &key).await;
    expect_error(r, 402, "insufficient_credits").await;
}

/// An upstream that answers 200 on two connections in three and closes the third
/// without a word (every connection serves one request).
async fn flaky_upstream() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut n = 0u64;
        while let Ok((mut conn, _)) = listener.accept().await {
            n += 1;
            let fails = n % 3 == 0;
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => head.extend_from_slice(&buf[..k]),
                    }
                }
                if fails {
                    return; // dropped: closed with no answer
                }
                let _ = conn
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    addr
}

/// The measurement, as a test: two replicas on PostgreSQL, 80 concurrent
/// requests on a `cost: 1` route against 25 credits, an upstream that drops some
/// connections. Every credit spent paid for a 200; no 502 cost anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn across_two_replicas_no_credit_pays_for_an_unanswered_request() {
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    let up = format!("http://{}", flaky_upstream().await);
    let store = format!("store: {{ kind: postgres, url: \"{}\" }}\n", db.url);
    let a = Keygate::start_with_store(&up, &store, METERED);
    let b = Keygate::start_with_store(&up, &store, METERED);
    let (id, key) = a.create_key(&["--credits", "25"]);
    let statuses = paid(&[&a, &b], &key, 80).await;
    let ok = count(&statuses, 200);
    let failed = count(&statuses, 502);
    assert_eq!(ok + failed + count(&statuses, 402), 80, "{statuses:?}");
    assert!(failed > 0, "the upstream dropped some: {statuses:?}");
    let spent = 25 - credits_of(&a, &id);
    assert_eq!(
        spent as usize, ok,
        "credits spent = answers received: {statuses:?}"
    );
    let refunds = metric_sum(
        &a.metrics().await,
        "keygate_credit_refunds_total{result=\"ok\"}",
    ) + metric_sum(
        &b.metrics().await,
        "keygate_credit_refunds_total{result=\"ok\"}",
    );
    assert!(refunds >= 1.0, "{refunds}");
}
