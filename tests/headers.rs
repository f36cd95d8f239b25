//! `X-RateLimit-*` on every response to an authenticated caller; IETF headers on demand.
mod common;
use common::*;

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

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
        reset > now_secs() - 1 && reset <= now_secs() + 61 && reset % 60 == 0,
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
