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
        RedisCerts::default(),
        Duration::from_secs(2),
        Arc::new(clock.clone()),
    )
}

fn minute(limit: u64) -> Vec<WindowLimit> {
    vec![WindowLimit::fixed(Window::Minute, limit)]
}

/// Runs `n` concurrent checks of `key`; returns how many were admitted.
async fn admitted(l: &Arc<RedisLimiter>, key: &str, limits: &[WindowLimit], n: usize) -> u32 {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (l, key, limits) = (l.clone(), key.to_string(), limits.to_vec());
            tokio::spawn(async move { l.check(&key, &limits, Duration::ZERO).await.unwrap() })
        })
        .collect();
    let mut admitted = 0;
    for t in tasks {
        admitted += t.await.unwrap().allowed as u32;
    }
    admitted
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
    // TLS: rediss:// and the rediss+ forms of the other shapes.
    let single = RedisTarget::parse("rediss://h:6380").unwrap();
    assert_eq!(single, RedisTarget::Single("rediss://h:6380".into()));
    let cluster = RedisTarget::parse("rediss+cluster://u:pw@a:7000,b:7001").unwrap();
    assert_eq!(
        cluster,
        RedisTarget::Cluster(vec![
            "rediss://u:pw@a:7000".into(),
            "rediss://u:pw@b:7001".into()
        ])
    );
    let sentinel = RedisTarget::parse("rediss+sentinel://s1:26379/m").unwrap();
    assert_eq!(
        sentinel,
        RedisTarget::Sentinel {
            sentinels: vec!["rediss://s1:26379".into()],
            master: "m".into(),
            userinfo: None,
            db: 0,
        }
    );
    assert!([single, cluster, sentinel].iter().all(RedisTarget::tls));
    assert!(!RedisTarget::parse("redis+cluster://a:7000").unwrap().tls());
    assert!(RedisTarget::parse("rediss+nonsense://a:1").is_err());
    assert!(RedisTarget::parse("http://h").is_err());
    assert!(RedisTarget::parse("redis+cluster://").is_err());
}

