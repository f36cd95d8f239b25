//! Accounts (docs/configuration.md, Accounts): the customer, not the key, holds the
//! plan, the windows and the credits. Attacked as a customer would: many keys,
//! key churn, concurrent spending on two replicas; and changed as an admin would:
//! a plan change or a suspension on one replica, enforced on the other.

use crate::common::services::{Backends, PgDatabase};
use crate::common::*;
use futures::future::join_all;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const SECRET: &str = "an-issuing-secret-of-at-least-32-bytes!!";

/// Altrixy's Free and Pro plans (as `conf/examples/limits-altrixy.yaml` has them,
/// in fixed windows), and a tier counted per key; `cost: 1` on `/paid`.
const PLANS: &str = r#"
tiers:
  free: { per_second: 10, per_minute: 30, per_day: 1000, max_keys: 5, pool: account }
  pro: { per_second: 30, per_minute: 120, per_day: 10000, max_keys: 25, pool: account }
  perkey: { per_minute: 30 }
default_tier: free
routes:
  - { path: /paid, cost: 1 }
"#;

fn with_jwt(policy: &str) -> String {
    format!(
        "jwt:\n  issue: {{ kid: keygate, alg: HS256, secret: \"{SECRET}\", access_ttl: 10m, refresh_ttl: 1d }}\n\
         management: {{ registration: open, user_scopes: [search] }}\n\
         rate_limit: {{ ip: {{ per_minute: 0, failed_auth_per_minute: 1000 }} }}\n{policy}"
    )
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

/// `n` GETs of `path`, the i-th with `keys[i % keys.len()]` on
/// `replicas[i % replicas.len()]`, all at once; the statuses.
async fn spread(replicas: &[&Keygate], keys: &[String], path: &str, n: usize) -> Vec<u16> {
    join_all((0..n).map(|i| {
        let kg = replicas[i % replicas.len()];
        let key = &keys[i % keys.len()];
        async move { kg.get_key(path, key).await.status().as_u16() }
    }))
    .await
}

/// Creates `n` keys of account `account` through the CLI; their secrets.
fn keys_of(kg: &Keygate, account: &str, tier: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| kg.create_key(&["--account", account, "--tier", tier]).1)
        .collect()
}

