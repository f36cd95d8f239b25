//! `keygate keys ...` against the configured SQLite store.
use crate::common::*;

#[tokio::test]
async fn create_list_show_revoke_and_hash() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, DEFAULT_POLICY);
    let out = kg.cli(&[
        "keys",
        "create",
        "--name",
        "ci",
        "--tier",
        "pro",
        "--scopes",
        "a,b",
        "--credits",
        "10",
        "--expires-in",
        "30d",
        "--org",
        "o1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let id = text
        .lines()
        .find_map(|l| l.strip_prefix("id:"))
        .unwrap()
        .trim()
        .to_string();
    let key = text
        .lines()
        .find_map(|l| l.strip_prefix("key:"))
        .unwrap()
        .trim()
        .to_string();
    assert!(
        key.starts_with("kg_sk_live_") && key.len() == 11 + 38,
        "{key}"
    );

    let list = kg.cli(&["keys", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(v["total"], 1);
    let k = &v["api_keys"][0];
    assert_eq!(k["id"], id.as_str());
    assert_eq!(k["last4"], &key[key.len() - 4..]);
    assert_eq!(k["tier"], "pro");
    assert_eq!(k["credits"], 10);
    assert_eq!(k["scopes"], serde_json::json!(["a", "b"]));
    assert!(
        !String::from_utf8_lossy(&list.stdout).contains(&key[11..]),
        "list never shows the secret"
    );
    let plain = kg.cli(&["keys", "list"]);
    assert!(String::from_utf8_lossy(&plain.stdout).contains(&id));

    let show = kg.cli(&["keys", "show", &id]);
    let v: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(v["status"], "active");
    assert!(kg.cli(&["keys", "revoke", &id]).status.success());
    let v: serde_json::Value =
        serde_json::from_slice(&kg.cli(&["keys", "show", &id]).stdout).unwrap();
    assert_eq!(v["status"], "revoked");

    let hash = std::process::Command::new(&*BIN)
        .args(["keys", "hash", "test"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&hash.stdout).trim(),
        "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    );
}

#[tokio::test]
async fn bad_arguments_exit_2_with_every_problem_and_unknown_ids_exit_1() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, DEFAULT_POLICY);
    let out = kg.cli(&[
        "keys",
        "create",
        "--name",
        "x",
        "--tier",
        "gold",
        "--env",
        "prod",
        "--expires-in",
        "soon",
        "--allow-ip",
        "not-an-ip",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for flag in ["--tier", "--env", "--expires-in", "--allow-ip"] {
        assert!(err.contains(flag), "{flag} in {err}");
    }
    assert_eq!(
        kg.cli(&["keys", "revoke", "key_nope"]).status.code(),
        Some(1)
    );
    assert_eq!(kg.cli(&["keys", "show", "key_nope"]).status.code(), Some(1));
    let help = std::process::Command::new(&*BIN)
        .args(["keys", "create", "--help"])
        .output()
        .unwrap();
    assert!(help.status.success());
    let no_args = std::process::Command::new(&*BIN).output().unwrap();
    assert_eq!(no_args.status.code(), Some(2));
}

/// Issue 14: the CLI and the management API are two doors onto one key service.
/// The same bad request gets the same refusals, field by field, from both.
#[tokio::test]
async fn the_cli_and_the_api_refuse_the_same_bad_input_the_same_way() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, DEFAULT_POLICY);
    let (_, admin) = kg.create_key(&["--scopes", "admin", "--owner", "ops"]);
    let cli = kg.cli(&[
        "keys",
        "create",
        "--name",
        " ",
        "--tier",
        "gold",
        "--env",
        "prod",
        "--scopes",
        "ok,has space",
        "--credits",
        "-1",
        "--allow-ip",
        "nope",
        "--expires-in",
        "0s",
    ]);
    assert_eq!(cli.status.code(), Some(2));
    let cli_err = String::from_utf8_lossy(&cli.stderr).to_string();
    let (status, api) = kg
        .api(
            reqwest::Method::POST,
            "/keys",
            Auth::Key(&admin),
            Some(serde_json::json!({
                "name": " ", "tier": "gold", "environment": "prod",
                "scopes": ["ok", "has space"], "credits": -1, "allowed_ips": ["nope"],
                "expires_at": "2001-01-01T00:00:00Z",
            })),
        )
        .await;
    assert_eq!(status, 422, "{api}");
    let details = api["details"].as_object().unwrap();
    for (field, flag) in [
        ("name", "--name"),
        ("tier", "--tier"),
        ("environment", "--env"),
        ("scopes", "--scopes"),
        ("credits", "--credits"),
        ("allowed_ips", "--allow-ip"),
        ("expires_at", "--expires-in"),
    ] {
        let message = details[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field}: {api}"));
        assert!(
            cli_err.contains(&format!("{flag}: {message}")),
            "the CLI says of {flag} what the API says of {field} ({message}):\n{cli_err}"
        );
    }
    // A revoked key gets no new secret, whichever door asks.
    let (id, _) = kg.create_key(&[]);
    assert!(kg.cli(&["keys", "revoke", &id]).status.success());
    let cli = kg.cli(&["keys", "regenerate", &id]);
    assert_eq!(cli.status.code(), Some(1));
    let (status, api) = kg
        .api(
            reqwest::Method::POST,
            &format!("/keys/{id}/regenerate"),
            Auth::Key(&admin),
            None,
        )
        .await;
    assert_eq!(status, 409);
    let message = api["message"].as_str().unwrap();
    assert_eq!(message, "A revoked key cannot be regenerated");
    assert!(String::from_utf8_lossy(&cli.stderr).contains(message));
}

/// `keys update` makes the API's PUT through the same service: the same fields,
/// the same refusals, every problem at once; `keys regenerate --grace` keeps the
/// old secret working as long as asked.
#[tokio::test]
async fn update_and_regenerate_with_a_grace_period() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, DEFAULT_POLICY);
    let (id, key) = kg.create_key(&["--scopes", "a"]);
    let show = |id: &str| -> serde_json::Value {
        serde_json::from_slice(&kg.cli(&["keys", "show", id]).stdout).unwrap()
    };
    let out = kg.cli(&[
        "keys",
        "update",
        &id,
        "--name",
        "renamed",
        "--tier",
        "pro",
        "--scopes",
        "a,b",
        "--credits",
        "40",
        "--expires-in",
        "30d",
        "--allow-ip",
        "10.0.0.0/8",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with(&format!("updated {id}")));
    let k = show(&id);
    assert_eq!(
        (
            &k["name"],
            &k["tier"],
            &k["scopes"],
            &k["credits"],
            &k["allowed_ips"]
        ),
        (
            &serde_json::json!("renamed"),
            &serde_json::json!("pro"),
            &serde_json::json!(["a", "b"]),
            &serde_json::json!(40),
            &serde_json::json!(["10.0.0.0/8"])
        )
    );
    assert!(k["expires_at"].is_string());
    // Back: unmetered, no expiry, any network; what is not given stays.
    let out = kg.cli(&[
        "keys",
        "update",
        &id,
        "--credits",
        "none",
        "--expires-in",
        "never",
        "--allow-ip",
        "any",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let k = show(&id);
    assert_eq!(
        (
            &k["credits"],
            &k["expires_at"],
            &k["allowed_ips"],
            &k["name"]
        ),
        (
            &serde_json::Value::Null,
            &serde_json::Value::Null,
            &serde_json::json!([]),
            &serde_json::json!("renamed")
        )
    );
    // Every problem at once, in the CLI's spelling, exit 2; nothing changed.
    let out = kg.cli(&[
        "keys",
        "update",
        &id,
        "--tier",
        "gold",
        "--credits",
        "lots",
        "--expires-in",
        "soon",
        "--allow-ip",
        "nope",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for flag in ["--tier:", "--credits:", "--expires-in:", "--allow-ip:"] {
        assert!(err.contains(flag), "{flag} in {err}");
    }
    assert_eq!(show(&id)["tier"], "pro");
    assert_eq!(
        kg.cli(&["keys", "update", &id]).status.code(),
        Some(2),
        "nothing to change"
    );
    assert_eq!(
        kg.cli(&["keys", "update", "key_nope", "--name", "x"])
            .status
            .code(),
        Some(1)
    );

    // A grace period: both secrets work, then only the new one.
    assert_eq!(kg.get_key("/a", &key).await.status(), 200);
    let out = kg.cli(&["keys", "regenerate", &id, "--grace", "2s"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("The previous secret works until"), "{text}");
    let new = text
        .lines()
        .find_map(|l| l.strip_prefix("key:"))
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(kg.get_key("/a", &new).await.status(), 200);
    assert_eq!(
        kg.get_key("/a", &key).await.status(),
        200,
        "within the grace period"
    );
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    assert_eq!(kg.get_key("/a", &key).await.status(), 401, "after it");
    assert_eq!(kg.get_key("/a", &new).await.status(), 200);
    let out = kg.cli(&["keys", "regenerate", &id, "--grace", "31d"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
