//! Operating keygate: config reload on SIGHUP (while traffic runs, and refused when
//! broken), draining on SIGTERM and SIGINT with a slow request in flight, and TLS
//! termination with certificate rotation.

use crate::common::{start_upstream, Keygate, DEFAULT_POLICY};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn rewrite(kg: &Keygate, from: &str, to: &str) {
    let text = std::fs::read_to_string(&kg.config).unwrap();
    assert!(text.contains(from), "{from} not in config");
    std::fs::write(&kg.config, text.replace(from, to)).unwrap();
}

async fn limit_header(kg: &Keygate, key: &str) -> String {
    let resp = kg.get_key("/x", key).await;
    assert_eq!(resp.status(), 200);
    resp.headers()["x-ratelimit-limit"]
        .to_str()
        .unwrap()
        .to_string()
}

async fn wait_for_log(kg: &Keygate, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !kg.logs().contains(text) {
        assert!(
            Instant::now() < deadline,
            "no `{text}` in logs: {}",
            kg.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sighup_changes_a_tier_limit_while_traffic_runs_without_failing_a_request() {
    let up = start_upstream().await;
    let policy = DEFAULT_POLICY.replace(
        "free: { per_minute: 1000 }",
        "free: { per_minute: 1000000 }",
    ) + "rate_limit: { ip: { per_minute: 0 } }\n";
    let kg = Arc::new(Keygate::start(up, &policy));
    let (_, key) = kg.create_key(&[]);
    assert_eq!(limit_header(&kg, &key).await, "1000000");

    // Keep-alive traffic on several connections for the whole reload.
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (kg, key, stop) = (kg.clone(), key.clone(), stop.clone());
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    statuses.push(kg.get_key("/x", &key).await.status().as_u16());
                }
                statuses
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    rewrite(
        &kg,
        "free: { per_minute: 1000000 }",
        "free: { per_minute: 2000000 }",
    );
    kg.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while limit_header(&kg, &key).await != "2000000" {
        assert!(
            Instant::now() < deadline,
            "new limit not applied: {}",
            kg.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for w in workers {
        let statuses = w.await.unwrap();
        total += statuses.len();
        let failed: Vec<_> = statuses.iter().filter(|s| **s != 200).collect();
        assert!(failed.is_empty(), "{failed:?} of {}", statuses.len());
    }
    assert!(
        total > 20,
        "traffic ran during the reload ({total} requests)"
    );
    assert!(kg
        .metrics()
        .await
        .contains("keygate_config_reloads_total{result=\"ok\"} 1"));
}

#[tokio::test]
async fn a_broken_config_is_refused_on_reload_and_the_old_one_keeps_serving() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, DEFAULT_POLICY);
    let (_, key) = kg.create_key(&[]);
    rewrite(
        &kg,
        "free: { per_minute: 1000 }",
        "free: { per_minuet: 5 }\n  gold: { per_day: lots }",
    );
    kg.signal("HUP");
    wait_for_log(&kg, "config reload refused; the running config stays").await;
    let logs = kg.logs();
    assert!(logs.contains("tiers.free.per_minuet"), "{logs}");
    assert!(logs.contains("tiers.gold.per_day"), "{logs}");
    assert_eq!(limit_header(&kg, &key).await, "1000");
    let metrics = kg.metrics().await;
    assert!(
        metrics.contains("keygate_config_reloads_total{result=\"error\"} 1"),
        "{metrics}"
    );

    // Restart-only settings are named, and the rest of the change still applies.
    let text = std::fs::read_to_string(&kg.config).unwrap();
    let fixed = text
        .replace(
            "free: { per_minuet: 5 }\n  gold: { per_day: lots }",
            "free: { per_minute: 7 }",
        )
        .replace("threads: 2", "threads: 3");
    std::fs::write(&kg.config, fixed).unwrap();
    kg.signal("HUP");
    wait_for_log(
        &kg,
        "config reloaded, but these settings only change on restart",
    )
    .await;
    assert!(kg.logs().contains("server.threads"), "{}", kg.logs());
    assert_eq!(limit_header(&kg, &key).await, "7");
}

async fn drains_a_slow_request(signal: &str) {
    let up = start_upstream().await;
    let mut kg = Keygate::start(up, DEFAULT_POLICY);
    let (id, key) = kg.create_key(&[]);
    kg.terminate();
    rewrite(&kg, "grace_period: 1s", "grace_period: 10s");
    let mut kg = kg.restart();
    let slow = {
        let (url, key) = (kg.url("/delay/1500"), key.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let resp = crate::common::client()
                .get(url)
                .header("X-API-Key", key)
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let signalled = Instant::now();
    kg.signal(signal);
    let (status, took) = slow.await.unwrap();
    assert_eq!(status, 200, "the request in flight completed");
    assert!(took >= Duration::from_millis(1400), "{took:?}");
    let (exit, logs, kg) = tokio::task::spawn_blocking(move || {
        let s = kg.wait_exit();
        (s, kg.logs(), kg)
    })
    .await
    .unwrap();
    let drained = signalled.elapsed();
    assert!(exit.success(), "exit status {exit:?}: {logs}");
    // It exits once the last request is done, not at the end of the 10 s grace period.
    assert!(
        drained < Duration::from_secs(5),
        "exited {drained:?} after the signal"
    );
    // The request that finished during the drain is in the usage flushed at exit.
    let shown = kg.cli(&["keys", "show", &id]);
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert!(
        shown["last_used_at"].is_string(),
        "usage of the drained request was lost: {shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_slow_request_finish_then_exits_0() {
    drains_a_slow_request("TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_drains_like_sigterm() {
    drains_a_slow_request("INT").await;
}

/// A self-signed certificate for 127.0.0.1, written as PEM files.
fn certificate(
    dir: &std::path::Path,
    name: &str,
) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let (c, k) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&c, cert.cert.pem()).unwrap();
    std::fs::write(&k, cert.key_pair.serialize_pem()).unwrap();
    (c, k, cert.cert.der().to_vec())
}

async fn served_certificate(url: &str) -> Vec<u8> {
    // A new client each time: a new connection, a new handshake.
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .tls_info(true)
        .build()
        .unwrap();
    let resp = client.get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .expect("TLS info")
        .to_vec()
}

#[tokio::test]
async fn tls_terminates_on_listen_and_a_rotated_certificate_is_served_after_sighup() {
    let up = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let (crt, key, first) = certificate(dir.path(), "live");
    let kg = Keygate::start_tls(up, DEFAULT_POLICY, &crt, &key);
    let https = kg.base.replace("http://", "https://") + "/health";
    assert_eq!(served_certificate(&https).await, first);
    // Plain HTTP on the TLS port is not served.
    assert!(crate::common::client()
        .get(kg.url("/health"))
        .send()
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true));

    // Rotate: new files in place, SIGHUP.
    let (new_crt, new_key, second) = certificate(dir.path(), "next");
    std::fs::copy(&new_crt, &crt).unwrap();
    std::fs::copy(&new_key, &key).unwrap();
    kg.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while served_certificate(&https).await != second {
        assert!(
            Instant::now() < deadline,
            "rotated certificate not served: {}",
            kg.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A broken certificate on reload keeps the good one.
    std::fs::write(&key, "not a key").unwrap();
    kg.signal("HUP");
    wait_for_log(&kg, "config reload refused").await;
    assert_eq!(served_certificate(&https).await, second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigquit_hands_the_listeners_to_a_new_process_without_failing_a_request() {
    let up = start_upstream().await;
    let policy = format!("{DEFAULT_POLICY}rate_limit: {{ ip: {{ per_minute: 0 }} }}\n");
    let mut old = Keygate::start(up, &policy);
    let (_, key) = old.create_key(&[]);

    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (url, key, stop) = (old.url("/x"), key.clone(), stop.clone());
        tokio::spawn(async move {
            let client = crate::common::client();
            let mut statuses = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                // An idle kept-alive connection may be closed by the draining
                // process just as a request is sent on it; like every HTTP client
                // (RFC 9112 section 9.3.1), this one retries an idempotent request
                // once on a fresh connection then. A request that fails twice fails.
                let mut status = 0;
                for _attempt in 0..2 {
                    match client.get(&url).header("X-API-Key", &key).send().await {
                        Ok(r) => {
                            status = r.status().as_u16();
                            break;
                        }
                        Err(e) => eprintln!("request failed: {e}"),
                    }
                }
                statuses.push(status);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            statuses
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The new process waits for the sockets; SIGQUIT makes the old one send them.
    let new_log = old.dir.path().join("new.log");
    let mut new = std::process::Command::new(&*crate::common::BIN)
        .args(["serve", "--upgrade", "-c"])
        .arg(&old.config)
        .env("RUST_LOG", "info")
        .stderr(std::fs::File::create(&new_log).unwrap())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    old.signal("QUIT");
    let exit = tokio::task::spawn_blocking(move || {
        let s = old.wait_exit();
        (s, old)
    })
    .await
    .unwrap();
    let old = exit.1;
    assert!(exit.0.success(), "old process: {}", old.logs());
    // The new process now answers alone.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let statuses = traffic.await.unwrap();
    let new_logs = std::fs::read_to_string(&new_log).unwrap_or_default();
    let _ = new.kill();
    let _ = new.wait();
    let failed: Vec<_> = statuses.iter().filter(|s| **s != 200).collect();
    assert!(
        failed.is_empty(),
        "{failed:?} of {}: {new_logs}",
        statuses.len()
    );
    assert!(
        statuses.len() > 100,
        "traffic ran through the hand-off ({})",
        statuses.len()
    );
    assert!(new_logs.contains("keygate serving"), "{new_logs}");
}

#[tokio::test]
async fn json_logs_write_one_access_line_per_request_without_the_key() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, DEFAULT_POLICY);
    let (id, key) = kg.create_key(&[]);
    let kg = kg.restart_with(&["--log-format", "json"]);
    assert_eq!(kg.get_key("/x", &key).await.status(), 200);
    assert_eq!(kg.get_key("/x", "kg_sk_live_nope").await.status(), 401);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = kg.logs();
    let access: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "keygate::access")
        .collect();
    assert_eq!(access.len(), 2, "{logs}");
    assert_eq!(access[0]["fields"]["key_id"], id.as_str());
    assert_eq!(access[0]["fields"]["outcome"], "allowed");
    assert_eq!(access[0]["fields"]["status"], 200);
    assert!(access[0]["fields"]["latency_ms"].is_number());
    assert_eq!(access[1]["fields"]["outcome"], "unauthorized");
    assert!(
        logs.lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
        "every line is JSON: {logs}"
    );
    assert!(
        !logs.contains(&key) && !logs.contains("kg_sk_live_nope"),
        "no key in the logs"
    );
}
