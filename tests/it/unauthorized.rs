//! Every 401 of the contract, with its exact body and `WWW-Authenticate`.
use crate::common::*;
use serde_json::json;

async fn expect_401(resp: reqwest::Response, message: &str) {
    assert_eq!(resp.status(), 401);
    let www = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(www.starts_with("Bearer realm=\"keygate\""), "{www}");
    assert!(
        resp.headers().get("x-ratelimit-limit").is_none(),
        "no limit headers for unknown callers"
    );
    let body = json(resp).await;
    assert_eq!(
        body,
        json!({"error": "unauthorized", "message": message, "details": {}})
    );
}

#[tokio::test]
async fn missing_invalid_expired_and_revoked_keys_each_get_their_401() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, DEFAULT_POLICY);
    let c = client();
    expect_401(
        c.get(kg.url("/a")).send().await.unwrap(),
        "API key is required",
    )
    .await;
    expect_401(kg.get_key("/a", "nonsense").await, "Invalid API key").await;

    // Well-formed (valid checksum) but never issued by this store.
    let other = Keygate::start(up, DEFAULT_POLICY);
    let (_, foreign) = other.create_key(&[]);
    expect_401(kg.get_key("/a", &foreign).await, "Invalid API key").await;

    let (id, revoked) = kg.create_key(&[]);
    assert!(kg.cli(&["keys", "revoke", &id]).status.success());
    expect_401(kg.get_key("/a", &revoked).await, "API key has been revoked").await;

    // An expired key, without waiting for one to expire (the moment of expiry is
    // timed on a manual clock in `auth::authenticator`): one that expired
    // yesterday, written into the store by hand.
    let (id, expired) = kg.create_key(&["--expires-in", "1d"]);
    let db = rusqlite::Connection::open(kg.dir.path().join("keys.db")).unwrap();
    let yesterday = chrono::Utc::now().timestamp() - 86_400;
    db.execute(
        "UPDATE api_keys SET expires_at = ?1 WHERE id = ?2",
        rusqlite::params![yesterday, id],
    )
    .unwrap();
    expect_401(kg.get_key("/a", &expired).await, "API key has expired").await;
    let m = kg.metrics().await;
    for reason in ["missing", "invalid", "revoked", "expired"] {
        assert!(
            m.contains(&format!(
                "keygate_decisions_total{{reason=\"{reason}\",tier=\""
            )),
            "{reason} counted"
        );
    }
}

#[tokio::test]
async fn a_regenerated_key_replaces_the_old_secret() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, DEFAULT_POLICY);
    let (id, old) = kg.create_key(&[]);
    let out = kg.cli(&["keys", "regenerate", &id, "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["id"], id.as_str());
    let new = v["key"].as_str().unwrap();
    expect_401(kg.get_key("/a", &old).await, "Invalid API key").await;
    assert_eq!(kg.get_key("/a", new).await.status(), 200);
}
