//! Per-IP failed-authentication limit: key guessing from one address is cut off.
use crate::common::*;

#[tokio::test]
async fn an_ip_that_keeps_failing_gets_429_even_with_a_good_key() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, "tiers: { free: { per_minute: 1000 } }\nrate_limit: { ip: { failed_auth_per_minute: 3 } }\nroutes: [ { path: /health, auth: none } ]\n");
    let (_, good) = kg.create_key(&[]);
    let c = client();
    for i in 0..3 {
        let r = kg.get_key("/a", format!("kg_sk_live_guess{i}")).await;
        assert_eq!(r.status(), 401);
    }
    let r = kg.get_key("/a", &good).await;
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    expect_error(r, 429, "rate_limit_exceeded").await;
    // Public routes are not behind authentication, so they stay open.
    assert_eq!(c.get(kg.url("/health")).send().await.unwrap().status(), 200);
    let m = kg.metrics().await;
    assert!(
        m.contains("keygate_decisions_total{reason=\"failed_auth_limited\",tier=\"none\"} 1"),
        "{m}"
    );
}

#[tokio::test]
async fn missing_credentials_do_not_count_as_guesses() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, "tiers: { free: { per_minute: 1000 } }\nrate_limit: { ip: { failed_auth_per_minute: 2 } }\n");
    let (_, good) = kg.create_key(&[]);
    let c = client();
    for _ in 0..5 {
        assert_eq!(c.get(kg.url("/a")).send().await.unwrap().status(), 401);
    }
    assert_eq!(kg.get_key("/a", &good).await.status(), 200);
}
