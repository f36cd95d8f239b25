//! Adopting keygate in front of an API that already has customers
//! (docs/configuration.md, Importing keys): its own key format issued and checked,
//! existing keys imported by plaintext or hash (CLI and API, SQLite and PostgreSQL),
//! all or nothing.

use crate::common::services::PgDatabase;
use crate::common::*;
use serde_json::{json, Value};
use std::process::Command;

/// The seeds' documented formats: template, what their keys start with, and length.
const SEEDS: [(&str, &str, usize); 3] = [
    ("altx_sk_{random:32}{checksum}", "altx_sk_", 46),
    ("ak_{env}_{random:26}{checksum}", "ak_live_", 40),
    (
        "altus4_sk_{env}_{random:32}{checksum}",
        "altus4_sk_live_",
        53,
    ),
];

fn policy(format: &str, accept: &[&str]) -> String {
    format!(
        r#"api_keys: {{ format: "{format}", accept_prefixes: {accept:?} }}
rate_limit: {{ ip: {{ per_minute: 0, failed_auth_per_minute: 0 }} }}
tiers:
  free: {{ per_minute: 1000 }}
  pro: {{ per_minute: 5000 }}
default_tier: free
routes:
  - {{ path: /health, auth: none }}
  - {{ path: /api/search, scopes: [search] }}
  - {{ path: /metered, cost: 1 }}
"#
    )
}

/// A key with one character of its random part changed.
fn mangled(key: &str, at: usize) -> String {
    let mut b = key.as_bytes().to_vec();
    b[at] = if b[at] == b'a' { b'b' } else { b'a' };
    String::from_utf8(b).unwrap()
}

/// `keygate keys import -c CFG FILE` with `lines` written to FILE (or fed on stdin
/// with `-`); returns the exit code, stdout and stderr.
fn import(kg: &Keygate, lines: &[Value], stdin: bool) -> (i32, String, String) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let out = if stdin {
        kg.cli_with_stdin(&["keys", "import", "-"], text.as_bytes())
    } else {
        let file = kg.dir.path().join("import.jsonl");
        std::fs::write(&file, text).unwrap();
        kg.cli(&["keys", "import", file.to_str().unwrap()])
    };
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `POST /v1/keys/import` with `lines` as the body.
async fn import_api(kg: &Keygate, key: &str, lines: &[Value]) -> (u16, Value) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let resp = client()
        .post(kg.url("/v1/keys/import"))
        .header("X-API-Key", key)
        .header("Content-Type", "application/x-ndjson")
        .body(text)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, json(resp).await)
}

