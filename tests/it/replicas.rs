//! Several keygate replicas sharing one PostgreSQL store and one Redis: limits and
//! credits exact across replicas, changes propagated within a second, and the
//! failure modes (Redis killed and restarted, PostgreSQL unreachable) end to end.
//! Every test has its own database and its own `redis-server`.

use crate::common::services::{Backends, PgDatabase, RedisServer, Relay};
use crate::common::{
    expect_error, json, metric_sum, start_upstream, test_pki, wait_for_window_room, Keygate,
};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn store(url: &str) -> String {
    format!("store:\n  kind: postgres\n  url: \"{url}\"\n  timeout: 2s\n")
}

fn policy(redis: &str, on_error: &str, redis_timeout: &str, extra: &str) -> String {
    format!(
        r#"cache: {{ ttl: 5m }}
rate_limit:
  backend: redis
  redis_url: "{redis}"
  redis_timeout: {redis_timeout}
  on_backend_error: {on_error}
  ip: {{ per_minute: 0, failed_auth_per_minute: 0 }}
tiers:
  free: {{ per_day: 50 }}
  pro: {{ per_day: 100000 }}
default_tier: free
routes:
  - {{ path: /health, auth: none }}
  - {{ path: /metered, cost: 1 }}
{extra}"#
    )
}

/// Two replicas on the same database and Redis.
fn pair(up: SocketAddr, db: &PgDatabase, policy: &str) -> (Keygate, Keygate) {
    let url = format!("http://{up}");
    (
        Keygate::start_with_store(&url, &store(&db.url), policy),
        Keygate::start_with_store(&url, &store(&db.url), policy),
    )
}

