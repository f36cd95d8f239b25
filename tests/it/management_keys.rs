//! The management API's key lifecycle over HTTP against the real binary and SQLite:
//! create (secret once), list, get, update, revoke, regenerate (with grace), verify,
//! credits; authorization boundaries; 409/422/400/413/404/405.
use crate::common::*;
use serde_json::{json, Value};

const POLICY: &str = r#"
tiers:
  free: { per_minute: 1000, max_keys: 3 }
  pro: { per_minute: 1000, max_keys: 10 }
routes:
  - { path: /api/search, methods: [POST], scopes: [search], cost: 1 }
"#;

struct Api<'a> {
    kg: &'a Keygate,
    key: String,
    http: reqwest::Client,
}

impl<'a> Api<'a> {
    fn new(kg: &'a Keygate, key: &str) -> Self {
        Api {
            kg,
            key: key.to_string(),
            http: client(),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, self.kg.url(&format!("/v1{path}")))
            .header("X-API-Key", &self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")),
        )
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }
}

#[tokio::test]
async fn the_full_key_lifecycle() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, POLICY);
    let (_, admin_key) = kg.create_key(&["--scopes", "admin", "--owner", "ops", "--tier", "pro"]);
    let api = Api::new(&kg, &admin_key);

    let (status, created) = api
        .post("/keys", json!({"name": "ci", "tier": "free", "scopes": ["search"], "environment": "live", "credits": 5, "owner": "alice"}))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let secret = created["key"].as_str().unwrap().to_string();
    assert!(secret.starts_with("kg_sk_live_"));
    assert_eq!(created["last4"], &secret[secret.len() - 4..]);
    for field in [
        "id",
        "name",
        "prefix",
        "last4",
        "tier",
        "scopes",
        "environment",
        "org",
        "owner",
        "status",
        "credits",
        "allowed_ips",
        "expires_at",
        "created_at",
        "last_used_at",
    ] {
        assert!(created.get(field).is_some(), "key object has {field}");
    }
    // The new key works on the data plane, and the secret is never shown again.
    assert_eq!(kg.post_key("/api/search", &secret).await.status(), 200);
    let (_, listed) = api.get("/keys").await;
    assert_eq!(listed["total"], 2);
    assert!(
        !listed.to_string().contains(&secret[11..]),
        "list never shows a secret"
    );
    let (status, one) = api.get(&format!("/keys/{id}")).await;
    assert_eq!((status, one["name"].as_str()), (200, Some("ci")));
    assert!(one.get("key").is_none());

    // Update: rename, re-scope, top up.
    let (status, updated) = api
        .call(
            reqwest::Method::PUT,
            &format!("/keys/{id}"),
            Some(json!({"name": "ci-2", "scopes": ["read"], "credits": 50})),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(
        (updated["name"].as_str(), updated["credits"].as_i64()),
        (Some("ci-2"), Some(50))
    );
    let r = kg.post_key("/api/search", &secret).await;
    assert_eq!(
        r.status(),
        403,
        "re-scoping takes effect at once (cache invalidated)"
    );

    // Regenerate without grace: the old secret dies at once.
    let (status, regen) = api.post(&format!("/keys/{id}/regenerate"), json!({})).await;
    assert_eq!(status, 200, "{regen}");
    assert_eq!(regen["id"], id.as_str());
    let new_secret = regen["key"].as_str().unwrap().to_string();
    assert_eq!(kg.get_key("/a", &secret).await.status(), 401);
    assert_eq!(kg.get_key("/a", &new_secret).await.status(), 200);

    // A grace period is at most 30 days, however it is written; nothing changes.
    for too_long in [json!("31d"), json!(2_592_001)] {
        let (status, body) = api
            .post(
                &format!("/keys/{id}/regenerate"),
                json!({ "grace_period": too_long }),
            )
            .await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["details"]["grace_period"], "must be at most 30d");
    }
    assert_eq!(kg.get_key("/a", &new_secret).await.status(), 200);

    // Regenerate with a grace period: both work until it ends.
    let (status, regen) = api
        .post(
            &format!("/keys/{id}/regenerate"),
            json!({"grace_period": "1h"}),
        )
        .await;
    assert_eq!(status, 200);
    let newest = regen["key"].as_str().unwrap().to_string();
    assert!(regen["previous_key_valid_until"].is_string());
    assert_eq!(
        kg.get_key("/a", &new_secret).await.status(),
        200,
        "old secret in its grace period"
    );
    assert_eq!(kg.get_key("/a", &newest).await.status(), 200);

    // Revoke: immediate, even though the key is cached.
    let (status, revoked) = api
        .call(reqwest::Method::DELETE, &format!("/keys/{id}"), None)
        .await;
    assert_eq!((status, revoked["status"].as_str()), (200, Some("revoked")));
    let r = kg.get_key("/a", &newest).await;
    assert_eq!(r.status(), 401);
    assert_eq!(json(r).await["message"], "API key has been revoked");

    // Nothing under the prefix reaches the upstream: its answers are keygate's.
    let (status, body) = api.get("/nothing-here").await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    let (status, body) = api.call(reqwest::Method::PATCH, "/keys", None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (405, Some("method_not_allowed"))
    );
}

