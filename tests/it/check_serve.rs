//! `keygate check` is the compile `serve` runs: every shipped config that `check`
//! accepts starts and becomes healthy on real backends, and every broken config is
//! refused by both with the same problems, exit 2.
use crate::common::services::PgDatabase;
use crate::common::{free_port, shipped_run_dir, start_upstream, BIN};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `text` with both listeners on free loopback ports and a SQLite store in `dir`.
fn on_free_ports(text: &str, dir: &Path) -> (String, u16) {
    let mut doc: serde_yaml::Value = serde_yaml::from_str(text).unwrap();
    let admin = free_port();
    let server = doc
        .as_mapping_mut()
        .unwrap()
        .entry("server".into())
        .or_insert_with(|| serde_yaml::Value::Mapping(Default::default()));
    server["listen"] = format!("127.0.0.1:{}", free_port()).into();
    server["admin_listen"] = format!("127.0.0.1:{admin}").into();
    if let Some(store) = doc.get_mut("store") {
        if store.get("kind").and_then(|k| k.as_str()) != Some("postgres")
            && store.get("kind").and_then(|k| k.as_str()) != Some("file")
        {
            store["path"] = dir.join("keygate.db").display().to_string().into();
        }
    }
    (serde_yaml::to_string(&doc).unwrap(), admin)
}

struct Env(Vec<(&'static str, String)>);

fn run(cmd: &str, config: &Path, dir: &Path, env: &Env) -> Command {
    let mut c = Command::new(&*BIN);
    c.current_dir(dir)
        .args([cmd, "-c"])
        .arg(config)
        .envs(env.0.iter().map(|(k, v)| (*k, v.as_str())));
    c
}

/// Runs `serve` until its admin listener answers `/health` 200 (then stops it), or
/// until it exits: the exit's output, or `None` when it served.
fn serve_until_healthy(config: &Path, dir: &Path, env: &Env, admin: u16) -> Option<Output> {
    let log = dir.join(format!("serve-{admin}.log"));
    let mut child = run("serve", config, dir, env)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(Output {
                status,
                stdout: Vec::new(),
                stderr: std::fs::read(&log).unwrap(),
            });
        }
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", admin)) {
            use std::io::{Read, Write};
            let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut buf = String::new();
            let _ = s.read_to_string(&mut buf);
            if buf.starts_with("HTTP/1.1 200") {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!(
        "{}: serve neither became healthy nor exited: {}",
        config.display(),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

fn shipped_configs() -> Vec<PathBuf> {
    let root = std::env::current_dir().unwrap();
    let mut files = vec![
        root.join("conf/keygate.yaml"),
        root.join("conf/docker.yaml"),
    ];
    for e in std::fs::read_dir("conf/examples").unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            files.push(root.join(path));
        }
    }
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_config_check_accepts_starts_and_every_one_it_refuses_serve_refuses_too() {
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    let upstream = start_upstream().await;
    let dir = shipped_run_dir();
    let env = Env(vec![
        ("KEYGATE_DATABASE_URL", db.url.clone()),
        ("KEYGATE_REDIS_URL", "redis://127.0.0.1:6379".into()),
        ("KEYGATE_JWT_SECRET", "example-secret".into()),
        ("KEYGATE_UPSTREAM_URL", format!("http://{upstream}")),
        ("RUST_LOG", "warn".into()),
    ]);
    let shipped = shipped_configs();
    assert!(shipped.len() >= 12, "{shipped:?}");
    for file in &shipped {
        let (text, admin) = on_free_ports(&std::fs::read_to_string(file).unwrap(), dir.path());
        let config = dir.path().join(file.file_name().unwrap());
        std::fs::write(&config, text).unwrap();
        let check = run("check", &config, dir.path(), &env).output().unwrap();
        assert!(
            check.status.success(),
            "{}: check refused: {}",
            file.display(),
            String::from_utf8_lossy(&check.stderr)
        );
        if let Some(out) = serve_until_healthy(&config, dir.path(), &env, admin) {
            panic!(
                "{}: check accepted, serve exited with {}: {}",
                file.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    // Broken configs: each part the compile parses, broken. Both doors refuse with
    // exit 2 and the same problem lines.
    let base = "upstream: { url: 'http://127.0.0.1:1' }\ntiers: { free: { per_minute: 5 } }\n";
    let broken = [
        ("api_keys: { sources: ['query:a b'] }", "api_keys.sources[0]: `query:a b` is not a source"),
        ("api_keys: { sources: [bearer, BEARER] }", "api_keys.sources[1]: duplicate source"),
        ("api_keys: { format: '{prefix}_{random:8}' }", "api_keys.format: {random:8} is too short"),
        ("server: { tls: { cert: /nonexistent/c.pem, key: /nonexistent/k.pem } }", "server.tls:"),
        ("store: { kind: postgres, url: 'postgres://u@h:notaport/db' }", "store.url: invalid URL"),
        ("rate_limit: { backend: redis, redis_url: 'redis+nonsense://h:1' }", "rate_limit.redis_url:"),
        ("rate_limit: { backend: redis, redis_url: 'redis://h:1', redis_tls: { ca_file: /nonexistent/ca.pem } }", "rate_limit.redis_tls: set, but redis_url does not use TLS"),
        ("jwt: { issue: { alg: RS256, private_key_file: /nonexistent/issuer.pem } }", "jwt.issue:"),
        ("jwt: { enabled: true, algorithms: [RS256], keys: [ { kid: a, alg: RS256, pem_file: /nonexistent/a.pem } ] }", "jwt.keys[0]:"),
    ];
    for (i, (section, expected)) in broken.iter().enumerate() {
        let (text, admin) = on_free_ports(&format!("{base}{section}\n"), dir.path());
        let config = dir.path().join(format!("broken-{i}.yaml"));
        std::fs::write(&config, text).unwrap();
        let check = run("check", &config, dir.path(), &env).output().unwrap();
        let check_err = String::from_utf8_lossy(&check.stderr).into_owned();
        assert_eq!(check.status.code(), Some(2), "{section}: {check_err}");
        assert!(check_err.contains(expected), "{section}: {check_err}");
        let serve = serve_until_healthy(&config, dir.path(), &env, admin)
            .unwrap_or_else(|| panic!("{section}: check refused it, serve started"));
        let serve_err = String::from_utf8_lossy(&serve.stderr).into_owned();
        assert_eq!(serve.status.code(), Some(2), "{section}: {serve_err}");
        let problems = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|l| l.starts_with("  - "))
                .map(str::to_owned)
                .collect()
        };
        assert!(!problems(&check_err).is_empty(), "{section}: {check_err}");
        assert_eq!(problems(&check_err), problems(&serve_err), "{section}");
    }
}
