//! The access log (one line per request at the default filter) is written by a
//! thread of its own: every line of a burst is on stderr when SIGTERM's exit is
//! done, and a stderr nobody reads never holds a request up — its lines are
//! dropped and counted instead.

use crate::common::{client, config_yaml, free_port, start_upstream, Keygate, BIN};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const POLICY: &str = r#"
tiers:
  free: { per_minute: 1000 }
routes:
  - { path: /health, auth: none }
rate_limit:
  ip: { per_minute: 1000000 }
"#;

/// Sends `n` requests to `url`, `concurrency` at a time; returns how many got 200.
async fn burst(url: &str, n: usize, concurrency: usize) -> usize {
    let http = client();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (http, url, next) = (http.clone(), url.to_string(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut ok = 0;
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < n {
                if let Ok(r) = http.get(&url).send().await {
                    ok += usize::from(r.status() == 200);
                }
            }
            ok
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += t.await.unwrap();
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_access_line_of_a_burst_is_written_by_the_time_sigterm_exits() {
    let up = start_upstream().await;
    let mut kg = Keygate::start(up, POLICY);
    let n = 3_000;
    assert_eq!(burst(&kg.url("/health"), n, 32).await, n);
    // No pause: SIGTERM right after the last answer.
    assert!(kg.terminate().success());
    let logs = kg.logs();
    let lines = logs
        .lines()
        .filter(|l| l.contains("keygate::access") && l.contains("route=\"/health\""))
        .count();
    assert_eq!(lines, n, "one access line per request, none lost at exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_stderr_drops_counted_lines_and_never_holds_a_request() {
    let up = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let (listen, admin) = (free_port(), free_port());
    let config = dir.path().join("keygate.yaml");
    let yaml = config_yaml(
        &format!("http://{up}"),
        listen,
        admin,
        &dir.path().join("keys.db"),
        POLICY,
    );
    std::fs::write(&config, yaml).unwrap();
    // stderr is a pipe this test never reads: after 64 KiB every write would block.
    let mut child = Command::new(&*BIN)
        .args(["serve", "-c"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{listen}");
    let metrics_url = format!("http://127.0.0.1:{admin}/metrics");
    let deadline = Instant::now() + Duration::from_secs(20);
    while client().get(format!("{base}/health")).send().await.is_err() {
        assert!(Instant::now() < deadline, "keygate did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Far more lines than the pipe (64 KiB) and the two worker threads' buffers
    // (MAX_PER_THREAD each, about 5,000 access lines) hold together.
    let per_thread = keygate::obs::log_writer::MAX_PER_THREAD / 200;
    let n = 2 * per_thread + 10_000;
    let started = Instant::now();
    let ok = tokio::time::timeout(
        Duration::from_secs(120),
        burst(&format!("{base}/health"), n, 64),
    )
    .await
    .expect("requests are never held up by the log");
    assert_eq!(ok, n);
    let metrics = client()
        .get(&metrics_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let dropped = crate::common::metric_sum(&metrics, "keygate_log_lines_dropped_total");
    assert!(dropped >= 1.0, "dropped lines are counted: {dropped}");
    println!(
        "{n} requests in {:?} with stderr stalled; {dropped} lines dropped",
        started.elapsed()
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// The access line names the path called (beside the route), never the query
/// string, which may carry a key (`query:NAME` sources).
#[tokio::test]
async fn the_access_line_carries_the_path_and_never_the_query() {
    let up = start_upstream().await;
    let mut kg = Keygate::start(up, POLICY);
    let r = client()
        .get(kg.url("/health/deep?api_key=kg_sk_live_secretsecret"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "/health is exact: /health/deep needs a key"
    );
    assert!(kg.terminate().success());
    let logs = kg.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("keygate::access") && l.contains("path=\"/health/deep\""))
        .unwrap_or_else(|| panic!("no access line with the path: {logs}"));
    assert!(line.contains("route=\"default\""), "{line}");
    assert!(
        !logs.contains("secretsecret"),
        "the query never reaches the log"
    );
}
