//! JWT authentication with tokens minted by PyJWT: every algorithm, every failure as
//! 401 `invalid_token` naming the check, claims driving scopes, tiers and limits.
use crate::common::jwt_support::JwtKit;
use crate::common::*;
use serde_json::{json, Value};

const ALL: &[(&str, &str)] = &[
    ("RS256", "rsa"),
    ("RS384", "rsa"),
    ("RS512", "rsa"),
    ("PS256", "rsa"),
    ("PS384", "rsa"),
    ("PS512", "rsa"),
    ("ES256", "ec256"),
    ("ES384", "ec384"),
    ("EdDSA", "ed"),
    ("HS256", "hs"),
    ("HS384", "hs"),
    ("HS512", "hs"),
];

/// A config accepting every algorithm, one key entry per algorithm (kid = alg).
fn all_algorithms_config(kit: &JwtKit) -> String {
    let algs: Vec<&str> = ALL.iter().map(|(a, _)| *a).collect();
    let mut keys = String::new();
    for (alg, key) in ALL {
        let source = if *key == "hs" {
            format!("secret: \"{}\"", kit.secret())
        } else {
            format!("pem_file: \"{}\"", kit.path(&format!("{key}.pub.pem")))
        };
        keys.push_str(&format!("    - {{ kid: {alg}, alg: {alg}, {source} }}\n"));
    }
    format!(
        "jwt:\n  enabled: true\n  algorithms: [{}]\n  issuer: https://idp.example\n  audience: [keygate-api]\n  leeway: 5s\n  keys:\n{keys}\
tiers:\n  free: {{ per_minute: 1000 }}\n  pro: {{ per_minute: 3 }}\ndefault_tier: free\n\
routes:\n  - {{ path: /api/search, methods: [POST], scopes: [search] }}\n",
        algs.join(", ")
    )
}

