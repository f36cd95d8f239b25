//! Assembles and runs keygate: store, runtime, the proxy service, the admin
//! service and housekeeping, under one Pingora server.

use super::compile::Compiled;
use super::root::{build_shared, StartError};
use crate::app::admin::AdminApp;
use crate::app::reload::Reloader;
use crate::app::signals::{ReloadOnHangup, ShutdownSignals};
use crate::clock::SystemClock;
use crate::net::head_deadline::HeadDeadlineApp;
use crate::obs::metrics;
use crate::proxy::{Gate, Shared};
use async_trait::async_trait;
use pingora::apps::http_app::HttpServer;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;
use std::sync::Arc;
use std::time::Duration;

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

/// Delivers the webhook outbox to the configured receivers (read from the live
/// config each pass, so a reload adds or removes them), off the request path.
struct WebhookDelivery {
    worker: crate::events::webhooks::Webhooks,
    shared: Arc<Shared>,
}

/// How often the outbox is looked at.
const WEBHOOK_PASS_EVERY: Duration = Duration::from_millis(500);

#[async_trait]
impl BackgroundService for WebhookDelivery {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        // The request path's events, written to the outbox beside the deliveries.
        if let (Some(queue), Some(store)) = (
            self.shared.announced.lock().take(),
            self.shared.events.clone(),
        ) {
            tokio::spawn(queue.run_writer(store));
        }
        let mut tick = tokio::time::interval(WEBHOOK_PASS_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => {
                    let receivers = self.shared.runtime.load().webhooks.clone();
                    if let Err(e) = self.worker.pass(&receivers).await {
                        tracing::warn!(error = %e, "webhook delivery paused: the store failed");
                    }
                }
            }
        }
    }
}

/// How long events are kept in the outbox: past the 24 h of retries, and long
/// enough to see what was sent.
const EVENTS_KEPT: Duration = Duration::from_secs(7 * 86_400);

/// How often old audit entries are deleted, and how many at a time (each batch a
/// short transaction of its own, so requests' writes are not held up).
const AUDIT_PRUNE_EVERY: Duration = Duration::from_secs(3600);
const AUDIT_PRUNE_BATCH: u32 = 5_000;

