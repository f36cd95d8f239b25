//! Dialects under attack: an operation mounted at a documented path is the same
//! operation behind a second door. A request template cannot give a caller more
//! than the rules do, another customer's keys stay theirs, a first key is made
//! once however many ask at once, and an API's error format changes by editing one
//! template and reloading.

use crate::common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// An operator's dialect, one of whose templates asks for more than a user may
/// have (tier `pro` and the `admin` scope): the rules must refuse it.
const POLICY: &str = r#"
tiers: { free: { per_minute: 1000 }, pro: { per_minute: 5000 } }
default_tier: free
jwt:
  issue: { alg: HS256, secret: "a-test-issuing-secret-of-32-bytes-or-more", access_ttl: 1h, refresh_ttl: 1h }
management: { registration: open, user_scopes: [search] }
rate_limit: { ip: { per_minute: 0 } }
dialect:
  errors:
    body: '{"ok": false, "why": {{ message }}, "code": {{ code }}}'
  endpoints:
    - operation: create_key
      method: POST
      path: /api/keys
      request: '{"name": {{ body.title }}, "tier": "pro", "scopes": ["search", "admin"]}'
    - { operation: first_key, method: POST, path: /api/setup }
    - { operation: revoke_key, method: DELETE, path: "/api/keys/:id" }
    - operation: list_keys
      method: GET
      path: /api/keys
      response: '{"keys": [{% for k in body.api_keys %}{% if not loop.first %}, {% endif %}{{ k.id }}{% endfor %}]}'
"#;