#[tokio::test]
async fn owners_see_and_touch_only_their_own_keys() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, POLICY);
    let (_, alice) = kg.create_key(&["--scopes", "keys:manage", "--owner", "alice"]);
    let (_, bob) = kg.create_key(&["--scopes", "keys:manage", "--owner", "bob"]);
    let (_, plain) = kg.create_key(&["--owner", "carol"]);
    let (a, b) = (Api::new(&kg, &alice), Api::new(&kg, &bob));
    let (status, bobs) = b
        .post("/keys", json!({"name": "bob's", "tier": "free"}))
        .await;
    assert_eq!(status, 201);
    assert_eq!(bobs["owner"], "bob", "owner defaults to the caller");
    let bob_key_id = bobs["id"].as_str().unwrap();

    let (_, listed) = a.get("/keys").await;
    assert!(
        listed["api_keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["owner"] == "alice"),
        "{listed}"
    );
    for (method, path) in [
        (reqwest::Method::GET, format!("/keys/{bob_key_id}")),
        (reqwest::Method::PUT, format!("/keys/{bob_key_id}")),
        (reqwest::Method::DELETE, format!("/keys/{bob_key_id}")),
        (
            reqwest::Method::POST,
            format!("/keys/{bob_key_id}/regenerate"),
        ),
    ] {
        let (status, body) = a.call(method.clone(), &path, Some(json!({}))).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (404, Some("not_found")),
            "{method} {path}: no existence leak"
        );
    }
    let (status, body) = a
        .post(
            "/keys",
            json!({"name": "x", "tier": "free", "owner": "bob"}),
        )
        .await;
    assert_eq!((status, body["error"].as_str()), (403, Some("forbidden")));
    assert!(body["details"]["owner"].is_string());
    // A key without keys:manage cannot manage keys, but can verify itself.
    let c = Api::new(&kg, &plain);
    let (status, body) = c.get("/keys").await;
    assert_eq!(
        (status, body["message"].as_str()),
        (403, Some("Missing scope: keys:manage"))
    );
    let (status, body) = c.post("/keys/verify", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(body["valid"], true);
    let (status, body) = c.get("/credits").await;
    assert_eq!((status, body["credits"].clone()), (200, Value::Null));
    // No credential at all.
    let r = client().get(kg.url("/v1/keys")).send().await.unwrap();
    expect_error(r, 401, "unauthorized").await;
}

#[tokio::test]
async fn bad_requests_get_precise_errors() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, POLICY);
    let (_, admin) = kg.create_key(&["--scopes", "admin", "--owner", "ops"]);
    let api = Api::new(&kg, &admin);
    // 422 lists every bad field.
    let (status, body) = api
        .post(
            "/keys",
            json!({"tier": "gold", "scopes": "search", "environment": "prod", "credits": -1, "allowed_ips": ["nope"], "expires_at": "2001-01-01T00:00:00Z", "colour": "red"}),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (422, Some("validation_error")),
        "{body}"
    );
    for field in [
        "name",
        "tier",
        "scopes",
        "environment",
        "credits",
        "allowed_ips",
        "expires_at",
        "colour",
    ] {
        assert!(
            body["details"][field].is_string(),
            "details.{field} in {body}"
        );
    }
    // 400 for malformed JSON and non-objects.
    for raw in ["{not json", "[1,2]", "\"text\""] {
        let r = client()
            .post(kg.url("/v1/keys"))
            .header("X-API-Key", &admin)
            .body(raw)
            .send()
            .await
            .unwrap();
        expect_error(r, 400, "invalid_request").await;
    }
    // 413 for oversized bodies.
    let r = client()
        .post(kg.url("/v1/keys"))
        .header("X-API-Key", &admin)
        .body(vec![b' '; 70 * 1024])
        .send()
        .await
        .unwrap();
    expect_error(r, 413, "payload_too_large").await;
    // 409 at the tier's max_keys (3 per owner in free).
    for i in 0..3 {
        let (status, _) = api
            .post(
                "/keys",
                json!({"name": format!("k{i}"), "tier": "free", "owner": "dave"}),
            )
            .await;
        assert_eq!(status, 201);
    }
    let (status, body) = api
        .post(
            "/keys",
            json!({"name": "k4", "tier": "free", "owner": "dave"}),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );
    // Unknown ids are 404; revoked keys cannot be regenerated.
    let (status, _) = api.get("/keys/key_doesnotexist").await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn credits_are_exact_under_concurrency_and_survive_a_restart() {
    let up = start_upstream().await;
    let mut kg = Keygate::start(up, POLICY);
    let (_, key) = kg.create_key(&["--scopes", "search", "--credits", "10"]);
    let requests = (0..40).map(|_| {
        let (kg, key) = (&kg, key.clone());
        async move { kg.post_key("/api/search", &key).await.status().as_u16() }
    });
    let statuses = futures::future::join_all(requests).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| **s == 402).count(), 30);
    let (_, key2) = kg.create_key(&["--scopes", "search", "--credits", "20"]);
    for _ in 0..5 {
        assert_eq!(kg.post_key("/api/search", &key2).await.status(), 200);
    }
    assert_eq!(kg.terminate().code(), Some(0));
    let kg = kg.restart();
    let (status, body) = Api::new(&kg, &key2).get("/credits").await;
    assert_eq!(
        (status, body["credits"].as_i64()),
        (200, Some(15)),
        "credits survive a restart"
    );
    let (_, body) = Api::new(&kg, &key).post("/keys/verify", json!({})).await;
    assert_eq!(body["credits_remaining"], 0);
}

