//! Test harness: a real echo upstream on port 0 and the real `keygate` binary
//! started on free ports with a config written for the test.
#![allow(dead_code)]

pub mod jwt_support;
pub mod portal_visitor;
pub mod proxies;
pub mod receiver;
pub mod services;

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The keygate binary under test: this build's, or `KEYGATE_TEST_BIN` (to run
/// the suite against another build, e.g. to see a regression test fail on the
/// commit before its fix).
pub static BIN: once_cell::sync::Lazy<String> = once_cell::sync::Lazy::new(|| {
    std::env::var("KEYGATE_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_keygate").into())
});

/// Runs `keygate check -c config` to its end.
pub fn check_config(config: impl AsRef<std::ffi::OsStr>) -> Output {
    Command::new(&*BIN)
        .args(["check", "-c"])
        .arg(config)
        .output()
        .unwrap()
}

/// A directory to run the shipped configs in: `conf/` of this repository, and the
/// quickstart's signing key made where `scripts/quickstart.sh` makes it (`data/`).
pub fn shipped_run_dir() -> tempfile::TempDir {
    let root = std::env::current_dir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::os::unix::fs::symlink(root.join("conf"), dir.path().join("conf")).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    std::fs::write(
        dir.path().join("data/issuer-es256.pem"),
        key.serialize_pem(),
    )
    .unwrap();
    dir
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    // Below the kernel's ephemeral range (32768-60999 here): a port handed out by
    // bind(0) is free again once released, and a parallel test's bind(0) or outgoing
    // connection could take it before keygate binds it. Ports below that range are
    // only ever given out here, one process-wide sequence from a random start.
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        rand::random::<u32>() % 12_000,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    loop {
        let port = 20_000 + (NEXT.fetch_add(1, Ordering::Relaxed) % 12_000) as u16;
        if StdListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Starts the echo upstream on port 0 in the current runtime.
pub async fn start_upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(keygate::app::demo::serve_echo(listener));
    addr
}

/// A running keygate process with its own config, store and ports.
pub struct Keygate {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub base: String,
    pub admin: String,
    child: Option<Child>,
    pub log: PathBuf,
    http: reqwest::Client,
    /// Extra arguments to `keygate serve`.
    args: Vec<String>,
    /// `RUST_LOG` of the process.
    log_filter: String,
    /// Extra environment of the process.
    env: Vec<(String, String)>,
}

/// The default tiers and routes used by most tests; `extra` is appended verbatim.
pub fn config_yaml(upstream: &str, listen: u16, admin: u16, db: &Path, extra: &str) -> String {
    let store = format!("store:\n  kind: sqlite\n  path: \"{}\"\n", db.display());
    config_yaml_with_store(upstream, listen, admin, &store, extra)
}

/// [`config_yaml`] with a `store:` section of the test's own.
pub fn config_yaml_with_store(
    upstream: &str,
    listen: u16,
    admin: u16,
    store: &str,
    extra: &str,
) -> String {
    format!(
        r#"server:
  listen: "127.0.0.1:{listen}"
  admin_listen: "127.0.0.1:{admin}"
  threads: 2
  grace_period: 1s
upstream:
  url: "{upstream}"
  connect_timeout: 1s
  read_timeout: 2s
{store}{extra}"#
    )
}

/// Sections appended when a test does not give its own tiers/routes.
pub const DEFAULT_POLICY: &str = r#"
tiers:
  free: { per_minute: 1000 }
  pro: { per_minute: 5000 }
default_tier: free
routes:
  - { path: /health, auth: none }
  - { path: /api/search, methods: [POST], scopes: [search], cost: 1 }
  - { path: /live/*, environment: live }
"#;

impl Keygate {
    /// Starts keygate in front of `upstream` with `policy` (tiers, routes, ...).
    pub fn start(upstream: SocketAddr, policy: &str) -> Keygate {
        Self::start_url(&format!("http://{upstream}"), policy)
    }

    /// Starts keygate in front of the upstream URL `url`.
    pub fn start_url(url: &str, policy: &str) -> Keygate {
        Self::launch(|listen, admin, dir| {
            config_yaml(url, listen, admin, &dir.join("keys.db"), policy)
        })
    }

    /// Starts keygate in front of `url` with its own `store:` section (e.g. PostgreSQL).
    pub fn start_with_store(url: &str, store: &str, policy: &str) -> Keygate {
        Self::launch(|listen, admin, _| config_yaml_with_store(url, listen, admin, store, policy))
    }

    /// Starts keygate with `server_lines` (indented YAML, e.g. `"  threads: 1\n"`)
    /// added to its `server:` section.
    pub fn start_with_server(upstream: SocketAddr, server_lines: &str, policy: &str) -> Keygate {
        let server = format!("grace_period: 1s\n{server_lines}");
        Self::launch(|listen, admin, dir| {
            config_yaml(
                &format!("http://{upstream}"),
                listen,
                admin,
                &dir.join("keys.db"),
                policy,
            )
            .replacen("grace_period: 1s\n", &server, 1)
        })
    }

    /// Starts keygate terminating TLS on its listener with `cert` and `key` (PEM).
    pub fn start_tls(upstream: SocketAddr, policy: &str, cert: &Path, key: &Path) -> Keygate {
        let tls = format!(
            "  tls: {{ cert: \"{}\", key: \"{}\" }}\n",
            cert.display(),
            key.display()
        );
        Self::start_with_server(upstream, &tls, policy)
    }

    /// Writes the config `yaml(listen, admin, dir)` on two free ports in a fresh
    /// directory and starts keygate on it.
    fn launch(yaml: impl FnOnce(u16, u16, &Path) -> String) -> Keygate {
        Self::launch_with_env(yaml, &[])
    }

    /// [`Self::launch`] with extra environment variables (e.g. `SSL_CERT_FILE`,
    /// the roots keygate trusts for a TLS upstream), for a test's own config.
    pub fn launch_with_env(
        yaml: impl FnOnce(u16, u16, &Path) -> String,
        env: &[(&str, &str)],
    ) -> Keygate {
        let dir = tempfile::tempdir().unwrap();
        let (listen, admin) = (free_port(), free_port());
        let config = dir.path().join("keygate.yaml");
        std::fs::write(&config, yaml(listen, admin, dir.path())).unwrap();
        let mut kg = Keygate {
            config,
            base: format!("http://127.0.0.1:{listen}"),
            admin: format!("http://127.0.0.1:{admin}"),
            log: dir.path().join("keygate.log"),
            dir,
            child: None,
            http: client(),
            args: Vec::new(),
            log_filter: "info".into(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        kg.spawn();
        kg
    }

    /// Stops this process and starts a new one logging at `filter` (`RUST_LOG`).
    pub fn restart_logging(mut self, filter: &str) -> Keygate {
        self.terminate();
        self.log_filter = filter.into();
        self.restart()
    }

    /// Stops this process and starts a new one with `args` added to `keygate serve`.
    pub fn restart_with(mut self, args: &[&str]) -> Keygate {
        self.terminate();
        self.args = args.iter().map(|a| a.to_string()).collect();
        self.restart()
    }

    /// Stops this process, rewrites its config with `edit`, and starts a new one.
    pub fn restart_with_config(mut self, edit: impl FnOnce(&str) -> String) -> Keygate {
        self.terminate();
        let text = std::fs::read_to_string(&self.config).unwrap();
        let edited = edit(&text);
        assert_ne!(text, edited, "the edit changed nothing");
        std::fs::write(&self.config, edited).unwrap();
        self.restart()
    }

    /// Starts a new process on the config, store and ports of this stopped one.
    pub fn restart(mut self) -> Keygate {
        self.child = None;
        // Connections kept alive to the old process are gone with it.
        self.http = client();
        self.spawn();
        self
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(&self.log).unwrap();
        let child = Command::new(&*BIN)
            .args(["serve", "-c"])
            .arg(&self.config)
            .args(&self.args)
            .env("RUST_LOG", &self.log_filter)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        let health = format!("{}/health", self.admin.trim_start_matches("http://"));
        while Instant::now() < deadline {
            if let Ok(mut s) = std::net::TcpStream::connect(health.split('/').next().unwrap()) {
                use std::io::{Read, Write};
                let _ =
                    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                let mut buf = String::new();
                let _ = s.read_to_string(&mut buf);
                let data_plane = self.base.trim_start_matches("http://");
                if buf.starts_with("HTTP/1.1 200")
                    && std::net::TcpStream::connect(data_plane).is_ok()
                {
                    return;
                }
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("keygate exited with {status}: {}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("keygate did not become healthy: {}", self.logs());
    }

    /// Everything keygate wrote to stderr so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs `keygate ARGS -c <this config>` and returns its output.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(&*BIN)
            .args(args)
            .arg("-c")
            .arg(&self.config)
            .output()
            .unwrap()
    }

    /// Creates a key through the CLI; returns `(id, key)`.
    pub fn create_key(&self, args: &[&str]) -> (String, String) {
        let mut all = vec!["keys", "create", "--json", "--name", "test"];
        all.extend_from_slice(args);
        if !args.contains(&"--tier") {
            all.extend_from_slice(&["--tier", "free"]);
        }
        let out = self.cli(&all);
        assert!(
            out.status.success(),
            "keys create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (
            v["id"].as_str().unwrap().to_string(),
            v["key"].as_str().unwrap().to_string(),
        )
    }

    /// Sends `method path` with `key` in `X-API-Key`.
    pub async fn send_key(
        &self,
        method: reqwest::Method,
        path: &str,
        key: impl AsRef<[u8]>,
    ) -> reqwest::Response {
        self.http
            .request(method, self.url(path))
            .header("X-API-Key", key.as_ref())
            .send()
            .await
            .unwrap()
    }

    /// `GET path` with `key` in `X-API-Key`.
    pub async fn get_key(&self, path: &str, key: impl AsRef<[u8]>) -> reqwest::Response {
        self.send_key(reqwest::Method::GET, path, key).await
    }

    /// `POST path` with `key` in `X-API-Key`.
    pub async fn post_key(&self, path: &str, key: impl AsRef<[u8]>) -> reqwest::Response {
        self.send_key(reqwest::Method::POST, path, key).await
    }

    /// `GET path` with `Authorization: Bearer token`.
    pub async fn get_bearer(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// `POST path` with `Authorization: Bearer token`.
    pub async fn post_bearer(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The admin listener's `/metrics` text. Metrics are recorded in the logging
    /// phase, just after the response is sent, so give the last request a moment.
    pub async fn metrics(&self) -> String {
        tokio::time::sleep(Duration::from_millis(200)).await;
        reqwest::get(format!("{}/metrics", self.admin))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Runs `keygate ARGS -c <this config>` with `input` on its standard input.
    pub fn cli_with_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        use std::io::Write;
        let mut child = Command::new(&*BIN)
            .args(args)
            .arg("-c")
            .arg(&self.config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }

    /// Creates a user with `keygate users create` (password on stdin, as an operator
    /// would type it). Returns the new id and everything the command printed.
    pub fn create_user(&self, email: &str, password: &str, admin: bool) -> (String, String) {
        let mut args = vec!["users", "create", "--email", email];
        if admin {
            args.push("--admin");
        }
        let out = self.cli_with_stdin(&args, format!("{password}\n").as_bytes());
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{printed}");
        let id = printed
            .lines()
            .find_map(|l| l.strip_prefix("id:"))
            .unwrap()
            .trim()
            .to_string();
        (id, printed)
    }

    /// The process id of the running keygate.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends `signal` (e.g. `HUP`) to the process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal} {pid}");
    }

    /// Waits up to 20 s for the process to exit (after a signal sent with
    /// [`Self::signal`]) and returns its status.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("keygate did not exit: {}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("keygate did not exit after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Keygate {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Wall-clock time since the Unix epoch: the clock that rate-limit windows,
/// `X-RateLimit-Reset` and JWT claims are measured on.
pub fn since_epoch() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
}

/// Unix seconds now.
pub fn unix_secs() -> u64 {
    since_epoch().as_secs()
}

/// What is left of the current `window` (rate-limit windows, and refill periods,
/// are aligned to the epoch): more than zero, at most `window`.
pub fn left_of_window(window: Duration) -> Duration {
    let left = window.as_millis() - since_epoch().as_millis() % window.as_millis();
    Duration::from_millis(left as u64)
}

/// Sleeps until just after the next wall-clock second starts. Rate-limit windows
/// are aligned to the epoch, so a test that needs two requests in one `per_second`
/// window calls this first instead of racing the boundary.
pub async fn start_of_next_second() {
    let left = left_of_window(Duration::from_secs(1));
    tokio::time::sleep(left + Duration::from_millis(20)).await;
}

/// How long a test must wait so that at least `margin` is left of the current
/// `window` (rate-limit windows are aligned to the epoch): zero when that much is
/// left already, else until just after the next window starts. A test counting a
/// limit down sleeps this first, so the window cannot roll over mid-count.
pub fn wait_for_window_room(window: Duration, margin: Duration) -> Duration {
    let left = left_of_window(window);
    if left < margin {
        left + Duration::from_millis(50)
    } else {
        Duration::ZERO
    }
}

/// The sum of the samples of every metric line in `metrics` (Prometheus text)
/// starting with `name`, e.g. `keygate_store_queries_total` for all its labels.
pub fn metric_sum(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The credential of a management API call.
#[derive(Clone, Copy, Debug)]
pub enum Auth<'a> {
    /// `X-API-Key`.
    Key(&'a str),
    /// `Authorization: Bearer`.
    Bearer(&'a str),
    /// None.
    Anonymous,
}

impl Keygate {
    /// `method path` on the management API (`/v1` + `path`) with `auth` and an
    /// optional JSON body; returns the status and the JSON answer.
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        auth: Auth<'_>,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut req = self.http.request(method, self.url(&format!("/v1{path}")));
        req = match auth {
            Auth::Key(k) => req.header("X-API-Key", k),
            Auth::Bearer(t) => req.bearer_auth(t),
            Auth::Anonymous => req,
        };
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
        (status, value)
    }

    /// Logs in with the token endpoint; returns the access token.
    pub async fn login(&self, email: &str, password: &str) -> String {
        let (status, body) = self
            .api(
                reqwest::Method::POST,
                "/auth/token",
                Auth::Anonymous,
                Some(serde_json::json!({"email": email, "password": password})),
            )
            .await;
        assert_eq!(status, 200, "login: {body}");
        body["access_token"].as_str().unwrap().to_string()
    }

    /// Sends `raw` on a fresh connection and reads until the server closes it (or
    /// 5 s pass); returns everything read.
    pub async fn exchange(&self, raw: &[u8]) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(self.base.trim_start_matches("http://"))
            .await
            .unwrap();
        s.write_all(raw).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The resident and peak memory of the process, in MB (`VmRSS`, `VmHWM`).
    pub fn memory_mb(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kb = |field: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (kb("VmRSS:") / 1024.0, kb("VmHWM:") / 1024.0)
    }
}

/// A CA and a certificate it signs for 127.0.0.1 and localhost, written as
/// `ca.pem`, `server.pem` and `server.key` in a new directory.
pub fn test_pki() -> tempfile::TempDir {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let dir = tempfile::tempdir().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Not rcgen's default name, which the server certificate also has: OpenSSL
    // would take a certificate whose issuer is its own subject for self-signed.
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "keygate test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
    let server = CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.path().join("server.pem"), server.pem()).unwrap();
    std::fs::write(dir.path().join("server.key"), key.serialize_pem()).unwrap();
    dir
}

/// Runs `cmd` with `input` as JSON on its stdin and returns the JSON it prints;
/// panics with its stderr if it fails.
pub fn json_through(cmd: &mut Command, input: &serde_json::Value) -> serde_json::Value {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A client that never pools across tests and never follows redirects.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Parses a response body as JSON.
pub async fn json(resp: reqwest::Response) -> serde_json::Value {
    let text = resp.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Asserts a response is the contract's error with `status` and `code`, and returns its body.
pub async fn expect_error(resp: reqwest::Response, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(resp.status().as_u16(), status, "status");
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body = json(resp).await;
    assert_eq!(body["error"], code, "error code in {body}");
    assert!(body["message"].is_string(), "message in {body}");
    assert!(body["details"].is_object(), "details in {body}");
    body
}

/// Waits for the start of a minute's first 40 seconds, so a per-minute window
/// cannot roll over in the middle of a test.
pub async fn early_in_a_minute() {
    let into = unix_secs() % 60;
    if into > 40 {
        tokio::time::sleep(Duration::from_secs(61 - into)).await;
    }
}