/// Waits (at most 3 s: the CLI's change reaches the server through the store's change
/// feed) until `key` is refused with 401.
async fn refused_soon(kg: &Keygate, path: &str, key: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let resp = kg.get_key(path, key).await;
        if resp.status() == 401 || std::time::Instant::now() > deadline {
            expect_error(resp, 401, "unauthorized").await;
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn store_queries(kg: &Keygate) -> f64 {
    metric_sum(&kg.metrics().await, "keygate_store_queries_total")
}

#[tokio::test]
async fn every_seed_format_is_issued_checked_and_regenerated_in_its_own_shape() {
    let up = start_upstream().await;
    for (format, visible, len) in SEEDS {
        let kg = Keygate::start(up, &policy(format, &[]));
        let (id, key) = kg.create_key(&[]);
        assert!(
            key.starts_with(visible) && key.len() == len,
            "{format}: {key}"
        );
        assert_eq!(kg.get_key("/api/x", &key).await.status(), 200, "{format}");
        // The management API issues the same shape.
        let (_, admin) = kg.create_key(&["--scopes", "admin", "--owner", "ops"]);
        let (status, made) = kg
            .api(
                reqwest::Method::POST,
                "/keys",
                Auth::Key(&admin),
                Some(json!({"name": "api", "environment": "test"})),
            )
            .await;
        assert_eq!(status, 201, "{made}");
        let api_key = made["key"].as_str().unwrap();
        assert_eq!(api_key.len(), len, "{format}: {api_key}");
        if format.contains("{env}") {
            assert!(
                api_key.starts_with(&visible.replace("live", "test")),
                "{api_key}"
            );
        }
        assert_eq!(
            made["prefix"],
            visible.replace("live", made["environment"].as_str().unwrap())
        );
        // Mangled anywhere after the prefix: refused before any lookup.
        let before = store_queries(&kg).await;
        for at in [visible.len(), len - 3] {
            let resp = kg.get_key("/api/x", mangled(&key, at)).await;
            expect_error(resp, 401, "unauthorized").await;
        }
        assert_eq!(store_queries(&kg).await, before, "{format}: no store query");
        // A new secret follows the format too.
        let out = kg.cli(&["keys", "regenerate", &id, "--json"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let new = v["key"].as_str().unwrap();
        assert!(new.starts_with(visible) && new.len() == len, "{new}");
        assert_eq!(kg.get_key("/api/x", new).await.status(), 200);
        refused_soon(&kg, "/api/x", &key).await;
    }
}

#[tokio::test]
async fn a_bad_format_is_refused_by_check_with_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(
        &path,
        "upstream: { url: 'http://127.0.0.1:1' }\n\
         api_keys: { format: 'my key_{random:12}{checksum}{env}{oops}' }\n\
         tiers: { free: { per_minute: 1 } }\n",
    )
    .unwrap();
    let out = crate::common::check_config(&path);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for want in [
        "api_keys.format: ` ` is not URL-safe",
        "api_keys.format: {random:12} is too short",
        "api_keys.format: {checksum} may appear once, at the very end",
        "api_keys.format: unknown placeholder `{oops}`",
    ] {
        assert!(err.contains(want), "{want} in {err}");
    }
}

/// Lines for one of every kind of existing key, as an operator would export them.
fn customers(old: &str, hashed_secret: &str) -> Vec<Value> {
    let hash = Command::new(&*BIN)
        .args(["keys", "hash", hashed_secret])
        .output()
        .unwrap();
    let hash = String::from_utf8_lossy(&hash.stdout).trim().to_string();
    vec![
        json!({"key": old, "id": "cust_acme", "name": "Acme", "tier": "pro",
               "scopes": ["search"], "org": "org_acme", "owner": "alice@acme.test",
               "credits": 2, "created_at": "2024-03-01T00:00:00Z"}),
        json!({"hash": hash, "id": "cust_hashed", "prefix": "ak_live_", "last4": "h4sh"}),
        json!({"key": format!("{}revoked0000000000000000000000", "ak_live_"), "status": "revoked"}),
        json!({"key": format!("{}expired0000000000000000000000", "ak_live_"),
               "expires_at": "2020-01-01T00:00:00Z"}),
        json!({"key": format!("{}fenced00000000000000000000000", "ak_live_"),
               "allowed_ips": ["10.0.0.0/8"]}),
    ]
}

#[tokio::test]
async fn imported_keys_work_at_once_by_hash_with_every_setting() {
    let up = start_upstream().await;
    // Accounts sign in with tokens: the issuing key.
    let p = policy("ak_{env}_{random:26}{checksum}", &["ak_live_"])
        + "jwt:\n  issue: { alg: HS256, secret: \"an-issuing-secret-of-at-least-32-bytes!!\" }\n";
    let kg = Keygate::start(up, &p);
    // AlfaOne's old keys: `ak_live_` + 32 characters, no checksum.
    let old = format!("ak_live_{}", "0123456789abcdefghijABCDEFGHIJxy");
    let hashed = format!("ak_live_{}", "hashedhashedhashedhashedhashed12");
    // Alice has an account: her key, imported with her email as owner, is hers.
    let (alice, _) = kg.create_user("alice@acme.test", "correct horse battery", false);
    let (code, out, err) = import(&kg, &customers(&old, &hashed), false);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "imported 5 keys");

    let resp = kg.get_key("/api/search", &old).await;
    assert_eq!(resp.status(), 200, "scopes, by plaintext import");
    let echoed = json(resp).await;
    let headers = &echoed["headers"];
    assert_eq!(headers["x-auth-key-id"], json!(["cust_acme"]));
    assert_eq!(headers["x-auth-org"], json!(["org_acme"]));
    assert_eq!(headers["x-auth-tier"], json!(["pro"]));
    let resp = kg.get_key("/api/x", &hashed).await;
    assert_eq!(resp.status(), 200, "by hash import");
    assert_eq!(resp.headers()["x-ratelimit-limit"], "1000", "default tier");
    expect_error(kg.get_key("/api/search", &hashed).await, 403, "forbidden").await;
    let revoked = customers(&old, &hashed)[2]["key"]
        .as_str()
        .unwrap()
        .to_string();
    let body = expect_error(kg.get_key("/api/x", &revoked).await, 401, "unauthorized").await;
    assert_eq!(body["message"], "API key has been revoked");
    let expired = customers(&old, &hashed)[3]["key"]
        .as_str()
        .unwrap()
        .to_string();
    let body = expect_error(kg.get_key("/api/x", &expired).await, 401, "unauthorized").await;
    assert_eq!(body["message"], "API key has expired");
    let fenced = customers(&old, &hashed)[4]["key"]
        .as_str()
        .unwrap()
        .to_string();
    expect_error(kg.get_key("/api/x", &fenced).await, 403, "forbidden").await;
    // Credits: two, then 402.
    for _ in 0..2 {
        assert_eq!(kg.get_key("/metered", &old).await.status(), 200);
    }
    expect_error(
        kg.get_key("/metered", &old).await,
        402,
        "insufficient_credits",
    )
    .await;
    // An unknown key of the accepted shape is looked up, and unknown.
    let unknown = format!("ak_live_{}", "nobodyhasthiskeynobodyhasthis123");
    expect_error(kg.get_key("/api/x", &unknown).await, 401, "unauthorized").await;

    // They show up in the management API like issued keys.
    let (_, admin) = kg.create_key(&["--scopes", "admin", "--owner", "ops"]);
    let (status, k) = kg
        .api(
            reqwest::Method::GET,
            "/keys/cust_acme",
            Auth::Key(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{k}");
    assert_eq!(
        (k["prefix"].as_str(), k["last4"].as_str()),
        (Some("ak_live_"), Some("IJxy"))
    );
    assert_eq!(
        (k["owner"].as_str(), k["credits"].as_i64()),
        (Some(alice.as_str()), Some(0))
    );
    assert_eq!(k["created_at"], "2024-03-01T00:00:00Z");
    // Alice signs in and finds it among her keys (what her portal pages list).
    let token = kg.login("alice@acme.test", "correct horse battery").await;
    let (status, mine) = kg
        .api(reqwest::Method::GET, "/keys", Auth::Bearer(&token), None)
        .await;
    assert_eq!((status, mine["total"].as_u64()), (200, Some(1)), "{mine}");
    assert_eq!(mine["api_keys"][0]["id"], "cust_acme");
    let (_, h) = kg
        .api(
            reqwest::Method::GET,
            "/keys/cust_hashed",
            Auth::Key(&admin),
            None,
        )
        .await;
    assert_eq!(
        (h["prefix"].as_str(), h["last4"].as_str()),
        (Some("ak_live_"), Some("h4sh"))
    );

    // Regenerated, an imported key gets a secret in the configured format.
    let out = kg.cli(&["keys", "regenerate", "cust_acme", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let new = v["key"].as_str().unwrap().to_string();
    assert!(new.starts_with("ak_live_") && new.len() == 40, "{new}");
    assert_eq!(kg.get_key("/api/search", &new).await.status(), 200);
    refused_soon(&kg, "/api/search", &old).await;

    // Once the old keys are rotated the operator drops the prefix: an invented key
    // of the old shape is refused by its checksum, before any lookup.
    let kg = kg.restart_with_config(|c| {
        c.replace("accept_prefixes: [\"ak_live_\"]", "accept_prefixes: []")
    });
    assert_eq!(
        kg.get_key("/api/search", &new).await.status(),
        200,
        "new keys still pass"
    );
    let before = store_queries(&kg).await;
    expect_error(kg.get_key("/api/x", &hashed).await, 401, "unauthorized").await;
    assert_eq!(store_queries(&kg).await, before, "no store query");
}

#[tokio::test]
async fn a_bad_import_writes_nothing_and_the_cli_and_the_api_say_the_same() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, &policy("ak_{env}_{random:26}{checksum}", &["ak_live_"]));
    let (_, admin) = kg.create_key(&["--scopes", "admin", "--owner", "ops"]);
    let lines = vec![
        json!({"key": "ak_live_good00000000000000000000000000", "id": "cust_1"}),
        json!({"key": "ak_live_good11111111111111111111111111", "tier": "gold"}),
        json!({"hash": "sha256:1234", "id": "has space"}),
        json!({"key": "ak_live_good22222222222222222222222222", "colour": "red"}),
        json!({"name": "no secret"}),
    ];
    let (code, _, err) = import(&kg, &lines, false);
    assert_eq!(code, 2, "{err}");
    for want in [
        "line 2: tier: must be one of: free, pro",
        "line 3: hash: must be sha256: and 64 hexadecimal digits",
        "line 3: id: must be 1-64 letters",
        "line 4: colour: unknown field `colour`",
        "line 5: key: each line needs key",
        "4 bad line(s): nothing was imported",
    ] {
        assert!(err.contains(want), "{want} in {err}");
    }
    assert!(!err.contains("line 1:"), "{err}");
    let (status, body) = import_api(&kg, &admin, &lines).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"], "validation_error");
    assert_eq!(body["details"]["bad_lines"], 4);
    let api_lines: Vec<String> = body["details"]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "line {}: {}: {}",
                p["line"],
                p["field"].as_str().unwrap(),
                p["message"].as_str().unwrap()
            )
        })
        .collect();
    for l in &api_lines {
        assert!(err.contains(l.as_str()), "the CLI says `{l}` too: {err}");
    }
    assert_eq!(
        api_lines.len(),
        err.lines().count() - 1,
        "{api_lines:?} vs {err}"
    );
    // Nothing of the good line was written, by either door.
    let list = kg.cli(&["keys", "list", "--json"]);
    let v: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(v["total"], 1, "only the admin key: {v}");
    expect_error(
        kg.get_key("/api/x", "ak_live_good00000000000000000000000000")
            .await,
        401,
        "unauthorized",
    )
    .await;
    // A missing file is a usage error too.
    let out = kg.cli(&["keys", "import", "/nonexistent.jsonl"]);
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn re_importing_updates_in_place_and_the_api_imports_the_same_way() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, &policy("ak_{env}_{random:26}{checksum}", &["ak_live_"]));
    let (_, admin) = kg.create_key(&["--scopes", "admin", "--owner", "ops"]);
    let key = "ak_live_reimport0000000000000000000000";
    let line = |tier: &str| {
        vec![
            json!({"key": key, "id": "cust_r", "tier": tier}),
            json!({"key": "ak_live_noid00000000000000000000000000"}),
        ]
    };
    let (code, out, err) = import(&kg, &line("free"), true);
    assert_eq!((code, out.trim()), (0, "imported 2 keys"), "{err}");
    let resp = kg.get_key("/api/x", key).await;
    assert_eq!(resp.headers()["x-ratelimit-limit"], "1000");
    // Again through the API, with the key moved to pro: same two keys, updated,
    // and this process's cache forgets the old tier at once.
    let (status, body) = import_api(&kg, &admin, &line("pro")).await;
    assert_eq!((status, &body), (200, &json!({"imported": 2})));
    let list = kg.cli(&["keys", "list", "--json"]);
    let v: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(v["total"], 3, "two imported keys and the admin key: {v}");
    let resp = kg.get_key("/api/x", key).await;
    assert_eq!(resp.headers()["x-ratelimit-limit"], "5000", "pro now");
}