async fn call(
    kg: &Keygate,
    method: reqwest::Method,
    path: &str,
    bearer: Option<&str>,
    body: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = client().request(method, kg.url(path));
    if let Some(token) = bearer {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    let text = resp.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"));
    (status, headers, v)
}

/// A registered user's access token.
async fn user_token(kg: &Keygate, email: &str) -> String {
    let who = json!({"email": email, "password": "a-long-password"}).to_string();
    let (status, _, _) = call(
        kg,
        reqwest::Method::POST,
        "/v1/auth/register",
        None,
        Some(&who),
    )
    .await;
    assert_eq!(status, 201);
    let (_, _, tokens) = call(
        kg,
        reqwest::Method::POST,
        "/v1/auth/token",
        None,
        Some(&who),
    )
    .await;
    tokens["access_token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_mounted_operation_keeps_every_rule_of_its_own() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, POLICY);
    let post = reqwest::Method::POST;
    let title = Some(r#"{"title": "ci"}"#);

    // No credential: the operation's 401, in the dialect, with its header.
    let (status, headers, body) = call(&kg, post.clone(), "/api/keys", None, title).await;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        json!({"ok": false, "why": "API key is required", "code": "unauthorized"})
    );
    assert!(headers.contains_key("www-authenticate"));

    // A user: the template asks for tier pro and the admin scope; the rules refuse.
    let alice = user_token(&kg, "alice@example.com").await;
    let (status, _, body) = call(&kg, post.clone(), "/api/keys", Some(&alice), title).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "forbidden");
    let why = body["why"].as_str().unwrap();
    assert!(why.contains("scopes") && why.contains("tier"), "{why}");
    let (_, _, listed) = call(&kg, reqwest::Method::GET, "/api/keys", Some(&alice), None).await;
    assert_eq!(listed, json!({"keys": []}), "nothing was made");

    // An admin may: the same door, other rules' answer.
    let (_, admin) = kg.create_key(&["--scopes", "admin"]);
    let (status, _, made) = call(&kg, post.clone(), "/api/keys", Some(&admin), title).await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(
        (&made["tier"], &made["scopes"]),
        (&json!("pro"), &json!(["search", "admin"]))
    );

    // Bodies that do not fit: 400, in the dialect.
    let (status, _, body) = call(&kg, post.clone(), "/api/keys", Some(&admin), Some("{nope")).await;
    assert_eq!(
        (status, &body["code"]),
        (400, &json!("invalid_request")),
        "{body}"
    );
    let (status, _, body) = call(&kg, post.clone(), "/api/keys", Some(&admin), Some("{}")).await;
    assert_eq!(
        (status, &body["code"]),
        (400, &json!("invalid_request")),
        "{body}"
    );

    // Another customer's key: not found through the second door, and still working.
    let bob = user_token(&kg, "bob@example.com").await;
    let (status, _, first) = call(
        &kg,
        post,
        "/api/setup",
        Some(&bob),
        Some(r#"{"name": "bob's"}"#),
    )
    .await;
    assert_eq!(status, 201, "{first}");
    let bobs_id = first["id"].as_str().unwrap();
    let bobs_key = first["key"].as_str().unwrap();
    let (status, _, body) = call(
        &kg,
        reqwest::Method::DELETE,
        &format!("/api/keys/{bobs_id}"),
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(
        (status, &body["code"]),
        (404, &json!("not_found")),
        "{body}"
    );
    assert_eq!(kg.get_key("/anything", bobs_key).await.status(), 200);
    let (_, _, listed) = call(&kg, reqwest::Method::GET, "/api/keys", Some(&alice), None).await;
    assert_eq!(listed, json!({"keys": []}));
    let (_, _, listed) = call(&kg, reqwest::Method::GET, "/api/keys", Some(&bob), None).await;
    assert_eq!(listed, json!({"keys": [bobs_id]}));
    // Bob revokes his own: gone on the data plane.
    let (status, _, _) = call(
        &kg,
        reqwest::Method::DELETE,
        &format!("/api/keys/{bobs_id}"),
        Some(&bob),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(kg.get_key("/anything", bobs_key).await.status(), 401);
    // The data plane's own refusals speak the dialect too.
    let (status, _, body) = call(
        &kg,
        reqwest::Method::GET,
        "/anything",
        Some("kg_sk_live_nope"),
        None,
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        json!({"ok": false, "why": "Invalid API key", "code": "unauthorized"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_setups_make_one_first_key() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, POLICY);
    let carol = user_token(&kg, "carol@example.com").await;
    let answers = futures::future::join_all((0..20).map(|i| {
        let (kg, carol) = (&kg, &carol);
        async move {
            let body = format!(r#"{{"name": "first {i}"}}"#);
            call(
                kg,
                reqwest::Method::POST,
                "/api/setup",
                Some(carol),
                Some(&body),
            )
            .await
        }
    }))
    .await;
    let made = answers.iter().filter(|a| a.0 == 201).count();
    let refused: Vec<&Value> = answers
        .iter()
        .filter(|a| a.0 == 409)
        .map(|a| &a.2)
        .collect();
    assert_eq!((made, refused.len()), (1, 19), "{answers:?}");
    assert_eq!(refused[0]["code"], "conflict");
    let (_, _, listed) = call(&kg, reqwest::Method::GET, "/api/keys", Some(&carol), None).await;
    assert_eq!(listed["keys"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn an_error_format_changes_by_editing_one_template_and_reloading() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, POLICY);
    let body = || async { call(&kg, reqwest::Method::GET, "/anything", None, None).await };
    assert_eq!(body().await.2["why"], "API key is required");
    let text = std::fs::read_to_string(&kg.config).unwrap();
    let edited = text.replace(
        r#"body: '{"ok": false, "why": {{ message }}, "code": {{ code }}}'"#,
        r#"body: '{"error": {"message": {{ message }}, "status": {{ status }}}}'"#,
    );
    assert_ne!(text, edited);
    std::fs::write(&kg.config, edited).unwrap();
    kg.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, _, v) = body().await;
        assert_eq!(status, 401);
        if v.get("error").is_some() {
            assert_eq!(
                v,
                json!({"error": {"message": "API key is required", "status": 401}})
            );
            break;
        }
        assert!(Instant::now() < deadline, "the reload never applied: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A template that does not render JSON is refused on reload; the last good one serves.
    let text = std::fs::read_to_string(&kg.config).unwrap();
    std::fs::write(
        &kg.config,
        text.replace(
            r#"{"error": {"message": {{ message }}"#,
            r#"{"error": {"message": "{{ message }}""#,
        ),
    )
    .unwrap();
    kg.signal("HUP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        body().await.2,
        json!({"error": {"message": "API key is required", "status": 401}})
    );
    assert!(
        kg.logs().contains("dialect.errors.body"),
        "the refusal names the template"
    );
}
