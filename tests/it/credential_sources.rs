//! Credentials are found in `X-API-Key` (any case), `Authorization: Bearer` and a
//! configured query parameter; two different credentials are refused, never guessed.
use crate::common::*;

const POLICY: &str = r#"
api_keys: { sources: ["header:x-api-key", "bearer", "query:api_key"] }
tiers: { free: { per_minute: 1000 } }
"#;

#[tokio::test]
async fn each_configured_source_authenticates() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, POLICY);
    let (_, key) = kg.create_key(&[]);
    let c = client();
    for header in ["X-API-Key", "x-api-key", "X-API-KEY"] {
        let r = c
            .get(kg.url("/a"))
            .header(header, &key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{header}");
    }
    for auth in [format!("Bearer {key}"), format!("bearer {key}")] {
        let r = c
            .get(kg.url("/a"))
            .header("Authorization", auth)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let r = c
        .get(kg.url(&format!("/a?x=1&api_key={key}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = json(r).await;
    assert_eq!(
        body["query"], "x=1",
        "the query credential is stripped before the upstream"
    );
}

#[tokio::test]
async fn the_same_key_in_two_sources_is_fine_but_two_different_keys_are_refused() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, POLICY);
    let (_, a) = kg.create_key(&[]);
    let (_, b) = kg.create_key(&[]);
    let c = client();
    let r = c
        .get(kg.url("/a"))
        .header("X-API-Key", &a)
        .bearer_auth(&a)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .get(kg.url("/a"))
        .header("X-API-Key", &a)
        .bearer_auth(&b)
        .send()
        .await
        .unwrap();
    let body = expect_error(r, 401, "unauthorized").await;
    assert!(body["message"].as_str().unwrap().contains("Ambiguous"));
    let r = c
        .get(kg.url("/a"))
        .header("X-API-Key", &a)
        .header("X-API-Key", &b)
        .send()
        .await
        .unwrap();
    expect_error(r, 401, "unauthorized").await;
    let r = kg.get_key(&format!("/a?api_key={b}"), &a).await;
    expect_error(r, 401, "unauthorized").await;
}

#[tokio::test]
async fn sources_not_configured_are_ignored() {
    let up = start_upstream().await;
    let kg = Keygate::start(
        up,
        "api_keys: { sources: [\"header:x-custom-key\"] }\ntiers: { free: { per_minute: 100 } }\n",
    );
    let (_, key) = kg.create_key(&[]);
    let c = client();
    let r = c.get(kg.url("/a")).bearer_auth(&key).send().await.unwrap();
    expect_error(r, 401, "unauthorized").await;
    let r = c
        .get(kg.url("/a"))
        .header("X-Custom-Key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
