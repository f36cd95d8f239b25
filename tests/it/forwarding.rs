//! What reaches the upstream: identity added, credentials and spoofed identity
//! removed, X-Forwarded-For and X-Request-Id set; sandbox routing; upstream failures.
use crate::common::*;

#[tokio::test]
async fn the_upstream_sees_identity_and_never_the_key() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, DEFAULT_POLICY);
    let (id, key) = kg.create_key(&[
        "--scopes", "a,b", "--org", "org_acme", "--owner", "user_7", "--tier", "pro",
    ]);
    let r = client()
        .get(kg.url("/items?q=1"))
        .header("X-API-Key", &key)
        .header("X-Auth-Subject", "admin")
        .header("X-Auth-Tier", "enterprise")
        .header("X-Forwarded-For", "203.0.113.9")
        .header("X-Request-Id", "req-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], "req-123");
    let body = json(r).await;
    let h = &body["headers"];
    assert_eq!(h["x-auth-subject"][0], "user_7");
    assert_eq!(h["x-auth-key-id"][0], id.as_str());
    assert_eq!(h["x-auth-org"][0], "org_acme");
    assert_eq!(h["x-auth-tier"][0], "pro");
    assert_eq!(h["x-auth-scopes"][0], "a b");
    assert_eq!(h["x-auth-environment"][0], "live");
    assert_eq!(h["x-auth-method"][0], "api_key");
    assert_eq!(
        h["x-auth-subject"].as_array().unwrap().len(),
        1,
        "spoofed copy removed"
    );
    assert_eq!(h["x-forwarded-for"][0], "203.0.113.9, 127.0.0.1");
    assert_eq!(h["x-request-id"][0], "req-123");
    assert!(h.get("x-api-key").is_none());
    assert_eq!(body["path"], "/items");
    assert_eq!(body["query"], "q=1");
    assert!(!body.to_string().contains(&key));
}

#[tokio::test]
async fn public_routes_pass_untouched_but_never_carry_spoofed_identity() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, DEFAULT_POLICY);
    let r = client()
        .get(kg.url("/health"))
        .header("X-API-Key", "whatever-the-client-sends")
        .header("X-Auth-Subject", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = json(r).await;
    assert_eq!(body["headers"]["x-api-key"][0], "whatever-the-client-sends");
    assert!(body["headers"].get("x-auth-subject").is_none());
}

#[tokio::test]
async fn test_keys_go_to_the_sandbox() {
    let live = start_upstream().await;
    let sandbox = start_upstream().await;
    let policy = "tiers: { free: { per_minute: 100 } }\n";
    let kg = Keygate::start_url(
        &format!("http://{live}\"\n  sandbox_url: \"http://{sandbox}"),
        policy,
    );
    let (_, test_key) = kg.create_key(&["--env", "test"]);
    let (_, live_key) = kg.create_key(&[]);
    let t = json(kg.get_key("/a", &test_key).await).await;
    let l = json(kg.get_key("/a", &live_key).await).await;
    assert_eq!(t["upstream"], sandbox.to_string());
    assert_eq!(l["upstream"], live.to_string());
    assert_eq!(t["headers"]["x-auth-environment"][0], "test");
    let dead = free_port();
    let kg2 = Keygate::start_url(
        &format!("http://{live}\"\n  sandbox_url: \"http://127.0.0.1:{dead}"),
        policy,
    );
    let (_, test_key) = kg2.create_key(&["--env", "test"]);
    let (_, live_key) = kg2.create_key(&[]);
    assert_eq!(kg2.get_key("/a", &live_key).await.status(), 200);
    let r = kg2.get_key("/a", &test_key).await;
    expect_error(r, 502, "bad_gateway").await;
}

#[tokio::test]
async fn upstream_failures_become_contract_errors() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, DEFAULT_POLICY);
    let (_, key) = kg.create_key(&[]);
    // read_timeout is 2s in the test config.
    let r = kg.get_key("/delay/4000", &key).await;
    assert!(r.headers().contains_key("x-ratelimit-limit"));
    expect_error(r, 504, "gateway_timeout").await;
    let r = kg.get_key("/status/503", &key).await;
    assert_eq!(r.status(), 503, "upstream statuses pass through unchanged");
    let dead = Keygate::start_url(&format!("http://127.0.0.1:{}", free_port()), DEFAULT_POLICY);
    let (_, key) = dead.create_key(&[]);
    let r = dead.get_key("/a", &key).await;
    expect_error(r, 502, "bad_gateway").await;
    let m = dead.metrics().await;
    assert!(
        m.contains(
            "keygate_requests_total{outcome=\"upstream_error\",protocol=\"h1\",route=\"default\",status=\"502\"} 1"
        ),
        "{m}"
    );
    let logs = dead.logs();
    assert_eq!(
        logs.matches("proxying failed").count(),
        1,
        "one line per failure: {logs}"
    );
    assert!(
        !logs.contains("Fail to proxy"),
        "no second line from Pingora: {logs}"
    );
}

/// Attacked (third round): `Grpc-Metadata-X-Auth-Scopes: admin` reached the
/// upstream, and grpc-gateway, the usual REST-to-gRPC bridge, hands a service
/// behind it gRPC metadata `x-auth-scopes: admin`.
#[tokio::test]
async fn identity_headers_under_a_bridge_prefix_never_reach_the_upstream() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, DEFAULT_POLICY);
    let (_, key) = kg.create_key(&["--scopes", "read", "--owner", "alice"]);
    let r = client()
        .get(kg.url("/items"))
        .header("X-API-Key", &key)
        .header("Grpc-Metadata-X-Auth-Scopes", "admin")
        .header("Grpc-Metadata-X-Auth-Subject", "root")
        .header("grpc_metadata_x_auth_org", "org_victim")
        .header("Grpc-Metadata-Grpc-Metadata-X-Auth-Tier", "enterprise")
        .header("Grpc-Metadata-X-Api-Key", "someone-elses")
        .header("Grpc-Metadata-X-Request-Trace", "kept")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = json(r).await;
    let headers = body["headers"].as_object().unwrap();
    let bridged: Vec<&String> = headers
        .keys()
        .filter(|k| k.replace('_', "-").starts_with("grpc-metadata-"))
        .collect();
    assert_eq!(bridged, ["grpc-metadata-x-request-trace"], "{headers:?}");
    assert_eq!(body["headers"]["x-auth-scopes"][0], "read");
    assert_eq!(body["headers"]["x-auth-subject"][0], "alice");
}
