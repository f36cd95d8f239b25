//! Real backing services for multi-replica tests: a PostgreSQL database of its own
//! per test, a Redis server of its own per test (on its own port, so a test can kill
//! and restart it), and a TCP relay that can cut a connection path on demand.
//!
//! Outside CI a missing PostgreSQL or `redis-server` skips the test loudly; with
//! `CI=true` it fails.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio_postgres::NoTls;

fn missing(what: &str, why: impl std::fmt::Display) -> Option<std::convert::Infallible> {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{what} is required in CI: {why}");
    }
    eprintln!("SKIPPED: {what} not available: {why}");
    None
}

/// A database created for one test and dropped after it.
pub struct PgDatabase {
    /// `postgres://...` URL of the new database.
    pub url: String,
    admin: String,
    name: String,
}

impl PgDatabase {
    /// Creates `kg_it_<random>` on the machine's PostgreSQL.
    pub async fn create() -> Option<PgDatabase> {
        let admin = std::env::var("KEYGATE_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let name = format!("kg_it_{:016x}", rand::random::<u64>());
        let made = async {
            let (client, conn) = tokio_postgres::connect(&admin, NoTls).await?;
            tokio::spawn(conn);
            client
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await
        }
        .await;
        if let Err(e) = made {
            missing("PostgreSQL", format!("{admin}: {e}"))?;
        }
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        Some(PgDatabase {
            url: format!("{base}/{name}"),
            admin,
            name,
        })
    }

    /// The host:port the database listens on.
    pub fn addr(&self) -> String {
        let rest = self
            .admin
            .split_once('@')
            .map_or(self.admin.as_str(), |(_, r)| r);
        rest.split('/').next().unwrap_or_default().to_string()
    }

    /// The URL of this database reached through `addr` instead.
    pub fn url_via(&self, addr: SocketAddr) -> String {
        self.url.replace(&self.addr(), &addr.to_string())
    }

    /// Runs SQL on the administrative database (`test`), e.g. `ALTER DATABASE`.
    pub async fn admin_execute(&self, sql: &str) {
        let (client, conn) = tokio_postgres::connect(&self.admin, NoTls).await.unwrap();
        tokio::spawn(conn);
        client.batch_execute(sql).await.unwrap();
    }

    /// This database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// An open connection to this database (it stays usable when new connections
    /// are refused).
    pub async fn connect(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url, NoTls).await.unwrap();
        tokio::spawn(conn);
        client
    }

