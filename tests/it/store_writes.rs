//! A store that stops taking writes (a full disk) is said, not hidden: `/ready`
//! names it (`store_writes`, `store_write_error`) and the metrics count it, while
//! the replica stays in rotation for the requests that write nothing.

use crate::common::services::SmallDisk;
use crate::common::{json, metric_sum, start_upstream, Keygate};
use std::time::{Duration, Instant};

const POLICY: &str = r#"tiers:
  free: { per_minute: 100000 }
routes:
  - { path: /metered, cost: 1 }
"#;

async fn ready(kg: &Keygate) -> (u16, serde_json::Value) {
    let r = reqwest::get(format!("{}/ready", kg.admin)).await.unwrap();
    (r.status().as_u16(), json(r).await)
}

/// Polls `/ready` until `store_writes` is `want`.
async fn writes_become(kg: &Keygate, key: &str, want: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // Each metered request spends a credit: a write.
        let _ = kg.get_key("/metered", key).await;
        let (status, body) = ready(kg).await;
        assert_eq!(status, 200, "{body}");
        if body["store_writes"] == want {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "store_writes never {want}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_is_named_by_ready_without_leaving_rotation() {
    let Some(disk) = SmallDisk::mount("4m") else {
        return;
    };
    let up = start_upstream().await;
    let db = disk.path().join("keygate.db");
    let kg = Keygate::start_with_store(
        &format!("http://{up}"),
        &format!("store: {{ kind: sqlite, path: \"{}\" }}\n", db.display()),
        POLICY,
    );
    let (_, key) = kg.create_key(&["--credits", "1000000"]);
    assert_eq!(kg.get_key("/metered", &key).await.status(), 200);
    writes_become(&kg, &key, "ok").await;

    disk.fill();
    let body = writes_become(&kg, &key, "failing").await;
    let error = body["store_write_error"].as_str().unwrap_or_default();
    assert!(error.contains("full"), "{body}");
    assert_eq!(body["status"], "ready", "{body}");
    let metrics = kg.metrics().await;
    assert_eq!(metric_sum(&metrics, "keygate_store_writes_failing"), 1.0);
    assert!(metric_sum(&metrics, "keygate_store_write_errors_total") >= 1.0);
    // Requests that write nothing are served meanwhile.
    for _ in 0..5 {
        assert_eq!(kg.get_key("/free", &key).await.status(), 200);
    }

    disk.free();
    writes_become(&kg, &key, "ok").await;
    assert_eq!(kg.get_key("/metered", &key).await.status(), 200);
    let metrics = kg.metrics().await;
    assert_eq!(metric_sum(&metrics, "keygate_store_writes_failing"), 0.0);
}