impl Housekeeping {
    /// Deletes the audit entries older than `audit.retention` (none when it is 0s).
    async fn prune_audit(&self) {
        let Some(retention) = self.shared.runtime.load().audit_retention else {
            return;
        };
        let Ok(retention) = chrono::Duration::from_std(retention) else {
            return;
        };
        let before = self.shared.clock.now_utc() - retention;
        let mut deleted = 0;
        loop {
            match self
                .shared
                .store
                .prune_audit(before, AUDIT_PRUNE_BATCH)
                .await
            {
                Ok(n) => {
                    deleted += n;
                    if n < u64::from(AUDIT_PRUNE_BATCH) {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not delete old audit entries; trying again in an hour");
                    break;
                }
            }
        }
        if deleted > 0 {
            tracing::info!(deleted, %before, "deleted audit entries past audit.retention");
        }
    }

    /// Deletes events and deliveries older than [`EVENTS_KEPT`].
    async fn prune_events(&self) {
        let Some(events) = &self.shared.events else {
            return;
        };
        let before = self.shared.clock.now_utc()
            - chrono::Duration::from_std(EVENTS_KEPT).unwrap_or_default();
        loop {
            match events.prune_events(before, AUDIT_PRUNE_BATCH).await {
                Ok(n) if n >= u64::from(AUDIT_PRUNE_BATCH) => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "could not delete old events; trying again in an hour");
                    break;
                }
            }
        }
    }

    /// Waits for the open connections to close (at most the grace period), flushes
    /// the usage their requests recorded, and exits 0: Pingora would sleep the whole
    /// period.
    async fn drain_and_exit(&self) -> ! {
        let started = std::time::Instant::now();
        let open = crate::net::drain::CONNECTIONS.count();
        tracing::info!(open, grace = ?self.grace, "draining open connections");
        let idle = crate::net::drain::CONNECTIONS.wait_idle(self.grace).await;
        self.shared
            .usage
            .flush(&*self.shared.store, crate::ledger::usage::Flush::Exact)
            .await;
        if self.shared.tracing.is_some() {
            // The last requests' spans are sent before the process ends.
            let shared = self.shared.clone();
            let flushed = tokio::task::spawn_blocking(move || {
                if let Some(t) = &shared.tracing {
                    t.shutdown();
                }
            });
            let _ = flushed.await;
        }
        if idle {
            tracing::info!(took = ?started.elapsed(), "drained; exiting");
        } else {
            let left = crate::net::drain::CONNECTIONS.count();
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
        let mut audit_tick = tokio::time::interval(AUDIT_PRUNE_EVERY);
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
                _ = audit_tick.tick() => {
                    self.prune_audit().await;
                    self.prune_events().await;
                }
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

/// The 431 written when a request head is too large (the contract's JSON error),
/// whole, for the head guard (`crate::net::head_deadline`).
static HEAD_TOO_LARGE: once_cell::sync::Lazy<Vec<u8>> = once_cell::sync::Lazy::new(|| {
    let err = crate::error::GateError::HeadersTooLarge;
    let body = err.body();
    let mut out = format!(
        "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
});

/// Starts keygate with `config` (read from `path`, which SIGHUP re-reads) and serves
/// until SIGTERM/SIGINT. With `upgrade`, takes over the listening sockets of the
/// keygate serving the same config file when it gets SIGQUIT (zero-downtime upgrade).
/// Returns only on a start-up failure; a clean shutdown exits the process with
/// status 0.
pub fn serve(compiled: Compiled, path: &std::path::Path, upgrade: bool) -> Result<(), StartError> {
    let config = &compiled.config;
    if !upgrade {
        check_listen(&config.server.listen)?;
        check_listen(&config.server.admin_listen)?;
        if let Some(addr) = &config.authorizer.listen {
            check_listen(addr)?;
        }
    }
    metrics::init();
    for note in super::compile::notes(config) {
        tracing::warn!("{note}");
    }
    let listen = config.server.listen.clone();
    let authorizer_listen = config.authorizer.listen.clone();
    let admin_listen = config.server.admin_listen.clone();
    let threads = config.server.threads;
    let grace_period = config.server.grace_period.get();
    let grace = grace_period.as_secs();
    let header_timeout = config.server.header_timeout.get();
    let max_header_bytes = config.server.max_header_bytes;
    let jwks_refresh = config.jwt.jwks_refresh.get().max(Duration::from_secs(1));
    let tls = compiled.tls.clone();
    let running = config.clone();
    let running_server = config.server.clone();
    let shared = build_shared(compiled, Arc::new(SystemClock))?;
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
        HeadDeadlineApp::new(gate, header_timeout, max_header_bytes, &HEAD_TOO_LARGE),
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

    if let Some(addr) = &authorizer_listen {
        // Another proxy's questions, on a port of their own: the same head
        // limits as the proxy's, HTTP/1.1 and cleartext HTTP/2 (Envoy's gRPC).
        let mut authorizer = Service::new(
            "keygate authorizer".to_string(),
            HeadDeadlineApp::new(
                crate::authorizer::listener::Authorizer::new(shared.clone()),
                header_timeout,
                max_header_bytes,
                &HEAD_TOO_LARGE,
            ),
        );
        authorizer.add_tcp(addr);
        server.add_service(authorizer);
    }

    let admin_app = AdminApp::new(
        shared.store.clone(),
        shared.auth.keys().cache().clone(),
        shared.limiter.clone(),
    );
    let mut admin = Service::new("keygate admin".to_string(), HttpServer::new_app(admin_app));
    admin.add_tcp(&admin_listen);
    admin.threads = Some(1);
    server.add_service(admin);

    if let Some(events) = shared.events.clone() {
        server.add_service(background_service(
            "keygate webhooks",
            WebhookDelivery {
                worker: crate::events::webhooks::Webhooks::new(events, shared.clock.clone()),
                shared: shared.clone(),
            },
        ));
    }
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
    tracing::info!(%listen, %admin_listen, authorizer = authorizer_listen.as_deref().unwrap_or("-"), threads, tls = tls.is_some(), "keygate serving");
    server.run(RunArgs {
        shutdown_signal: Box::new(ShutdownSignals),
    });
    tracing::info!("keygate stopped");
    crate::obs::log_writer::finish();
    std::process::exit(0)
}
