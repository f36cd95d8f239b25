//! Rate limiting: fixed and sliding window math, the [`Limiter`] trait and its backends, and the
//! per-client-IP limits that run before authentication.

pub mod ip;
pub mod memory;
pub mod redis;
pub mod sliding;
pub mod window;

use crate::clock::Clock;
use crate::config::OnBackendError;
use crate::obs::metrics;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
pub use window::{LimitDecision, TierLimits, Tiers, Window, WindowLimit, WindowState};

/// Why a limiter could not decide (shared backends only).
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    /// The backend is unreachable or failed.
    #[error("rate-limit backend unavailable: {0}")]
    Backend(String),
}

/// A counter backend.
#[async_trait]
pub trait Limiter: Send + Sync {
    /// Admits and counts one request for `key` when every window has room and no
    /// block is in force; otherwise refuses and counts nothing.
    async fn check(
        &self,
        key: &str,
        limits: &[WindowLimit],
        block: Duration,
    ) -> Result<LimitDecision, LimitError>;
    /// Where `key` stands, counting nothing.
    async fn peek(&self, key: &str, limits: &[WindowLimit]) -> Result<LimitDecision, LimitError>;
    /// Counts one event for `key` in `window` without checking.
    async fn record(&self, key: &str, window: Window) -> Result<(), LimitError>;
    /// Gives back one event counted for `key` in the current instance of `window`
    /// (a place reserved by [`Limiter::check`] that turned out not to count, such as
    /// a login attempt that succeeded). Never goes below zero.
    async fn release(&self, key: &str, window: Window) -> Result<(), LimitError>;
    /// Drops state that no current window needs (called periodically).
    fn sweep(&self) {}
    /// Checks the backend answers (for `/ready`).
    async fn ready(&self) -> Result<(), LimitError> {
        Ok(())
    }
    /// True while a shared backend is failing.
    fn degraded(&self) -> bool {
        false
    }
}

/// A shared backend with the contract's `on_backend_error` policy: when the backend
/// fails, `local` decides with this replica's own counters (marking the decision
/// degraded, for `X-RateLimit-Degraded: local`), `deny` passes the error on (503).
pub struct FallbackLimiter {
    shared: Arc<dyn Limiter>,
    local: LocalLimiter,
    policy: OnBackendError,
}

impl FallbackLimiter {
    /// Wraps `shared`; `clock` drives the local fallback counters.
    pub fn new(shared: Arc<dyn Limiter>, policy: OnBackendError, clock: Arc<dyn Clock>) -> Self {
        FallbackLimiter {
            shared,
            local: LocalLimiter::new(clock),
            policy,
        }
    }

    fn fall_back(&self, e: &LimitError) -> bool {
        metrics::RATELIMIT_BACKEND_ERRORS.inc();
        tracing::debug!(error = %e, "rate-limit backend error");
        self.policy == OnBackendError::Local
    }
}

#[async_trait]
impl Limiter for FallbackLimiter {
    async fn check(
        &self,
        key: &str,
        limits: &[WindowLimit],
        block: Duration,
    ) -> Result<LimitDecision, LimitError> {
        match self.shared.check(key, limits, block).await {
            Err(e) if self.fall_back(&e) => {
                let mut d = self.local.check(key, limits, block).await?;
                d.degraded = true;
                Ok(d)
            }
            other => other,
        }
    }

    async fn peek(&self, key: &str, limits: &[WindowLimit]) -> Result<LimitDecision, LimitError> {
        match self.shared.peek(key, limits).await {
            Err(e) if self.fall_back(&e) => {
                let mut d = self.local.peek(key, limits).await?;
                d.degraded = true;
                Ok(d)
            }
            other => other,
        }
    }

    async fn record(&self, key: &str, window: Window) -> Result<(), LimitError> {
        match self.shared.record(key, window).await {
            Err(e) if self.fall_back(&e) => self.local.record(key, window).await,
            other => other,
        }
    }

    async fn release(&self, key: &str, window: Window) -> Result<(), LimitError> {
        match self.shared.release(key, window).await {
            Err(e) if self.fall_back(&e) => self.local.release(key, window).await,
            other => other,
        }
    }

    fn sweep(&self) {
        self.local.sweep();
    }

    async fn ready(&self) -> Result<(), LimitError> {
        self.shared.ready().await
    }

    fn degraded(&self) -> bool {
        self.shared.degraded()
    }
}

/// The per-process backend: [`memory::MemoryLimiter`] on an injected clock.
pub struct LocalLimiter {
    inner: memory::MemoryLimiter,
    clock: Arc<dyn Clock>,
}

impl LocalLimiter {
    /// A limiter reading time from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        LocalLimiter {
            inner: memory::MemoryLimiter::new(),
            clock,
        }
    }
}

#[async_trait]
impl Limiter for LocalLimiter {
    async fn check(
        &self,
        key: &str,
        limits: &[WindowLimit],
        block: Duration,
    ) -> Result<LimitDecision, LimitError> {
        Ok(self
            .inner
            .check_windows(key, limits, block, self.clock.now_ms()))
    }

    async fn peek(&self, key: &str, limits: &[WindowLimit]) -> Result<LimitDecision, LimitError> {
        Ok(self.inner.peek(key, limits, self.clock.now_ms()))
    }

    async fn record(&self, key: &str, window: Window) -> Result<(), LimitError> {
        self.inner.record(key, window, self.clock.now_ms());
        Ok(())
    }

    async fn release(&self, key: &str, window: Window) -> Result<(), LimitError> {
        self.inner.release(key, window, self.clock.now_ms());
        Ok(())
    }

    fn sweep(&self) {
        self.inner.sweep(self.clock.now_ms());
    }
}
