//! Tier limits: exact under concurrency, all-or-nothing across windows, 429 with
//! `retry_after` and `Retry-After`, block periods, per-IP limits.
use crate::common::*;
use futures::future::join_all;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_requests_against_a_limit_of_fifty_admit_exactly_fifty() {
    let up = start_upstream().await;
    let kg = Keygate::start(
        up,
        "tiers: { free: { per_day: 50 } }\nrate_limit: { ip: { per_minute: 0 } }\n",
    );
    let (_, key) = kg.create_key(&[]);
    let c = client();
    let requests = (0..200).map(|_| {
        let (c, url, key) = (c.clone(), kg.url("/a"), key.clone());
        async move {
            c.get(url)
                .header("X-API-Key", key)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    });
    let statuses = join_all(requests).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        50,
        "{statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 150);
}

#[tokio::test]
async fn a_429_says_when_to_retry() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, "tiers: { free: { per_hour: 2 } }\n");
    let (_, key) = kg.create_key(&[]);
    for _ in 0..2 {
        assert_eq!(kg.get_key("/a", &key).await.status(), 200);
    }
    let r = kg.get_key("/a", &key).await;
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry));
    assert_eq!(r.headers()["x-ratelimit-remaining"], "0");
    assert_eq!(r.headers()["x-ratelimit-limit"], "2");
    let body = expect_error(r, 429, "rate_limit_exceeded").await;
    assert_eq!(body["retry_after"], retry);
    assert_eq!(
        body["message"],
        format!(
            "Rate limit exceeded. Try again in {retry} second{}.",
            if retry == 1 { "" } else { "s" }
        )
    );
}

#[tokio::test]
async fn a_refusal_by_one_window_consumes_nothing_from_another() {
    let up = start_upstream().await;
    let kg = Keygate::start(
        up,
        "tiers: { free: { per_second: 3, per_day: 4 } }\nrate_limit: { headers: both }\n",
    );
    let (_, key) = kg.create_key(&[]);
    start_of_next_second().await;
    let mut admitted = 0;
    for _ in 0..20 {
        let r = kg.get_key("/a", &key).await;
        if r.status() == 200 {
            admitted += 1;
        } else {
            assert_eq!(r.status(), 429);
        }
    }
    assert!(
        (3..=4).contains(&admitted),
        "the burst is held by the second window: {admitted}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    for _ in 0..3 {
        let r = kg.get_key("/a", &key).await;
        let policy = r.headers()["ratelimit-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(policy, "\"second\";q=3;w=1, \"day\";q=4;w=86400");
        if r.status() == 200 {
            admitted += 1;
        }
    }
    assert_eq!(
        admitted, 4,
        "the day window counted admitted requests only, never the refused ones"
    );
}

#[tokio::test]
async fn block_keeps_the_key_out_after_exhaustion() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, "tiers: { free: { per_second: 1, block: 3s } }\n");
    let (_, key) = kg.create_key(&[]);
    start_of_next_second().await;
    assert_eq!(kg.get_key("/a", &key).await.status(), 200);
    let r = kg.get_key("/a", &key).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "3");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let r = kg.get_key("/a", &key).await;
    assert_eq!(
        r.status(),
        429,
        "still blocked though the second window reset"
    );
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry <= 2, "refusals do not extend the block: {retry}");
    tokio::time::sleep(std::time::Duration::from_millis(1700)).await;
    assert_eq!(kg.get_key("/a", &key).await.status(), 200);
}

/// Issue 13: during a block shorter than an exhausted window, `Retry-After` gave
/// the block's end, and a client that waited that long was refused again.
#[tokio::test]
async fn while_blocked_every_hint_says_when_a_retry_succeeds() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, "tiers: { free: { per_minute: 2, block: 2s } }\n");
    let (_, key) = kg.create_key(&[]);
    // Far enough from the minute's end that the minute window outlasts the block.
    let minute = std::time::Duration::from_secs(60);
    tokio::time::sleep(wait_for_window_room(
        minute,
        std::time::Duration::from_secs(20),
    ))
    .await;
    for _ in 0..2 {
        assert_eq!(kg.get_key("/a", &key).await.status(), 200);
    }
    for _ in 0..2 {
        let r = kg.get_key("/a", &key).await;
        let now = unix_secs();
        let minute_end = now - now % 60 + 60;
        let header = |name: &str| -> u64 { r.headers()[name].to_str().unwrap().parse().unwrap() };
        let (retry, reset) = (header("retry-after"), header("x-ratelimit-reset"));
        assert_eq!(header("x-ratelimit-remaining"), 0);
        assert!(
            now + retry >= minute_end && now + retry <= minute_end + 1,
            "Retry-After {retry} at {now}: the minute ends at {minute_end}"
        );
        assert_eq!(reset, minute_end, "X-RateLimit-Reset");
        let body = json(r).await;
        assert_eq!(body["retry_after"], retry);
    }
}