    /// Runs SQL on this database.
    pub async fn execute(&self, sql: &str) {
        let (client, conn) = tokio_postgres::connect(&self.url, NoTls).await.unwrap();
        tokio::spawn(conn);
        client.batch_execute(sql).await.unwrap();
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop has no runtime of its own to await on: use a short-lived one.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok((client, conn)) = tokio_postgres::connect(&admin, NoTls).await {
                    tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// PostgreSQL and Redis for this test: a database and a `redis-server` of its own
/// (`None`, skipped loudly outside CI, when either is missing).
pub struct Backends {
    /// The test's database.
    pub db: PgDatabase,
    /// The test's Redis.
    pub redis: RedisServer,
}

impl Backends {
    /// A fresh database and a fresh `redis-server`.
    pub async fn start() -> Option<Backends> {
        let db = PgDatabase::create().await?;
        let redis = RedisServer::start()?;
        Some(Backends { db, redis })
    }
}

/// A `redis-server` of this test's own, on a free port.
pub struct RedisServer {
    /// Its port.
    pub port: u16,
    child: Option<Child>,
    /// For a TLS-only server: a directory with `server.pem`, `server.key`, `ca.pem`.
    tls: Option<std::path::PathBuf>,
}

impl RedisServer {
    /// Starts one; `None` when `redis-server` is not installed (outside CI).
    pub fn start() -> Option<RedisServer> {
        Self::start_with(None)
    }

    /// Starts one serving TLS only, with the certificates in `dir` (`server.pem`,
    /// `server.key`, `ca.pem`).
    pub fn start_tls(dir: &std::path::Path) -> Option<RedisServer> {
        Self::start_with(Some(dir.to_path_buf()))
    }

    fn start_with(tls: Option<std::path::PathBuf>) -> Option<RedisServer> {
        let mut s = RedisServer {
            port: super::free_port(),
            child: None,
            tls,
        };
        if let Err(e) = s.spawn() {
            missing("redis-server", e)?;
        }
        Some(s)
    }

    /// `redis://127.0.0.1:PORT`, or `rediss://` for a TLS server.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let port = self.port.to_string();
        let listen: Vec<String> = match &self.tls {
            None => vec!["--port".into(), port],
            Some(dir) => {
                let file = |name: &str| dir.join(name).display().to_string();
                vec![
                    "--port".into(),
                    "0".into(),
                    "--tls-port".into(),
                    port,
                    "--tls-cert-file".into(),
                    file("server.pem"),
                    "--tls-key-file".into(),
                    file("server.key"),
                    "--tls-ca-cert-file".into(),
                    file("ca.pem"),
                    "--tls-auth-clients".into(),
                    "no".into(),
                ]
            }
        };
        let child = Command::new("redis-server")
            .args(&listen)
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run redis-server: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err("redis-server did not start listening".into())
    }

    /// Kills the server (SIGKILL: no goodbye to clients).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port (with no data: it keeps nothing on disk).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn().unwrap();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP relay to `target` that can be cut (every connection closed, new ones
/// refused) and restored, to make a backend unreachable without touching it.
pub struct Relay {
    /// Where clients connect.
    pub addr: SocketAddr,
    open: Arc<AtomicBool>,
    stalled: Arc<AtomicBool>,
    generation: Arc<tokio::sync::watch::Sender<u64>>,
    refused: Refused,
}

/// Bytes that, seen among a connection's first bytes from the client, get it closed
/// before they are forwarded: a PostgreSQL startup message carries the connection's
/// `application_name`, so one client of the database (keygate's change feed) can be
/// kept out while the others get through.
type Refused = Arc<std::sync::Mutex<Option<&'static [u8]>>>;

/// How many of a connection's first bytes are looked at for the refused marker.
const SNIFFED: usize = 4096;

/// Forwards bytes both ways until either side closes; a connection whose first
/// [`SNIFFED`] bytes from the client contain the refused marker is closed instead.
async fn pump(inbound: &mut TcpStream, outbound: &mut TcpStream, refused: Refused) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut in_read, mut in_write) = inbound.split();
    let (mut out_read, mut out_write) = outbound.split();
    let up = async {
        let mut seen: Vec<u8> = Vec::new();
        let mut buf = vec![0u8; 8192];
        loop {
            let n = in_read.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            if seen.len() < SNIFFED {
                seen.extend_from_slice(&buf[..n]);
                let marker = *refused.lock().unwrap();
                if marker.is_some_and(|m| seen.windows(m.len()).any(|w| w == m)) {
                    return;
                }
            }
            if out_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let down = tokio::io::copy(&mut out_read, &mut in_write);
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

impl Relay {
    /// Starts relaying from a free port to `target`.
    pub async fn start(target: String) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicBool::new(true));
        let stalled = Arc::new(AtomicBool::new(false));
        let (tx, _) = tokio::sync::watch::channel(0u64);
        let generation = Arc::new(tx);
        let refused: Refused = Arc::default();
        let (o, st, g, r) = (
            open.clone(),
            stalled.clone(),
            generation.clone(),
            refused.clone(),
        );
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                let mut cut = g.subscribe();
                if st.load(Ordering::SeqCst) {
                    // Accepted, never answered, never closed: until the next change.
                    tokio::spawn(async move {
                        let _ = cut.changed().await;
                        drop(inbound);
                    });
                    continue;
                }
                if !o.load(Ordering::SeqCst) {
                    drop(inbound); // refused: closed at once
                    continue;
                }
                let target = target.clone();
                let (st, r) = (st.clone(), r.clone());
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = pump(&mut inbound, &mut outbound, r) => return,
                        _ = cut.changed() => {}
                    }
                    if st.load(Ordering::SeqCst) {
                        // A black hole: both sockets stay open, nothing moves.
                        let _ = cut.changed().await;
                    }
                });
            }
        });
        Relay {
            addr,
            open,
            stalled,
            generation,
            refused,
        }
    }

    /// From now on, closes every new connection whose first bytes from the client
    /// contain `marker` (`None`: none). Open connections are left alone.
    pub fn refuse_marked(&self, marker: Option<&'static [u8]>) {
        *self.refused.lock().unwrap() = marker;
    }

    /// Closes every relayed connection and refuses new ones.
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Stops forwarding without closing anything, like a network partition: every
    /// connection, old or new, stays open and silent.
    pub fn stall(&self) {
        self.stalled.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Accepts and forwards connections again (stalled ones are closed).
    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
        self.stalled.store(false, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }
}

