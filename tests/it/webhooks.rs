//! Webhooks (docs/operations.md, Webhooks), black-box against a real HTTP receiver:
//! every event signed (verified as a receiver would), in order, never a secret; a
//! receiver limited to some types gets only those; a receiver that is down, then
//! up, gets every event, and so does one whose keygate was SIGKILLed with events
//! pending; two replicas on one PostgreSQL deliver each event once.

use crate::common::receiver::{delivered_types, Received, Receiver};
use crate::common::services::PgDatabase;
use crate::common::{client, metric_sum, start_upstream, Keygate};
use keygate::events::signature;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

const SECRET: &str = "whsec-test-0123456789abcdef";

const POLICY: &str = r#"
tiers:
  free: { per_minute: 100, pool: account }
  pro: { per_minute: 1000, pool: account }
default_tier: free
portal: { enabled: true }
jwt:
  issue: { alg: HS256, secret: "an-issuing-secret-of-at-least-32-bytes!!", access_ttl: 10m, refresh_ttl: 1d }
"#;

/// A `webhooks:` section: each receiver's URL and the types it gets (all: `None`).
fn hooks(receivers: &[(String, Option<&str>)]) -> String {
    let mut s = String::from("webhooks:\n");
    for (url, events) in receivers {
        // A short timeout: a replica that dies holding the delivery lease is
        // replaced 5 s after it.
        s.push_str(&format!(
            "  - {{ url: \"{url}\", secret: \"{SECRET}\", timeout: 2s"
        ));
        if let Some(e) = events {
            s.push_str(&format!(", events: [{e}]"));
        }
        s.push_str(" }\n");
    }
    s
}

