//! The audit log (docs/operations.md, Audit log), black-box: every change to a key
//! through the management API, the portal and the CLI is in `GET /v1/audit` and
//! `keygate audit list` with who made it, from where, under which request id, and
//! the names of the fields it set — never a secret; admins only; in pages.

use crate::common::portal_visitor::Visitor;
use crate::common::{client, start_upstream, Keygate};
use serde_json::{json, Value};

const POLICY: &str = r#"
tiers:
  free: { per_minute: 100, max_keys: 5 }
  pro: { per_minute: 1000 }
default_tier: free
management: { registration: open, user_scopes: [search] }
portal: { enabled: true }
"#;

/// Sends a management call as `key`; answers the status, the body and the
/// request id keygate gave it.
async fn call(
    kg: &Keygate,
    method: reqwest::Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (u16, Value, String) {
    let mut req = client()
        .request(method, kg.url(path))
        .header("X-API-Key", key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, body, id)
}

#[tokio::test]
async fn every_change_to_a_key_is_in_the_log_with_who_where_and_which_fields() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, POLICY);
    let (admin_id, admin) = kg.create_key(&["--scopes", "admin", "--owner", "ops"]);
    use reqwest::Method;

    let (status, created, create_req) = call(
        &kg,
        Method::POST,
        "/v1/keys",
        &admin,
        Some(json!({"name": "app", "tier": "free", "scopes": ["search"], "credits": 10})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let (id, secret) = (
        created["id"].as_str().unwrap().to_string(),
        created["key"].as_str().unwrap().to_string(),
    );
    let (status, _, update_req) = call(
        &kg,
        Method::PUT,
        &format!("/v1/keys/{id}"),
        &admin,
        Some(json!({"tier": "pro", "name": "app-2"})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, regenerated, _) = call(
        &kg,
        Method::POST,
        &format!("/v1/keys/{id}/regenerate"),
        &admin,
        Some(json!({"grace_period": "1h"})),
    )
    .await;
    assert_eq!(status, 200);
    let new_secret = regenerated["key"].as_str().unwrap().to_string();
    let (status, _, revoke_req) =
        call(&kg, Method::DELETE, &format!("/v1/keys/{id}"), &admin, None).await;
    assert_eq!(status, 200);
    // A change refused changes nothing and is not logged.
    let (status, _, _) = call(
        &kg,
        Method::DELETE,
        "/v1/keys/key_nosuchkey000000000",
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 404);
    // The CLI and the portal.
    let (cli_id, _) = kg.create_key(&[]);
    let mut ann = Visitor::new(&kg);
    ann.sign_up("ann@example.com").await;
    let (portal_id, _) = ann.create_key("from the portal").await;

    let (status, log, _) = call(&kg, Method::GET, "/v1/audit", &admin, None).await;
    assert_eq!(status, 200, "{log}");
    let entries = log["entries"].as_array().unwrap();
    let brief: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["target"].as_str().unwrap(),
                e["actor"].as_str().unwrap(),
            )
        })
        .collect();
    let ann_id = entries[0]["actor"].as_str().unwrap();
    assert!(ann_id.starts_with("usr_"), "{log}");
    assert_eq!(
        brief,
        [
            ("key.created", portal_id.as_str(), ann_id),
            ("user.created", ann_id, ann_id),
            ("key.created", cli_id.as_str(), "cli"),
            ("key.revoked", id.as_str(), admin_id.as_str()),
            ("key.regenerated", id.as_str(), admin_id.as_str()),
            ("key.updated", id.as_str(), admin_id.as_str()),
            ("key.created", id.as_str(), admin_id.as_str()),
            ("key.created", admin_id.as_str(), "cli"),
        ],
        "newest first, every door, nothing refused: {log}"
    );
    let by_action = |action: &str, target: &str| {
        entries
            .iter()
            .find(|e| e["action"] == action && e["target"] == target)
            .unwrap()
            .clone()
    };
    let create = by_action("key.created", &id);
    assert_eq!(create["client_ip"], "127.0.0.1");
    assert_eq!(create["request_id"], create_req.as_str());
    assert_eq!(
        create["fields"],
        json!([
            "name",
            "tier",
            "scopes",
            "environment",
            "owner",
            "account",
            "credits"
        ])
    );
    let update = by_action("key.updated", &id);
    assert_eq!(update["request_id"], update_req.as_str());
    assert_eq!(update["fields"], json!(["name", "tier"]));
    assert_eq!(
        by_action("key.regenerated", &id)["fields"],
        json!(["key", "grace_period"])
    );
    assert_eq!(
        by_action("key.revoked", &id)["request_id"],
        revoke_req.as_str()
    );
    assert!(by_action("key.created", &cli_id)["client_ip"].is_null());
    let text = log.to_string();
    for secret in [&secret, &new_secret, &admin] {
        assert!(!text.contains(secret.as_str()), "a secret in the log");
    }

    // In pages.
    let (_, first, _) = call(&kg, Method::GET, "/v1/audit?limit=3", &admin, None).await;
    assert_eq!(first["entries"].as_array().unwrap().len(), 3);
    let before = first["next_before"].as_i64().unwrap();
    assert_eq!(before, entries[2]["id"].as_i64().unwrap());
    let (_, rest, _) = call(
        &kg,
        Method::GET,
        &format!("/v1/audit?before={before}&limit=10"),
        &admin,
        None,
    )
    .await;
    assert_eq!(rest["entries"].as_array().unwrap().len(), 5);
    assert!(rest["next_before"].is_null());
    let (status, bad, _) = call(&kg, Method::GET, "/v1/audit?before=x", &admin, None).await;
    assert_eq!(
        (status, bad["error"].as_str()),
        (422, Some("validation_error"))
    );

    // Admins only: a managing key and a user get 403 and see nothing.
    let (_, manager) = kg.create_key(&["--scopes", "keys:manage", "--owner", "usr_m"]);
    let (status, body, _) = call(&kg, Method::GET, "/v1/audit", &manager, None).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.get("entries").is_none());

    // The CLI reads the same log.
    let out = kg.cli(&["audit", "list", "--json", "--limit", "2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["action"], "key.created");
    assert_eq!(lines[1]["target"], portal_id.as_str());
    let table = kg.cli(&["audit", "list"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.starts_with("ID"), "{table}");
    assert!(
        table.contains("key.revoked") && table.contains(&id),
        "{table}"
    );
}

#[tokio::test]
async fn account_changes_are_logged_from_the_api_and_the_portal() {
    let up = start_upstream().await;
    let kg = Keygate::start(
        up,
        r#"
tiers:
  free: { per_minute: 100, pool: account, credits: { refill: 50, every: month } }
  pro: { per_minute: 1000, pool: account, credits: { refill: 500, every: month } }
default_tier: free
management: { registration: open, user_scopes: [search] }
portal: { enabled: true }
"#,
    );
    use reqwest::Method;
    let (admin_id, admin) = kg.create_key(&["--scopes", "admin", "--owner", "ops"]);
    let (key_id, _) = kg.create_key(&["--account", "acct_cust"]);
    let (status, body, plan_req) = call(
        &kg,
        Method::PUT,
        "/v1/accounts/acct_cust",
        &admin,
        Some(json!({"plan": "pro", "metadata": {"crm": "42"}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, credits_req) = call(
        &kg,
        Method::POST,
        "/v1/accounts/acct_cust/credits",
        &admin,
        Some(json!({"add": 25})),
    )
    .await;
    assert_eq!(status, 200);
    // Refused: no entry.
    let (status, _, _) = call(
        &kg,
        Method::PUT,
        "/v1/accounts/acct_nobody",
        &admin,
        Some(json!({"plan": "pro"})),
    )
    .await;
    assert_eq!(status, 404);
    // A customer cannot change their own plan: refused, not logged.
    let (_, customer) = kg.create_key(&["--account", "acct_cust", "--scopes", "keys:manage"]);
    let (status, _, _) = call(
        &kg,
        Method::PUT,
        "/v1/accounts/acct_cust",
        &customer,
        Some(json!({"plan": "free"})),
    )
    .await;
    assert_eq!(status, 403);
    // An admin suspends it in the portal.
    kg.create_user("root@example.com", "admin password", true);
    let mut root = Visitor::new(&kg);
    assert_eq!(
        root.sign_in("root@example.com", "admin password")
            .await
            .status,
        303
    );
    let page = root.get("/accounts/acct_cust").await;
    assert_eq!(page.status, 200);
    let token = crate::common::portal_visitor::form_token(&page.body).unwrap();
    let suspended = root
        .post_raw(
            "/accounts/acct_cust/status",
            &[("status", "suspended"), ("csrf", &token)],
        )
        .await;
    assert_eq!(suspended.status, 303, "{}", suspended.body);

    let (_, log, _) = call(&kg, Method::GET, "/v1/audit", &admin, None).await;
    let entries = log["entries"].as_array().unwrap();
    let accounts: Vec<(&str, &Value, &str)> = entries
        .iter()
        .filter(|e| e["target"] == "acct_cust")
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                &e["fields"],
                e["actor"].as_str().unwrap(),
            )
        })
        .collect();
    let root_id = accounts[0].2;
    assert!(root_id.starts_with("usr_"), "{log}");
    assert_eq!(
        accounts,
        [
            ("account.updated", &json!(["status"]), root_id),
            (
                "account.credits_changed",
                &json!(["credits"]),
                admin_id.as_str()
            ),
            (
                "account.updated",
                &json!(["plan", "metadata"]),
                admin_id.as_str()
            ),
        ],
        "{log}"
    );
    let of_request = |r: &str| entries.iter().any(|e| e["request_id"] == r);
    assert!(of_request(&plan_req) && of_request(&credits_req));
    assert!(entries
        .iter()
        .any(|e| e["action"] == "key.created" && e["target"] == key_id.as_str()));
}

#[tokio::test]
async fn user_changes_are_logged_by_whoever_made_them() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, POLICY);
    use reqwest::Method;
    let (admin_id, admin) = kg.create_key(&["--scopes", "admin", "--owner", "ops"]);
    // Sign-up through the API: the new user's own doing.
    let resp = client()
        .post(kg.url("/v1/auth/register"))
        .json(&json!({"email": "fay@example.com", "password": "long enough pw"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let fay: Value = resp.json().await.unwrap();
    let fay_id = fay["id"].as_str().unwrap().to_string();
    // Her password, changed in the portal.
    let mut web = Visitor::new(&kg);
    assert_eq!(
        web.sign_in("fay@example.com", "long enough pw")
            .await
            .status,
        303
    );
    web.get("/password").await;
    let changed = web
        .post(
            "/password",
            &[
                ("current_password", "long enough pw"),
                ("password", "another long pw"),
            ],
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    // An admin disables her, issues a reset link, and she sets a password with it.
    let (status, _, disable_req) = call(
        &kg,
        Method::PUT,
        &format!("/v1/users/{fay_id}"),
        &admin,
        Some(json!({"disabled": true})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, link, _) = call(
        &kg,
        Method::POST,
        &format!("/v1/users/{fay_id}/password-reset"),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 200, "{link}");
    let path = link["reset_url"]
        .as_str()
        .unwrap()
        .strip_prefix("/portal")
        .unwrap()
        .to_string();
    let mut holder = Visitor::new(&kg);
    holder.get(&path).await;
    let set = holder.post(&path, &[("password", "a third long pw")]).await;
    assert_eq!(set.status, 303, "{}", set.body);
    // And deletes her; a user that does not exist is refused, and not logged.
    let (status, _, _) = call(&kg, Method::DELETE, "/v1/users/usr_nobody", &admin, None).await;
    assert_eq!(status, 404);
    let (status, _, delete_req) = call(
        &kg,
        Method::DELETE,
        &format!("/v1/users/{fay_id}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 200);
    // A user made at the CLI.
    let (cli_user, _) = kg.create_user("gus@example.com", "long enough pw", false);

    let (_, log, _) = call(&kg, Method::GET, "/v1/audit", &admin, None).await;
    let entries = log["entries"].as_array().unwrap();
    let users: Vec<(&str, &str, &str)> = entries
        .iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("user."))
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["target"].as_str().unwrap(),
                e["actor"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        users,
        [
            ("user.created", cli_user.as_str(), "cli"),
            ("user.deleted", fay_id.as_str(), admin_id.as_str()),
            ("user.password_reset", fay_id.as_str(), fay_id.as_str()),
            ("user.reset_link_issued", fay_id.as_str(), admin_id.as_str()),
            ("user.disabled", fay_id.as_str(), admin_id.as_str()),
            ("user.password_changed", fay_id.as_str(), fay_id.as_str()),
            ("user.created", fay_id.as_str(), fay_id.as_str()),
        ],
        "{log}"
    );
    let of_request = |r: &str| entries.iter().any(|e| e["request_id"] == r);
    assert!(of_request(&disable_req) && of_request(&delete_req));
    // Deleting her suspended her account, in the admin's name too.
    assert!(entries.iter().any(|e| e["action"] == "account.updated"
        && e["actor"] == admin_id.as_str()
        && e["fields"] == json!(["status"])));
    let text = log.to_string();
    for secret in [
        "long enough pw",
        "another long pw",
        "a third long pw",
        "kg_pr_",
    ] {
        assert!(!text.contains(secret), "{secret} in the log");
    }
}

/// With token issuing on (for `/v1/auth/token` and `/v1/auth/refresh`).
const ISSUING: &str = r#"
jwt:
  issue: { alg: HS256, secret: "an-issuing-secret-of-at-least-32-bytes!!", access_ttl: 10m, refresh_ttl: 1d }
"#;

/// The log's entries with `action`, as (target, actor, fields).
fn of_action<'a>(log: &'a Value, action: &str) -> Vec<(&'a str, &'a str, &'a Value)> {
    log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == action)
        .map(|e| {
            (
                e["target"].as_str().unwrap(),
                e["actor"].as_str().unwrap(),
                &e["fields"],
            )
        })
        .collect()
}

#[tokio::test]
async fn failed_sign_ins_and_a_reused_refresh_token_are_logged_without_what_was_typed() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, &format!("{POLICY}{ISSUING}"));
    use reqwest::Method;
    let (_, admin) = kg.create_key(&["--scopes", "admin", "--owner", "ops"]);
    let (hal, _) = kg.create_user("hal@example.com", "hal's password", false);
    let (ivy, _) = kg.create_user("ivy@example.com", "ivy's password", false);
    let token = |email: &str, password: &str| {
        client()
            .post(kg.url("/v1/auth/token"))
            .header("X-Request-Id", "sign-in-attempt")
            .json(&json!({"email": email, "password": password}))
            .send()
    };
    // A wrong password; an unknown email that is someone's password typed in the
    // wrong box; a disabled user with her right password; the portal's form.
    assert_eq!(
        token("hal@example.com", "guess one")
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(token("hal's password", "x").await.unwrap().status(), 401);
    let (status, _, _) = call(
        &kg,
        Method::PUT,
        &format!("/v1/users/{ivy}"),
        &admin,
        Some(json!({"disabled": true})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        token("ivy@example.com", "ivy's password")
            .await
            .unwrap()
            .status(),
        401
    );
    let mut web = Visitor::new(&kg);
    assert_eq!(
        web.sign_in("hal@example.com", "guess two").await.status,
        401
    );
    // A sign-in that works is no event.
    let signed_in = token("hal@example.com", "hal's password").await.unwrap();
    assert_eq!(signed_in.status(), 200);
    let tokens: Value = signed_in.json().await.unwrap();
    let first = tokens["refresh_token"].as_str().unwrap();

    // The refresh token is used, then used again: its whole family is revoked.
    let refresh = |t: &str| {
        client()
            .post(kg.url("/v1/auth/refresh"))
            .json(&json!({"refresh_token": t}))
            .send()
    };
    let rotated: Value = refresh(first).await.unwrap().json().await.unwrap();
    let second = rotated["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(refresh(first).await.unwrap().status(), 401);
    assert_eq!(
        refresh(&second).await.unwrap().status(),
        401,
        "family revoked"
    );

    let (_, log, _) = call(&kg, Method::GET, "/v1/audit", &admin, None).await;
    let failed = of_action(&log, "auth.sign_in_failed");
    assert_eq!(
        failed,
        [
            (hal.as_str(), "anonymous", &json!(["password"])),
            (ivy.as_str(), "anonymous", &json!(["disabled"])),
            ("", "anonymous", &json!(["password"])),
            (hal.as_str(), "anonymous", &json!(["password"])),
        ],
        "newest first: the portal's, the disabled user's, the unknown email's, the API's: {log}"
    );
    let entries = log["entries"].as_array().unwrap();
    assert!(entries.iter().any(|e| e["action"] == "auth.sign_in_failed"
        && e["request_id"] == "sign-in-attempt"
        && e["client_ip"] == "127.0.0.1"));
    assert_eq!(
        of_action(&log, "auth.refresh_reuse"),
        [(hal.as_str(), "anonymous", &json!([]))],
        "{log}"
    );
    // The portal's admin overview shows the newest entries.
    kg.create_user("root@example.com", "root's password", true);
    let mut root = Visitor::new(&kg);
    assert_eq!(
        root.sign_in("root@example.com", "root's password")
            .await
            .status,
        303
    );
    let overview = root.get("/overview").await;
    assert_eq!(overview.status, 200);
    assert!(
        overview.body.contains("Recent changes"),
        "{}",
        overview.body
    );
    for shown in [
        "auth.refresh_reuse",
        "auth.sign_in_failed",
        hal.as_str(),
        "anonymous",
    ] {
        assert!(overview.body.contains(shown), "{shown} not on the overview");
    }
    let text = format!("{log}{}", overview.body);
    for typed in [
        "guess one",
        "guess two",
        "hal's password",
        "ivy's password",
        "hal&#39;s password",
        "ivy&#39;s password",
        first,
    ] {
        assert!(!text.contains(typed), "{typed} in the log");
    }
}

#[tokio::test]
async fn imports_are_logged_once_each_with_how_many_keys_they_wrote() {
    let up = start_upstream().await;
    let kg = Keygate::start(
        up,
        &format!("{POLICY}api_keys: {{ accept_prefixes: [legacy_] }}\n"),
    );
    use reqwest::Method;
    let (admin_id, admin) = kg.create_key(&["--scopes", "admin", "--owner", "ops"]);
    let lines = |prefix: &str, n: usize| -> String {
        (0..n)
            .map(|i| {
                format!(
                    "{}\n",
                    json!({"key": format!("legacy_{prefix}{i:0>29}"), "tier": "free"})
                )
            })
            .collect()
    };
    let out = kg.cli_with_stdin(&["keys", "import", "-"], lines("cli", 3).as_bytes());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let resp = client()
        .post(kg.url("/v1/keys/import"))
        .header("X-API-Key", &admin)
        .header("Content-Type", "application/x-ndjson")
        .body(lines("api", 2))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    // A file with a bad line writes nothing, and logs nothing.
    let bad = format!("{}{{\"tier\": 5}}\n", lines("bad", 1));
    let out = kg.cli_with_stdin(&["keys", "import", "-"], bad.as_bytes());
    assert_eq!(out.status.code(), Some(2));

    let (_, log, _) = call(&kg, Method::GET, "/v1/audit", &admin, None).await;
    assert_eq!(
        of_action(&log, "keys.imported"),
        [
            ("2 keys", admin_id.as_str(), &json!([])),
            ("3 keys", "cli", &json!([])),
        ],
        "{log}"
    );
    assert!(
        !log.to_string().contains("ak_live_"),
        "no secret in the log"
    );
}

#[tokio::test]
async fn entries_past_the_retention_are_deleted_in_the_background() {
    let up = start_upstream().await;
    // 0s: every entry is kept.
    let kg = Keygate::start(up, &format!("{POLICY}audit: {{ retention: 0s }}\n"));
    use reqwest::Method;
    let (_, admin) = kg.create_key(&["--scopes", "admin", "--owner", "ops"]);
    let (old, _) = kg.create_key(&[]);
    let (recent, _) = kg.create_key(&[]);
    // The first entry made 31 days ago, the second 29 days ago.
    let db = rusqlite::Connection::open(kg.dir.path().join("keys.db")).unwrap();
    let day = 86_400_000i64;
    for (target, days) in [(&old, 31), (&recent, 29)] {
        let n = db
            .execute(
                "UPDATE audit_log SET at = at - ?1 WHERE target = ?2",
                rusqlite::params![days * day, target],
            )
            .unwrap();
        assert_eq!(n, 1);
    }
    drop(db);
    let (_, log, _) = call(&kg, Method::GET, "/v1/audit", &admin, None).await;
    assert_eq!(of_action(&log, "key.created").len(), 3, "{log}");
    // Pruned when keygate starts, then hourly.
    let kg = kg.restart_with_config(|c| c.replace("retention: 0s", "retention: 30d"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, log, _) = call(&kg, Method::GET, "/v1/audit", &admin, None).await;
        let targets: Vec<&str> = of_action(&log, "key.created")
            .into_iter()
            .map(|(t, _, _)| t)
            .collect();
        assert!(targets.contains(&recent.as_str()), "{log}");
        if !targets.contains(&old.as_str()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never pruned: {log}\n{}",
            std::fs::read_to_string(&kg.log).unwrap()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let logged = std::fs::read_to_string(&kg.log).unwrap();
    assert!(
        logged.contains("deleted audit entries past audit.retention"),
        "{logged}"
    );
}

#[test]
fn a_retention_that_would_empty_the_log_within_the_hour_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("keygate.yaml");
    std::fs::write(
        &config,
        "upstream: { url: 'http://127.0.0.1:1' }\ntiers: { free: {} }\naudit: { retention: 400s }\n",
    )
    .unwrap();
    let out = crate::common::check_config(&config);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("audit.retention"), "{err}");
}