/// A PostgreSQL server of this test's own (`initdb` in a temporary directory, on a
/// free port), so a test can stop and restart a real database without touching the
/// machine's. As root, the server runs as the `postgres` user.
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl PgCluster {
    /// Creates and starts one; `None` when PostgreSQL's server binaries are not
    /// installed (outside CI).
    pub fn start() -> Option<PgCluster> {
        let bin = match Self::bindir() {
            Ok(b) => b,
            Err(e) => match missing("PostgreSQL server binaries", e)? {},
        };
        let dir = tempfile::tempdir().unwrap();
        let cluster = PgCluster {
            dir,
            bin,
            port: super::free_port(),
        };
        if let Some(uid) = Self::postgres_uid() {
            std::os::unix::fs::chown(cluster.dir.path(), Some(uid), None).unwrap();
        }
        let data = cluster.data();
        let out = cluster
            .run("initdb")
            .args(["-D", &data, "-U", "postgres", "--auth=trust", "--no-sync"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.start_again();
        Some(cluster)
    }

    fn bindir() -> Result<std::path::PathBuf, String> {
        let out = Command::new("pg_config")
            .arg("--bindir")
            .output()
            .map_err(|e| format!("pg_config: {e}"))?;
        let mut dir = std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if !dir.join("initdb").exists() {
            // Debian's pg_config (libpq-dev) names the client's directory.
            let versions = std::fs::read_dir("/usr/lib/postgresql").map_err(|e| e.to_string())?;
            dir = versions
                .filter_map(Result::ok)
                .map(|v| v.path().join("bin"))
                .find(|b| b.join("initdb").exists())
                .ok_or("no initdb under /usr/lib/postgresql")?;
        }
        Ok(dir)
    }

    /// The `postgres` user's uid when this test runs as root (initdb refuses root).
    fn postgres_uid() -> Option<u32> {
        let me = Command::new("id").arg("-u").output().ok()?;
        if String::from_utf8_lossy(&me.stdout).trim() != "0" {
            return None;
        }
        let out = Command::new("id").args(["-u", "postgres"]).output().ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, tool: &str) -> Command {
        let tool = self.bin.join(tool);
        match Self::postgres_uid() {
            Some(_) => {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(tool);
                c
            }
            None => Command::new(tool),
        }
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log").display().to_string();
        let out = self
            .run("pg_ctl")
            .args([
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "start",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops the server the way a restart does (`-m fast`: every session is ended).
    pub fn stop(&self) {
        let out = self
            .run("pg_ctl")
            .args(["-D", &self.data(), "-m", "fast", "-w", "stop"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self
            .run("pg_ctl")
            .args(["-D", &self.data(), "-m", "immediate", "-w", "stop"])
            .output();
    }
}

/// A real, small filesystem of this test's own (a tmpfs mounted on a temporary
/// directory), to fill up the way a full disk fills up. Mounting needs root: outside
/// CI a test without it is skipped loudly.
pub struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size` (`4m`).
    pub fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(SmallDisk { dir }),
            Ok(o) => match missing("a tmpfs mount (root)", String::from_utf8_lossy(&o.stderr))? {},
            Err(e) => match missing("mount", e)? {},
        }
    }

    /// The mounted directory.
    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Writes a filler file until the disk is full.
    pub fn fill(&self) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.filler()).unwrap();
        let block = vec![0u8; 4096];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
    }

    /// Removes the filler file.
    pub fn free(&self) {
        std::fs::remove_file(self.filler()).unwrap();
    }

    fn filler(&self) -> std::path::PathBuf {
        self.dir.path().join("filler")
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazily: a process that still holds a file open must not keep it mounted.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .output();
    }
}

/// PostgreSQL statements that take away what the migrations from accounts on
/// (to the audit log)
/// (7 and later) added, for tests of a store as it was before them; delete their
/// rows from `keygate_migrations` after.
pub const PG_UNDO_ACCOUNTS: &str = "DROP TABLE accounts; \
     DROP FUNCTION keygate_announce_account_change(); \
     DROP TRIGGER api_keys_changed ON api_keys; ALTER TABLE api_keys DROP COLUMN account; \
     DROP TABLE password_resets; ALTER TABLE users DROP COLUMN disabled; \
     ALTER TABLE api_keys DROP COLUMN cap; \
     ALTER TABLE usage DROP COLUMN total_us; ALTER TABLE usage DROP COLUMN rate_limited; \
     ALTER TABLE usage DROP COLUMN no_credits; ALTER TABLE usage DROP COLUMN refused; \
     ALTER TABLE usage DROP COLUMN api_error; DROP TABLE audit_log; \
     DROP TABLE events; DROP TABLE webhook_cursors; DROP TABLE webhook_deliveries; DROP TABLE leases;";