/// Waits until keygate's worker has seen the receiver at `url` (its cursor is set:
/// it gets what happens from then on).
async fn seen(kg: &Keygate, url: &str) {
    let gauge = format!("keygate_webhook_outbox_depth{{receiver=\"{url}\"}}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !kg.metrics().await.contains(&gauge) {
        assert!(
            std::time::Instant::now() < deadline,
            "the worker never saw {url}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Checks a receipt as a receiver would: signed with the secret within five
/// minutes, its headers naming the body's event.
fn verified(r: &Received) -> Value {
    let header = r.header("keygate-signature").expect("signed");
    let now = chrono::Utc::now().timestamp();
    assert!(
        signature::verify(SECRET.as_bytes(), header, &r.body, now, 300),
        "bad signature {header} on {}",
        r.body
    );
    assert!(!signature::verify(
        b"another secret, not theirs",
        header,
        &r.body,
        now,
        300
    ));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let body = r.json();
    assert_eq!(r.header("keygate-event-id"), body["id"].as_str());
    assert_eq!(r.header("keygate-event-type"), body["type"].as_str());
    for field in ["id", "type", "created_at", "data"] {
        assert!(body.get(field).is_some(), "no {field} in {body}");
    }
    body
}

/// Runs the README's `verify` on `body` with the signature `r` came with; prints
/// what it answered.
fn readme_verifies(r: &Received, body: &str) -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let after = readme
        .split("A receiver checks it in a few lines of Python:")
        .nth(1)
        .expect("the README shows how to verify a signature");
    let code = after
        .split("```python")
        .nth(1)
        .and_then(|c| c.split("```").next())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("verify.py");
    std::fs::write(
        &script,
        format!(
            "{code}\nimport os, sys\nprint(verify(os.environ['SECRET'].encode(), os.environ['HEADER'], sys.stdin.buffer.read()))\n"
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(crate::common::jwt_support::python())
        .arg(&script)
        .env("SECRET", SECRET)
        .env("HEADER", r.header("keygate-signature").unwrap())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

async fn api(kg: &Keygate, method: reqwest::Method, path: &str, key: &str, body: Value) -> Value {
    let resp = client()
        .request(method, kg.url(path))
        .header("X-API-Key", key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{path}: {status} {body}");
    body
}

#[tokio::test]
async fn events_reach_their_receivers_signed_in_order_and_never_carry_a_secret() {
    let up = start_upstream().await;
    let (all, revocations) = (Receiver::start().await, Receiver::start().await);
    let (all_url, revoked_url) = (all.url("/hooks"), revocations.url("/revoked"));
    let kg = Keygate::start(
        up,
        &format!(
            "{POLICY}{}",
            hooks(&[
                (all_url.clone(), None),
                (revoked_url.clone(), Some("key.revoked"))
            ])
        ),
    );
    seen(&kg, &all_url).await;
    seen(&kg, &revoked_url).await;
    use reqwest::Method;

    let (admin_id, admin) = kg.create_key(&["--scopes", "admin", "--owner", "ops"]);
    let created = api(
        &kg,
        Method::POST,
        "/v1/keys",
        &admin,
        json!({"name": "app", "account": "acct_acme"}),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_string();
    let first_secret = created["key"].as_str().unwrap().to_string();
    let regenerated = api(
        &kg,
        Method::POST,
        &format!("/v1/keys/{id}/regenerate"),
        &admin,
        json!({}),
    )
    .await;
    let second_secret = regenerated["key"].as_str().unwrap().to_string();
    api(
        &kg,
        Method::DELETE,
        &format!("/v1/keys/{id}"),
        &admin,
        json!({}),
    )
    .await;
    api(
        &kg,
        Method::PUT,
        "/v1/accounts/acct_acme",
        &admin,
        json!({"plan": "pro"}),
    )
    .await;
    api(
        &kg,
        Method::PUT,
        "/v1/accounts/acct_acme",
        &admin,
        json!({"metadata": {"crm": 1}}),
    )
    .await;
    api(
        &kg,
        Method::PUT,
        "/v1/accounts/acct_acme",
        &admin,
        json!({"status": "suspended"}),
    )
    .await;
    // A refresh token presented twice.
    let (user, _) = kg.create_user("kim@example.com", "kim's long password", false);
    let tokens: Value = client()
        .post(kg.url("/v1/auth/token"))
        .json(&json!({"email": "kim@example.com", "password": "kim's long password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap();
    for _ in 0..2 {
        client()
            .post(kg.url("/v1/auth/refresh"))
            .json(&json!({"refresh_token": refresh}))
            .send()
            .await
            .unwrap();
    }

    let expected = [
        "key.created",
        "key.created",
        "key.regenerated",
        "key.revoked",
        "account.plan_changed",
        "account.suspended",
        "auth.refresh_reuse",
    ];
    let got = all
        .settle(Duration::from_secs(15), |g| g.len() >= expected.len())
        .await;
    assert_eq!(
        delivered_types(&got),
        expected,
        "in order; a metadata change is no event"
    );
    let bodies: Vec<Value> = got.iter().map(verified).collect();
    assert_eq!(bodies[1]["data"]["key"]["id"], id.as_str());
    assert_eq!(bodies[1]["data"]["actor"], admin_id.as_str());
    assert_eq!(bodies[0]["data"]["actor"], "cli");
    assert_eq!(bodies[3]["data"]["key"]["status"], "revoked");
    assert_eq!(bodies[4]["data"]["account"]["plan"], "pro");
    assert_eq!(bodies[5]["data"]["account"]["status"], "suspended");
    assert_eq!(bodies[6]["data"]["user_id"], user.as_str());
    let ids: std::collections::HashSet<_> = bodies.iter().map(|b| b["id"].clone()).collect();
    assert_eq!(ids.len(), expected.len(), "every event its own id");
    let everything: String = got.iter().map(|r| r.body.clone()).collect();
    for secret in [
        admin.as_str(),
        &first_secret,
        &second_secret,
        refresh,
        SECRET,
    ] {
        assert!(!everything.contains(secret), "a secret in an event");
    }

    // The receiver limited to revocations got that one event.
    let only = revocations
        .settle(Duration::from_secs(10), |g| !g.is_empty())
        .await;
    assert_eq!(delivered_types(&only), ["key.revoked"]);
    assert_eq!(
        verified(&only[0])["id"],
        bodies[3]["id"],
        "one event, one id for everyone"
    );
    let metrics = kg.metrics().await;
    assert_eq!(
        metric_sum(
            &metrics,
            "keygate_webhook_deliveries_total{result=\"delivered\"}"
        ),
        8.0,
        "{metrics}"
    );
    // The README's few lines of Python verify a real delivery, and refuse it
    // tampered with.
    assert_eq!(readme_verifies(&got[3], &got[3].body), "True");
    let tampered = got[3].body.replace("revoked", "active");
    assert_eq!(readme_verifies(&got[3], &tampered), "False");

    // An admin sees the deliveries on the portal's overview.
    kg.create_user("root@example.com", "root's long password", true);
    let mut root = crate::common::portal_visitor::Visitor::new(&kg);
    let signed_in = root
        .sign_in("root@example.com", "root's long password")
        .await;
    assert_eq!(signed_in.status, 303);
    let overview = root.get("/overview").await;
    assert!(
        overview.body.contains("Webhook deliveries"),
        "{}",
        overview.body
    );
    assert!(overview.body.contains(&revoked_url) && overview.body.contains("delivered (200)"));
}

#[tokio::test]
async fn a_receiver_down_then_up_and_a_sigkilled_keygate_lose_no_event() {
    let up = start_upstream().await;
    let mut rx = Receiver::start().await;
    rx.answer(503);
    let url = rx.url("/hooks");
    let mut kg = Keygate::start(up, &format!("{POLICY}{}", hooks(&[(url.clone(), None)])));
    seen(&kg, &url).await;
    for _ in 0..3 {
        kg.create_key(&[]);
    }
    // The receiver answers 503: keygate counts a failure and will try again.
    rx.wait_until(Duration::from_secs(10), |g| !g.is_empty())
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while metric_sum(
        &kg.metrics().await,
        "keygate_webhook_deliveries_total{result=\"failed\"}",
    ) < 1.0
    {
        assert!(std::time::Instant::now() < deadline, "no failure counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Down for good: not even listening. keygate is SIGKILLed with three events
    // pending, and two more are made (at the CLI) while it is down.
    rx.stop();
    kg.signal("KILL");
    kg.wait_exit();
    for _ in 0..2 {
        kg.create_key(&[]);
    }
    rx.answer(200);
    rx.listen_again().await;
    let kg = kg.restart();

    let got = rx
        .settle(Duration::from_secs(30), |g| delivered_types(g).len() >= 5)
        .await;
    let mut delivered: HashMap<String, usize> = HashMap::new();
    let mut refused: HashMap<String, usize> = HashMap::new();
    for r in &got {
        let id = verified(r)["id"].as_str().unwrap().to_string();
        let counts = if r.answered == 200 {
            &mut delivered
        } else {
            &mut refused
        };
        *counts.entry(id).or_default() += 1;
    }
    assert_eq!(
        delivered.len(),
        5,
        "every event reached the receiver: {delivered:?}"
    );
    assert!(
        delivered.values().all(|n| *n == 1),
        "each delivered once: a duplicate would only follow a failure, and none failed after its 2xx: {delivered:?}"
    );
    assert!(
        refused.keys().all(|id| delivered.contains_key(id)),
        "what was answered 503 was delivered later"
    );
    assert_eq!(delivered_types(&got), ["key.created"; 5]);
    drop(kg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_one_postgres_deliver_each_event_once() {
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    let up = start_upstream().await;
    let rx = Receiver::start().await;
    let url = rx.url("/hooks");
    let store = format!("store:\n  kind: postgres\n  url: \"{}\"\n", db.url);
    let policy = format!(
        "{POLICY}{}",
        hooks(&[(url.clone(), Some("key.created, key.revoked"))])
    );
    let a = Keygate::start_with_store(&format!("http://{up}"), &store, &policy);
    let b = Keygate::start_with_store(&format!("http://{up}"), &store, &policy);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (ma, mb) = (a.metrics().await, b.metrics().await);
        let gauge = format!("keygate_webhook_outbox_depth{{receiver=\"{url}\"}}");
        if ma.contains(&gauge) || mb.contains(&gauge) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "neither replica delivers"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, admin) = a.create_key(&["--scopes", "admin"]);
    use reqwest::Method;
    let mut made = Vec::new();
    for i in 0..10 {
        let kg = if i % 2 == 0 { &a } else { &b };
        let created = api(
            kg,
            Method::POST,
            "/v1/keys",
            &admin,
            json!({"name": format!("k{i}")}),
        )
        .await;
        let id = created["id"].as_str().unwrap().to_string();
        if i % 3 == 0 {
            api(
                kg,
                Method::DELETE,
                &format!("/v1/keys/{id}"),
                &admin,
                json!({}),
            )
            .await;
        }
        made.push(id);
    }
    let expected = 1 + 10 + 4;
    let got = rx
        .settle(Duration::from_secs(20), |g| g.len() >= expected)
        .await;
    let mut seen_ids: HashMap<String, usize> = HashMap::new();
    for r in &got {
        assert_eq!(r.answered, 200);
        *seen_ids
            .entry(verified(r)["id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(seen_ids.len(), expected, "every event, from both replicas");
    assert!(
        seen_ids.values().all(|n| *n == 1),
        "each delivered once: {seen_ids:?}"
    );
    let delivered_by =
        |m: &str| metric_sum(m, "keygate_webhook_deliveries_total{result=\"delivered\"}");
    let (by_a, by_b) = (
        delivered_by(&a.metrics().await),
        delivered_by(&b.metrics().await),
    );
    assert_eq!(by_a + by_b, expected as f64);
    assert!(
        by_a == 0.0 || by_b == 0.0,
        "one replica delivers at a time: {by_a} and {by_b}"
    );
}

#[test]
fn a_bad_receiver_is_refused_with_every_problem_listed() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("keygate.yaml");
    std::fs::write(
        &config,
        r#"upstream: { url: "http://127.0.0.1:1" }
tiers: { free: {} }
credits: { low_at: ["0%", -1, "10%"] }
webhooks:
  - { url: "ftp://example.com/in", secret: "long enough secret!" }
  - { url: "https://hooks.example.com/in", events: [key.created, key.exploded], secret: "short" }
  - { url: "https://hooks.example.com/in?again", secret: "long enough secret!", timeout: 5m }
"#,
    )
    .unwrap();
    let out = crate::common::check_config(&config);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for problem in [
        "webhooks[0].url",
        "webhooks[1].events: unknown event type `key.exploded`",
        "webhooks[1].secret",
        "webhooks[2].url: https://hooks.example.com/in is listed twice",
        "webhooks[2].timeout",
        "credits.low_at[0]",
        "credits.low_at[1]",
    ] {
        assert!(err.contains(problem), "{problem} not in {err}");
    }
}

#[tokio::test]
async fn the_request_path_announces_a_limit_once_per_window_and_low_credits_once_per_threshold() {
    let up = start_upstream().await;
    let rx = Receiver::start().await;
    let url = rx.url("/hooks");
    let kg = Keygate::start(
        up,
        &format!(
            r#"
tiers:
  free: {{ per_hour: 3 }}
  team: {{ per_hour: 1000, pool: account, credits: {{ refill: 10, every: month }} }}
default_tier: free
credits: {{ low_at: ["50%", 0] }}
routes:
  - {{ path: /paid, cost: 1 }}
{}"#,
            hooks(&[(url.clone(), Some("rate_limit.exceeded, credits.low"))])
        ),
    );
    seen(&kg, &url).await;
    // Two keys, each over its hourly limit many times: one event each.
    let (first_id, first) = kg.create_key(&["--tier", "free"]);
    let (second_id, second) = kg.create_key(&["--tier", "free"]);
    let mut refused = 0;
    for key in [&first, &second, &first, &second] {
        for _ in 0..5 {
            if kg.get_key("/x", key).await.status() == 429 {
                refused += 1;
            }
        }
    }
    assert_eq!(refused, 20 - 6);
    // An account's two keys spend its ten credits, and one more is refused: 50%
    // (5 left) and 0 are each crossed once, by whichever key.
    let (_, a) = kg.create_key(&["--tier", "team", "--account", "acct_team"]);
    let (_, b) = kg.create_key(&["--tier", "team", "--account", "acct_team"]);
    let mut statuses = Vec::new();
    for i in 0..11 {
        let key = if i % 2 == 0 { &a } else { &b };
        statuses.push(kg.get_key("/paid", key).await.status().as_u16());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&402));

    let got = rx.settle(Duration::from_secs(10), |g| g.len() >= 4).await;
    let bodies: Vec<Value> = got.iter().map(verified).collect();
    let limited: Vec<&Value> = bodies
        .iter()
        .filter(|b| b["type"] == "rate_limit.exceeded")
        .collect();
    let mut keys: Vec<&str> = limited
        .iter()
        .map(|b| b["data"]["key"]["id"].as_str().unwrap())
        .collect();
    keys.sort_unstable();
    let mut expected = vec![first_id.as_str(), second_id.as_str()];
    expected.sort_unstable();
    assert_eq!(keys, expected, "once per key per window: {bodies:#?}");
    for b in &limited {
        assert_eq!(b["data"]["window"], "hour");
        assert_eq!(b["data"]["limit"], 3);
        assert_eq!(b["data"]["pool"], "key");
    }
    let low: Vec<&Value> = bodies
        .iter()
        .filter(|b| b["type"] == "credits.low")
        .collect();
    let thresholds: Vec<i64> = low
        .iter()
        .map(|b| b["data"]["threshold"].as_i64().unwrap())
        .collect();
    assert_eq!(thresholds, [5, 0], "once per threshold: {bodies:#?}");
    for b in &low {
        assert_eq!(b["data"]["key"]["account"], "acct_team");
        assert_eq!(b["data"]["pool"], "account");
        assert_eq!(b["data"]["refill"], 10);
    }
    assert_eq!(low[0]["data"]["remaining"], 5);
    assert_eq!(low[1]["data"]["remaining"], 0);
    assert_eq!(bodies.len(), 4, "nothing more: {bodies:#?}");
    for secret in [&first, &second, &a, &b] {
        assert!(!got.iter().any(|r| r.body.contains(secret.as_str())));
    }
}

#[tokio::test]
async fn a_key_is_announced_once_a_week_before_it_expires() {
    let up = start_upstream().await;
    let rx = Receiver::start().await;
    let url = rx.url("/hooks");
    let kg = Keygate::start(
        up,
        &format!("{POLICY}{}", hooks(&[(url.clone(), Some("key.expiring"))])),
    );
    seen(&kg, &url).await;
    let (soon, soon_secret) = kg.create_key(&["--expires-in", "3d"]);
    kg.create_key(&["--expires-in", "30d"]);
    kg.create_key(&[]);
    // Keys are looked at when keygate starts, then hourly: these were made after
    // its first look, so a restart looks again and announces the one expiring
    // within a week; a second restart looks again and announces nothing new (the
    // event's id names the key and its expiry).
    let kg = kg.restart_with_config(|c| c.replace("refresh_ttl: 1d", "refresh_ttl: 2d"));
    rx.wait_until(Duration::from_secs(10), |g| !g.is_empty())
        .await;
    let kg = kg.restart_with_config(|c| c.replace("refresh_ttl: 2d", "refresh_ttl: 3d"));
    seen(&kg, &url).await;
    let got = rx.settle(Duration::from_secs(10), |g| !g.is_empty()).await;
    assert_eq!(delivered_types(&got), ["key.expiring"], "{got:#?}");
    let body = verified(&got[0]);
    assert_eq!(body["data"]["key"]["id"], soon.as_str());
    assert!(body["data"]["key"]["expires_at"].as_str().is_some());
    assert!(!got[0].body.contains(&soon_secret));
    drop(kg);
}
