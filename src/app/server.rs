//! Assembles and runs keygate: store, runtime, the proxy service, the admin
//! service and housekeeping, under one Pingora server.

use crate::accounts::Accounts;
use crate::app::admin::AdminApp;
use crate::app::reload::Reloader;
use crate::app::signals::{ReloadOnHangup, ShutdownSignals};
use crate::auth::authenticator::Authenticator;
use crate::auth::cache::KeyCache;
use crate::auth::jwt::issue::TokenIssuer;
use crate::auth::jwt::{JwtSetupError, JwtVerifier};
use crate::auth::verify::KeyVerifier;
use crate::clock::{Clock, SystemClock};
use crate::config::LimitBackend;
use crate::config::{Config, StoreKind};
use crate::keys::service::KeyService;
use crate::ledger::usage::UsageRecorder;
use crate::limit::redis::{RedisCerts, RedisLimiter, RedisTarget};
use crate::limit::{FallbackLimiter, Limiter, LocalLimiter};
use crate::management::Management;
use crate::net::head_deadline::HeadDeadlineApp;
use crate::net::tls::ReloadableCert;
use crate::obs::metrics;
use crate::portal::Portal;
use crate::proxy::live_streams::LiveStreams;
use crate::proxy::runtime::{Runtime, RuntimeError};
use crate::proxy::{Gate, Shared};
use crate::store::file::FileStore;
use crate::store::postgres::PostgresStore;
use crate::store::sqlite::SqliteStore;
use crate::store::users::UserStore;
use crate::store::{KeyStore, StoreChange, StoreError};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::apps::http_app::HttpServer;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;
use std::sync::Arc;
use std::time::Duration;

