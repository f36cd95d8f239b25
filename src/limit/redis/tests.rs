use super::*;
use crate::clock::ManualClock;
use crate::config::OnBackendError;
use crate::limit::FallbackLimiter;

const T0: u64 = 1_700_000_020_000; // 40 s into a minute

/// The machine's Redis; `None` (skipped loudly) when it is not running, except under
/// `CI=true`, where that is a failure.
fn redis_url() -> Option<String> {
    let url =
        std::env::var("KEYGATE_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let up = redis::Client::open(url.as_str())
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
        .is_ok();
    if up {
        return Some(url);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("Redis is required in CI ({url})");
    }
    eprintln!("SKIPPED: Redis not reachable at {url}");
    None
}

fn unique(name: &str) -> String {
    format!("test:{name}:{:016x}", rand::random::<u64>())
}

fn limiter(url: &str, clock: &ManualClock) -> RedisLimiter {
    RedisLimiter::connect(
        RedisTarget::parse(url).unwrap(),
        Duration::from_secs(2),
        Arc::new(clock.clone()),
    )
}

fn minute(limit: u64) -> Vec<WindowLimit> {
    vec![WindowLimit {
        window: Window::Minute,
        limit,
    }]
}

#[test]
fn urls_of_every_deployment_shape_parse_and_bad_ones_say_why() {
    assert_eq!(
        RedisTarget::parse("redis://127.0.0.1:6379/2"),
        Ok(RedisTarget::Single("redis://127.0.0.1:6379/2".into()))
    );
    assert_eq!(
        RedisTarget::parse("redis+cluster://a:7000,b:7001"),
        Ok(RedisTarget::Cluster(vec![
            "redis://a:7000".into(),
            "redis://b:7001".into()
        ]))
    );
    assert_eq!(
        RedisTarget::parse("redis+sentinel://:pw@s1:26379,s2:26379/mymaster/3"),
        Ok(RedisTarget::Sentinel {
            sentinels: vec!["redis://s1:26379".into(), "redis://s2:26379".into()],
            master: "mymaster".into(),
            userinfo: Some(":pw".into()),
            db: 3,
        })
    );
    assert!(RedisTarget::parse("redis+sentinel://s1:26379")
        .unwrap_err()
        .contains("master name"));
    assert!(RedisTarget::parse("rediss://h:6380")
        .unwrap_err()
        .contains("TLS"));
    assert!(RedisTarget::parse("http://h").is_err());
    assert!(RedisTarget::parse("redis+cluster://").is_err());
}

#[test]
fn one_keys_counters_share_a_cluster_hash_slot() {
    let keys = RedisLimiter::keys(
        "key:key_abc",
        &[
            WindowLimit {
                window: Window::Second,
                limit: 1,
            },
            WindowLimit {
                window: Window::Day,
                limit: 1,
            },
        ],
        T0,
    );
    assert_eq!(keys[0], "kg:{key:key_abc}:b");
    assert_eq!(keys[1], "kg:{key:key_abc}:second:1700000020");
    assert_eq!(keys[2], "kg:{key:key_abc}:day:1699920000");
    // Redis Cluster hashes only what is between the first `{` and the next `}`.
    let tag = |k: &str| {
        let open = k.find('{').unwrap();
        let close = open + k[open..].find('}').unwrap();
        k[open + 1..close].to_string()
    };
    assert!(keys.iter().all(|k| tag(k) == "key:key_abc"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_checks_admit_exactly_the_limit() {
    let Some(url) = redis_url() else { return };
    let clock = ManualClock::at(T0);
    let l = Arc::new(limiter(&url, &clock));
    let key = unique("exact");
    let tasks: Vec<_> = (0..120)
        .map(|_| {
            let (l, key) = (l.clone(), key.clone());
            tokio::spawn(async move { l.check(&key, &minute(50), Duration::ZERO).await.unwrap() })
        })
        .collect();
    let mut admitted = 0;
    for t in tasks {
        admitted += t.await.unwrap().allowed as u32;
    }
    assert_eq!(admitted, 50);
    let d = l.peek(&key, &minute(50)).await.unwrap();
    assert!(!d.allowed);
    assert_eq!(d.windows[0].remaining, 0);
    assert_eq!(d.retry_after_secs, 20);
    clock.advance_ms(20_000);
    assert!(
        l.check(&key, &minute(50), Duration::ZERO)
            .await
            .unwrap()
            .allowed,
        "next minute"
    );
}

#[tokio::test]
async fn a_refusal_counts_nothing_and_block_locks_out_once_per_window() {
    let Some(url) = redis_url() else { return };
    let clock = ManualClock::at(T0);
    let l = limiter(&url, &clock);
    let key = unique("block");
    let limits = vec![
        WindowLimit {
            window: Window::Second,
            limit: 2,
        },
        WindowLimit {
            window: Window::Minute,
            limit: 3,
        },
    ];
    let block = Duration::from_secs(5);
    assert!(l.check(&key, &limits, block).await.unwrap().allowed);
    assert!(l.check(&key, &limits, block).await.unwrap().allowed);
    let refused = l.check(&key, &limits, block).await.unwrap();
    assert!(!refused.allowed, "second window full");
    assert_eq!(refused.retry_after_secs, 5, "the block");
    assert_eq!(
        refused.windows[1].remaining, 1,
        "the refusal counted nothing"
    );
    clock.advance_ms(2_000);
    assert!(
        !l.check(&key, &limits, block).await.unwrap().allowed,
        "still blocked"
    );
    clock.advance_ms(3_500);
    let d = l.check(&key, &limits, block).await.unwrap();
    assert!(d.allowed, "block over, minute has one left");
    assert_eq!(d.windows[1].remaining, 0);
    let d = l.check(&key, &limits, block).await.unwrap();
    assert!(!d.allowed);
    assert_eq!(
        d.retry_after_secs, 15,
        "new block: minute resets at :00, after the 5 s block"
    );
}

#[tokio::test]
async fn counters_expire_with_their_window() {
    let Some(url) = redis_url() else { return };
    let clock = ManualClock::at(T0);
    let l = limiter(&url, &clock);
    let key = unique("ttl");
    l.check(&key, &minute(5), Duration::ZERO).await.unwrap();
    l.record(&format!("{key}:fail"), Window::Minute)
        .await
        .unwrap();
    let mut c = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!(
            "kg:{{{key}}}:minute:{}",
            Window::Minute.start(T0) / 1000
        ))
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(
        (20_000..=21_000).contains(&ttl),
        "ttl {ttl}: 20 s to the window's end + 1 s"
    );
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!(
            "kg:{{{key}:fail}}:minute:{}",
            Window::Minute.start(T0) / 1000
        ))
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(ttl > 0, "recorded counters expire too");
}

#[tokio::test]
async fn an_unreachable_redis_fails_fast_and_the_fallback_decides_locally_or_denies() {
    let clock = ManualClock::at(T0);
    let started = std::time::Instant::now();
    let down = Arc::new(RedisLimiter::connect(
        RedisTarget::parse("redis://127.0.0.1:1").unwrap(),
        Duration::from_millis(100),
        Arc::new(clock.clone()),
    ));
    assert!(down.degraded());
    assert!(down.check("k", &minute(2), Duration::ZERO).await.is_err());
    let local = FallbackLimiter::new(down.clone(), OnBackendError::Local, Arc::new(clock.clone()));
    let d = local.check("k", &minute(2), Duration::ZERO).await.unwrap();
    assert!(d.allowed && d.degraded);
    assert!(
        local
            .check("k", &minute(2), Duration::ZERO)
            .await
            .unwrap()
            .allowed
    );
    assert!(
        !local
            .check("k", &minute(2), Duration::ZERO)
            .await
            .unwrap()
            .allowed,
        "local limit"
    );
    let deny = FallbackLimiter::new(down, OnBackendError::Deny, Arc::new(clock));
    assert!(deny.check("k", &minute(2), Duration::ZERO).await.is_err());
    assert!(deny.ready().await.is_err());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}