fn claims(extra: Value) -> Value {
    let mut c = json!({"sub": "user_42", "iss": "https://idp.example", "aud": "keygate-api", "exp": unix_secs() + 600, "iat": unix_secs()});
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

async fn expect_invalid_token(resp: reqwest::Response, message: &str) {
    assert_eq!(resp.status(), 401, "{message}");
    let www = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(www.contains("error=\"invalid_token\""), "{www}");
    let body = json(resp).await;
    assert_eq!(body["error"], "invalid_token", "{body}");
    assert_eq!(body["message"], message, "{body}");
}

#[tokio::test]
async fn every_algorithm_is_accepted_when_listed() {
    let kit = JwtKit::new();
    let up = start_upstream().await;
    let kg = Keygate::start(up, &all_algorithms_config(&kit));
    let specs: Vec<Value> = ALL
        .iter()
        .map(|(alg, key)| json!({"name": alg, "alg": alg, "key": key, "kid": alg, "claims": claims(json!({}))}))
        .collect();
    let tokens = kit.mint(json!(specs));
    for (alg, _) in ALL {
        let r = kg.get_bearer("/a", &tokens[*alg]).await;
        assert_eq!(r.status(), 200, "{alg}: {}", r.text().await.unwrap());
        let body = json(r).await;
        assert_eq!(body["headers"]["x-auth-method"][0], "jwt", "{alg}");
        assert_eq!(body["headers"]["x-auth-subject"][0], "user_42");
        assert!(
            body["headers"].get("authorization").is_none(),
            "token stripped"
        );
    }
    let m = kg.metrics().await;
    for (alg, _) in ALL {
        assert!(
            m.contains(&format!(
                "keygate_jwt_verifications_total{{alg=\"{alg}\",result=\"ok\"}} 1"
            )),
            "{alg}\n{m}"
        );
    }
}

/// Issue 13, finding 6: with `jwt.issuer` and `jwt.audience` set, a token without
/// `iss`/`aud`, or with them of the wrong type, was accepted.
#[tokio::test]
async fn a_configured_issuer_and_audience_are_required_and_must_be_strings() {
    let kit = JwtKit::new();
    let up = start_upstream().await;
    let config = format!(
        concat!(
            "jwt:\n  enabled: true\n  algorithms: [HS256]\n  issuer: https://idp.example\n",
            "  audience: [keygate-api, other-api]\n  keys:\n",
            "    - {{ kid: hs, alg: HS256, secret: \"{}\" }}\n",
            "tiers: {{ free: {{ per_minute: 1000 }} }}\n",
            "rate_limit: {{ ip: {{ failed_auth_per_minute: 0 }} }}\n"
        ),
        kit.secret()
    );
    let kg = Keygate::start(up, &config);
    let hs = |name: &str, c: Value| json!({"name": name, "special": "hs_unchecked", "kid": "hs", "claims": claims(c)});
    let tokens = kit.mint(json!([
        hs("good", json!({})),
        hs("aud_list", json!({"aud": ["x-api", "other-api"]})),
        hs("no_iss", json!({"iss": null})),
        hs("no_aud", json!({"aud": null})),
        hs("iss_number", json!({"iss": 123})),
        hs("iss_list", json!({"iss": ["https://idp.example"]})),
        hs("aud_number", json!({"aud": 5})),
        hs("aud_nested", json!({"aud": [["keygate-api"]]})),
        hs("aud_mixed", json!({"aud": ["keygate-api", 5]})),
        hs("aud_object", json!({"aud": {"keygate-api": true}})),
    ]));
    for name in ["good", "aud_list"] {
        assert_eq!(
            kg.get_bearer("/a", &tokens[name]).await.status(),
            200,
            "{name}"
        );
    }
    for (name, message) in [
        ("no_iss", "Missing required claim: iss"),
        ("no_aud", "Missing required claim: aud"),
        ("iss_number", "Invalid issuer"),
        ("iss_list", "Invalid issuer"),
        ("aud_number", "Invalid audience"),
        ("aud_nested", "Invalid audience"),
        ("aud_mixed", "Invalid audience"),
        ("aud_object", "Invalid audience"),
    ] {
        expect_invalid_token(kg.get_bearer("/a", &tokens[name]).await, message).await;
    }
}

#[tokio::test]
async fn every_failed_check_is_401_invalid_token_naming_the_check() {
    let kit = JwtKit::new();
    let up = start_upstream().await;
    let config = format!(
        concat!(
            "jwt:\n  enabled: true\n  algorithms: [RS256, HS256]\n  issuer: https://idp.example\n",
            "  audience: [keygate-api]\n  leeway: 5s\n  keys:\n",
            "    - {{ kid: rs, alg: RS256, pem_file: \"{}\" }}\n",
            "    - {{ kid: hs, alg: HS256, secret: \"{}\" }}\n",
            "tiers: {{ free: {{ per_minute: 1000 }} }}\n",
            "rate_limit: {{ ip: {{ failed_auth_per_minute: 0 }} }}\n"
        ),
        kit.path("rsa.pub.pem"),
        kit.secret()
    );
    let kg = Keygate::start(up, &config);
    let rs = |name: &str, c: Value| json!({"name": name, "alg": "RS256", "key": "rsa", "kid": "rs", "claims": c});
    let tokens = kit.mint(json!([
        rs("good", claims(json!({}))),
        rs("expired", claims(json!({"exp": unix_secs() - 60}))),
        rs("not_yet", claims(json!({"nbf": unix_secs() + 600}))),
        rs("future_iat", claims(json!({"iat": unix_secs() + 600}))),
        rs("wrong_iss", claims(json!({"iss": "https://evil.example"}))),
        rs("wrong_aud", claims(json!({"aud": "other-api"}))),
        rs("no_exp", claims(json!({"exp": null}))),
        rs("no_sub", claims(json!({"sub": null}))),
        {"name": "unknown_kid", "alg": "RS256", "key": "rsa", "kid": "nope", "claims": claims(json!({}))},
        {"name": "wrong_key", "alg": "RS256", "key": "rsa2", "kid": "rs", "claims": claims(json!({}))},
        {"name": "tampered", "alg": "RS256", "key": "rsa", "kid": "rs", "claims": claims(json!({})), "special": "tamper"},
        {"name": "none", "special": "none", "claims": claims(json!({}))},
        {"name": "confusion_kid", "special": "hs_with_public_pem", "kid": "rs", "claims": claims(json!({}))},
        {"name": "confusion", "special": "hs_with_public_pem", "claims": claims(json!({}))},
        {"name": "not_allowed", "alg": "ES256", "key": "ec256", "claims": claims(json!({}))},
    ]));
    assert_eq!(kg.get_bearer("/a", &tokens["good"]).await.status(), 200);
    for (name, message) in [
        ("expired", "Token has expired"),
        ("not_yet", "Token is not yet valid"),
        ("future_iat", "Token was issued in the future"),
        ("wrong_iss", "Invalid issuer"),
        ("wrong_aud", "Invalid audience"),
        ("no_exp", "Missing required claim: exp"),
        ("no_sub", "Missing required claim: sub"),
        ("unknown_kid", "Unknown signing key"),
        ("wrong_key", "Invalid token signature"),
        ("tampered", "Invalid token signature"),
        ("none", "Token algorithm is not allowed"),
        ("confusion_kid", "Unknown signing key"),
        ("confusion", "Invalid token signature"),
        ("not_allowed", "Token algorithm is not allowed"),
    ] {
        expect_invalid_token(kg.get_bearer("/a", &tokens[name]).await, message).await;
    }
    let huge = format!("eyJhbGciOiJSUzI1NiJ9.{}.sig", "A".repeat(9000));
    expect_invalid_token(kg.get_bearer("/a", &huge).await, "Token is too large").await;
    expect_invalid_token(
        kg.get_bearer("/a", "eyJhbGciOi.!!!.x").await,
        "Malformed token",
    )
    .await;
    expect_invalid_token(
        kg.get_bearer("/a", "eyJub3QganNvbg.e30.c2ln").await,
        "Malformed token",
    )
    .await;
    let logs = kg.logs();
    assert!(!logs.contains(&tokens["good"][40..80]), "no token in logs");
    let m = kg.metrics().await;
    assert!(
        m.contains("keygate_jwt_verifications_total{alg=\"RS256\",result=\"expired\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("keygate_decisions_total{reason=\"invalid_token\",tier=\"none\"}"),
        "{m}"
    );
}

#[tokio::test]
async fn claims_drive_scopes_tiers_and_limits_shared_by_subject() {
    let kit = JwtKit::new();
    let up = start_upstream().await;
    let kg = Keygate::start(up, &all_algorithms_config(&kit));
    let t = |name: &str, c: Value| json!({"name": name, "alg": "ES256", "key": "ec256", "kid": "ES256", "claims": c});
    let tokens = kit.mint(json!([
        t("no_scope", claims(json!({"sub": "a"}))),
        t(
            "scope_string",
            claims(json!({"sub": "b", "scope": "read search"}))
        ),
        t(
            "scope_array",
            claims(json!({"sub": "c", "scope": ["search"]}))
        ),
        t(
            "pro_1",
            claims(json!({"sub": "d", "tier": "pro", "org": "org_9"}))
        ),
        t(
            "pro_2",
            claims(json!({"sub": "d", "tier": "pro", "jti": "second"}))
        ),
        t(
            "unknown_tier",
            claims(json!({"sub": "e", "tier": "platinum"}))
        ),
    ]));
    let r = kg.post_bearer("/api/search", &tokens["no_scope"]).await;
    assert_eq!(r.status(), 403);
    assert_eq!(json(r).await["message"], "Missing scope: search");
    assert_eq!(
        kg.post_bearer("/api/search", &tokens["scope_string"])
            .await
            .status(),
        200
    );
    assert_eq!(
        kg.post_bearer("/api/search", &tokens["scope_array"])
            .await
            .status(),
        200
    );

    let r = kg.get_bearer("/a", &tokens["unknown_tier"]).await;
    assert_eq!(
        r.headers()["x-ratelimit-limit"],
        "1000",
        "unknown tier falls back to default_tier"
    );
    assert_eq!(json(r).await["headers"]["x-auth-tier"][0], "free");

    // Two different tokens of one subject share the pro limit of 3 per minute.
    let r = kg.get_bearer("/a", &tokens["pro_1"]).await;
    assert_eq!(r.headers()["x-ratelimit-limit"], "3");
    let body = json(r).await;
    assert_eq!(body["headers"]["x-auth-tier"][0], "pro");
    assert_eq!(body["headers"]["x-auth-org"][0], "org_9");
    assert_eq!(kg.get_bearer("/a", &tokens["pro_2"]).await.status(), 200);
    assert_eq!(kg.get_bearer("/a", &tokens["pro_1"]).await.status(), 200);
    let r = kg.get_bearer("/a", &tokens["pro_2"]).await;
    assert_eq!(r.status(), 429, "the subject's 4th request in the minute");
}

/// A token is verified once and then served from the cache; that the cached entry
/// dies with the token's `exp` is timed on a manual clock in `auth::jwt`.
#[tokio::test]
async fn a_repeated_token_is_verified_once() {
    let kit = JwtKit::new();
    let up = start_upstream().await;
    let kg = Keygate::start(up, &all_algorithms_config(&kit));
    let tokens = kit.mint(json!([
        {"name": "t", "alg": "RS256", "key": "rsa", "kid": "RS256", "claims": claims(json!({}))},
    ]));
    for _ in 0..5 {
        assert_eq!(kg.get_bearer("/a", &tokens["t"]).await.status(), 200);
    }
    let m = kg.metrics().await;
    assert!(
        m.contains("keygate_jwt_verifications_total{alg=\"RS256\",result=\"ok\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("keygate_jwt_verifications_total{alg=\"cached\",result=\"ok\"} 4"),
        "{m}"
    );
}

#[tokio::test]
async fn inline_jwks_tokens_without_kid_and_limit_by_another_claim() {
    let kit = JwtKit::new();
    let up = start_upstream().await;
    let jwks: Value =
        serde_json::from_str(&std::fs::read_to_string(kit.path("jwks.json")).unwrap()).unwrap();
    let ec_jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == "ec256-1")
        .unwrap()
        .clone();
    let config = format!(
        concat!(
            "jwt:\n  enabled: true\n  algorithms: [ES256, RS256]\n",
            "  claims: {{ limit_by: tenant }}\n  keys:\n",
            "    - {{ kid: inline-ec, alg: ES256, jwk: {} }}\n",
            "    - {{ alg: RS256, pem_file: \"{}\" }}\n",
            "    - {{ alg: RS256, pem_file: \"{}\" }}\n",
            "tiers: {{ free: {{ per_minute: 2 }} }}\n"
        ),
        ec_jwk,
        kit.path("rsa2.pub.pem"),
        kit.path("rsa.pub.pem")
    );
    let kg = Keygate::start(up, &config);
    let c =
        |sub: &str, tenant: &str| json!({"sub": sub, "tenant": tenant, "exp": unix_secs() + 600});
    let tokens = kit.mint(json!([
        {"name": "inline", "alg": "ES256", "key": "ec256", "kid": "inline-ec", "claims": c("a", "t1")},
        {"name": "no_kid", "alg": "RS256", "key": "rsa", "claims": c("b", "t1")},
        {"name": "other_tenant", "alg": "RS256", "key": "rsa", "claims": c("c", "t2")},
        {"name": "no_tenant", "alg": "RS256", "key": "rsa", "claims": {"sub": "d", "exp": unix_secs() + 600}},
    ]));
    // The inline JWK verifies; a token without kid is tried against every RS256 key.
    assert_eq!(kg.get_bearer("/a", &tokens["inline"]).await.status(), 200);
    assert_eq!(kg.get_bearer("/a", &tokens["no_kid"]).await.status(), 200);
    // Both subjects belong to tenant t1, whose limit of 2 is now spent.
    assert_eq!(kg.get_bearer("/a", &tokens["no_kid"]).await.status(), 429);
    assert_eq!(
        kg.get_bearer("/a", &tokens["other_tenant"]).await.status(),
        200
    );
    let r = kg.get_bearer("/a", &tokens["no_tenant"]).await;
    assert_eq!(r.status(), 401);
    assert_eq!(json(r).await["message"], "Missing required claim: tenant");
}
