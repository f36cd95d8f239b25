//! `X-RateLimit-*` on every response to an authenticated caller; IETF headers on demand.
use crate::common::*;

#[tokio::test]
async fn passed_and_rejected_authenticated_responses_carry_rate_limit_headers() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, "tiers: { free: { per_minute: 30, per_day: 1000 } }\nroutes: [ { path: /s, scopes: [x] }, { path: /health, auth: none } ]\n");
    let (_, key) = kg.create_key(&[]);
    let c = client();
    let r = kg.get_key("/a", &key).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-ratelimit-limit"], "30");
    assert_eq!(r.headers()["x-ratelimit-remaining"], "29");
    let reset: u64 = r.headers()["x-ratelimit-reset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        reset > unix_secs() - 1 && reset <= unix_secs() + 61 && reset % 60 == 0,
        "{reset}"
    );
    assert!(
        r.headers().get("ratelimit").is_none(),
        "IETF headers only when configured"
    );
    let r = kg.get_key("/s", &key).await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.headers()["x-ratelimit-remaining"],
        "29",
        "a 403 consumes nothing"
    );
    let r = c.get(kg.url("/health")).send().await.unwrap();
    assert!(
        r.headers().get("x-ratelimit-limit").is_none(),
        "anonymous public routes carry none"
    );
    assert!(r.headers().contains_key("x-request-id"));
}

#[tokio::test]
async fn ietf_headers_follow_the_draft() {
    let up = start_upstream().await;
    let kg = Keygate::start(
        up,
        "tiers: { free: { per_minute: 120, per_day: 10000 } }\nrate_limit: { headers: ietf }\n",
    );
    let (_, key) = kg.create_key(&[]);
    let r = client()
        .get(kg.url("/a"))
        .header("X-API-Key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["ratelimit-policy"],
        "\"minute\";q=120;w=60, \"day\";q=10000;w=86400"
    );
    let rl = r.headers()["ratelimit"].to_str().unwrap();
    let t: u64 = rl
        .strip_prefix("\"minute\";r=119;t=")
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&t));
    assert_eq!(r.headers()["x-ratelimit-remaining"], "119");
}

const CORS: &str = "tiers: { free: { per_minute: 1000 } }\n\
cors: { allow_origins: [\"https://app.example.com\"], max_age: 5m }\n";

/// Issue 13: a browser's preflight got 401, so an API used from web pages could
/// not sit behind keygate. With `cors:`, keygate answers it before authentication
/// and puts the CORS headers on every answer to an allowed origin.
#[tokio::test]
async fn browsers_get_preflights_answered_and_cors_headers_on_every_answer() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, CORS);
    let (_, key) = kg.create_key(&[]);
    let c = client();
    let preflight = |origin: &str| {
        c.request(reqwest::Method::OPTIONS, kg.url("/api/things"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "PUT")
            .header("Access-Control-Request-Headers", "x-api-key, content-type")
            .send()
    };
    let r = preflight("https://app.example.com").await.unwrap();
    assert_eq!(r.status(), 204);
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(h["access-control-allow-methods"], "GET, POST, PUT, DELETE");
    assert_eq!(
        h["access-control-allow-headers"],
        "X-API-Key, Authorization, Content-Type"
    );
    assert_eq!(h["access-control-max-age"], "300");
    assert_eq!(h["vary"], "origin");
    let r = preflight("https://evil.example").await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());

    // Actual requests: the upstream's answer and keygate's own refusals alike.
    let r = c
        .get(kg.url("/api/things"))
        .header("Origin", "https://app.example.com")
        .header("X-API-Key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert!(r.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .contains("X-RateLimit-Remaining"));
    let r = c
        .get(kg.url("/api/things"))
        .header("Origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "no key: still refused");
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let r = c
        .get(kg.url("/api/things"))
        .header("Origin", "https://evil.example")
        .header("X-API-Key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "CORS is the browser's check, not an auth check"
    );
    assert!(r.headers().get("access-control-allow-origin").is_none());
    // Without `cors:` a preflight is an unauthenticated request like any other.
    let plain = Keygate::start(up, DEFAULT_POLICY);
    let r = client()
        .request(reqwest::Method::OPTIONS, plain.url("/api/things"))
        .header("Origin", "https://app.example.com")
        .header("Access-Control-Request-Method", "PUT")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

/// Attacked (third round): `cors.allow_origins: ["https://*.example.com"]` passed
/// `keygate check` and then matched only that literal text. A subdomain wildcard
/// now allows subdomains, and nothing that merely looks like one; a wildcard
/// anywhere else is refused by `check` with its path.
#[tokio::test]
async fn a_subdomain_wildcard_allows_subdomains_and_no_lookalike() {
    let up = start_upstream().await;
    let kg = Keygate::start(
        up,
        "tiers: { free: { per_minute: 1000 } }\n\
         cors: { allow_origins: [\"https://*.example.com\"], allow_credentials: true }\n",
    );
    let c = client();
    let preflight = |origin: &'static str| {
        c.request(reqwest::Method::OPTIONS, kg.url("/api/things"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "PUT")
            .send()
    };
    for allowed in ["https://app.example.com", "https://eu.app.example.com"] {
        let r = preflight(allowed).await.unwrap();
        assert_eq!(r.headers()["access-control-allow-origin"], allowed);
        assert_eq!(r.headers()["access-control-allow-credentials"], "true");
    }
    for lookalike in [
        "https://example.com",
        "https://evil-example.com",
        "https://example.com.evil.com",
        "https://app.example.com.evil.com",
        "http://app.example.com",
        "https://app.example.com:8443",
        "https://*.example.com",
        "null",
    ] {
        let r = preflight(lookalike).await.unwrap();
        assert!(
            r.headers().get("access-control-allow-origin").is_none(),
            "{lookalike} was allowed"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.yaml");
    std::fs::write(
        &config,
        "upstream: { url: \"http://127.0.0.1:3000\" }\ntiers: { free: { per_minute: 1 } }\n\
         cors: { allow_origins: [\"https://a*.example.com\", \"https://*.com\", \"*.example.com\"] }\n",
    )
    .unwrap();
    let out = crate::common::check_config(&config);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for i in 0..3 {
        assert!(
            stderr.contains(&format!("cors.allow_origins[{i}]")),
            "{stderr}"
        );
    }
}