/// Altrixy's shipped plans: five keys of one Free account get 10/s and 30/min once.
#[tokio::test]
async fn five_keys_of_one_account_get_the_plan_once_and_upstream_sees_the_account() {
    let up = start_upstream().await;
    let mut policy: serde_yaml::Value =
        serde_yaml::from_str(&crate::limits_v2::example_policy("limits-altrixy.yaml")).unwrap();
    policy["tiers"].as_mapping_mut().unwrap().insert(
        "perkey".into(),
        serde_yaml::from_str("{ per_minute: 30 }").unwrap(),
    );
    let policy = serde_yaml::to_string(&policy).unwrap();
    let kg = Keygate::start(up, &policy);
    early_in_a_minute().await;
    let keys = keys_of(&kg, "acct_team", "free", 5);
    // A sixth active key is over the plan's 5, and says so.
    let out = kg.cli(&[
        "keys",
        "create",
        "--name",
        "six",
        "--tier",
        "free",
        "--account",
        "acct_team",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("5 active keys per account"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 10/s burst shared: in one second, 10 of 15 pass, whichever key asks.
    start_of_next_second().await;
    let burst = spread(&[&kg], &keys, "/a", 15).await;
    assert_eq!(count(&burst, 200), 10, "{burst:?}");
    assert_eq!(count(&burst, 429), 5, "{burst:?}");
    // 30/min shared: 20 more in the next seconds, then nothing (10 asked each
    // second, for six seconds: room for 60 under the burst limit).
    let mut admitted = 10;
    for _ in 0..6 {
        start_of_next_second().await;
        let s = spread(&[&kg], &keys, "/a", 10).await;
        admitted += count(&s, 200);
    }
    assert_eq!(admitted, 30, "the plan's 30 per minute, across five keys");
    let r = kg.get_key("/a", &keys[4]).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["x-ratelimit-limit"], "30");
    // A key on a per-key tier keeps its own window.
    let (_, own) = kg.create_key(&["--account", "acct_team", "--tier", "perkey"]);
    let r = client()
        .get(kg.url("/a"))
        .header("X-API-Key", &own)
        .header("X-Auth-Account", "acct_other")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = json(r).await;
    let h = &body["headers"];
    assert_eq!(h["x-auth-account"][0], "acct_team");
    assert_eq!(
        h["x-auth-account"].as_array().unwrap().len(),
        1,
        "the client's copy removed"
    );
}

/// Revoke-and-recreate gets a customer nothing: the account's windows and balance
/// outlive every key, and `max_keys` still holds.
#[tokio::test]
async fn key_churn_gets_nothing_beyond_the_plan() {
    let up = start_upstream().await;
    let kg = Keygate::start(
        up,
        &with_jwt(
            "tiers:\n  free: { per_minute: 1000, per_month: 3, max_keys: 2, pool: account }\n  \
             metered: { per_minute: 1000, max_keys: 2, pool: account, credits: { refill: 5, every: month } }\n\
             default_tier: free\nroutes:\n  - { path: /paid, cost: 1 }\n",
        ),
    );
    kg.create_user("churn@example.com", "churn-password", false);
    let token = kg.login("churn@example.com", "churn-password").await;
    let create = |name: &'static str| {
        let (kg, token) = (&kg, token.clone());
        async move {
            kg.api(
                Method::POST,
                "/keys",
                Auth::Bearer(&token),
                Some(json!({ "name": name })),
            )
            .await
        }
    };
    let mut served = 0;
    for round in 0..4 {
        let (status, key) = create("round").await;
        assert_eq!(status, 201, "{key}");
        for _ in 0..3 {
            if kg
                .get_key("/a", key["key"].as_str().unwrap())
                .await
                .status()
                == 200
            {
                served += 1;
            }
        }
        let (status, _) = kg
            .api(
                Method::DELETE,
                &format!("/keys/{}", key["id"].as_str().unwrap()),
                Auth::Bearer(&token),
                None,
            )
            .await;
        assert_eq!(status, 200, "round {round}");
    }
    assert_eq!(served, 3, "per_month: 3, however many keys come and go");
    // Two active keys at most; a revoked one frees its place, nothing more.
    let (a, _) = create("a").await;
    let (b, _) = create("b").await;
    let (status, third) = create("c").await;
    assert_eq!((a, b, status), (201, 201, 409), "{third}");

    // Credits: the balance is the account's, and churn does not refill it.
    let admin = kg.create_key(&["--scopes", "admin"]).1;
    let (_, account) = kg
        .api(Method::GET, "/account", Auth::Bearer(&token), None)
        .await;
    let account_id = account["id"].as_str().unwrap().to_string();
    let (status, moved) = kg
        .api(
            Method::PUT,
            &format!("/accounts/{account_id}"),
            Auth::Key(&admin),
            Some(json!({ "plan": "metered" })),
        )
        .await;
    assert_eq!(status, 200, "{moved}");
    let (status, _) = kg
        .api(
            Method::POST,
            &format!("/accounts/{account_id}/credits"),
            Auth::Key(&admin),
            Some(json!({ "set": 5 })),
        )
        .await;
    assert_eq!(status, 200);
    let mut paid = 0;
    for _ in 0..4 {
        let keys: Vec<Value> = kg
            .api(Method::GET, "/keys", Auth::Bearer(&token), None)
            .await
            .1["api_keys"]
            .as_array()
            .unwrap()
            .clone();
        for k in keys.iter().filter(|k| k["status"] == "active") {
            kg.api(
                Method::DELETE,
                &format!("/keys/{}", k["id"].as_str().unwrap()),
                Auth::Bearer(&token),
                None,
            )
            .await;
        }
        let (status, key) = create("metered").await;
        assert_eq!(status, 201, "{key}");
        assert_eq!(
            key["tier"], "metered",
            "a user's keys get the account's plan"
        );
        for _ in 0..3 {
            if kg
                .get_key("/paid", key["key"].as_str().unwrap())
                .await
                .status()
                == 200
            {
                paid += 1;
            }
        }
    }
    assert_eq!(paid, 5, "refill: 5 a month, however many keys come and go");
}

/// A user can read their own account and nothing else, and can change none of
/// it: not another account, not their plan, credits or suspension.
#[tokio::test]
async fn a_user_sees_only_their_account_and_changes_nothing_of_it() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, &with_jwt(PLANS));
    kg.create_user("ann@example.com", "ann-password", false);
    kg.create_user("bob@example.com", "bob-password", false);
    let ann = kg.login("ann@example.com", "ann-password").await;
    let bob = kg.login("bob@example.com", "bob-password").await;
    let (status, mine) = kg
        .api(Method::GET, "/account", Auth::Bearer(&ann), None)
        .await;
    assert_eq!(status, 200, "{mine}");
    assert_eq!(mine["plan"], "free");
    let ann_account = mine["id"].as_str().unwrap().to_string();
    let (_, theirs) = kg
        .api(Method::GET, "/account", Auth::Bearer(&bob), None)
        .await;
    let bob_account = theirs["id"].as_str().unwrap().to_string();
    assert_ne!(ann_account, bob_account);
    let path = format!("/accounts/{bob_account}");
    let (status, _) = kg.api(Method::GET, &path, Auth::Bearer(&ann), None).await;
    assert_eq!(status, 404, "another's account is not there for her");
    let own = format!("/accounts/{ann_account}");
    let (status, _) = kg.api(Method::GET, &own, Auth::Bearer(&ann), None).await;
    assert_eq!(status, 200);
    for (method, path, body) in [
        (Method::PUT, own.clone(), json!({ "plan": "pro" })),
        (Method::PUT, own.clone(), json!({ "status": "active" })),
        (
            Method::PUT,
            own.clone(),
            json!({ "overrides": { "per_minute": 100000 } }),
        ),
        (
            Method::POST,
            format!("{own}/credits"),
            json!({ "add": 1000 }),
        ),
        (Method::PUT, path.clone(), json!({ "status": "suspended" })),
        (Method::GET, "/accounts".to_string(), json!({})),
    ] {
        let (status, body) = kg
            .api(method.clone(), &path, Auth::Bearer(&ann), Some(body))
            .await;
        assert_eq!(status, 403, "{method} {path}: {body}");
    }
    // Her keys join her account: naming another, or a plan of her choosing, is refused.
    let (status, body) = kg
        .api(
            Method::POST,
            "/keys",
            Auth::Bearer(&ann),
            Some(json!({ "name": "x", "account": bob_account })),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["details"]["account"]
            .as_str()
            .is_some_and(|m| m.contains("your own account")),
        "{body}"
    );
    // An admin's key joins the account named, through the API as through the CLI.
    let admin = kg
        .create_key(&["--scopes", "admin", "--account", "acct_ops"])
        .1;
    let (status, made) = kg
        .api(
            Method::POST,
            "/keys",
            Auth::Key(&admin),
            Some(json!({ "name": "for bob", "account": bob_account })),
        )
        .await;
    assert_eq!(
        (status, &made["account"]),
        (201, &json!(bob_account)),
        "{made}"
    );
    // An admin cannot suspend the account of the key they present.
    let (status, body) = kg
        .api(
            Method::PUT,
            "/accounts/acct_ops",
            Auth::Key(&admin),
            Some(json!({ "status": "suspended" })),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = kg
        .api(
            Method::POST,
            "/keys",
            Auth::Bearer(&ann),
            Some(json!({ "name": "x", "tier": "pro" })),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, key) = kg
        .api(
            Method::POST,
            "/keys",
            Auth::Bearer(&ann),
            Some(json!({ "name": "x", "tier": "free" })),
        )
        .await;
    assert_eq!(status, 201, "naming her plan is allowed: {key}");
    assert_eq!(key["account"], ann_account.as_str());
    // Her key reads its account; it cannot suspend or resume it either.
    let secret = key["key"].as_str().unwrap();
    let (status, via_key) = kg
        .api(Method::GET, "/account", Auth::Key(secret), None)
        .await;
    assert_eq!((status, &via_key["id"]), (200, &json!(ann_account)));
    let (status, _) = kg
        .api(
            Method::PUT,
            &own,
            Auth::Key(&admin),
            Some(json!({ "status": "suspended" })),
        )
        .await;
    assert_eq!(status, 200);
    let r = kg.get_key("/a", secret).await;
    expect_error(r, 403, "account_suspended").await;
    let (status, _) = kg
        .api(
            Method::PUT,
            &own,
            Auth::Key(secret),
            Some(json!({ "status": "active" })),
        )
        .await;
    assert_ne!(
        status, 200,
        "a suspended account cannot lift its own suspension"
    );
    // Bad input is a clear 422, and changes nothing.
    for body in [
        json!({ "plan": "platinum" }),
        json!({ "status": "gone" }),
        json!({ "overrides": { "per_minute": 0 } }),
        json!({ "overrides": { "per_year": 5 } }),
        json!({ "metadata": [1, 2] }),
        json!({ "metadata": { "big": "x".repeat(5000) } }),
        json!({ "colour": "red" }),
    ] {
        let (status, answer) = kg
            .api(Method::PUT, &own, Auth::Key(&admin), Some(body.clone()))
            .await;
        assert_eq!(status, 422, "{body}: {answer}");
    }
    let (status, answer) = kg
        .api(
            Method::POST,
            &format!("{own}/credits"),
            Auth::Key(&admin),
            Some(json!({ "add": 1, "set": 2 })),
        )
        .await;
    assert_eq!(status, 422, "{answer}");
    let (_, still) = kg.api(Method::GET, &own, Auth::Key(&admin), None).await;
    assert_eq!(
        (&still["plan"], &still["status"]),
        (&json!("free"), &json!("suspended"))
    );
}