/// Why keygate could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be opened.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The runtime could not be compiled.
    #[error("{0}")]
    Runtime(#[from] RuntimeError),
    /// A listen address is unusable.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The JWT configuration could not be loaded.
    #[error("{0}")]
    Jwt(#[from] JwtSetupError),
    /// The file store's key file is invalid (every problem listed).
    #[error("{0}")]
    KeyFile(#[from] crate::store::file::KeyFileError),
    /// A configured feature is not available in this build.
    #[error("{0}")]
    Unsupported(String),
}

/// The opened store: keys, and users where the backend is writable.
pub struct Stores {
    /// Keys.
    pub keys: Arc<dyn KeyStore>,
    /// Users and refresh tokens (not with the read-only file store).
    pub users: Option<Arc<dyn UserStore>>,
}

/// Opens the configured store, judging time on `clock`.
pub fn open_store(config: &Config, clock: Arc<dyn Clock>) -> Result<Stores, StartError> {
    match config.store.kind {
        StoreKind::Sqlite => {
            let store = Arc::new(SqliteStore::open(&config.store.path)?.with_clock(clock));
            Ok(Stores {
                keys: store.clone(),
                users: Some(store),
            })
        }
        StoreKind::Postgres => {
            let url = config.store.url.as_deref().unwrap_or_default();
            let store = Arc::new(
                PostgresStore::open(url, config.store.pool_size, config.store.timeout.get())?
                    .with_clock(clock),
            );
            Ok(Stores {
                keys: store.clone(),
                users: Some(store),
            })
        }
        StoreKind::File => {
            let path = config.store.file.clone().unwrap_or_default();
            let tiers = config.tier_names().into_iter().map(String::from).collect();
            let store = FileStore::open(&path, tiers)?;
            Ok(Stores {
                keys: Arc::new(store),
                users: None,
            })
        }
    }
}

/// Builds the shared request-path state from a validated config.
pub fn build_shared(config: Config, clock: Arc<dyn Clock>) -> Result<Arc<Shared>, StartError> {
    let Stores { keys: store, users } = open_store(&config, clock.clone())?;
    let writable = config.store.kind != StoreKind::File;
    let cache = KeyCache::new(&config.cache, clock.clone());
    let live = Arc::new(LiveStreams::new(
        store.clone(),
        clock.clone(),
        Arc::default(),
    ));
    store.watch(forget_changed_keys(cache.clone(), live.clone()));
    let limiter = build_limiter(&config, clock.clone())?;
    let issuer = match &config.jwt.issue {
        Some(issue) => Some(Arc::new(TokenIssuer::new(
            issue,
            config.jwt.issuer.clone(),
            config.jwt.audience.first().cloned(),
        )?)),
        None => None,
    };
    let jwt = JwtVerifier::for_config(&config, issuer.as_deref(), clock.clone())?.map(Arc::new);
    let runtime = Runtime::build(config, writable)?;
    let usage = Arc::new(UsageRecorder::new());
    let auth = Arc::new(Authenticator::new(
        KeyVerifier::new(store.clone(), cache),
        jwt,
        clock.clone(),
    ));
    let keys = Arc::new(KeyService::new(
        store.clone(),
        Some(auth.keys().cache().clone()),
        clock.clone(),
    ));
    let accounts = users.map(|u| Arc::new(Accounts::new(u, limiter.clone(), clock.clone())));
    Ok(Arc::new(Shared {
        runtime: ArcSwap::from_pointee(runtime),
        management: Management::new(
            store.clone(),
            keys.clone(),
            accounts.clone(),
            issuer.clone(),
            auth.clone(),
            usage.clone(),
            clock.clone(),
        ),
        portal: Portal::new(
            store.clone(),
            keys,
            accounts,
            limiter.clone(),
            usage.clone(),
            clock.clone(),
        ),
        auth,
        usage,
        credits: crate::ledger::credits::CreditLedger::new(store.clone()),
        store,
        limiter,
        clock,
        issuer,
        live,
    }))
}

/// The change-feed handler: drops what another replica changed from this one's
/// cache, and checks the live requests of a changed key again.
fn forget_changed_keys(cache: KeyCache, live: Arc<LiveStreams>) -> crate::store::ChangeHandler {
    Arc::new(move |change| match change {
        StoreChange::Key { id, changed_at_ms } => {
            cache.invalidate_key_id(&id);
            live.key_changed(&id);
            if let Some(at) = changed_at_ms {
                let now = SystemClock.now_ms();
                metrics::KEY_CHANGE_LAG.observe(now.saturating_sub(at) as f64 / 1000.0);
            }
        }
        StoreChange::All => {
            cache.feed_listening();
            live.recheck_all();
        }
        StoreChange::Unwatched => cache.feed_lost(),
    })
}

/// The configured rate-limit backend.
fn build_limiter(config: &Config, clock: Arc<dyn Clock>) -> Result<Arc<dyn Limiter>, StartError> {
    let rl = &config.rate_limit;
    match rl.backend {
        LimitBackend::Memory => Ok(Arc::new(LocalLimiter::new(clock))),
        LimitBackend::Redis => {
            let url = rl.redis_url.as_deref().unwrap_or_default();
            let target = RedisTarget::parse(url).map_err(StartError::Unsupported)?;
            let certs = match &rl.redis_tls {
                Some(tls) => RedisCerts::load(tls).map_err(StartError::Unsupported)?,
                None => RedisCerts::default(),
            };
            let redis = RedisLimiter::connect(target, certs, rl.redis_timeout.get(), clock.clone());
            Ok(Arc::new(FallbackLimiter::new(
                Arc::new(redis),
                rl.on_backend_error,
                clock,
            )))
        }
    }
}

fn check_listen(addr: &str) -> Result<(), StartError> {
    std::net::TcpListener::bind(addr)
        .map(drop)
        .map_err(|e| StartError::Listen {
            addr: addr.to_string(),
            reason: e.to_string(),
        })
}

/// Periodic work off the request path: forgetting idle counters, cache gauges,
/// refreshing the remote JWKS; and the drain at shutdown.
struct Housekeeping {
    shared: Arc<Shared>,
    jwks_refresh: Duration,
    grace: Duration,
}

impl Housekeeping {
    /// Waits for the open connections to close (at most the grace period), flushes
    /// the usage their requests recorded, and exits 0: Pingora would sleep the whole
    /// period.
    async fn drain_and_exit(&self) -> ! {
        let started = std::time::Instant::now();
        let open = crate::app::drain::CONNECTIONS.count();
        tracing::info!(open, grace = ?self.grace, "draining open connections");
        let idle = crate::app::drain::CONNECTIONS.wait_idle(self.grace).await;
        self.shared
            .usage
            .flush(&*self.shared.store, crate::ledger::usage::Flush::Exact)
            .await;
        if idle {
            tracing::info!(took = ?started.elapsed(), "drained; exiting");
        } else {
            let left = crate::app::drain::CONNECTIONS.count();
            tracing::warn!(left, grace = ?self.grace, "grace period over with connections open; exiting");
        }
        crate::obs::log_writer::finish();
        std::process::exit(0)
    }
}

#[async_trait]
impl BackgroundService for Housekeeping {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        let mut usage_tick = tokio::time::interval(Duration::from_secs(5));
        let mut jwks_tick = tokio::time::interval(self.jwks_refresh);
        let mut live_tick = tokio::time::interval(crate::proxy::live_streams::SWEEP_EVERY);
        jwks_tick.tick().await; // the first fetch happened at start-up
        loop {
            // The verifier (and its remote JWKS) may be replaced by a reload.
            let remote = self
                .shared
                .auth
                .jwt()
                .load()
                .as_ref()
                .and_then(|j| j.remote().cloned());
            tokio::select! {
                _ = shutdown.changed() => self.drain_and_exit().await,
                _ = usage_tick.tick() => self.shared.usage.flush(&*self.shared.store, crate::ledger::usage::Flush::Routine).await,
                _ = live_tick.tick() => self.shared.live.sweep().await,
                _ = tick.tick() => {
                    self.shared.limiter.sweep();
                    metrics::KEY_CACHE_SIZE.set(self.shared.auth.keys().cache().len() as i64);
                }
                _ = jwks_tick.tick(), if remote.is_some() => {
                    if let Some(r) = &remote {
                        r.refresh().await;
                    }
                }
            }
        }
    }
}

/// Fetches the remote JWKS once before serving (falling back to its disk copy).
fn load_remote_jwks(shared: &Shared) -> Result<(), StartError> {
    let Some(remote) = shared
        .auth
        .jwt()
        .load()
        .as_ref()
        .and_then(|j| j.remote().cloned())
    else {
        return Ok(());
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| StartError::Unsupported(format!("cannot start a runtime: {e}")))?;
    rt.block_on(remote.load_initial());
    Ok(())
}

/// Where the process serving `config_path` hands its listening sockets to its
/// successor (SIGQUIT, then `keygate serve --upgrade`): one path per config file, so
/// the old and the new process meet there and unrelated keygates never do.
pub fn upgrade_socket(config_path: &std::path::Path) -> std::path::PathBuf {
    use sha2::Digest;
    let canonical =
        std::fs::canonicalize(config_path).unwrap_or_else(|_| config_path.to_path_buf());
    let digest = sha2::Sha256::digest(canonical.display().to_string().as_bytes());
    std::env::temp_dir().join(format!(
        "keygate-upgrade-{}.sock",
        &hex::encode(digest)[..16]
    ))
}

/// Read buffer of each client connection, below Pingora's own header buffer.
const CONNECTION_READ_BUFFER: usize = 4096;

/// How the proxy listener takes HTTP/2 connections: cleartext HTTP/2 when
/// `server.h2c`, idle HTTP/2 connections closed after `server.idle_timeout`
/// (HTTP/1.1's keep-alive timeout is set per request by the gate).
fn http2_server_options(s: &crate::config::ServerConfig) -> pingora::apps::HttpServerOptions {
    let mut o = pingora::apps::HttpServerOptions::default();
    o.h2c = s.h2c;
    o.h2_idle_timeout = Some(s.idle_timeout.get());
    o
}

/// The HTTP/2 settings keygate advertises: the bounds set for HTTP/1.1 hold for
/// HTTP/2 too (a header list no larger than `server.max_header_bytes`) and a
/// connection has at most `server.h2_max_concurrent_streams` streams open.
fn http2_options(
    s: &crate::config::ServerConfig,
) -> pingora::protocols::http::v2::server::H2Options {
    let mut o = pingora::protocols::http::v2::server::default_h2_options();
    o.max_header_list_size(u32::try_from(s.max_header_bytes).unwrap_or(u32::MAX));
    o.max_concurrent_streams(s.h2_max_concurrent_streams);
    o
}

/// Starts keygate with `config` (read from `path`, which SIGHUP re-reads) and serves
/// until SIGTERM/SIGINT. With `upgrade`, takes over the listening sockets of the
/// keygate serving the same config file when it gets SIGQUIT (zero-downtime upgrade).
/// Returns only on a start-up failure; a clean shutdown exits the process with
/// status 0.
pub fn serve(config: Config, path: &std::path::Path, upgrade: bool) -> Result<(), StartError> {
    if !upgrade {
        check_listen(&config.server.listen)?;
        check_listen(&config.server.admin_listen)?;
    }
    metrics::init();
    for note in crate::app::checks::notes(&config) {
        tracing::warn!("{note}");
    }
    let listen = config.server.listen.clone();
    let admin_listen = config.server.admin_listen.clone();
    let threads = config.server.threads;
    let grace_period = config.server.grace_period.get();
    let grace = grace_period.as_secs();
    let header_timeout = config.server.header_timeout.get();
    let max_header_bytes = config.server.max_header_bytes;
    let jwks_refresh = config.jwt.jwks_refresh.get().max(Duration::from_secs(1));
    let tls = match &config.server.tls {
        Some(t) => Some(Arc::new(
            ReloadableCert::load(&t.cert, &t.key)
                .map_err(|e| StartError::Unsupported(e.to_string()))?,
        )),
        None => None,
    };
    let running = config.clone();
    let running_server = config.server.clone();
    let shared = build_shared(config, Arc::new(SystemClock))?;
    load_remote_jwks(&shared)?;
    let reloader = Arc::new(Reloader::new(
        path.to_path_buf(),
        running,
        shared.clone(),
        tls.clone(),
    ));

    let conf = ServerConf {
        threads,
        grace_period_seconds: Some(grace),
        graceful_shutdown_timeout_seconds: Some(grace.max(1)),
        pid_file: std::env::temp_dir()
            .join(format!("keygate-{}.pid", std::process::id()))
            .display()
            .to_string(),
        upgrade_sock: upgrade_socket(path).display().to_string(),
        // With one thread there is nothing to steal: a current-thread runtime skips
        // the work-stealing scheduler's synchronisation (measured with
        // benches/peers/run.sh: ~10% less CPU per request). With more threads,
        // stealing keeps them balanced and measured faster.
        work_stealing: threads > 1,
        ..ServerConf::default()
    };
    let opt = pingora::server::configuration::Opt {
        upgrade,
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(opt), conf);
    server.bootstrap();

    let mut gate = pingora_proxy::http_proxy(&server.configuration, Gate::new(shared.clone()));
    gate.server_options = Some(http2_server_options(&running_server));
    gate.h2_options = Some(http2_options(&running_server));
    let mut proxy = Service::new(
        "keygate proxy".to_string(),
        HeadDeadlineApp::new(gate, header_timeout, max_header_bytes),
    );
    // Pingora's default 64 KiB read buffer per connection made 10,000 open
    // connections cost ~730 MB; heads are read into Pingora's own buffer anyway.
    let listener = ListenerConfig::tcp(listen.as_str()).l4_buffer(L4BufferSettings::new(
        CONNECTION_READ_BUFFER,
        pingora::listeners::DEFAULT_L4_WRITE_BUFFER_SIZE,
    ));
    proxy.add_listener(match &tls {
        Some(cert) => listener.tls(crate::net::tls::settings(cert.clone())),
        None => listener,
    });
    server.add_service(proxy);

    let admin_app = AdminApp::new(
        shared.store.clone(),
        shared.auth.keys().cache().clone(),
        shared.limiter.clone(),
    );
    let mut admin = Service::new("keygate admin".to_string(), HttpServer::new_app(admin_app));
    admin.add_tcp(&admin_listen);
    admin.threads = Some(1);
    server.add_service(admin);

    server.add_service(background_service(
        "keygate housekeeping",
        Housekeeping {
            shared,
            jwks_refresh,
            grace: grace_period,
        },
    ));
    server.add_service(background_service(
        "keygate reload",
        ReloadOnHangup::new(reloader),
    ));
    tracing::info!(%listen, %admin_listen, threads, tls = tls.is_some(), "keygate serving");
    server.run(RunArgs {
        shutdown_signal: Box::new(ShutdownSignals),
    });
    tracing::info!("keygate stopped");
    crate::obs::log_writer::finish();
    std::process::exit(0)
}
