//! Signals, as operators expect them of a sidecar:
//!
//! - `SIGTERM` and `SIGINT`: stop accepting, let requests in flight finish within
//!   `server.grace_period` ([`crate::net::drain`]), flush usage, exit 0 (Pingora's own default makes SIGINT
//!   a fast exit; a Ctrl-C in a terminal or a runtime sending SIGINT should drain too);
//! - `SIGQUIT`: Pingora's zero-downtime upgrade (hand the listening sockets to a new
//!   process started with `--upgrade`, then drain);
//! - `SIGHUP`: reload the config ([`crate::app::reload`]).

use crate::app::reload::Reloader;
use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora::services::background::BackgroundService;
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};

/// The shutdown signals keygate answers to.
pub struct ShutdownSignals;

#[async_trait]
impl ShutdownSignalWatch for ShutdownSignals {
    async fn recv(&self) -> ShutdownSignal {
        let streams = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::quit()),
        );
        let (Ok(mut term), Ok(mut int), Ok(mut quit)) = streams else {
            tracing::error!("cannot listen for shutdown signals; stop keygate with SIGKILL");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {
                tracing::info!("SIGTERM: draining, then exiting");
                ShutdownSignal::GracefulTerminate
            }
            _ = int.recv() => {
                tracing::info!("SIGINT: draining, then exiting");
                ShutdownSignal::GracefulTerminate
            }
            _ = quit.recv() => {
                tracing::info!("SIGQUIT: handing the listeners to the new process, then draining");
                ShutdownSignal::GracefulUpgrade
            }
        }
    }
}

/// Reloads the config on every `SIGHUP`.
pub struct ReloadOnHangup {
    reloader: Arc<Reloader>,
}

impl ReloadOnHangup {
    /// Reloads through `reloader`.
    pub fn new(reloader: Arc<Reloader>) -> Self {
        ReloadOnHangup { reloader }
    }
}

#[async_trait]
impl BackgroundService for ReloadOnHangup {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP; reload is unavailable");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                got = hangup.recv() => {
                    if got.is_none() {
                        break;
                    }
                    tracing::info!("SIGHUP: reloading the config");
                    let _ = self.reloader.reload().await;
                }
            }
        }
    }
}
