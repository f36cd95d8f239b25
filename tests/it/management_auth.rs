//! Accounts and tokens: users from the CLI (password on stdin) or open registration,
//! the token endpoint, refresh rotation with reuse detection, uniform login failures
//! with throttling, and issued tokens accepted by keygate's own verifier.
use crate::common::*;
use serde_json::{json, Value};

const SECRET: &str = "an-issuing-secret-of-at-least-32-bytes!!";

fn policy(registration: &str) -> String {
    format!(
        "jwt:\n  issue: {{ kid: keygate, alg: HS256, secret: \"{SECRET}\", access_ttl: 10m, refresh_ttl: 1d }}\n\
management: {{ registration: {registration} }}\ntiers: {{ free: {{ per_minute: 1000, max_keys: 5 }} }}\n\
rate_limit: {{ ip: {{ failed_auth_per_minute: 100 }} }}\n"
    )
}

async fn post(kg: &Keygate, path: &str, body: Value, bearer: Option<&str>) -> (u16, Value) {
    let mut req = client().post(kg.url(path)).json(&body);
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, json(resp).await)
}

async fn login(kg: &Keygate, email: &str, password: &str) -> (u16, Value) {
    post(
        kg,
        "/v1/auth/token",
        json!({"email": email, "password": password}),
        None,
    )
    .await
}

#[tokio::test]
async fn users_log_in_manage_their_keys_and_their_tokens_work_on_the_data_plane() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, &policy("closed"));
    let alice = kg
        .create_user("alice@example.com", "alice-password", false)
        .0;
    let bob = kg.create_user("bob@example.com", "bob-password-1", false).0;
    let (status, tokens) = login(&kg, "Alice@Example.com", "alice-password").await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 600);
    let access = tokens["access_token"].as_str().unwrap();
    assert!(tokens["refresh_token"]
        .as_str()
        .unwrap()
        .starts_with("kg_rt_"));

    // The access token is a keygate JWT: accepted on the data plane as Alice.
    let r = kg.get_bearer("/anything", access).await;
    assert_eq!(r.status(), 200);
    let echoed = json(r).await;
    assert_eq!(echoed["headers"]["x-auth-method"][0], "jwt");
    assert_eq!(echoed["headers"]["x-auth-subject"][0], alice.as_str());

    // And on the management API: Alice's keys are hers.
    let (status, key) = post(
        &kg,
        "/v1/keys",
        json!({"name": "alice's", "tier": "free"}),
        Some(access),
    )
    .await;
    assert_eq!(status, 201, "{key}");
    assert_eq!(key["owner"], alice.as_str());
    let (_, bob_tokens) = login(&kg, "bob@example.com", "bob-password-1").await;
    let bob_access = bob_tokens["access_token"].as_str().unwrap();
    let r = client()
        .get(kg.url(&format!("/v1/keys/{}", key["id"].as_str().unwrap())))
        .bearer_auth(bob_access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "Bob cannot see Alice's key");
    let r = client()
        .get(kg.url("/v1/keys"))
        .bearer_auth(bob_access)
        .send()
        .await
        .unwrap();
    assert_eq!(json(r).await["total"], 0);
    let _ = bob;
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_reused_one_revokes_its_family() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, &policy("closed"));
    kg.create_user("carol@example.com", "carol-password", false);
    let (_, first) = login(&kg, "carol@example.com", "carol-password").await;
    let r1 = first["refresh_token"].as_str().unwrap().to_string();
    let (status, second) = post(&kg, "/v1/auth/refresh", json!({"refresh_token": r1}), None).await;
    assert_eq!(status, 200, "{second}");
    let r2 = second["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(r1, r2);
    assert_eq!(
        kg.get_bearer("/a", second["access_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
    // Presenting the spent token again: refused, and the whole family dies.
    let (status, body) = post(&kg, "/v1/auth/refresh", json!({"refresh_token": r1}), None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_token")),
        "{body}"
    );
    let (status, _) = post(&kg, "/v1/auth/refresh", json!({"refresh_token": r2}), None).await;
    assert_eq!(status, 401, "the family of a reused token is revoked");
    let (status, body) = post(
        &kg,
        "/v1/auth/refresh",
        json!({"refresh_token": "kg_rt_made_up"}),
        None,
    )
    .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (401, Some("Invalid refresh token"))
    );
    // A fresh login starts a new family.
    let (status, _) = login(&kg, "carol@example.com", "carol-password").await;
    assert_eq!(status, 200);
}

/// Login failures look alike whoever is asked about. Their throttling (10 a
/// minute per email and per IP) is timed on a manual clock in
/// `management::tests`, and raced over HTTP in `attacks.rs`.
#[tokio::test]
async fn login_failures_are_uniform() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, &policy("closed"));
    kg.create_user("dave@example.com", "dave-password", false);
    let (s1, wrong_password) = login(&kg, "dave@example.com", "not-his-password").await;
    let (s2, unknown_user) = login(&kg, "nobody@example.com", "whatever-password").await;
    assert_eq!((s1, s2), (401, 401));
    assert_eq!(wrong_password, unknown_user, "no user enumeration");
    assert_eq!(wrong_password["message"], "Invalid email or password");
    let (status, body) = post(
        &kg,
        "/v1/auth/token",
        json!({"email": "dave@example.com"}),
        None,
    )
    .await;
    assert_eq!(status, 422);
    assert!(body["details"]["password"].is_string());
    let (status, _) = login(&kg, "dave@example.com", "dave-password").await;
    assert_eq!(status, 200);
    assert!(
        !kg.logs().contains("dave-password"),
        "passwords never logged"
    );
}

#[tokio::test]
async fn registration_only_when_open() {
    let up = start_upstream().await;
    let closed = Keygate::start(up, &policy("closed"));
    let (status, _) = post(
        &closed,
        "/v1/auth/register",
        json!({"email": "e@example.com", "password": "long-enough"}),
        None,
    )
    .await;
    assert_eq!(status, 403);
    let open = Keygate::start(up, &policy("open"));
    let (status, user) = post(
        &open,
        "/v1/auth/register",
        json!({"email": "e@example.com", "password": "long-enough", "name": "Eve"}),
        None,
    )
    .await;
    assert_eq!(status, 201, "{user}");
    assert!(user.get("password_hash").is_none() && user.get("password").is_none());
    let (status, _) = post(
        &open,
        "/v1/auth/register",
        json!({"email": "E@example.com", "password": "long-enough"}),
        None,
    )
    .await;
    assert_eq!(status, 409, "emails are unique regardless of case");
    let (status, body) = post(
        &open,
        "/v1/auth/register",
        json!({"email": "not-an-email", "password": "short"}),
        None,
    )
    .await;
    assert_eq!(status, 422);
    assert!(body["details"]["email"].is_string() && body["details"]["password"].is_string());
    let (status, _) = login(&open, "e@example.com", "long-enough").await;
    assert_eq!(status, 200);
}
