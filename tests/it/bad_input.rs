//! Hostile input never panics, never 500s, and never echoes a key back.
use crate::common::*;

#[tokio::test]
async fn odd_credentials_get_401_not_500() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, DEFAULT_POLICY);
    let c = client();
    let huge = format!("kg_sk_live_{}", "a".repeat(9 * 1024));
    for value in [
        huge.as_str(),
        "   ",
        "kg_sk_live_",
        "kg_sk_test_ääää",
        "\u{1F600}",
    ] {
        let r = kg.get_key("/a", value.as_bytes()).await;
        let status = r.status().as_u16();
        assert!(status == 401, "{status} for {:.20}", value);
        let body = r.text().await.unwrap();
        assert!(
            !body.contains(value.trim()) || value.trim().is_empty(),
            "key echoed"
        );
    }
    let r = c
        .get(kg.url("/a"))
        .header("Authorization", "Bearer ")
        .send()
        .await
        .unwrap();
    let body = expect_error(r, 401, "unauthorized").await;
    assert_eq!(body["message"], "Invalid API key");
    let r = c
        .get(kg.url("/a"))
        .header("Authorization", &[0xffu8, 0xfe][..])
        .send()
        .await
        .unwrap();
    expect_error(r, 401, "unauthorized").await;
}

#[tokio::test]
async fn malformed_paths_and_requests_are_400_and_huge_headers_refused() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, DEFAULT_POLICY);
    let c = client();
    for path in [
        "/health/../admin",
        "/health/./x",
        "/a/%2e%2e/b",
        "/a%2fb",
        "/a%zz",
        "/a\\b",
    ] {
        let resp = kg
            .exchange(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await;
        assert!(resp.starts_with("HTTP/1.1 400"), "{path}: {resp}");
        assert!(
            resp.contains("\"error\":\"invalid_request\""),
            "{path}: {resp}"
        );
    }
    let resp = kg
        .exchange(b"GET /a HTTP/1.1\r\nHost: x\r\nX-API-Key: \x80\x81\r\nConnection: close\r\n\r\n")
        .await;
    assert!(
        resp.starts_with("HTTP/1.1 401") || resp.starts_with("HTTP/1.1 400"),
        "{resp}"
    );
    let big = format!(
        "GET /a HTTP/1.1\r\nHost: x\r\n{}Connection: close\r\n\r\n",
        "X-Pad: ".to_string() + &"p".repeat(200 * 1024) + "\r\n"
    );
    let resp = kg.exchange(big.as_bytes()).await;
    assert!(!resp.starts_with("HTTP/1.1 5"), "{:.80}", resp);
    let resp = kg.exchange(b"NOT HTTP AT ALL\r\n\r\n").await;
    assert!(!resp.starts_with("HTTP/1.1 5"), "{resp}");
    // Still serving after all of that.
    assert_eq!(c.get(kg.url("/health")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn keys_never_reach_logs_bodies_or_metrics() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, DEFAULT_POLICY);
    let (_, key) = kg.create_key(&["--scopes", "none"]);
    let revoked = kg.create_key(&[]);
    assert!(kg.cli(&["keys", "revoke", &revoked.0]).status.success());
    let mut bodies = String::new();
    for (path, k) in [
        ("/a", &key),
        ("/api/search", &key),
        ("/a", &revoked.1),
        ("/a", &format!("{key}x")),
    ] {
        let r = kg.post_key(path, k.as_str()).await;
        bodies.push_str(&r.text().await.unwrap());
    }
    let metrics = kg.metrics().await;
    let logs = kg.logs();
    for secret in [&key, &revoked.1] {
        let tail = &secret[11..];
        assert!(!bodies.contains(tail), "key in a response body");
        assert!(!metrics.contains(tail), "key in metrics");
        assert!(!logs.contains(tail), "key in logs");
    }
    assert!(
        logs.contains("keygate::access"),
        "access log lines exist: {logs}"
    );
}
