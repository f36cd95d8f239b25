//! Secrets hygiene: drive every error path with real keys, tokens, passwords and
//! refresh tokens, logging at `debug`, then look for each secret in the logs, the
//! metrics and every response body that is not the one meant to hand it out.
use crate::common::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const ISSUE_SECRET: &str = "issue-secret-0123456789-abcdefghijklmnop";
const HS_SECRET: &str = "hs256-verify-secret-0123456789-ABCDEFGH";
const PASSWORD: &str = "correct-horse-battery-staple-42";

fn hs_token(secret: &str, exp_offset: i64, kid: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.into());
    encode(
        &header,
        &json!({"sub": "svc-1", "exp": now + exp_offset, "scope": "read"}),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// Sends a request and keeps its body for the final scan.
async fn call(bodies: &mut Vec<String>, req: reqwest::RequestBuilder, expect: u16) -> Value {
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert_eq!(status, expect, "{text}");
    bodies.push(text.clone());
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

#[tokio::test]
async fn no_secret_reaches_logs_metrics_or_error_bodies() {
    let up = start_upstream().await;
    let policy = format!(
        "jwt:\n  enabled: true\n  algorithms: [HS256]\n  keys:\n    - {{ kid: svc, alg: HS256, secret: \"{HS_SECRET}\" }}\n  \
         issue: {{ kid: keygate, alg: HS256, secret: \"{ISSUE_SECRET}\", access_ttl: 10m, refresh_ttl: 1d }}\n\
         tiers: {{ free: {{ per_minute: 5 }} }}\n\
         rate_limit: {{ ip: {{ failed_auth_per_minute: 1000 }} }}\n\
         routes:\n  - {{ path: /scoped, scopes: [admin-only] }}\n"
    );
    let kg = Keygate::start(up, &policy).restart_logging("debug,keygate=trace");
    let (_, printed) = kg.create_user("ada@example.com", PASSWORD, false);
    assert!(!printed.contains(PASSWORD), "the CLI echoed the password");
    let (revoked_id, revoked) = kg.create_key(&[]);
    assert!(kg.cli(&["keys", "revoke", &revoked_id]).status.success());
    let (_, key) = kg.create_key(&[]);
    let c = client();
    let mut bodies = Vec::new();
    let mut secrets: Vec<String> = vec![
        key.clone(),
        revoked.clone(),
        ISSUE_SECRET.into(),
        HS_SECRET.into(),
        PASSWORD.into(),
    ];

    // API keys: wrong scope, revoked, wrong checksum, and over the limit.
    call(
        &mut bodies,
        c.get(kg.url("/scoped")).header("x-api-key", &key),
        403,
    )
    .await;
    call(
        &mut bodies,
        c.get(kg.url("/a")).header("x-api-key", &revoked),
        401,
    )
    .await;
    // The last character changed (to one it is not already).
    let last = if key.ends_with('A') { 'B' } else { 'A' };
    let mangled = format!("{}{last}", &key[..key.len() - 1]);
    secrets.push(mangled.clone());
    call(
        &mut bodies,
        c.get(kg.url("/a")).header("x-api-key", &mangled),
        401,
    )
    .await;
    call(
        &mut bodies,
        c.get(kg.url("/a?api_key=").to_string() + &key),
        401,
    )
    .await;
    let mut limited = false;
    for _ in 0..8 {
        let r = c
            .get(kg.url("/a"))
            .header("x-api-key", &key)
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            limited = true;
            bodies.push(r.text().await.unwrap());
        }
    }
    assert!(limited, "the 5/minute tier refused nothing");
    // Two different credentials at once.
    call(
        &mut bodies,
        c.get(kg.url("/a"))
            .header("x-api-key", &key)
            .bearer_auth(&revoked),
        401,
    )
    .await;

    // JWTs: bad signature, expired, unknown kid.
    let forged = hs_token("not-the-secret-not-the-secret-0000000", 600, "svc");
    let expired = hs_token(HS_SECRET, -3600, "svc");
    let unknown_kid = hs_token(HS_SECRET, 600, "who");
    for t in [&forged, &expired, &unknown_kid] {
        secrets.push(t.clone());
        call(&mut bodies, c.get(kg.url("/a")).bearer_auth(t), 401).await;
    }

    // Accounts: wrong password, then a good login whose tokens are then misused.
    call(
        &mut bodies,
        c.post(kg.url("/v1/auth/token"))
            .json(&json!({"email": "ada@example.com", "password": format!("{PASSWORD}x")})),
        401,
    )
    .await;
    secrets.push(format!("{PASSWORD}x"));
    let r = c
        .post(kg.url("/v1/auth/token"))
        .json(&json!({"email": "ada@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let tokens: Value = r.json().await.unwrap(); // meant to carry them: not scanned
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    secrets.push(access.clone());
    secrets.push(refresh.clone());
    let rotated: Value = c
        .post(kg.url("/v1/auth/refresh"))
        .json(&json!({"refresh_token": refresh}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    secrets.push(rotated["refresh_token"].as_str().unwrap().to_string());
    secrets.push(rotated["access_token"].as_str().unwrap().to_string());
    // The spent refresh token again: reuse detected, family revoked.
    call(
        &mut bodies,
        c.post(kg.url("/v1/auth/refresh"))
            .json(&json!({"refresh_token": refresh})),
        401,
    )
    .await;
    let bogus = "kg_rt_0000000000000000000000000000000000000000000";
    secrets.push(bogus.into());
    call(
        &mut bodies,
        c.post(kg.url("/v1/auth/refresh"))
            .json(&json!({"refresh_token": bogus})),
        401,
    )
    .await;
    // Management: a malformed body that carries a secret, and listing keys.
    call(
        &mut bodies,
        c.post(kg.url("/v1/keys"))
            .bearer_auth(&access)
            .json(&json!({"name": key, "tier": "gold"})),
        422,
    )
    .await;
    let created: Value = c
        .post(kg.url("/v1/keys"))
        .bearer_auth(&access)
        .json(&json!({"name": "mine", "tier": "free"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap(); // meant to hand the key out once: not scanned
    secrets.push(created["key"].as_str().unwrap().to_string());
    let listed = call(
        &mut bodies,
        c.get(kg.url("/v1/keys")).bearer_auth(&access),
        200,
    )
    .await;
    assert!(listed.to_string().contains("last4"), "{listed}");

    let logs = kg.logs();
    let metrics = kg.metrics().await;
    assert!(logs.lines().count() > 20, "debug logging is on: {logs}");
    let mut leaks = Vec::new();
    for s in &secrets {
        // The key's secret part alone must not show either.
        let needles = [
            s.clone(),
            s.get(s.len().saturating_sub(24)..).unwrap_or(s).to_string(),
        ];
        for n in needles {
            for (place, text) in [("logs", &logs), ("metrics", &metrics)] {
                if text.contains(&n) {
                    leaks.push(format!("{place} contain {n}"));
                }
            }
            for b in &bodies {
                // The 422 echoes nothing of the name it refused: the key is in no body.
                if b.contains(&n) {
                    leaks.push(format!("a response body contains {n}: {b}"));
                }
            }
        }
    }
    assert!(leaks.is_empty(), "{leaks:#?}");
}
