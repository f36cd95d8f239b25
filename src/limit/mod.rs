//! Rate limiting: fixed-window math, the [`Limiter`] trait and its backends, and the
//! per-client-IP limits that run before authentication.

pub mod ip;
pub mod memory;
pub mod window;

use crate::clock::Clock;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
pub use window::{LimitDecision, TierLimits, Window, WindowLimit, WindowState};

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
    /// Drops state that no current window needs (called periodically).
    fn sweep(&self) {}
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

    fn sweep(&self) {
        self.inner.sweep(self.clock.now_ms());
    }
}