/// Sends `n` concurrent GETs of `path` with `key`, alternating replicas; returns
/// the status codes.
async fn spread(a: &Keygate, b: &Keygate, n: usize, path: &str, key: &str) -> Vec<u16> {
    let requests = (0..n).map(|i| {
        let kg = if i % 2 == 0 { a } else { b };
        async move { kg.get_key(path, key).await.status().as_u16() }
    });
    futures::future::join_all(requests).await
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

/// Waits until `check` holds, polling every 20 ms; returns how long it took.
async fn within<F, Fut>(limit: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn send_json(
    kg: &Keygate,
    method: reqwest::Method,
    path: &str,
    key: &str,
    body: serde_json::Value,
) -> reqwest::Response {
    crate::common::client()
        .request(method, kg.url(path))
        .header("X-API-Key", key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_limit_of_50_admits_exactly_50_across_two_replicas() {
    let Some(Backends { db, redis }) = Backends::start().await else {
        return;
    };
    let up = start_upstream().await;
    let (a, b) = pair(up, &db, &policy(&redis.url(), "local", "1s", ""));
    let (_, key) = a.create_key(&["--tier", "free"]);
    let statuses = spread(&a, &b, 120, "/x", &key).await;
    assert_eq!(count(&statuses, 200), 50, "{statuses:?}");
    assert_eq!(count(&statuses, 429), 70, "{statuses:?}");
    let resp = b.get_key("/x", &key).await;
    assert_eq!(resp.headers()["x-ratelimit-remaining"], "0");
    assert!(resp.headers().get("x-ratelimit-degraded").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn per_ip_limits_are_shared_by_the_replicas_too() {
    let Some(Backends { db, redis }) = Backends::start().await else {
        return;
    };
    let up = start_upstream().await;
    let p = policy(&redis.url(), "local", "1s", "")
        .replace("ip: { per_minute: 0,", "ip: { per_minute: 30,");
    let (a, b) = pair(up, &db, &p);
    // A minute window: start well inside one.
    tokio::time::sleep(wait_for_window_room(
        Duration::from_secs(60),
        Duration::from_secs(5),
    ))
    .await;
    let statuses = spread(&a, &b, 60, "/health", "").await;
    assert_eq!(count(&statuses, 200), 30, "{statuses:?}");
    assert_eq!(count(&statuses, 429), 30, "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn credits_are_spent_exactly_once_across_replicas() {
    let Some(Backends { db, redis }) = Backends::start().await else {
        return;
    };
    let up = start_upstream().await;
    let (a, b) = pair(up, &db, &policy(&redis.url(), "local", "1s", ""));
    let (_, key) = a.create_key(&["--tier", "pro", "--credits", "25"]);
    let statuses = spread(&a, &b, 60, "/metered", &key).await;
    assert_eq!(count(&statuses, 200), 25, "{statuses:?}");
    assert_eq!(count(&statuses, 402), 35, "{statuses:?}");
    let credits = json(b.get_key("/v1/credits", &key).await).await;
    assert_eq!(credits["credits"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sigkill_under_metered_load_on_postgres_spends_no_credit_twice() {
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    let up = start_upstream().await;
    let kg = Keygate::start_with_store(
        &format!("http://{up}"),
        &store(&db.url),
        crate::limits::METERED_POLICY,
    );
    crate::limits::sigkill_under_metered_load(kg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoke_regenerate_and_retier_reach_the_other_replica_within_a_second() {
    let Some(Backends { db, redis }) = Backends::start().await else {
        return;
    };
    let up = start_upstream().await;
    let (a, b) = pair(up, &db, &policy(&redis.url(), "local", "1s", ""));
    let (_, admin) = a.create_key(&["--tier", "pro", "--scopes", "admin"]);
    let (revoked_id, revoked) = a.create_key(&[]);
    let (regen_id, regen) = a.create_key(&[]);
    let (retier_id, retier) = a.create_key(&[]);
    for key in [&revoked, &regen, &retier] {
        // Cached on both replicas (cache.ttl is 5 minutes).
        assert_eq!(a.get_key("/x", key).await.status(), 200);
        assert_eq!(b.get_key("/x", key).await.status(), 200);
    }

    let resp = send_json(
        &a,
        reqwest::Method::DELETE,
        &format!("/v1/keys/{revoked_id}"),
        &admin,
        serde_json::json!({}),
    )
    .await;
    assert!(resp.status().is_success(), "{}", resp.status());
    let took = within(
        Duration::from_secs(1),
        "revocation on the other replica",
        || async { b.get_key("/x", &revoked).await.status() == 401 },
    )
    .await;
    eprintln!("revocation reached the other replica in {took:?}");
    let body = expect_error(b.get_key("/x", &revoked).await, 401, "unauthorized").await;
    assert_eq!(body["message"], "API key has been revoked");

    let resp = send_json(
        &b,
        reqwest::Method::POST,
        &format!("/v1/keys/{regen_id}/regenerate"),
        &admin,
        serde_json::json!({}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let new_key = json(resp).await["key"].as_str().unwrap().to_string();
    within(
        Duration::from_secs(1),
        "regenerate on the other replica",
        || async { a.get_key("/x", &regen).await.status() == 401 },
    )
    .await;
    assert_eq!(a.get_key("/x", &new_key).await.status(), 200);

    let resp = send_json(
        &a,
        reqwest::Method::PUT,
        &format!("/v1/keys/{retier_id}"),
        &admin,
        serde_json::json!({"tier": "pro"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    within(
        Duration::from_secs(1),
        "new tier on the other replica",
        || async { b.get_key("/x", &retier).await.headers()["x-ratelimit-limit"] == "100000" },
    )
    .await;

    let metrics = b.metrics().await;
    let n = metric_sum(&metrics, "keygate_key_change_propagation_seconds_count");
    assert!(n >= 3.0, "{n} propagation lags recorded:\n{metrics}");
    assert!(metrics.contains("keygate_key_change_feed_up 1"));

    // The CLI works against the shared store too.
    let out = a.cli(&["keys", "list", "--json"]);
    assert!(out.status.success());
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["total"], 4, "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_mid_traffic_degrades_to_local_or_deny_and_recovers() {
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let up = start_upstream().await;
    let url = format!("http://{up}");
    let local = Keygate::start_with_store(
        &url,
        &store(&db.url),
        &policy(&redis.url(), "local", "250ms", ""),
    );
    let deny = Keygate::start_with_store(
        &url,
        &store(&db.url),
        &policy(&redis.url(), "deny", "250ms", ""),
    );
    let (_, key) = local.create_key(&["--tier", "pro"]);
    for kg in [&local, &deny] {
        let resp = kg.get_key("/x", &key).await;
        assert_eq!(resp.status(), 200);
        assert!(resp.headers().get("x-ratelimit-degraded").is_none());
        assert_eq!(
            reqwest::get(format!("{}/ready", kg.admin))
                .await
                .unwrap()
                .status(),
            200
        );
    }

    redis.kill();
    for _ in 0..20 {
        let started = Instant::now();
        let resp = local.get_key("/x", &key).await;
        assert_eq!(resp.status(), 200, "local fallback keeps serving");
        assert_eq!(resp.headers()["x-ratelimit-degraded"], "local");
        assert!(
            started.elapsed() < Duration::from_millis(1000),
            "bounded wait: {:?}",
            started.elapsed()
        );
        let started = Instant::now();
        expect_error(deny.get_key("/x", &key).await, 503, "service_unavailable").await;
        assert!(started.elapsed() < Duration::from_millis(1000));
    }
    for kg in [&local, &deny] {
        let ready = reqwest::get(format!("{}/ready", kg.admin)).await.unwrap();
        assert_eq!(ready.status(), 503);
        assert_eq!(json(ready).await["rate_limit"], "unavailable");
        let store_only = reqwest::get(format!("{}/ready?require=store", kg.admin))
            .await
            .unwrap();
        assert_eq!(store_only.status(), 200);
    }
    assert!(local
        .metrics()
        .await
        .contains("keygate_ratelimit_degraded 1"));

    redis.restart();
    within(
        Duration::from_secs(10),
        "local replica back on Redis",
        || async {
            local
                .get_key("/x", &key)
                .await
                .headers()
                .get("x-ratelimit-degraded")
                .is_none()
        },
    )
    .await;
    within(
        Duration::from_secs(10),
        "deny replica back on Redis",
        || async { deny.get_key("/x", &key).await.status() == 200 },
    )
    .await;
    for kg in [&local, &deny] {
        assert_eq!(
            reqwest::get(format!("{}/ready", kg.admin))
                .await
                .unwrap()
                .status(),
            200
        );
        assert!(kg.metrics().await.contains("keygate_ratelimit_degraded 0"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_unreachable_serves_cached_keys_and_answers_503_for_unknown_ones() {
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    let relay = Relay::start(db.addr()).await;
    let up = start_upstream().await;
    let p = r#"cache: { ttl: 1s, stale_if_error: 5m }
tiers:
  free: { per_minute: 1000 }
routes:
  - { path: /health, auth: none }
"#;
    let kg = Keygate::start_with_store(&format!("http://{up}"), &store(&db.url_via(relay.addr)), p);
    let (_, cached) = kg.create_key(&[]);
    let (_, uncached) = kg.create_key(&[]);
    assert_eq!(kg.get_key("/x", &cached).await.status(), 200);

    relay.cut();
    tokio::time::sleep(Duration::from_millis(1200)).await; // past cache.ttl
    for _ in 0..5 {
        let started = Instant::now();
        assert_eq!(
            kg.get_key("/x", &cached).await.status(),
            200,
            "stale-while-error"
        );
        assert!(started.elapsed() < Duration::from_secs(3));
        let body = expect_error(
            kg.get_key("/x", &uncached).await,
            503,
            "service_unavailable",
        )
        .await;
        assert!(
            !body["message"].as_str().unwrap().contains("Invalid"),
            "{body}"
        );
    }
    let ready = reqwest::get(format!("{}/ready", kg.admin)).await.unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(json(ready).await["store"], "unavailable");
    let metrics = kg.metrics().await;
    assert!(
        !metrics.contains("keygate_key_cache_stale_served_total 0"),
        "stale serving counted"
    );

    relay.restore();
    within(
        Duration::from_secs(10),
        "recovery after PostgreSQL returns",
        || async { kg.get_key("/x", &uncached).await.status() == 200 },
    )
    .await;
    assert_eq!(
        reqwest::get(format!("{}/ready", kg.admin))
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn a_replica_that_cannot_reach_postgres_at_start_exits_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("keygate.yaml");
    let (listen, admin) = (crate::common::free_port(), crate::common::free_port());
    std::fs::write(
        &config,
        crate::common::config_yaml_with_store(
            "http://127.0.0.1:9",
            listen,
            admin,
            &store("postgres://postgres@127.0.0.1:1/test"),
            "tiers:\n  free: { per_minute: 10 }\n",
        ),
    )
    .unwrap();
    let out = std::process::Command::new(&*crate::common::BIN)
        .args(["serve", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot open the PostgreSQL store"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn usage_from_both_replicas_adds_up_in_the_shared_store() {
    let Some(Backends { db, redis }) = Backends::start().await else {
        return;
    };
    let up = start_upstream().await;
    let p = policy(&redis.url(), "local", "1s", "");
    let (mut a, mut b) = pair(up, &db, &p);
    let (_, admin) = a.create_key(&["--tier", "pro", "--scopes", "admin"]);
    let (id, key) = a.create_key(&["--tier", "pro"]);
    let statuses = spread(&a, &b, 40, "/x", &key).await;
    assert_eq!(count(&statuses, 200), 40);
    // SIGTERM flushes what each replica still holds.
    assert!(a.terminate().success());
    assert!(b.terminate().success());
    let c = Keygate::start_with_store(&format!("http://{up}"), &store(&db.url), &p);
    let usage = json(
        c.get_key(&format!("/v1/keys/{id}/usage?period=day"), &admin)
            .await,
    )
    .await;
    assert_eq!(usage["total_requests"], 40, "{usage}");
    let record = json(c.get_key(&format!("/v1/keys/{id}"), &admin).await).await;
    assert!(record["last_used_at"].is_string(), "{record}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_silent_postgres_costs_one_timeout_then_fails_fast() {
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    let relay = Relay::start(db.addr()).await;
    let up = start_upstream().await;
    let p = r#"cache: { ttl: 1s, stale_if_error: 5m }
tiers:
  free: { per_minute: 1000 }
"#;
    let store = format!(
        "store:\n  kind: postgres\n  url: \"{}\"\n  timeout: 500ms\n",
        db.url_via(relay.addr)
    );
    let kg = Keygate::start_with_store(&format!("http://{up}"), &store, p);
    let (_, cached) = kg.create_key(&[]);
    let uncached: Vec<String> = (0..3).map(|_| kg.create_key(&[]).1).collect();
    assert_eq!(kg.get_key("/x", &cached).await.status(), 200);

    relay.stall(); // packets vanish; no connection is closed
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut slowest = Duration::ZERO;
    for key in &uncached {
        let started = Instant::now();
        expect_error(kg.get_key("/x", key).await, 503, "service_unavailable").await;
        slowest = slowest.max(started.elapsed());
        let started = Instant::now();
        assert_eq!(
            kg.get_key("/x", &cached).await.status(),
            200,
            "stale-while-error"
        );
        slowest = slowest.max(started.elapsed());
    }
    assert!(
        slowest < Duration::from_millis(1500),
        "each wait bounded by store.timeout: {slowest:?}"
    );
    // Once the stuck connections are retired, calls fail at once (backoff).
    let started = Instant::now();
    expect_error(
        kg.get_key("/x", &uncached[0]).await,
        503,
        "service_unavailable",
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );

    relay.restore();
    within(Duration::from_secs(10), "recovery", || async {
        kg.get_key("/x", &uncached[0]).await.status() == 200
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_whose_feed_is_down_reads_cached_keys_again_until_it_resubscribes() {
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    let up = start_upstream().await;
    let p = r#"cache: { ttl: 5m }
tiers:
  free: { per_day: 50 }
  pro: { per_day: 100000 }
"#;
    let kg = Keygate::start_with_store(&format!("http://{up}"), &store(&db.url), p);
    let (id, key) = kg.create_key(&[]);
    assert_eq!(
        kg.get_key("/x", &key).await.headers()["x-ratelimit-limit"],
        "50"
    );
    let sql = db.connect().await;
    within(Duration::from_secs(10), "the feed listening", || async {
        kg.metrics().await.contains("keygate_key_change_feed_up 1")
    })
    .await;

    // Cut the feed and keep it from coming back, then change the key: the
    // notification goes to nobody.
    let name = db.name().to_string();
    db.admin_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
        .await;
    db.admin_execute(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = '{name}' AND application_name = 'keygate-change-feed'"
    ))
    .await;
    within(Duration::from_secs(10), "the feed seen down", || async {
        kg.metrics().await.contains("keygate_key_change_feed_up 0")
    })
    .await;
    sql.execute("UPDATE api_keys SET tier = 'pro' WHERE id = $1", &[&id])
        .await
        .unwrap();
    // The notification went to nobody, but while the feed is down no cached key
    // is trusted: the pool's connections still answer, so the key is read again.
    assert_eq!(
        kg.get_key("/x", &key).await.headers()["x-ratelimit-limit"],
        "100000",
        "the change is read from the store while the feed is down"
    );
    let metrics = kg.metrics().await;
    assert!(
        metric_sum(&metrics, "keygate_key_cache_unwatched_reads_total") >= 1.0,
        "{metrics}"
    );
    db.admin_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .await;
    within(
        Duration::from_secs(10),
        "the feed listening again",
        || async {
            kg.metrics()
                .await
                .contains("keygate_key_change_feed_connects_total{result=\"ok\"} 2")
        },
    )
    .await;
    // Listening again, the cache is trusted again: a change is announced.
    sql.execute("UPDATE api_keys SET tier = 'free' WHERE id = $1", &[&id])
        .await
        .unwrap();
    within(Duration::from_secs(1), "the change announced", || async {
        kg.get_key("/x", &key).await.headers()["x-ratelimit-limit"] == "50"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_reach_both_backends_over_verified_tls() {
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    let pki = test_pki();
    let Some(redis) = RedisServer::start_tls(pki.path()) else {
        return;
    };
    // PostgreSQL's own certificate (Debian's snakeoil, for `localhost`) is the root.
    let admin = db.connect().await;
    let setting = |name: &'static str| {
        let admin = &admin;
        async move {
            let row = admin.query_one(&format!("SHOW {name}"), &[]).await.unwrap();
            row.get::<_, String>(0)
        }
    };
    if setting("ssl").await != "on" {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "PostgreSQL has ssl=off; this test needs its TLS"
        );
        eprintln!("SKIPPED: PostgreSQL has ssl=off");
        return;
    }
    let mut pg_cert = setting("ssl_cert_file").await;
    if !pg_cert.starts_with('/') {
        pg_cert = format!("{}/{pg_cert}", setting("data_directory").await);
    }
    let pg_url = format!(
        "{}?sslmode=verify-full&sslrootcert={pg_cert}",
        db.url.replacen("127.0.0.1", "localhost", 1)
    );
    let extra = format!(
        "  redis_tls: {{ ca_file: {} }}\n",
        pki.path().join("ca.pem").display()
    );
    let policy = policy(&redis.url(), "deny", "1s", "").replacen(
        "  on_backend_error: deny\n",
        &format!("  on_backend_error: deny\n{extra}"),
        1,
    );
    let up = format!("http://{}", start_upstream().await);
    let a = Keygate::start_with_store(&up, &store(&pg_url), &policy);
    let b = Keygate::start_with_store(&up, &store(&pg_url), &policy);
    let (_, key) = a.create_key(&["--tier", "free"]);
    // Exact shared limits over TLS (with `deny`, a Redis that cannot be reached
    // would answer 503, not 200/429).
    let statuses = spread(&a, &b, 120, "/x", &key).await;
    assert_eq!(count(&statuses, 200), 50, "{statuses:?}");
    assert_eq!(count(&statuses, 429), 70, "{statuses:?}");
    // Every connection of both replicas to the database is encrypted.
    let rows = admin
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    let ssl: Vec<bool> = rows.iter().map(|r| r.get(0)).collect();
    assert!(
        ssl.len() >= 4,
        "pool and change feed of two replicas: {ssl:?}"
    );
    assert!(ssl.iter().all(|s| *s), "{ssl:?}");
}