#[test]
fn one_keys_counters_share_a_cluster_hash_slot() {
    let keys = RedisLimiter::keys(
        "key:key_abc",
        &[
            WindowLimit::fixed(Window::Second, 1),
            WindowLimit::fixed(Window::Day, 1),
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
    assert_eq!(admitted(&l, &key, &minute(50), 120).await, 50);
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
        WindowLimit::fixed(Window::Second, 2),
        WindowLimit::fixed(Window::Minute, 3),
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
        RedisCerts::default(),
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

/// Certificates made for one test: a CA, a server certificate it signs for
/// 127.0.0.1 and localhost, a client certificate it signs, and an unrelated CA.
struct TestPki {
    dir: tempfile::TempDir,
}

impl TestPki {
    fn new() -> TestPki {
        use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair};
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text).unwrap();
        let ca = |name: &str| {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, name);
            let key = KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            (cert, key)
        };
        let (ca_cert, ca_key) = ca("keygate test CA");
        write("ca.pem", ca_cert.pem());
        write("other-ca.pem", ca("someone else's CA").0.pem());
        let leaf = |names: Vec<String>, usage: Vec<ExtendedKeyUsagePurpose>, stem: &str| {
            let mut params = CertificateParams::new(names).unwrap();
            params.extended_key_usages = usage;
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();
            write(&format!("{stem}.pem"), cert.pem());
            write(&format!("{stem}.key"), key.serialize_pem());
        };
        leaf(
            vec!["127.0.0.1".into(), "localhost".into()],
            // Cluster nodes present it to each other as clients too.
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            "server",
        );
        leaf(
            vec!["client".into()],
            vec![ExtendedKeyUsagePurpose::ClientAuth],
            "client",
        );
        TestPki { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// redis-server arguments serving TLS on `port` (and nothing in plain text).
    fn server_args(&self, port: u16, clients: &str) -> Vec<String> {
        [
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            &self.path("server.pem"),
            "--tls-key-file",
            &self.path("server.key"),
            "--tls-ca-cert-file",
            &self.path("ca.pem"),
            "--tls-auth-clients",
            clients,
        ]
        .map(String::from)
        .to_vec()
    }

    /// redis-cli arguments to reach a TLS server.
    fn cli_args(&self) -> Vec<String> {
        ["--tls", "--cacert", &self.path("ca.pem")]
            .map(String::from)
            .to_vec()
    }

    fn certs(&self, ca: Option<&str>, client: bool) -> RedisCerts {
        let read = |name: &str| std::fs::read(self.dir.path().join(name)).unwrap();
        RedisCerts {
            ca_pem: ca.map(read),
            client: client.then(|| (read("client.pem"), read("client.key"))),
        }
    }
}

/// Whether a limiter on `url` with `certs` reaches Redis, and the limit it keeps.
async fn admitted_of_50(url: &str, certs: RedisCerts) -> Option<u32> {
    let l = Arc::new(RedisLimiter::connect(
        RedisTarget::parse(url).unwrap(),
        certs,
        Duration::from_secs(2),
        Arc::new(ManualClock::at(T0)),
    ));
    if !l.is_up() {
        return None;
    }
    Some(admitted(&l, &unique("tls"), &minute(20), 50).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rediss_verifies_the_server_and_presents_a_client_certificate_when_asked() {
    let Some(mut servers) = Servers::new() else {
        return;
    };
    let pki = TestPki::new();
    let (open, mutual) = (free_port_pair(), free_port_pair());
    servers.start(&pki.server_args(open, "no"));
    servers.start(&pki.server_args(mutual, "yes"));
    for p in [open, mutual] {
        let mut args = pki.cli_args();
        if p == mutual {
            args.extend(
                [
                    "--cert",
                    &pki.path("client.pem"),
                    "--key",
                    &pki.path("client.key"),
                ]
                .map(String::from),
            );
        }
        args.extend(["-p".into(), p.to_string(), "ping".into()]);
        wait_for("TLS Redis up", || {
            redis_cli(&args.iter().map(String::as_str).collect::<Vec<_>>()).contains("PONG")
        });
    }
    let url = |p: u16, host: &str| format!("rediss://{host}:{p}");
    // Trusted CA: exact limits over TLS, by IP address or by name.
    assert_eq!(
        admitted_of_50(&url(open, "127.0.0.1"), pki.certs(Some("ca.pem"), false)).await,
        Some(20)
    );
    assert_eq!(
        admitted_of_50(&url(open, "localhost"), pki.certs(Some("ca.pem"), false)).await,
        Some(20)
    );
    // The system roots do not know the test CA, nor does another CA: no connection.
    assert_eq!(
        admitted_of_50(&url(open, "127.0.0.1"), RedisCerts::default()).await,
        None
    );
    assert_eq!(
        admitted_of_50(
            &url(open, "127.0.0.1"),
            pki.certs(Some("other-ca.pem"), false)
        )
        .await,
        None
    );
    // Plain text to a TLS port fails too.
    assert_eq!(
        admitted_of_50(&format!("redis://127.0.0.1:{open}"), RedisCerts::default()).await,
        None
    );
    // A server that requires client certificates.
    assert_eq!(
        admitted_of_50(&url(mutual, "127.0.0.1"), pki.certs(Some("ca.pem"), false)).await,
        None
    );
    assert_eq!(
        admitted_of_50(&url(mutual, "127.0.0.1"), pki.certs(Some("ca.pem"), true)).await,
        Some(20)
    );
}

/// Starts a three-node cluster (over TLS with `pki`); returns its nodes.
fn start_cluster(servers: &mut Servers, pki: Option<&TestPki>) -> Vec<String> {
    let ports: Vec<u16> = (0..3).map(|_| free_port_pair()).collect();
    let cli = |p: u16, rest: &[&str]| {
        let mut args: Vec<String> = pki.map(TestPki::cli_args).unwrap_or_default();
        args.extend(["-p".to_string(), p.to_string()]);
        args.extend(rest.iter().map(|s| s.to_string()));
        redis_cli(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    for p in &ports {
        let mut args: Vec<String> = match pki {
            Some(pki) => {
                let mut a = pki.server_args(*p, "no");
                let bus = (p + 10_000).to_string();
                a.extend(["--tls-cluster", "yes", "--cluster-port", &bus].map(String::from));
                a
            }
            None => vec!["--port".into(), p.to_string()],
        };
        args.extend(
            [
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &format!("nodes-{p}.conf"),
                "--save",
                "",
                "--appendonly",
                "no",
            ]
            .map(String::from),
        );
        servers.start(&args);
    }
    for p in &ports {
        wait_for("cluster node up", || cli(*p, &["ping"]).contains("PONG"));
    }
    let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let mut create = vec!["--cluster", "create"];
    create.extend(nodes.iter().map(String::as_str));
    create.extend(["--cluster-replicas", "0", "--cluster-yes"]);
    cli(ports[0], &create);
    for p in &ports {
        wait_for("cluster state ok", || {
            cli(*p, &["cluster", "info"]).contains("cluster_state:ok")
        });
    }
    nodes
}

/// Several keys, so that they land on different nodes; each stays exact.
async fn cluster_limits_are_exact(url: &str, certs: RedisCerts) {
    let clock = ManualClock::at(T0);
    let l = Arc::new(RedisLimiter::connect(
        RedisTarget::parse(url).unwrap(),
        certs,
        Duration::from_secs(2),
        Arc::new(clock.clone()),
    ));
    assert!(l.is_up());
    let limits = vec![
        WindowLimit::fixed(Window::Second, 1_000),
        WindowLimit::fixed(Window::Minute, 20),
    ];
    for name in ["a", "b", "c", "d"] {
        assert_eq!(
            admitted(&l, &unique(name), &limits, 50).await,
            20,
            "key {name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_three_node_cluster_keeps_limits_exact() {
    let Some(mut servers) = Servers::new() else {
        return;
    };
    let nodes = start_cluster(&mut servers, None);
    cluster_limits_are_exact(
        &format!("redis+cluster://{}", nodes.join(",")),
        RedisCerts::default(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tls_cluster_keeps_limits_exact() {
    let Some(mut servers) = Servers::new() else {
        return;
    };
    let pki = TestPki::new();
    let nodes = start_cluster(&mut servers, Some(&pki));
    let url = format!("rediss+cluster://{}", nodes.join(","));
    cluster_limits_are_exact(&url, pki.certs(Some("ca.pem"), false)).await;
}

/// Starts a master and a sentinel watching it (both over TLS with `pki`); returns
/// their ports.
fn start_sentinel(servers: &mut Servers, pki: Option<&TestPki>) -> (u16, u16) {
    let (master, sentinel) = (free_port_pair(), free_port_pair());
    let mut args = match pki {
        Some(pki) => pki.server_args(master, "no"),
        None => vec!["--port".into(), master.to_string()],
    };
    args.extend(["--bind", "127.0.0.1", "--save", ""].map(String::from));
    servers.start(&args);
    let listen = match pki {
        Some(pki) => format!(
            "port 0\ntls-port {sentinel}\ntls-replication yes\ntls-auth-clients no\n\
             tls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\n",
            pki.path("server.pem"),
            pki.path("server.key"),
            pki.path("ca.pem")
        ),
        None => format!("port {sentinel}\n"),
    };
    let conf = servers.dir.path().join(format!("sentinel-{sentinel}.conf"));
    std::fs::write(
        &conf,
        format!("{listen}bind 127.0.0.1\nsentinel monitor mymaster 127.0.0.1 {master} 1\n"),
    )
    .unwrap();
    servers.start(&[conf.display().to_string(), "--sentinel".into()]);
    let mut cli: Vec<String> = pki.map(TestPki::cli_args).unwrap_or_default();
    cli.extend(
        [
            "-p",
            &sentinel.to_string(),
            "sentinel",
            "get-master-addr-by-name",
            "mymaster",
        ]
        .map(String::from),
    );
    wait_for("sentinel knows the master", || {
        redis_cli(&cli.iter().map(String::as_str).collect::<Vec<_>>()).contains(&master.to_string())
    });
    (master, sentinel)
}

/// Counts through the sentinel's master; the counter is on that master.
async fn sentinel_limits_hold(url: &str, certs: RedisCerts, master: u16, pki: Option<&TestPki>) {
    let clock = ManualClock::at(T0);
    let l = RedisLimiter::connect(
        RedisTarget::parse(url).unwrap(),
        certs,
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
    let mut cli: Vec<String> = pki.map(TestPki::cli_args).unwrap_or_default();
    cli.extend(["-p", &master.to_string(), "get", &counter].map(String::from));
    assert_eq!(
        redis_cli(&cli.iter().map(String::as_str).collect::<Vec<_>>()).trim(),
        "3",
        "the counters live on the master"
    );
}

#[tokio::test]
async fn a_sentinel_url_finds_the_master() {
    let Some(mut servers) = Servers::new() else {
        return;
    };
    let (master, sentinel) = start_sentinel(&mut servers, None);
    let url = format!("redis+sentinel://127.0.0.1:{sentinel}/mymaster");
    sentinel_limits_hold(&url, RedisCerts::default(), master, None).await;
}

#[tokio::test]
async fn a_tls_sentinel_url_finds_the_master_over_tls() {
    let Some(mut servers) = Servers::new() else {
        return;
    };
    let pki = TestPki::new();
    let (master, sentinel) = start_sentinel(&mut servers, Some(&pki));
    let url = format!("rediss+sentinel://127.0.0.1:{sentinel}/mymaster");
    sentinel_limits_hold(&url, pki.certs(Some("ca.pem"), false), master, Some(&pki)).await;
}

fn sliding_limits(second: u64, minute: u64) -> Vec<WindowLimit> {
    [(Window::Second, second), (Window::Minute, minute)]
        .into_iter()
        .map(|(window, limit)| WindowLimit {
            window,
            limit,
            algorithm: Algorithm::Sliding,
        })
        .collect()
}

/// A small deterministic generator (the arrivals are random but repeatable).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// Two replicas on one Redis, random bursts of concurrent requests over two and a
/// half minutes: by brute force over every interval, no second admits more than the
/// per-second limit and no minute more than the per-minute limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sliding_windows_never_over_admit_across_replicas_under_concurrency() {
    use crate::limit::sliding::most_in_any_interval;
    let Some(url) = redis_url() else { return };
    for seed in [1u64, 2, 3] {
        let clock = ManualClock::at(T0);
        let replicas = [
            Arc::new(limiter(&url, &clock)),
            Arc::new(limiter(&url, &clock)),
        ];
        let key = unique("sliding");
        let limits = sliding_limits(6, 40);
        let mut rng = Lcg(seed);
        let mut admitted_at = Vec::new();
        while clock.now_ms() < T0 + 150_000 {
            clock.advance_ms(rng.below(900));
            let n = 1 + rng.below(9) as usize;
            let tasks: Vec<_> = (0..n)
                .map(|i| {
                    let (l, key, limits) = (replicas[i % 2].clone(), key.clone(), limits.clone());
                    tokio::spawn(async move { l.check(&key, &limits, Duration::ZERO).await })
                })
                .collect();
            for t in tasks {
                if t.await.unwrap().unwrap().allowed {
                    admitted_at.push(clock.now_ms());
                }
            }
        }
        assert!(
            admitted_at.len() > 100,
            "the test admits enough to mean something"
        );
        assert!(most_in_any_interval(&admitted_at, 1_000) <= 6);
        assert!(most_in_any_interval(&admitted_at, 60_000) <= 40);
    }
}

#[tokio::test]
async fn sliding_windows_refuse_n_more_after_a_boundary_and_a_replica_ahead_is_never_out_counted() {
    let Some(url) = redis_url() else { return };
    let boundary = T0 + 20_000; // a minute boundary
    let clock = ManualClock::at(boundary - 300);
    let l = limiter(&url, &clock);
    let key = unique("boundary");
    let limits = vec![WindowLimit {
        window: Window::Minute,
        limit: 5,
        algorithm: Algorithm::Sliding,
    }];
    for _ in 0..5 {
        assert!(
            l.check(&key, &limits, Duration::ZERO)
                .await
                .unwrap()
                .allowed
        );
    }
    clock.set_ms(boundary + 300);
    let d = l.check(&key, &limits, Duration::ZERO).await.unwrap();
    assert!(!d.allowed, "a fixed window would admit here");
    assert!(d.retry_at_ms >= boundary - 300 + 60_000);
    assert!(d.retry_at_ms <= boundary - 300 + 63_000);
    clock.set_ms(d.retry_at_ms - 1);
    assert!(
        !l.check(&key, &limits, Duration::ZERO)
            .await
            .unwrap()
            .allowed
    );
    clock.set_ms(d.retry_at_ms);
    assert!(
        l.check(&key, &limits, Duration::ZERO)
            .await
            .unwrap()
            .allowed
    );

    // A replica 10 s ahead fills the window; one on time still sees it full.
    let ahead = ManualClock::at(T0 + 10_000);
    let on_time = ManualClock::at(T0);
    let (a, b) = (limiter(&url, &ahead), limiter(&url, &on_time));
    let key = unique("skew");
    for _ in 0..5 {
        assert!(
            a.check(&key, &limits, Duration::ZERO)
                .await
                .unwrap()
                .allowed
        );
    }
    assert!(
        !b.check(&key, &limits, Duration::ZERO)
            .await
            .unwrap()
            .allowed
    );
    let ttl: i64 = {
        let mut c = redis::Client::open(url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        redis::cmd("PTTL")
            .arg(format!("kg:{{{key}}}:s:minute"))
            .query_async(&mut c)
            .await
            .unwrap()
    };
    assert!(
        (60_000..=64_000).contains(&ttl),
        "ttl {ttl}: a window, a bucket and a second of slack"
    );
}

#[tokio::test]
async fn a_sliding_block_locks_out_once_per_exhaustion() {
    let Some(url) = redis_url() else { return };
    let clock = ManualClock::at(T0);
    let l = limiter(&url, &clock);
    let key = unique("sblock");
    let limits = vec![WindowLimit {
        window: Window::Minute,
        limit: 2,
        algorithm: Algorithm::Sliding,
    }];
    let block = Duration::from_secs(5);
    assert!(l.check(&key, &limits, block).await.unwrap().allowed);
    assert!(l.check(&key, &limits, block).await.unwrap().allowed);
    let d = l.check(&key, &limits, block).await.unwrap();
    assert!(!d.allowed);
    let free_at = d.retry_at_ms;
    assert!(free_at > T0 + 60_000, "the window outlasts the block");
    clock.advance_ms(6_000);
    let d = l.check(&key, &limits, block).await.unwrap();
    assert_eq!(d.retry_at_ms, free_at, "the same exhaustion: no new block");
    clock.set_ms(free_at);
    assert!(l.check(&key, &limits, block).await.unwrap().allowed);
}

/// The script's ring and the memory limiter's are one algorithm: over random
/// arrivals (bursts, gaps that skip buckets, gaps that empty the window), every
/// decision, count and reset time agrees.
#[tokio::test]
async fn the_scripts_sliding_ring_decides_exactly_as_the_memory_ring() {
    let Some(url) = redis_url() else { return };
    let clock = ManualClock::at(T0);
    let redis = limiter(&url, &clock);
    let memory = crate::limit::memory::MemoryLimiter::new();
    let key = unique("same");
    let limits = sliding_limits(4, 25);
    let mut rng = Lcg(7);
    for step in 0..1_500 {
        let gap = match rng.below(10) {
            0 => 5_000 + rng.below(70_000),
            1..=3 => rng.below(400),
            _ => rng.below(40),
        };
        clock.advance_ms(gap);
        let now = clock.now_ms();
        let r = redis.check(&key, &limits, Duration::ZERO).await.unwrap();
        let m = memory.check_windows(&key, &limits, Duration::ZERO, now);
        assert_eq!(
            (r.allowed, &r.windows, r.retry_at_ms),
            (m.allowed, &m.windows, m.retry_at_ms),
            "step {step} at {now}"
        );
    }
}