/// AltTextAI's credits: one balance per account, whichever key asks, answered by
/// `credits` and `verify` as AltTextAI documents them.
#[tokio::test]
async fn credits_and_verify_answer_the_account_balance() {
    let up = start_upstream().await;
    let kg = Keygate::start(
        up,
        "tiers:\n  basic: { per_minute: 1000, pool: account, credits: { refill: 100, every: month } }\n\
         default_tier: basic\nroutes:\n  - { path: /api/v1/process, cost: 1 }\n",
    );
    let keys = keys_of(&kg, "acct_alt", "basic", 2);
    for key in &keys {
        assert_eq!(kg.get_key("/api/v1/process", key).await.status(), 200);
    }
    let (status, credits) = kg
        .api(Method::GET, "/credits", Auth::Key(&keys[0]), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        credits,
        json!({ "credits": 98, "key_id": credits["key_id"], "user_id": "acct_alt", "account_id": "acct_alt" })
    );
    assert!(credits["key_id"]
        .as_str()
        .is_some_and(|id| id.starts_with("key_")));
    let (status, verify) = kg
        .api(Method::POST, "/keys/verify", Auth::Key(&keys[1]), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            &verify["valid"],
            &verify["credits_remaining"],
            &verify["user_id"]
        ),
        (&json!(true), &json!(98), &json!("acct_alt"))
    );
    // An admin's increment is an increment.
    let admin = kg
        .create_key(&[
            "--scopes",
            "admin",
            "--account",
            "acct_ops",
            "--tier",
            "basic",
        ])
        .1;
    let (status, account) = kg
        .api(
            Method::POST,
            "/accounts/acct_alt/credits",
            Auth::Key(&admin),
            Some(json!({ "add": 10 })),
        )
        .await;
    assert_eq!(
        (status, &account["credits"]),
        (200, &json!(108)),
        "{account}"
    );
    let out = kg.cli(&["accounts", "add-credits", "acct_alt", "2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, credits) = kg
        .api(Method::GET, "/credits", Auth::Key(&keys[1]), None)
        .await;
    assert_eq!(credits["credits"], 110);
}

/// Two replicas sharing Redis and PostgreSQL: five keys of one account get the
/// plan's window once in total, and its balance exactly, under concurrency; a plan
/// change or a suspension made on one replica holds on the other within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_share_an_account_and_follow_its_changes_within_a_second() {
    let Some(Backends { db, redis }) = Backends::start().await else {
        return;
    };
    let up = format!("http://{}", start_upstream().await);
    let store = format!("store: {{ kind: postgres, url: \"{}\" }}\n", db.url);
    let policy = format!(
        "tiers:\n  free: {{ per_minute: 40, max_keys: 5, pool: account, credits: {{ refill: 25, every: month }} }}\n  \
         pro: {{ per_minute: 500, max_keys: 25, pool: account }}\n\
         default_tier: free\nroutes:\n  - {{ path: /paid, cost: 1 }}\n\
         rate_limit: {{ backend: redis, redis_url: \"{}\", ip: {{ per_minute: 0 }} }}\n",
        redis.url()
    );
    let a = Keygate::start_with_store(&up, &store, &policy);
    let b = Keygate::start_with_store(&up, &store, &policy);
    early_in_a_minute().await;
    let keys = keys_of(&a, "acct_two", "free", 5);
    // Credits: 25 in the pooled balance; 60 concurrent paid requests on both.
    let paid = spread(&[&a, &b], &keys, "/paid", 36).await;
    assert_eq!(count(&paid, 200), 25, "{paid:?}");
    assert_eq!(count(&paid, 402), 11, "{paid:?}");
    // Windows: 40 a minute in all; 36 were counted already.
    let more = spread(&[&a, &b], &keys, "/a", 20).await;
    assert_eq!(count(&more, 200), 4, "{more:?}");
    assert_eq!(count(&more, 429), 16, "{more:?}");

    // A plan change on A is in force on B within a second.
    let admin = a
        .create_key(&[
            "--scopes",
            "admin",
            "--account",
            "acct_ops",
            "--tier",
            "pro",
        ])
        .1;
    let at = Instant::now();
    let (status, _) = a
        .api(
            Method::PUT,
            "/accounts/acct_two",
            Auth::Key(&admin),
            Some(json!({ "plan": "pro" })),
        )
        .await;
    assert_eq!(status, 200);
    loop {
        let r = b.get_key("/a", &keys[0]).await;
        if r.status() == 200 && r.headers()["x-ratelimit-limit"] == "500" {
            break;
        }
        assert!(
            at.elapsed() < Duration::from_secs(1),
            "B still answers {} with limit {:?}",
            r.status(),
            r.headers().get("x-ratelimit-limit")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Suspension by the CLI refuses every key on both, within a second.
    let at = Instant::now();
    let out = a.cli(&["accounts", "suspend", "acct_two"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    loop {
        let s = spread(&[&a, &b], &keys, "/a", 10).await;
        if count(&s, 403) == 10 {
            break;
        }
        assert!(at.elapsed() < Duration::from_secs(1), "{s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = b.get_key("/a", &keys[3]).await;
    let body = expect_error(r, 403, "account_suspended").await;
    assert_eq!(body["message"], "Account is suspended");
    let out = a.cli(&["accounts", "resume", "acct_two"]);
    assert!(out.status.success());
    let at = Instant::now();
    while b.get_key("/a", &keys[3]).await.status() != 200 {
        assert!(at.elapsed() < Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The admin listing pages with a cursor.
    let (status, page) = a
        .api(Method::GET, "/accounts?limit=1", Auth::Key(&admin), None)
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["accounts"].as_array().unwrap().len(), 1);
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    let (_, rest) = a
        .api(
            Method::GET,
            &format!("/accounts?limit=10&cursor={cursor}"),
            Auth::Key(&admin),
            None,
        )
        .await;
    assert_eq!(rest["accounts"].as_array().unwrap().len(), 1);
    assert!(rest["next_cursor"].is_null());
    let (_, pro) = a
        .api(
            Method::GET,
            "/accounts?plan=pro&status=active",
            Auth::Key(&admin),
            None,
        )
        .await;
    let ids: Vec<&str> = pro["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["acct_ops", "acct_two"]);
    drop(db);
}

/// AlfaOne's shipped tiers: an organization's keys share its tier's window.
#[tokio::test]
async fn an_organizations_keys_share_its_tier() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, &crate::limits_v2::example_policy("format-alfaone.yaml"));
    early_in_a_minute().await;
    let keys: Vec<String> = (0..3)
        .map(|_| {
            kg.create_key(&[
                "--account",
                "org_acme",
                "--org",
                "org_acme",
                "--tier",
                "standard",
            ])
            .1
        })
        .collect();
    let (_, other) = kg.create_key(&["--account", "org_beta", "--tier", "standard"]);
    let s = spread(&[&kg], &keys, "/a", 120).await;
    assert_eq!(
        count(&s, 200),
        100,
        "Standard: 100 requests/minute per organization"
    );
    assert_eq!(
        kg.get_key("/a", &other).await.status(),
        200,
        "another organization"
    );
    let admin = kg
        .create_key(&[
            "--scopes",
            "admin",
            "--account",
            "ops",
            "--tier",
            "enterprise",
        ])
        .1;
    let (status, found) = kg
        .api(
            Method::GET,
            "/accounts?org=org_acme",
            Auth::Key(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{found}");
    let ids: Vec<&str> = found["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["org_acme"], "the organisation's account");
}

/// An existing store migrates: every owner becomes an account, and keys keep
/// working (on PostgreSQL, as replicas upgrade).
#[tokio::test]
async fn an_existing_store_gets_accounts_for_its_owners() {
    let up = start_upstream().await;
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    let store = format!("store: {{ kind: postgres, url: \"{}\" }}\n", db.url);
    let mut kg = Keygate::start_with_store(&format!("http://{up}"), &store, PLANS);
    let (_, k1) = kg.create_key(&["--owner", "usr_old", "--tier", "perkey"]);
    let (_, k2) = kg.create_key(&["--owner", "usr_old", "--tier", "perkey"]);
    assert!(kg.terminate().success());
    // The store as it was before accounts.
    db.execute(&format!(
        "{} DELETE FROM keygate_migrations WHERE version >= 7;",
        crate::common::services::PG_UNDO_ACCOUNTS
    ))
    .await;
    let kg = kg.restart();
    for k in [&k1, &k2] {
        assert_eq!(kg.get_key("/a", k).await.status(), 200);
    }
    let out = kg.cli(&["accounts", "list"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    let accounts: Vec<Value> = listed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(accounts.len(), 1, "{listed}");
    assert_eq!(accounts[0]["owner"], "usr_old");
    assert_eq!(accounts[0]["plan"], "perkey");
    let shown = kg.cli(&["accounts", "show", accounts[0]["id"].as_str().unwrap()]);
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["keys"].as_array().unwrap().len(), 2);
}

/// Imported keys name their account (made on first use) or join their owner's;
/// either way they share its windows at once.
#[tokio::test]
async fn imported_keys_join_their_accounts() {
    let up = start_upstream().await;
    let kg = Keygate::start(
        up,
        &format!("{PLANS}api_keys:\n  accept_prefixes: [\"imp_\"]\n"),
    );
    early_in_a_minute().await;
    let lines =
        "{\"key\": \"imp_customer_key_1\", \"account\": \"acct_imp\", \"tier\": \"free\"}\n\
                 {\"key\": \"imp_customer_key_2\", \"account\": \"acct_imp\", \"tier\": \"free\"}\n\
                 {\"key\": \"imp_customer_key_3\", \"owner\": \"usr_x\", \"tier\": \"free\"}\n\
                 {\"key\": \"imp_customer_key_4\", \"account\": \"bad id!\"}\n";
    let out = kg.cli_with_stdin(&["keys", "import", "-"], lines.as_bytes());
    assert_eq!(
        out.status.code(),
        Some(2),
        "a bad account id refuses the import"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("account"));
    let good: String = lines.lines().take(3).map(|l| format!("{l}\n")).collect();
    let out = kg.cli_with_stdin(&["keys", "import", "-"], good.as_bytes());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = kg.cli(&["accounts", "show", "acct_imp"]);
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["keys"].as_array().unwrap().len(), 2, "{shown}");
    assert_eq!(shown["plan"], "free");
    let listed = String::from_utf8_lossy(&kg.cli(&["accounts", "list"]).stdout).into_owned();
    assert!(
        listed.lines().any(|l| l.contains("\"owner\":\"usr_x\"")),
        "the owner's account: {listed}"
    );
    let keys: Vec<String> = (1..=2).map(|i| format!("imp_customer_key_{i}")).collect();
    start_of_next_second().await;
    let s = spread(&[&kg], &keys, "/a", 14).await;
    assert_eq!(count(&s, 200), 10, "one burst limit for the account: {s:?}");
}

/// `GET /v1/keys` pages with a cursor, for an admin (every key) and for a user
/// (their own only: another's cursor gives them nothing).
#[tokio::test]
async fn key_listings_come_in_pages() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, &with_jwt(PLANS));
    kg.create_user("pat@example.com", "pat-password", false);
    let pat = kg.login("pat@example.com", "pat-password").await;
    let admin = kg.create_key(&["--scopes", "admin", "--tier", "pro"]).1;
    for i in 0..4 {
        let (status, _) = kg
            .api(
                Method::POST,
                "/keys",
                Auth::Bearer(&pat),
                Some(json!({ "name": format!("k{i}") })),
            )
            .await;
        assert_eq!(status, 201);
    }
    let (_, all) = kg.api(Method::GET, "/keys", Auth::Key(&admin), None).await;
    assert_eq!(all["total"], 5);
    assert!(all["next_cursor"].is_null());
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let path = format!("/keys?limit=2{cursor}");
        let (status, page) = kg.api(Method::GET, &path, Auth::Bearer(&pat), None).await;
        assert_eq!(status, 200, "{page}");
        for k in page["api_keys"].as_array().unwrap() {
            seen.push(k["name"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    // Keys made within one second come in id order: the pages follow the listing.
    let (_, hers) = kg.api(Method::GET, "/keys", Auth::Bearer(&pat), None).await;
    let listed: Vec<&str> = hers["api_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(seen, listed, "the pages are the listing, her keys only");
    assert_eq!(seen.len(), 4);
    let admin_id = all["api_keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "test")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, foreign) = kg
        .api(
            Method::GET,
            &format!("/keys?cursor={admin_id}"),
            Auth::Bearer(&pat),
            None,
        )
        .await;
    assert_eq!(foreign["api_keys"], json!([]));
    let (status, _) = kg
        .api(Method::GET, "/keys?limit=0", Auth::Key(&admin), None)
        .await;
    assert_eq!(status, 422);
}

/// `keygate accounts export` writes import lines: imported into an empty store,
/// the same keys work, in the same accounts, on the same plans, with the same
/// balances; an account without keys comes along. Lines that disagree about an
/// account, or give a pooled key credits of its own, refuse the whole import.
#[tokio::test]
async fn an_export_imports_into_an_empty_store_as_it_was() {
    let up = start_upstream().await;
    let policy = "tiers:\n  free: { per_minute: 1000, pool: account, credits: { refill: 20, every: month } }\n  \
                  pro: { per_minute: 1000, pool: account }\n  perkey: { per_minute: 1000 }\n\
                  default_tier: free\nroutes:\n  - { path: /paid, cost: 1 }\n";
    let kg = Keygate::start(up, policy);
    let a = keys_of(&kg, "acct_one", "free", 2);
    let (_, own) = kg.create_key(&["--account", "acct_one", "--tier", "perkey"]);
    let b = keys_of(&kg, "acct_two", "pro", 1);
    for k in &a {
        assert_eq!(kg.get_key("/paid", k).await.status(), 200);
    }
    let out = kg.cli(&["accounts", "add-credits", "acct_two", "7"]);
    assert!(out.status.success());
    kg.api(
        Method::PUT,
        "/accounts/acct_one",
        Auth::Key(
            &kg.create_key(&["--scopes", "admin", "--account", "acct_ops"])
                .1,
        ),
        Some(json!({ "status": "suspended" })),
    )
    .await;
    let export = kg.dir.path().join("export.jsonl");
    let out = kg.cli(&["accounts", "export", export.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&export).unwrap();
    assert!(!text.contains(&a[0]), "no secret in an export");

    let fresh = Keygate::start(up, policy);
    let out = fresh.cli(&["keys", "import", export.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let show = |id: &str| -> Value {
        serde_json::from_slice(&fresh.cli(&["accounts", "show", id]).stdout).unwrap()
    };
    let one = show("acct_one");
    assert_eq!(
        (&one["plan"], &one["credits"], &one["status"]),
        (&json!("free"), &json!(18), &json!("suspended")),
        "{one}"
    );
    assert_eq!(one["keys"].as_array().unwrap().len(), 3);
    let two = show("acct_two");
    assert_eq!((&two["plan"], &two["credits"]), (&json!("pro"), &json!(7)));
    assert_eq!(show("acct_ops")["plan"], "free");
    for k in a.iter().chain([&own]) {
        expect_error(fresh.get_key("/a", k).await, 403, "account_suspended").await;
    }
    assert_eq!(fresh.get_key("/a", &b[0]).await.status(), 200);
    let out = fresh.cli(&["accounts", "resume", "acct_one"]);
    assert!(out.status.success());
    // Another process's change reaches the server through the store's change log.
    let at = Instant::now();
    while fresh.get_key("/a", &a[0]).await.status() != 200 {
        assert!(at.elapsed() < Duration::from_secs(2), "resume never seen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for k in &a {
        assert_eq!(fresh.get_key("/paid", k).await.status(), 200);
    }
    // The balance carried over is the one spent from (not refilled on import).
    let (_, credits) = fresh
        .api(Method::GET, "/credits", Auth::Key(&a[1]), None)
        .await;
    assert_eq!(credits["credits"], 16);

    // Disagreeing lines, and a pooled key's own credits: nothing imported.
    let bad = "{\"account\": \"acct_x\", \"plan\": \"free\"}\n\
               {\"account\": \"acct_x\", \"plan\": \"pro\"}\n\
               {\"hash\": \"sha256:0000000000000000000000000000000000000000000000000000000000000000\", \"tier\": \"free\", \"credits\": 5}\n";
    let out = fresh.cli_with_stdin(&["keys", "import", "-"], bad.as_bytes());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 2: plan") && err.contains("line 3: credits"),
        "{err}"
    );
    assert!(fresh.cli(&["accounts", "show", "acct_x"]).stdout.is_empty());
}

/// A key may carry its own cap below its account's: the capped key stops at its
/// cap, the account's other keys go on to the plan's limit, a refusal by the cap
/// costs the account nothing; only an admin sets or lifts it.
#[tokio::test]
async fn a_key_capped_below_its_account_stops_at_its_cap() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, &with_jwt(PLANS));
    let admin = kg
        .create_key(&["--scopes", "admin", "--account", "acct_ops"])
        .1;
    early_in_a_minute().await;
    let (status, capped) = kg
        .api(
            Method::POST,
            "/keys",
            Auth::Key(&admin),
            Some(json!({ "name": "ci", "account": "acct_cap", "cap": { "per_minute": 5 } })),
        )
        .await;
    assert_eq!(status, 201, "{capped}");
    assert_eq!(capped["cap"], json!({ "per_minute": 5 }));
    let capped_key = capped["key"].as_str().unwrap().to_string();
    let other = keys_of(&kg, "acct_cap", "free", 1).remove(0);
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(kg.get_key("/a", &capped_key).await.status().as_u16());
        tokio::time::sleep(Duration::from_millis(110)).await;
    }
    assert_eq!(count(&statuses, 200), 5, "{statuses:?}");
    let r = kg.get_key("/a", &capped_key).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["x-ratelimit-limit"], "5", "the binding window");
    // The account counted 5: 25 more for its other key, then the plan's 30 is up.
    let mut admitted = 0;
    for _ in 0..4 {
        start_of_next_second().await;
        admitted += count(
            &spread(&[&kg], std::slice::from_ref(&other), "/a", 10).await,
            200,
        );
    }
    assert_eq!(
        admitted, 25,
        "30 a minute for the account, the capped key's 5 in it"
    );
    // A user cannot cap or uncap, even their own key.
    kg.create_user("cap@example.com", "long enough pw", false);
    let token = kg.login("cap@example.com", "long enough pw").await;
    let (status, body) = kg
        .api(
            Method::POST,
            "/keys",
            Auth::Bearer(&token),
            Some(json!({ "name": "x", "cap": { "per_minute": 1 } })),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = kg
        .api(
            Method::PUT,
            &format!("/keys/{}", capped["id"].as_str().unwrap()),
            Auth::Key(&admin),
            Some(json!({ "cap": { "per_minute": 0 } })),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = kg
        .api(
            Method::PUT,
            &format!("/keys/{}", capped["id"].as_str().unwrap()),
            Auth::Key(&admin),
            Some(json!({ "cap": null })),
        )
        .await;
    assert_eq!((status, &body["cap"]), (200, &Value::Null), "{body}");
    let r = kg.get_key("/a", &capped_key).await;
    assert_eq!(
        r.status(),
        429,
        "uncapped, it meets the account's used-up minute"
    );
    assert_eq!(r.headers()["x-ratelimit-limit"], "30");
}
