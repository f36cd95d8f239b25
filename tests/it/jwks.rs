//! Keys from JWKS: a file, and a URL that is fetched at start, refetched on unknown
//! `kid`s at a bounded rate, rotated, kept on error, and kept on disk for restarts.
use crate::common::jwt_support::{JwksServer, JwtKit};
use crate::common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn claims(jti: &str) -> Value {
    json!({"sub": "user_1", "exp": unix_secs() + 600, "jti": jti})
}

/// The kit's JWKS restricted to the given kids.
fn jwks_with(kit: &JwtKit, kids: &[&str]) -> String {
    let all: Value =
        serde_json::from_str(&std::fs::read_to_string(kit.path("jwks.json")).unwrap()).unwrap();
    let keys: Vec<Value> = all["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| kids.contains(&k["kid"].as_str().unwrap()))
        .cloned()
        .collect();
    json!({ "keys": keys }).to_string()
}

#[tokio::test]
async fn a_jwks_file_supplies_keys_by_kid_for_their_own_algorithm_only() {
    let kit = JwtKit::new();
    let up = start_upstream().await;
    let kg = Keygate::start(
        up,
        &format!(
            "jwt:\n  enabled: true\n  algorithms: [RS256, ES256, EdDSA]\n  jwks_file: \"{}\"\ntiers: {{ free: {{ per_minute: 100 }} }}\n",
            kit.path("jwks.json")
        ),
    );
    let tokens = kit.mint(json!([
        {"name": "rsa", "alg": "RS256", "key": "rsa", "kid": "rsa-1", "claims": claims("1")},
        {"name": "ec", "alg": "ES256", "key": "ec256", "kid": "ec256-1", "claims": claims("2")},
        {"name": "ed", "alg": "EdDSA", "key": "ed", "kid": "ed-1", "claims": claims("3")},
        {"name": "rsa_with_ec_kid", "alg": "RS256", "key": "rsa", "kid": "ec256-1", "claims": claims("4")},
        {"name": "ps_not_allowed", "alg": "PS256", "key": "rsa", "kid": "rsa-1", "claims": claims("5")},
    ]));
    for name in ["rsa", "ec", "ed"] {
        assert_eq!(
            kg.get_bearer("/a", &tokens[name]).await.status(),
            200,
            "{name}"
        );
    }
    let r = kg.get_bearer("/a", &tokens["rsa_with_ec_kid"]).await;
    assert_eq!(r.status(), 401);
    assert_eq!(json(r).await["message"], "Unknown signing key");
    let r = kg.get_bearer("/a", &tokens["ps_not_allowed"]).await;
    assert_eq!(json(r).await["message"], "Token algorithm is not allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_url_rotates_resists_kid_floods_survives_outages_and_restarts() {
    let kit = JwtKit::new();
    let server = JwksServer::start(jwks_with(&kit, &["rsa-1"])).await;
    let up = start_upstream().await;
    let cache_file = kit.path("jwks-cache.json");
    let config = format!(
        "jwt:\n  enabled: true\n  algorithms: [RS256]\n  jwks_url: \"{}\"\n  jwks_min_refresh: 1s\n  jwks_refresh: 1h\n  jwks_cache_file: \"{cache_file}\"\n\
tiers: {{ free: {{ per_minute: 1000 }} }}\nrate_limit: {{ ip: {{ failed_auth_per_minute: 0 }} }}\n",
        server.url
    );
    let kg = Keygate::start(up, &config);
    assert_eq!(server.hits(), 1, "fetched once at start");
    let mut specs = vec![
        json!({"name": "old_a", "alg": "RS256", "key": "rsa", "kid": "rsa-1", "claims": claims("a")}),
        json!({"name": "old_b", "alg": "RS256", "key": "rsa", "kid": "rsa-1", "claims": claims("b")}),
        json!({"name": "new_a", "alg": "RS256", "key": "rsa2", "kid": "rsa2-1", "claims": claims("c")}),
        json!({"name": "new_b", "alg": "RS256", "key": "rsa2", "kid": "rsa2-1", "claims": claims("d")}),
        json!({"name": "new_c", "alg": "RS256", "key": "rsa2", "kid": "rsa2-1", "claims": claims("e")}),
    ];
    for i in 0..40 {
        specs.push(json!({"name": format!("flood{i}"), "alg": "RS256", "key": "rsa", "kid": format!("random-{i}"), "claims": claims("f")}));
    }
    let tokens = kit.mint(json!(specs));
    assert_eq!(kg.get_bearer("/a", &tokens["old_a"]).await.status(), 200);

    // A flood of unknown kids, sent all at once, reaches the identity provider at most
    // once per jwks_min_refresh (concurrent requests wait for the fetch in flight).
    tokio::time::sleep(Duration::from_millis(1100)).await; // the start-up fetch is now old enough
    let started = Instant::now();
    let flood = (0..40).map(|i| {
        let (kg, token) = (&kg, tokens[&format!("flood{i}")].clone());
        async move { kg.get_bearer("/a", &token).await.status().as_u16() }
    });
    let statuses = futures::future::join_all(flood).await;
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    let allowed = 1 + 1 + started.elapsed().as_secs() as usize;
    assert!(
        server.hits() <= allowed,
        "{} fetches for a 40-token flood (allowed {allowed})",
        server.hits()
    );

    // Rotation: the provider publishes rsa2-1 and withdraws rsa-1.
    server.set(200, jwks_with(&kit, &["rsa2-1"]));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        kg.get_bearer("/a", &tokens["new_a"]).await.status(),
        200,
        "new kid fetched on demand"
    );
    let r = kg.get_bearer("/a", &tokens["old_b"]).await;
    assert_eq!(
        r.status(),
        401,
        "withdrawn key no longer verifies fresh tokens"
    );
    assert_eq!(json(r).await["message"], "Unknown signing key");

    // Outage: refreshes fail, the last good set keeps serving.
    server.set(500, "down".into());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let _ = kg.get_bearer("/a", &tokens["flood0"]).await; // unknown kid -> refresh -> 500
    assert_eq!(
        kg.get_bearer("/a", &tokens["new_b"]).await.status(),
        200,
        "stale-on-error"
    );
    let m = kg.metrics().await;
    assert!(m.contains("keygate_jwks_stale 1"), "{m}");
    assert!(
        m.contains("keygate_jwks_refreshes_total{result=\"error\"} 1"),
        "{m}"
    );
    assert!(kg.logs().contains("JWKS refresh failed"));
    drop(kg);

    // Restart during the outage: the copy on disk still verifies tokens.
    let kg = Keygate::start(up, &config);
    assert_eq!(
        kg.get_bearer("/a", &tokens["new_c"]).await.status(),
        200,
        "served from the disk copy"
    );
    assert!(kg.logs().contains("last good copy from disk"));
}