#[tokio::test]
async fn usage_is_counted_per_key_and_endpoint_and_flushed_at_shutdown() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, POLICY);
    let (_, admin) = kg.create_key(&["--scopes", "admin", "--owner", "ops"]);
    let api = Api::new(&kg, &admin);
    let (_, created) = api
        .post(
            "/keys",
            json!({"name": "app", "tier": "free", "scopes": ["search"], "owner": "ops"}),
        )
        .await;
    let (id, key) = (
        created["id"].as_str().unwrap().to_string(),
        created["key"].as_str().unwrap().to_string(),
    );
    for _ in 0..3 {
        assert_eq!(kg.post_key("/api/search", &key).await.status(), 200);
    }
    for _ in 0..2 {
        assert_eq!(kg.get_key("/status/500", &key).await.status(), 500);
    }
    assert_eq!(kg.get_key("/other", &key).await.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await; // the logging phase runs after the response
    let (status, usage) = api.get(&format!("/keys/{id}/usage?period=day")).await;
    assert_eq!(status, 200, "{usage}");
    assert_eq!(usage["total_requests"], 6, "{usage}");
    assert_eq!(usage["successful_requests"], 4);
    assert_eq!(usage["failed_requests"], 2);
    assert!(usage["average_response_ms"].as_f64().unwrap() >= 0.0);
    let top = &usage["top_endpoints"][0];
    assert_eq!(
        (&top["endpoint"], &top["requests"]),
        (&json!("/api/search"), &json!(3)),
        "{usage}"
    );
    assert!(top["average_response_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(
        usage["hourly"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["requests"].as_u64().unwrap())
            .sum::<u64>(),
        6
    );
    let (_, one) = api.get(&format!("/keys/{id}")).await;
    assert!(
        one["last_used_at"].is_string(),
        "last_used_at maintained: {one}"
    );
    let (status, body) = api.get(&format!("/keys/{id}/usage?period=year")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (422, Some("validation_error"))
    );

    // Usage recorded just before a shutdown is flushed by the drain.
    assert_eq!(kg.get_key("/other", &key).await.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut kg = kg;
    assert_eq!(kg.terminate().code(), Some(0));
    let kg = kg.restart();
    let api = Api::new(&kg, &admin);
    let (_, usage) = api.get(&format!("/keys/{id}/usage")).await;
    assert_eq!(usage["total_requests"], 7, "{usage}");
}

#[tokio::test]
async fn the_openapi_document_is_served_and_matches_its_generator() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, POLICY);
    let r = client()
        .get(kg.url("/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc = json(r).await;
    assert_eq!(doc["openapi"], "3.0.3");
    assert_eq!(doc["servers"][0]["url"], "/v1");
    assert_eq!(
        doc["components"]["schemas"]["NewKey"]["properties"]["tier"]["enum"],
        json!(["free", "pro"])
    );
    for path in [
        "/auth/token",
        "/auth/refresh",
        "/auth/register",
        "/keys",
        "/keys/{id}",
        "/keys/{id}/regenerate",
        "/keys/{id}/usage",
        "/keys/verify",
        "/keys/first",
        "/credits",
        "/accounts",
        "/accounts/{id}",
        "/accounts/{id}/credits",
        "/account",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} documented");
    }
    // The committed document is what openapi/generate.py writes.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("keygate.json");
    let status = std::process::Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/generate.py"))
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/keygate.json"))
            .unwrap();
    assert_eq!(
        std::fs::read_to_string(out).unwrap(),
        committed,
        "run python3 openapi/generate.py and commit the result"
    );
}
