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

/// `redis-server` processes started by one test, killed when it ends.
struct Servers {
    children: Vec<std::process::Child>,
    dir: tempfile::TempDir,
}

impl Servers {
    /// `None` (skipped loudly) without `redis-server`, except under `CI=true`.
    fn new() -> Option<Servers> {
        let found = std::process::Command::new("redis-server")
            .arg("--version")
            .output()
            .is_ok();
        if !found {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("redis-server is required in CI");
            }
            eprintln!("SKIPPED: redis-server not installed");
            return None;
        }
        Some(Servers {
            children: Vec::new(),
            dir: tempfile::tempdir().unwrap(),
        })
    }

    fn start(&mut self, args: &[String]) {
        let child = std::process::Command::new("redis-server")
            .args(args)
            .current_dir(self.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        self.children.push(child);
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A port that is free, and (for cluster nodes) whose bus port, +10000, is free too.
fn free_port_pair() -> u16 {
    loop {
        let p = 20_000 + rand::random::<u16>() % 20_000;
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(p) && free(p + 10_000) {
            return p;
        }
    }
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not happen"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn redis_cli(args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_three_node_cluster_keeps_limits_exact() {
    let Some(mut servers) = Servers::new() else {
        return;
    };
    let ports: Vec<u16> = (0..3).map(|_| free_port_pair()).collect();
    for p in &ports {
        servers.start(&[
            "--port".into(),
            p.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--cluster-enabled".into(),
            "yes".into(),
            "--cluster-config-file".into(),
            format!("nodes-{p}.conf"),
            "--save".into(),
            "".into(),
            "--appendonly".into(),
            "no".into(),
        ]);
    }
    for p in &ports {
        wait_for("cluster node up", || {
            redis_cli(&["-p", &p.to_string(), "ping"]).contains("PONG")
        });
    }
    let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let mut args = vec!["--cluster", "create"];
    args.extend(nodes.iter().map(String::as_str));
    args.extend(["--cluster-replicas", "0", "--cluster-yes"]);
    redis_cli(&args);
    for p in &ports {
        wait_for("cluster state ok", || {
            redis_cli(&["-p", &p.to_string(), "cluster", "info"]).contains("cluster_state:ok")
        });
    }
    let url = format!("redis+cluster://{}", nodes.join(","));
    let clock = ManualClock::at(T0);
    let l = Arc::new(RedisLimiter::connect(
        RedisTarget::parse(&url).unwrap(),
        Duration::from_secs(2),
        Arc::new(clock.clone()),
    ));
    assert!(l.is_up());
    // Several keys, so that they land on different nodes; each stays exact.
    let limits = vec![
        WindowLimit {
            window: Window::Second,
            limit: 1_000,
        },
        WindowLimit {
            window: Window::Minute,
            limit: 20,
        },
    ];
    for name in ["a", "b", "c", "d"] {
        let key = unique(name);
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (l, key, limits) = (l.clone(), key.clone(), limits.clone());
                tokio::spawn(async move { l.check(&key, &limits, Duration::ZERO).await.unwrap() })
            })
            .collect();
        let mut admitted = 0;
        for t in tasks {
            admitted += t.await.unwrap().allowed as u32;
        }
        assert_eq!(admitted, 20, "key {name}");
    }
}

#[tokio::test]
async fn a_sentinel_url_finds_the_master() {
    let Some(mut servers) = Servers::new() else {
        return;
    };
    let (master, sentinel) = (free_port_pair(), free_port_pair());
    servers.start(&[
        "--port".into(),
        master.to_string(),
        "--bind".into(),
        "127.0.0.1".into(),
        "--save".into(),
        "".into(),
    ]);
    let conf = servers.dir.path().join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {sentinel}\nbind 127.0.0.1\nsentinel monitor mymaster 127.0.0.1 {master} 1\n"
        ),
    )
    .unwrap();
    servers.start(&[conf.display().to_string(), "--sentinel".into()]);
    wait_for("sentinel knows the master", || {
        redis_cli(&[
            "-p",
            &sentinel.to_string(),
            "sentinel",
            "get-master-addr-by-name",
            "mymaster",
        ])
        .contains(&master.to_string())
    });
    let url = format!("redis+sentinel://127.0.0.1:{sentinel}/mymaster");
    let clock = ManualClock::at(T0);
    let l = RedisLimiter::connect(
        RedisTarget::parse(&url).unwrap(),
        Duration::from_secs(2),
        Arc::new(clock),
    );
    assert!(l.is_up());
    let key = unique("sentinel");
    for _ in 0..3 {
        assert!(
            l.check(&key, &minute(3), Duration::ZERO)
                .await
                .unwrap()
                .allowed
        );
    }
    assert!(
        !l.check(&key, &minute(3), Duration::ZERO)
            .await
            .unwrap()
            .allowed
    );
    let counter = format!("kg:{{{key}}}:minute:{}", Window::Minute.start(T0) / 1000);
    assert_eq!(
        redis_cli(&["-p", &master.to_string(), "get", &counter]).trim(),
        "3",
        "the counters live on the master"
    );
}
