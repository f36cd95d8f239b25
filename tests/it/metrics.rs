//! The admin listener: health, readiness, and a valid Prometheus exposition with
//! bounded labels that never contain a key.
use crate::common::*;

#[tokio::test]
async fn admin_endpoints_answer_and_are_never_on_the_data_plane() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, DEFAULT_POLICY);
    let c = client();
    let h = c.get(format!("{}/health", kg.admin)).send().await.unwrap();
    assert_eq!(h.status(), 200);
    let ready = c.get(format!("{}/ready", kg.admin)).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(json(ready).await["store"], "ok");
    // On the data plane /metrics is just another authenticated path.
    expect_error(
        c.get(kg.url("/metrics")).send().await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
}

#[tokio::test]
async fn metrics_count_every_decision_with_bounded_labels() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, DEFAULT_POLICY);
    let (id, key) = kg.create_key(&["--scopes", "none"]);
    let c = client();
    kg.get_key("/a", &key).await;
    kg.get_key("/a", &key).await;
    kg.post_key("/api/search", &key).await;
    c.get(kg.url("/a/random/path/123")).send().await.unwrap();
    c.get(kg.url("/health")).send().await.unwrap();
    let m = kg.metrics().await;
    for line in [
        "keygate_requests_total{outcome=\"allowed\",protocol=\"h1\",route=\"default\",status=\"200\"} 2",
        "keygate_requests_total{outcome=\"forbidden\",protocol=\"h1\",route=\"/api/search\",status=\"403\"} 1",
        "keygate_requests_total{outcome=\"unauthorized\",protocol=\"h1\",route=\"default\",status=\"401\"} 1",
        "keygate_requests_total{outcome=\"allowed\",protocol=\"h1\",route=\"/health\",status=\"200\"} 1",
        "keygate_decisions_total{reason=\"allowed\",tier=\"free\"} 2",
        "keygate_decisions_total{reason=\"scope\",tier=\"free\"} 1",
        "keygate_decisions_total{reason=\"missing\",tier=\"none\"} 1",
        "keygate_key_cache_hits_total 2",
        "keygate_key_cache_misses_total 1",
        "keygate_key_cache_size 1",
        "keygate_ratelimit_backend_errors_total 0",
        "keygate_config_reloads_total{result=\"error\"} 0",
    ] {
        assert!(m.contains(line), "missing `{line}` in\n{m}");
    }
    assert!(m.contains("keygate_request_duration_seconds_bucket{route=\"default\""));
    assert!(m.contains("keygate_upstream_duration_seconds_bucket{route=\"default\""));
    assert!(
        !m.contains(&key) && !m.contains(&id),
        "no key or key id in metrics"
    );
    assert!(!m.contains("/a/random"), "raw paths never become labels");
}

#[tokio::test]
async fn the_exposition_passes_promtool() {
    let Ok(out) = std::process::Command::new("promtool")
        .arg("--version")
        .output()
    else {
        assert!(
            std::env::var("CI").is_err(),
            "promtool must be installed in CI (.ci/run installs it)"
        );
        eprintln!("promtool not installed; skipped outside CI");
        return;
    };
    assert!(out.status.success());
    let up = start_upstream().await;
    let kg = Keygate::start(up, DEFAULT_POLICY);
    let (_, key) = kg.create_key(&[]);
    client()
        .get(kg.url("/a"))
        .header("X-API-Key", &key)
        .send()
        .await
        .unwrap();
    let text = kg.metrics().await;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let keygate_problems: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("keygate_"))
        .collect();
    assert!(keygate_problems.is_empty(), "promtool: {report}");
    assert!(
        out.status.success() || keygate_problems.is_empty(),
        "{report}"
    );
}

#[tokio::test]
async fn the_grafana_dashboard_uses_only_metrics_keygate_exports() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, DEFAULT_POLICY);
    let (_, key) = kg.create_key(&[]);
    assert_eq!(kg.get_key("/x", &key).await.status(), 200);
    let exported = kg.metrics().await;
    // Labelled families appear once they have a sample; those the traffic above does
    // not reach (JWT, say) must at least be registered under that exact name.
    let registered = std::fs::read_to_string("src/obs/metrics.rs").unwrap();
    let dashboard = std::fs::read_to_string("deploy/grafana/keygate.json").unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    assert!(parsed["panels"].as_array().is_some_and(|p| p.len() > 10));
    let mut names: Vec<&str> = Vec::new();
    let mut rest = dashboard.as_str();
    while let Some(i) = rest.find("keygate_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(&tail[..end]);
        rest = &tail[end..];
    }
    names.sort();
    names.dedup();
    assert!(names.len() >= 15, "{names:?}");
    for name in names {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        assert!(
            exported.contains(&format!("# TYPE {family} "))
                || registered.contains(&format!("\"{family}\",")),
            "the dashboard queries {name}, which keygate does not export"
        );
    }
}
