//! Per-process fixed-window counters, exact under any concurrency.
//!
//! Each limited identity (key id, client IP) has one small state guarded by its map
//! shard's lock; a decision reads and updates all of its windows under that lock, so
//! a request refused by one window consumes nothing in the others, and a limit of N
//! admits exactly N per window.

use super::window::{LimitDecision, TierLimits, Window, WindowLimit, WindowState};
use dashmap::DashMap;
use std::time::Duration;

/// The instance of `w` containing `now_ms`, numbered from the epoch. Kept in 32 bits
/// (per-key state is held for every key in use): seconds wrap after 136 years, and
/// only equality between a stored and the current instance is ever asked.
fn instance(w: Window, now_ms: u64) -> u32 {
    (now_ms / w.len_ms()) as u32
}

/// One identity's counts: 64 bytes for the four windows and the block.
#[derive(Debug, Default)]
struct Counter {
    /// Requests counted in each window's current instance (by `Window as usize`).
    counts: [u64; 4],
    /// Which instance each count belongs to.
    instances: [u32; 4],
    blocked_until_ms: u64,
    /// The window instance whose exhaustion started the current block, so that
    /// refusals inside that same instance never restart the lockout.
    block_origin: Option<(Window, u32)>,
}

impl Counter {
    fn roll(&mut self, now_ms: u64) {
        for w in Window::ALL {
            let current = instance(w, now_ms);
            let i = w as usize;
            if self.instances[i] != current {
                self.instances[i] = current;
                self.counts[i] = 0;
            }
        }
    }

    /// The count of `w` now (0 once its instance has passed).
    fn count(&self, w: Window, now_ms: u64) -> u64 {
        if self.instances[w as usize] == instance(w, now_ms) {
            self.counts[w as usize]
        } else {
            0
        }
    }

    fn states(&self, limits: &[WindowLimit], now_ms: u64) -> Vec<WindowState> {
        limits
            .iter()
            .map(|l| {
                let count = self.count(l.window, now_ms);
                WindowState {
                    window: l.window,
                    limit: l.limit,
                    remaining: l.limit.saturating_sub(count),
                    reset_at_ms: l.window.reset_at(now_ms),
                }
            })
            .collect()
    }

    fn is_stale(&self, now_ms: u64) -> bool {
        self.blocked_until_ms <= now_ms && Window::ALL.iter().all(|w| self.count(*w, now_ms) == 0)
    }
}

/// In-memory counters for every limited identity.
#[derive(Debug, Default)]
pub struct MemoryLimiter {
    counters: DashMap<Box<str>, Counter>,
}

impl MemoryLimiter {
    /// An empty limiter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Admits and counts one request for `key` if every window has room and no block
    /// is in force; otherwise refuses and counts nothing.
    pub fn check(&self, key: &str, tier: &TierLimits, now_ms: u64) -> LimitDecision {
        self.check_windows(key, &tier.windows, tier.block, now_ms)
    }

    /// [`Self::check`] for an explicit list of windows.
    pub fn check_windows(
        &self,
        key: &str,
        limits: &[WindowLimit],
        block: Duration,
        now_ms: u64,
    ) -> LimitDecision {
        let mut entry = match self.counters.get_mut(key) {
            Some(e) => e,
            None => self.counters.entry(Box::from(key)).or_default(),
        };
        let c = entry.value_mut();
        c.roll(now_ms);
        // The latest reset among exhausted windows: nothing is admitted before it.
        let exhausted_until = limits
            .iter()
            .filter(|l| c.counts[l.window as usize] >= l.limit)
            .map(|l| l.window.reset_at(now_ms))
            .max();
        if c.blocked_until_ms > now_ms {
            // A retry must outlast both the block and every exhausted window.
            let retry_at = c.blocked_until_ms.max(exhausted_until.unwrap_or(0));
            return LimitDecision::refused(c.states(limits, now_ms), retry_at, now_ms);
        }
        let exhausted = limits
            .iter()
            .filter(|l| c.counts[l.window as usize] >= l.limit)
            .max_by_key(|l| l.window);
        if let Some(l) = exhausted {
            let mut retry_at = exhausted_until.unwrap_or(now_ms);
            let origin = (l.window, instance(l.window, now_ms));
            if !block.is_zero() && c.block_origin != Some(origin) {
                c.blocked_until_ms = now_ms + block.as_millis() as u64;
                c.block_origin = Some(origin);
                retry_at = retry_at.max(c.blocked_until_ms);
            }
            return LimitDecision::refused(c.states(limits, now_ms), retry_at, now_ms);
        }
        for l in limits {
            c.counts[l.window as usize] += 1;
        }
        LimitDecision::admitted(c.states(limits, now_ms))
    }

    /// Where `key` stands, without counting anything.
    pub fn peek(&self, key: &str, limits: &[WindowLimit], now_ms: u64) -> LimitDecision {
        let blocked_until = self.counters.get(key).map_or(0, |c| c.blocked_until_ms);
        let windows = match self.counters.get(key) {
            Some(c) => c.states(limits, now_ms),
            None => Counter::default().states(limits, now_ms),
        };
        let exhausted = windows
            .iter()
            .filter(|w| w.remaining == 0)
            .map(|w| w.reset_at_ms)
            .max();
        let blocked = blocked_until > now_ms;
        if !blocked && exhausted.is_none() {
            return LimitDecision::admitted(windows);
        }
        let retry_at = exhausted
            .unwrap_or(0)
            .max(if blocked { blocked_until } else { 0 });
        LimitDecision::refused(windows, retry_at, now_ms)
    }

    /// Counts one event for `key` in `window` without any check (failed logins).
    pub fn record(&self, key: &str, window: Window, now_ms: u64) {
        let mut entry = match self.counters.get_mut(key) {
            Some(e) => e,
            None => self.counters.entry(Box::from(key)).or_default(),
        };
        let c = entry.value_mut();
        c.roll(now_ms);
        c.counts[window as usize] += 1;
    }

    /// Takes back one event counted for `key` in the current instance of `window`.
    pub fn release(&self, key: &str, window: Window, now_ms: u64) {
        if let Some(mut entry) = self.counters.get_mut(key) {
            let c = entry.value_mut();
            c.roll(now_ms);
            let count = &mut c.counts[window as usize];
            *count = count.saturating_sub(1);
        }
    }

    /// Drops identities with nothing counted in any current window and no block.
    pub fn sweep(&self, now_ms: u64) {
        self.counters.retain(|_, c| !c.is_stale(now_ms));
    }

    /// Number of identities tracked.
    pub fn len(&self) -> usize {
        self.counters.len()
    }

    /// True when nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.counters.is_empty()
    }
}

#[cfg(test)]
mod tests;
