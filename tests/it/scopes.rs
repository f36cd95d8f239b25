//! Route scopes (with methods), environment restrictions and IP allow-lists: 403
//! `forbidden`, still with the caller's rate-limit headers.
use crate::common::*;

#[tokio::test]
async fn a_missing_scope_is_403_and_names_the_scope() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, DEFAULT_POLICY);
    let (_, plain) = kg.create_key(&["--scopes", "other"]);
    let (_, search) = kg.create_key(&["--scopes", "search,other"]);
    let (_, admin) = kg.create_key(&["--scopes", "admin"]);
    let r = kg.post_key("/api/search", &plain).await;
    assert!(
        r.headers().contains_key("x-ratelimit-remaining"),
        "authenticated callers get limit headers on 403"
    );
    let body = expect_error(r, 403, "forbidden").await;
    assert_eq!(body["message"], "Missing scope: search");
    assert_eq!(kg.post_key("/api/search", &search).await.status(), 200);
    assert_eq!(kg.post_key("/api/search", &admin).await.status(), 200);
    // The route only takes POST: another method is 405, never the default route's
    // (no scopes, no cost) rules.
    let r = kg.get_key("/api/search", &plain).await;
    assert_eq!(r.headers()["allow"], "POST");
    expect_error(r, 405, "method_not_allowed").await;
    // Path tricks land on the scoped route, not around it.
    for sneaky in ["/api//search", "/api/search/", "/api/%73earch"] {
        let r = kg.post_key(sneaky, &plain).await;
        assert_eq!(r.status(), 403, "{sneaky}");
    }
}

#[tokio::test]
async fn test_keys_are_refused_on_live_only_routes() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, DEFAULT_POLICY);
    let (_, test_key) = kg.create_key(&["--env", "test"]);
    let (_, live_key) = kg.create_key(&["--env", "live"]);
    let r = kg.get_key("/live/x", &test_key).await;
    expect_error(r, 403, "forbidden").await;
    assert_eq!(kg.get_key("/live/x", &live_key).await.status(), 200);
    assert_eq!(kg.get_key("/other", &test_key).await.status(), 200);
}

#[tokio::test]
async fn keys_with_an_ip_allow_list_are_refused_elsewhere() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, DEFAULT_POLICY);
    let (_, outside) = kg.create_key(&["--allow-ip", "10.0.0.0/8"]);
    let (_, inside) = kg.create_key(&["--allow-ip", "10.0.0.0/8,127.0.0.1"]);
    let r = kg.get_key("/a", &outside).await;
    let body = expect_error(r, 403, "forbidden").await;
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("IP address not allowed"));
    assert_eq!(kg.get_key("/a", &inside).await.status(), 200);
}
