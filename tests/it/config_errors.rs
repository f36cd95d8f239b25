//! `keygate check`: exit 0 for good configs (every file in conf/), exit 2 listing
//! every problem with its YAML path.
use crate::common::BIN;
use std::process::Command;

fn check(yaml: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = crate::common::check_config(&path);
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_shipped_config_is_valid() {
    let root = std::env::current_dir().unwrap();
    let mut files = vec![
        root.join("conf/keygate.yaml"),
        root.join("conf/docker.yaml"),
    ];
    for dir in ["conf/examples", "conf/examples/seeds"] {
        for e in std::fs::read_dir(dir).unwrap() {
            files.push(root.join(e.unwrap().path()));
        }
    }
    assert!(
        files
            .iter()
            .filter(|f| f.starts_with(root.join("conf/examples/seeds")))
            .count()
            >= 4,
        "the four documents' examples"
    );
    // `check` reads the files a config names: the quickstart's signing key is made
    // by scripts/quickstart.sh in data/, relative to where keygate runs.
    let run_dir = crate::common::shipped_run_dir();
    for f in files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "yaml"))
    {
        let out = Command::new(&*BIN)
            .current_dir(run_dir.path())
            .args(["check", "-c"])
            .arg(f)
            .env("KEYGATE_DATABASE_URL", "postgres://x@localhost/test")
            .env("KEYGATE_REDIS_URL", "redis://127.0.0.1:6379")
            .env("KEYGATE_JWT_SECRET", "example-secret")
            .env("KEYGATE_UPSTREAM_URL", "http://127.0.0.1:3000")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            f.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn a_misspelled_key_is_an_error_at_its_path() {
    let (code, err) =
        check("upstream: { url: 'http://127.0.0.1:1' }\ntiers:\n  free: { per_minuet: 30 }\n");
    assert_eq!(code, 2);
    assert!(
        err.contains("tiers.free.per_minuet: unknown field"),
        "{err}"
    );
}

#[test]
fn every_problem_is_listed_at_once() {
    let (code, err) = check(
        "server: { listen: 'nowhere' }\nupstream: { url: 'ftp://x' }\ntiers: { free: { per_day: 0 } }\ndefault_tier: gold\nroutes: [ { path: nope } ]\n",
    );
    assert_eq!(code, 2);
    for path in [
        "server.listen:",
        "upstream.url:",
        "tiers.free.per_day:",
        "default_tier:",
        "routes[0].path:",
    ] {
        assert!(err.contains(path), "missing {path} in {err}");
    }
}

#[test]
fn structural_errors_in_several_sections_are_all_reported() {
    let (code, err) = check("server: { colour: red }\nupstream: { url: 'http://x:1', retries: 3 }\ntiers: { free: { per_minute: 'ten' } }\nextra: 1\n");
    assert_eq!(code, 2);
    for path in [
        "server.colour: unknown field",
        "upstream.retries: unknown field",
        "tiers.free.per_minute:",
        "extra: unknown field",
    ] {
        assert!(err.contains(path), "missing {path} in {err}");
    }
}

#[test]
fn missing_files_variables_and_broken_yaml_are_clear_and_exit_2() {
    let out = crate::common::check_config("/nonexistent/k.yaml");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read config file"));
    let (code, err) =
        check("upstream: { url: '${KEYGATE_TEST_UNSET_VAR}' }\ntiers: { free: { per_day: 1 } }\n");
    assert_eq!(code, 2);
    assert!(err.contains("KEYGATE_TEST_UNSET_VAR"), "{err}");
    let (code, err) = check("upstream: [\n");
    assert_eq!(code, 2);
    assert!(err.contains("invalid YAML"), "{err}");
}

#[test]
fn serve_refuses_a_bad_config_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, "upstream: { url: 'http://x:1' }\n").unwrap();
    let out = Command::new(&*BIN)
        .args(["serve", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tiers: missing required section"));
}

/// Issue 13: with several mistakes, `check` listed the first few; the rest showed
/// only once those were fixed.
#[test]
fn every_mistake_is_listed_in_one_run() {
    let (code, err) = check(
        "upstream: { url: 'htp://127.0.0.1:3000' }\n\
tiers:\n  free: { per_minuet: 10 }\n  pro: { per_minute: 0 }\n\
default_tier: hobbit\n\
routes:\n  - { path: /x, scope: [a] }\n  - { path: y }\n\
server: { colour: blue, threads: 0 }\n",
    );
    assert_eq!(code, 2, "{err}");
    for problem in [
        "tiers.free.per_minuet: unknown field",
        "routes[0].scope: unknown field",
        "upstream.url: `htp://127.0.0.1:3000` must start with http:// or https://",
        "default_tier: `hobbit` is not a tier",
        "tiers.pro.per_minute: must be at least 1",
        "routes[1].path: must start with /",
        "server.colour: unknown field",
    ] {
        assert!(err.contains(problem), "missing `{problem}` in:\n{err}");
    }
}

/// Issue 13: `check` passed configs whose key and certificate files were missing
/// or not keys at all; `serve` then failed at start.
#[test]
fn check_reads_the_files_a_config_names() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a key").unwrap();
    let junk = junk.display();
    let (code, err) = check(&format!(
        "upstream: {{ url: 'http://127.0.0.1:1' }}\ntiers: {{ free: {{ per_minute: 1 }} }}\n\
server: {{ tls: {{ cert: \"{junk}\", key: \"{junk}\" }} }}\n\
jwt:\n  enabled: true\n  algorithms: [RS256]\n  keys: [{{ kid: a, alg: RS256, pem_file: \"{junk}\" }}]\n{}",
        "  issue: { alg: ES256, private_key_file: /nonexistent/issuer.pem }\n"
    ));
    assert_eq!(code, 2, "{err}");
    for problem in [
        "server.tls:",
        "jwt.keys[0]:",
        "jwt.issue: /nonexistent/issuer.pem",
    ] {
        assert!(err.contains(problem), "missing `{problem}` in:\n{err}");
    }
}