#[tokio::test]
async fn the_client_ip_limit_applies_before_and_regardless_of_auth() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, "tiers: { free: { per_minute: 1000 } }\nrate_limit: { ip: { per_minute: 5 } }\nroutes: [ { path: /health, auth: none } ]\n");
    let c = client();
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(
            c.get(kg.url("/health"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, vec![200, 200, 200, 200, 200, 429, 429]);
    let r = c.get(kg.url("/health")).send().await.unwrap();
    assert!(r.headers().contains_key("retry-after"));
    expect_error(r, 429, "rate_limit_exceeded").await;
}

#[tokio::test]
async fn metered_routes_debit_credits_and_refuse_with_402_when_spent() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, DEFAULT_POLICY);
    let (_, key) = kg.create_key(&["--scopes", "search", "--credits", "2"]);
    let (_, unmetered) = kg.create_key(&["--scopes", "search"]);
    for _ in 0..2 {
        assert_eq!(kg.post_key("/api/search", &key).await.status(), 200);
    }
    let r = kg.post_key("/api/search", &key).await;
    let body = expect_error(r, 402, "insufficient_credits").await;
    assert_eq!(body["message"], "No credits remaining");
    assert_eq!(
        kg.get_key("/free", &key).await.status(),
        200,
        "cost 0 routes still work"
    );
    for _ in 0..3 {
        assert_eq!(kg.post_key("/api/search", &unmetered).await.status(), 200);
    }
}

/// The policy of the SIGKILL tests: one route costing a credit, limits that never bind.
pub(crate) const METERED_POLICY: &str = "tiers: { free: { per_second: 1000000 } }\n\
     rate_limit: { ip: { per_minute: 0 } }\n\
     routes:\n  - { path: /paid, cost: 1 }\n";

/// SIGKILL in the middle of metered traffic, then a restart: every request answered
/// 200 was paid for, and nothing more was spent than the requests that never got an
/// answer (at most one in flight per client) could account for.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sigkill_under_metered_load_spends_no_credit_twice_and_loses_none_answered() {
    let up = start_upstream().await;
    sigkill_under_metered_load(Keygate::start(up, METERED_POLICY)).await;
}

/// Runs 16 clients against `kg`'s `/paid` (see [`METERED_POLICY`]), SIGKILLs it
/// after 2,000 paid answers, restarts it and checks the credits spent.
pub(crate) async fn sigkill_under_metered_load(mut kg: Keygate) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    const CREDITS: u64 = 1_000_000;
    const CLIENTS: usize = 16;
    let (id, key) = kg.create_key(&["--credits", &CREDITS.to_string()]);
    let (paid, other, unanswered) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (url, key) = (kg.url("/paid"), key.clone());
            let (paid, other, unanswered) = (paid.clone(), other.clone(), unanswered.clone());
            tokio::spawn(async move {
                let c = client();
                loop {
                    match c.get(&url).header("X-API-Key", &key).send().await {
                        Ok(r) if r.status() == 200 => paid.fetch_add(1, Ordering::SeqCst),
                        Ok(_) => other.fetch_add(1, Ordering::SeqCst),
                        Err(_) => {
                            unanswered.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    };
                }
            })
        })
        .collect();
    while paid.load(Ordering::SeqCst) < 2_000 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    kg.signal("KILL");
    kg.wait_exit();
    for c in clients {
        c.await.unwrap();
    }
    let (paid, other, unanswered) = (
        paid.load(Ordering::SeqCst),
        other.load(Ordering::SeqCst),
        unanswered.load(Ordering::SeqCst),
    );
    assert_eq!(
        other, 0,
        "every request before the kill was paid and forwarded"
    );
    let kg = kg.restart();
    let shown: serde_json::Value =
        serde_json::from_slice(&kg.cli(&["keys", "show", &id]).stdout).unwrap();
    let spent = CREDITS - shown["credits"].as_u64().unwrap();
    assert!(
        spent >= paid,
        "{paid} requests were answered 200 but only {spent} credits were spent"
    );
    assert!(
        spent <= paid + unanswered,
        "{spent} credits spent for {paid} answered requests and {unanswered} unanswered"
    );
    let r = kg.get_key("/paid", &key).await;
    assert_eq!(r.status(), 200, "the restarted keygate goes on debiting");
    let shown: serde_json::Value =
        serde_json::from_slice(&kg.cli(&["keys", "show", &id]).stdout).unwrap();
    assert_eq!(CREDITS - shown["credits"].as_u64().unwrap(), spent + 1);
}
