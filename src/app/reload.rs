//! Reloading the config on SIGHUP: re-read, validate, and swap what can change while
//! serving (routes, tiers, limits, credential sources, forward headers, upstream, JWT
//! keys, the TLS certificate) in one atomic step. Requests in flight finish on the
//! config they started with; connections are untouched. A broken file is refused
//! with every problem logged, and the old config keeps serving. Settings that need a
//! restart are named in the log and keep their old values.

use crate::app::compile::{self, Compiled, Issuer};
use crate::config::{self, Config};
use crate::net::tls::ReloadableCert;
use crate::obs::metrics;
use crate::proxy::runtime::Runtime;
use crate::proxy::Shared;
use parking_lot::Mutex;
use std::path::PathBuf;
use std::sync::Arc;

/// Why a reload was refused (the running config stays).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file could not be read or is invalid.
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    /// The new config could not be compiled.
    #[error("{0}")]
    Runtime(#[from] crate::proxy::runtime::RuntimeError),
    /// The TLS certificate could not be loaded.
    #[error("{0}")]
    Tls(#[from] crate::net::tls::TlsError),
}

/// Re-reads the config file into the running server.
pub struct Reloader {
    path: PathBuf,
    shared: Arc<Shared>,
    current: Mutex<Config>,
    tls: Option<Arc<ReloadableCert>>,
}

fn yaml<T: serde::Serialize>(v: &T) -> String {
    serde_yaml::to_string(v).unwrap_or_default()
}

/// Settings read only at start, compared with the running ones by their YAML.
fn fixed_settings(c: &Config) -> Vec<(&'static str, String)> {
    vec![
        ("server.listen", c.server.listen.clone()),
        ("server.admin_listen", c.server.admin_listen.clone()),
        ("server.threads", c.server.threads.to_string()),
        ("server.grace_period", yaml(&c.server.grace_period)),
        ("server.tls (on/off)", c.server.tls.is_some().to_string()),
        ("server.header_timeout", yaml(&c.server.header_timeout)),
        ("server.idle_timeout", yaml(&c.server.idle_timeout)),
        (
            "server.max_header_bytes",
            c.server.max_header_bytes.to_string(),
        ),
        ("server.h2c", c.server.h2c.to_string()),
        (
            "server.h2_max_concurrent_streams",
            c.server.h2_max_concurrent_streams.to_string(),
        ),
        ("store", yaml(&c.store)),
        ("cache", yaml(&c.cache)),
        ("rate_limit.backend", yaml(&c.rate_limit.backend)),
        ("rate_limit.redis_url", yaml(&c.rate_limit.redis_url)),
        ("rate_limit.redis_tls", yaml(&c.rate_limit.redis_tls)),
        (
            "rate_limit.redis_timeout",
            yaml(&c.rate_limit.redis_timeout),
        ),
        (
            "rate_limit.on_backend_error",
            yaml(&c.rate_limit.on_backend_error),
        ),
        ("jwt.issue", yaml(&c.jwt.issue)),
        ("management.enabled", c.management.enabled.to_string()),
        ("telemetry", yaml(&c.telemetry)),
        ("authorizer.listen", yaml(&c.authorizer.listen)),
    ]
}

impl Reloader {
    /// A reloader for the server started from `path` with `config`.
    pub fn new(
        path: PathBuf,
        config: Config,
        shared: Arc<Shared>,
        tls: Option<Arc<ReloadableCert>>,
    ) -> Self {
        Reloader {
            path,
            shared,
            current: Mutex::new(config),
            tls,
        }
    }

    /// Reloads; logs and counts the outcome either way.
    pub async fn reload(&self) -> Result<(), ReloadError> {
        let result = self.try_reload().await;
        match &result {
            Ok(()) => metrics::CONFIG_RELOADS.with_label_values(&["ok"]).inc(),
            Err(e) => {
                metrics::CONFIG_RELOADS.with_label_values(&["error"]).inc();
                match e {
                    ReloadError::Config(config::ConfigError::Invalid(problems)) => {
                        for p in problems {
                            tracing::error!(problem = %p, "config reload refused");
                        }
                        tracing::error!(
                            path = %self.path.display(),
                            problems = problems.len(),
                            "config reload refused; the running config stays"
                        );
                    }
                    other => tracing::error!(
                        error = %other,
                        path = %self.path.display(),
                        "config reload refused; the running config stays"
                    ),
                }
            }
        }
        result
    }

    async fn try_reload(&self) -> Result<(), ReloadError> {
        // The whole file is compiled, restart-only settings too: a file that a
        // restart would refuse is refused now.
        let compiled = compile::compile(
            config::draft(&config::read(&self.path)?, |name| std::env::var(name).ok())?,
            self.shared.clock.clone(),
            Issuer::Running(self.shared.issuer.clone()),
        )?;
        let Compiled {
            config: mut new,
            key_format,
            sources,
            tls: new_cert,
            jwt,
            dialect,
            branding,
            ..
        } = compiled;
        let old = self.current.lock().clone();
        let ignored: Vec<&str> = fixed_settings(&old)
            .into_iter()
            .zip(fixed_settings(&new))
            .filter(|(a, b)| a.1 != b.1)
            .map(|(a, _)| a.0)
            .collect();
        for name in &ignored {
            restore(&mut new, &old, name);
        }
        // Everything that can fail is built before anything is swapped.
        let writable = new.store.kind != config::StoreKind::File;
        let runtime = Runtime::build(&new, key_format, sources, writable, dialect, branding)?;
        if let Some(remote) = jwt.as_ref().and_then(|j| j.remote()) {
            remote.load_initial().await;
        }
        if let (Some(cert), Some(tls)) = (&self.tls, &new.server.tls) {
            match new_cert {
                Some(compiled) if cert.reads(&tls.cert, &tls.key) => cert.adopt(&compiled),
                _ => {
                    tracing::warn!(
                        "server.tls paths changed; the paths are read only at start, the old files are re-read"
                    );
                    cert.reload()?;
                }
            }
        }
        self.shared.runtime.store(Arc::new(runtime));
        self.shared.auth.jwt().store(jwt.map(Arc::new));
        if !ignored.is_empty() {
            tracing::warn!(
                settings = ?ignored,
                "config reloaded, but these settings only change on restart and keep their running values"
            );
        }
        *self.current.lock() = new;
        tracing::info!(path = %self.path.display(), "config reloaded");
        Ok(())
    }
}

/// Puts the running value of a restart-only setting back, so the next reload compares
/// against what is really in force.
fn restore(new: &mut Config, old: &Config, setting: &str) {
    match setting {
        "server.listen" => new.server.listen = old.server.listen.clone(),
        "server.admin_listen" => new.server.admin_listen = old.server.admin_listen.clone(),
        "server.threads" => new.server.threads = old.server.threads,
        "server.grace_period" => new.server.grace_period = old.server.grace_period,
        "server.tls (on/off)" => new.server.tls = old.server.tls.clone(),
        "server.header_timeout" => new.server.header_timeout = old.server.header_timeout,
        "server.idle_timeout" => new.server.idle_timeout = old.server.idle_timeout,
        "server.max_header_bytes" => new.server.max_header_bytes = old.server.max_header_bytes,
        "server.h2c" => new.server.h2c = old.server.h2c,
        "telemetry" => new.telemetry = old.telemetry.clone(),
        "authorizer.listen" => new.authorizer.listen = old.authorizer.listen.clone(),
        "server.h2_max_concurrent_streams" => {
            new.server.h2_max_concurrent_streams = old.server.h2_max_concurrent_streams
        }
        "store" => new.store = old.store.clone(),
        "cache" => new.cache = old.cache.clone(),
        "rate_limit.backend" => new.rate_limit.backend = old.rate_limit.backend,
        "rate_limit.redis_url" => new.rate_limit.redis_url = old.rate_limit.redis_url.clone(),
        "rate_limit.redis_tls" => new.rate_limit.redis_tls = old.rate_limit.redis_tls.clone(),
        "rate_limit.redis_timeout" => new.rate_limit.redis_timeout = old.rate_limit.redis_timeout,
        "rate_limit.on_backend_error" => {
            new.rate_limit.on_backend_error = old.rate_limit.on_backend_error
        }
        "jwt.issue" => new.jwt.issue = old.jwt.issue.clone(),
        "management.enabled" => new.management.enabled = old.management.enabled,
        _ => {}
    }
}
