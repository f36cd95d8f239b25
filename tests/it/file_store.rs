//! The read-only file store: keys from a YAML file of hashes, picked up within two
//! seconds of an edit without a signal, a broken edit keeping the last good keys, and
//! the file validated like the config.

use crate::common::{expect_error, start_upstream, Keygate, BIN};
use keygate::auth::key_format::generate;
use keygate::domain::Environment;
use std::path::Path;
use std::time::{Duration, Instant};

const POLICY: &str = r#"tiers:
  free: { per_minute: 1000 }
  pro: { per_minute: 5000 }
default_tier: free
routes:
  - { path: /health, auth: none }
"#;

/// `keygate keys hash KEY`, as an operator would paste it.
fn hash_line(key: &str) -> String {
    let out = std::process::Command::new(&*BIN)
        .args(["keys", "hash", key])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn entry(id: &str, key: &str, tier: &str, status: &str) -> String {
    format!(
        "  - id: {id}\n    name: {id}\n    hash: \"{}\"\n    tier: {tier}\n    scopes: [search]\n    environment: live\n    org: org_acme\n    status: {status}\n",
        hash_line(key)
    )
}

fn write(path: &Path, entries: &[String]) {
    // Write then rename, as editors and ConfigMap updates do.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("keys:\n{}", entries.concat())).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn start(file: &Path) -> Keygate {
    let up = start_upstream().await;
    let store = format!("store:\n  kind: file\n  file: \"{}\"\n", file.display());
    Keygate::start_with_store(&format!("http://{up}"), &store, POLICY)
}

#[tokio::test]
async fn keys_come_from_the_file_and_edits_apply_within_two_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.yaml");
    let (a, b) = (
        generate("kg", Environment::Live).into_plaintext(),
        generate("kg", Environment::Live).into_plaintext(),
    );
    write(&file, &[entry("key_a", &a, "pro", "active")]);
    let kg = start(&file).await;

    let resp = kg.get_key("/x", &a).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-ratelimit-limit"], "5000");
    let echoed: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(echoed["headers"]["x-auth-key-id"][0], "key_a", "{echoed}");
    expect_error(kg.get_key("/x", &b).await, 401, "unauthorized").await;

    // Revoke a, add b: no signal.
    let edited = Instant::now();
    write(
        &file,
        &[
            entry("key_a", &a, "pro", "revoked"),
            entry("key_b", &b, "free", "active"),
        ],
    );
    loop {
        if kg.get_key("/x", &b).await.status() == 200 {
            break;
        }
        assert!(
            edited.elapsed() < Duration::from_secs(2),
            "edit not picked up within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let body = expect_error(kg.get_key("/x", &a).await, 401, "unauthorized").await;
    assert_eq!(body["message"], "API key has been revoked");

    // Read-only: the CLI says where to edit; listing works.
    let out = kg.cli(&["keys", "create", "--name", "n", "--tier", "free"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("read-only"));
    let out = kg.cli(&["keys", "list"]);
    assert!(out.status.success());

    // A broken edit keeps the last good keys and says why.
    std::fs::write(&file, "keys:\n  - { id: key_c, hash: nope, tier: gold }\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !kg
        .logs()
        .contains("key file refused; keeping the last good keys")
    {
        assert!(Instant::now() < deadline, "{}", kg.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(kg.logs().contains("keys[0].hash"), "{}", kg.logs());
    assert_eq!(kg.get_key("/x", &b).await.status(), 200);
    let metrics = kg.metrics().await;
    assert!(
        metrics.contains("keygate_file_store_reloads_total{result=\"error\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("keygate_file_store_keys 2"), "{metrics}");
}

#[test]
fn check_validates_the_key_file_like_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.yaml");
    std::fs::write(
        &file,
        "keys:\n  - { id: a, hash: nope, tier: gold }\n  - { id: a, hash: \"sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\", tier: free, colour: red }\n",
    )
    .unwrap();
    let config = dir.path().join("keygate.yaml");
    std::fs::write(
        &config,
        format!(
            "upstream: {{ url: \"http://127.0.0.1:3000\" }}\nstore: {{ kind: file, file: \"{}\" }}\n{POLICY}",
            file.display()
        ),
    )
    .unwrap();
    let out = crate::common::check_config(&config);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in ["keys[0].hash", "keys[0].tier", "keys[1]"] {
        assert!(stderr.contains(expected), "{expected} in {stderr}");
    }
}

#[tokio::test]
async fn the_portal_is_off_with_the_file_store_and_check_says_so() {
    let up = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.yaml");
    write(&file, &[]);
    let store = format!("store:\n  kind: file\n  file: \"{}\"\n", file.display());
    let policy = format!("{POLICY}portal: {{ enabled: true }}\n");
    let kg = Keygate::start_with_store(&format!("http://{up}"), &store, &policy);
    let out = crate::common::check_config(&kg.config);
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(
        said.contains("note: portal.enabled: the portal is off"),
        "{said}"
    );
    assert!(kg.logs().contains("the portal is off"), "{}", kg.logs());
    // Not served: the path is an ordinary route (authentication required).
    let resp = crate::common::client()
        .get(kg.url("/portal/login"))
        .send()
        .await
        .unwrap();
    expect_error(resp, 401, "unauthorized").await;
}
