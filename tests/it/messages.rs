//! Messages a newcomer reads: each says what is wrong and what to do.

use crate::common::*;
use std::process::Command;

fn run(dir: &std::path::Path, args: &[&str], stdin: &[u8]) -> (Option<i32>, String, String) {
    use std::io::Write;
    let mut child = Command::new(&*BIN)
        .current_dir(dir)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_names_minus_c_counts_in_words_and_hints_at_yaml_mistakes() {
    let dir = tempfile::tempdir().unwrap();
    // No -c, and no conf/keygate.yaml here: say how to give one.
    let (code, _, err) = run(dir.path(), &["check"], b"");
    assert_eq!(code, Some(2));
    assert!(
        err.contains("cannot read config file conf/keygate.yaml"),
        "{err}"
    );
    assert!(err.contains("-c FILE"), "{err}");

    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        "upstream: { url: 'http://127.0.0.1:1' }\ntiers: { free: { per_minute: 5 } }\n\
         routes: [{ path: /health, auth: none }]\nstore: { path: k.db }\n",
    )
    .unwrap();
    let (code, out, err) = run(dir.path(), &["check", "-c", "good.yaml"], b"");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.trim(), "good.yaml: ok: 1 tier, 1 route, SQLite store");

    // A syntax error says what usually causes one.
    std::fs::write(&good, "upstream:\n  url: http://x:1\n tiers: {\n").unwrap();
    let (code, _, err) = run(dir.path(), &["check", "-c", "good.yaml"], b"");
    assert_eq!(code, Some(2));
    assert!(
        err.contains("invalid YAML") && err.contains("indentation"),
        "{err}"
    );

    // A shorter window that allows more than a longer one.
    std::fs::write(
        &good,
        "upstream: { url: 'http://127.0.0.1:1' }\ntiers: { free: { per_second: 20, per_minute: 5 } }\n",
    )
    .unwrap();
    let (code, out, err) = run(dir.path(), &["check", "-c", "good.yaml"], b"");
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains(
            "note: tiers.free.per_second: 20 can never be reached: per_minute allows only 5"
        ),
        "{out}"
    );
}

#[tokio::test]
async fn users_create_without_a_password_says_how_to_give_one() {
    let up = start_upstream().await;
    let kg = Keygate::start(up, DEFAULT_POLICY);
    let out = kg.cli_with_stdin(&["users", "create", "--email", "new@example.com"], b"");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("none on standard input") && err.contains("printf"),
        "{err}"
    );
    let out = kg.cli_with_stdin(
        &["users", "create", "--email", "new@example.com"],
        b"short\n",
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be 8 to 200 characters"));
}