#[tokio::test]
async fn the_api_import_is_for_admins_and_bounded() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, &policy("ak_{env}_{random:26}{checksum}", &["ak_live_"]));
    let (_, manager) = kg.create_key(&["--scopes", "keys:manage", "--owner", "bob"]);
    let (_, admin) = kg.create_key(&["--scopes", "admin", "--owner", "ops"]);
    let line = [json!({"key": "ak_live_bounded000000000000000000000000"})];
    let (status, body) = import_api(&kg, &manager, &line).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    let resp = client()
        .post(kg.url("/v1/keys/import"))
        .body("{}\n")
        .send()
        .await
        .unwrap();
    expect_error(resp, 401, "unauthorized").await;
    // Past the limit: a clear 413, declared or not.
    let big = vec![b' '; 33 * 1024 * 1024];
    let resp = client()
        .post(kg.url("/v1/keys/import"))
        .header("X-API-Key", &admin)
        .body(big)
        .send()
        .await
        .unwrap();
    expect_error(resp, 413, "payload_too_large").await;
    // Blank lines and CRLF are fine.
    let resp = client()
        .post(kg.url("/v1/keys/import"))
        .header("X-API-Key", &admin)
        .body(format!("\r\n{}\r\n\r\n", line[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(json(resp).await, json!({"imported": 1}));
}

#[tokio::test]
async fn imports_into_postgres_are_all_or_nothing_and_serve_every_replica() {
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    let up = start_upstream().await;
    let store = format!("store:\n  kind: postgres\n  url: \"{}\"\n", db.url);
    let p = policy("altx_sk_{random:32}{checksum}", &["altx_"]);
    let url = format!("http://{up}");
    let a = Keygate::start_with_store(&url, &store, &p);
    let b = Keygate::start_with_store(&url, &store, &p);
    let old = "altx_legacy_key_0000000000000000000000";
    let (code, out, err) = import(
        &a,
        &[json!({"key": old, "id": "cust_pg", "credits": 1})],
        false,
    );
    assert_eq!((code, out.trim()), (0, "imported 1 keys"), "{err}");
    assert_eq!(
        b.get_key("/metered", old).await.status(),
        200,
        "the other replica"
    );
    expect_error(
        a.get_key("/metered", old).await,
        402,
        "insufficient_credits",
    )
    .await;
    // The same secret under another id: refused at its line, nothing written.
    let lines = [
        json!({"key": "altx_legacy_key_1111111111111111111111", "id": "cust_new"}),
        json!({"key": old, "id": "cust_other"}),
    ];
    let (code, _, err) = import(&a, &lines, false);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("line 2: hash: this secret is already stored under another key id"),
        "{err}"
    );
    expect_error(
        a.get_key("/api/x", "altx_legacy_key_1111111111111111111111")
            .await,
        401,
        "unauthorized",
    )
    .await;
    // Issued keys there follow the format.
    let (_, issued) = a.create_key(&[]);
    assert!(
        issued.starts_with("altx_sk_") && issued.len() == 46,
        "{issued}"
    );
    assert_eq!(b.get_key("/api/x", &issued).await.status(), 200);
}

/// Attacked (third round): a line whose secret was already stored, with no `id` and
/// no `credits`, answered `imported: 1` and erased what it did not say (credits
/// became null, so a key at 402 answered 200; owner and scopes were lost), and the
/// same key twice in one file counted twice. An update changes only the fields a
/// line carries; unmetered needs an explicit `"credits": null`; the answer counts
/// keys. On SQLite and on PostgreSQL, by the CLI and by the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_import_line_for_a_stored_key_changes_only_what_it_says() {
    let up = start_upstream().await;
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    let format = "ak_{env}_{random:26}{checksum}";
    let sqlite = Keygate::start(up, &policy(format, &["ak_live_"]));
    let postgres = Keygate::start_with_store(
        &format!("http://{up}"),
        &format!("store: {{ kind: postgres, url: \"{}\" }}\n", db.url),
        &policy(format, &["ak_live_"]),
    );
    for kg in [&sqlite, &postgres] {
        let (_, admin) = kg.create_key(&["--scopes", "admin"]);
        let key = format!("ak_live_{}", "q".repeat(32));
        let first = json!({"key": key, "name": "Acme", "owner": "alice", "scopes": ["search"],
                           "org": "org_acme", "credits": 2, "tier": "pro"});
        let (code, out, err) = import(kg, &[first], false);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("imported 1 key"), "{out}");
        assert_eq!(kg.get_key("/metered", &key).await.status(), 200);
        assert_eq!(kg.get_key("/metered", &key).await.status(), 200);
        assert_eq!(kg.get_key("/metered", &key).await.status(), 402);

        // The same secret again, saying only its name, twice in one file.
        let rename = json!({"key": key, "name": "Acme Inc"});
        let (code, out, err) = import(kg, &[rename.clone(), rename], false);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("imported 1 key"), "one key, two lines: {out}");
        refused_or(kg, &key, 402).await;
        let listed = json(kg.get_key("/v1/keys", &admin).await).await;
        let stored = listed["api_keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["name"] == "Acme Inc")
            .unwrap_or_else(|| panic!("renamed: {listed}"))
            .clone();
        assert_eq!(stored["credits"], 0, "{stored}");
        assert_eq!(stored["owner"], "alice");
        assert_eq!(stored["scopes"], json!(["search"]));
        assert_eq!(stored["org"], "org_acme");
        assert_eq!(stored["tier"], "pro");
        assert_eq!(
            kg.get_key("/api/search", &key).await.status(),
            200,
            "its scope kept"
        );

        // Through the API, the same rules; an explicit null makes it unmetered.
        let (status, body) = import_api(kg, &admin, &[json!({"key": key, "credits": null})]).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["imported"], 1, "{body}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        while kg.get_key("/metered", &key).await.status() != 200 {
            assert!(std::time::Instant::now() < deadline, "still metered");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// Waits (at most 3 s) until `key` answers `status` on `/metered`.
async fn refused_or(kg: &Keygate, key: &str, status: u16) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let got = kg.get_key("/metered", key).await.status();
        if got == status {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{got}, not {status}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
