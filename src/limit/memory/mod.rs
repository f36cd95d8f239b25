//! Per-process window counters (fixed and sliding), exact under any concurrency.
//!
//! Each limited identity (key id, client IP) has one small state guarded by its map
//! shard's lock; a decision reads and updates all of its windows under that lock, so
//! a request refused by one window consumes nothing in the others, and a limit of N
//! admits exactly N per fixed window instance, and at most N in any interval of a
//! sliding window's length ([`super::sliding`]).

use super::sliding::{self, Ring};
use super::window::{LimitDecision, TierLimits, Window, WindowLimit, WindowState};
use crate::domain::Algorithm;
use dashmap::DashMap;
use std::time::Duration;

/// The fixed instance of `w` containing `now_ms`. Kept in 32 bits (per-key state is
/// held for every key in use): seconds wrap after 136 years, and only equality
/// between a stored and the current instance is ever asked.
fn instance(w: Window, now_ms: u64) -> u32 {
    w.instance(now_ms) as u32
}

/// One identity's counts: the fixed windows' counts, a ring per sliding window in
/// use, and the block.
#[derive(Debug, Default)]
struct Counter {
    /// Requests counted in each fixed window's current instance (by `Window as usize`).
    counts: [u64; 5],
    /// Which instance each count belongs to.
    instances: [u32; 5],
    /// One ring per sliding window this identity was checked against (none for
    /// fixed-only tiers: no allocation).
    rings: Vec<Ring>,
    blocked_until_ms: u64,
    /// What started the current block (the window, and its fixed instance or its
    /// sliding retry bucket), so that refusals for that same exhaustion never
    /// restart the lockout.
    block_origin: Option<(Window, u64)>,
}

/// Where one window stands for a decision.
#[derive(Default)]
struct Standing {
    count: u64,
    /// Fixed: the instance's end. Sliding: when room appears (refused) or the count
    /// next goes down (admitted).
    reset_at_ms: u64,
    /// Identifies this exhaustion for `block` (see [`Counter::block_origin`]).
    origin: u64,
}

impl Counter {
    fn roll(&mut self, w: Window, now_ms: u64) {
        let current = instance(w, now_ms);
        let i = w as usize;
        if self.instances[i] != current {
            self.instances[i] = current;
            self.counts[i] = 0;
        }
    }

    /// The count of fixed window `w` now (0 once its instance has passed).
    fn count(&self, w: Window, now_ms: u64) -> u64 {
        if self.instances[w as usize] == instance(w, now_ms) {
            self.counts[w as usize]
        } else {
            0
        }
    }

    /// The ring of sliding window `w`, created empty on first use.
    fn ring_mut(&mut self, w: Window) -> &mut Ring {
        let at = match self.rings.iter().position(|r| r.window == w) {
            Some(at) => at,
            None => {
                // Exactly one more: a key holds a ring per window, and no spare.
                self.rings.reserve_exact(1);
                self.rings.push(Ring::new(w));
                self.rings.len() - 1
            }
        };
        &mut self.rings[at]
    }

    fn ring(&self, w: Window) -> Option<&Ring> {
        self.rings.iter().find(|r| r.window == w)
    }

    /// Brings `l`'s window to `now_ms` and says where it stands.
    fn stand(&mut self, l: &WindowLimit, now_ms: u64) -> Standing {
        match l.algorithm {
            Algorithm::Fixed => {
                self.roll(l.window, now_ms);
                Standing {
                    count: self.counts[l.window as usize],
                    reset_at_ms: l.window.reset_at(now_ms),
                    origin: l.window.instance(now_ms),
                }
            }
            Algorithm::Sliding => {
                let ring = self.ring_mut(l.window);
                ring.advance(now_ms);
                let count = ring.sum();
                // When room appears matters only to an exhausted window here; the
                // states a decision reports are computed apart.
                let free = if count >= l.limit {
                    ring.free_bucket(l.limit)
                } else {
                    0
                };
                Standing {
                    count,
                    reset_at_ms: sliding::leaves_at_ms(l.window, free),
                    origin: free,
                }
            }
        }
    }

    /// The states after counting an admitted request (every window brought to now
    /// by [`Counter::stand`]); no ring is copied.
    fn admitted_states(&mut self, limits: &[WindowLimit], now_ms: u64) -> Vec<WindowState> {
        limits
            .iter()
            .map(|l| {
                let (count, reset_at_ms) = match l.algorithm {
                    Algorithm::Fixed => (self.counts[l.window as usize], l.window.reset_at(now_ms)),
                    Algorithm::Sliding => {
                        let ring = self.ring_mut(l.window);
                        (ring.sum(), ring.free_at_ms(l.limit))
                    }
                };
                state(
                    l,
                    &Standing {
                        count,
                        reset_at_ms,
                        origin: 0,
                    },
                )
            })
            .collect()
    }

    /// Where `l`'s window stands at `now_ms`, changing nothing.
    fn standing(&self, l: &WindowLimit, now_ms: u64) -> Standing {
        match l.algorithm {
            Algorithm::Fixed => Standing {
                count: self.count(l.window, now_ms),
                reset_at_ms: l.window.reset_at(now_ms),
                origin: 0,
            },
            Algorithm::Sliding => {
                let mut ring = self
                    .ring(l.window)
                    .cloned()
                    .unwrap_or_else(|| Ring::new(l.window));
                ring.advance(now_ms);
                Standing {
                    count: ring.sum(),
                    reset_at_ms: ring.free_at_ms(l.limit),
                    origin: 0,
                }
            }
        }
    }

    fn add(&mut self, l: &WindowLimit) {
        match l.algorithm {
            Algorithm::Fixed => self.counts[l.window as usize] += 1,
            Algorithm::Sliding => self.ring_mut(l.window).add(),
        }
    }

    fn states(&self, limits: &[WindowLimit], now_ms: u64) -> Vec<WindowState> {
        limits
            .iter()
            .map(|l| state(l, &self.standing(l, now_ms)))
            .collect()
    }

    fn is_stale(&self, now_ms: u64) -> bool {
        self.blocked_until_ms <= now_ms
            && Window::ALL.iter().all(|w| self.count(*w, now_ms) == 0)
            && self.rings.iter().all(|r| {
                let mut r = r.clone();
                r.advance(now_ms);
                r.is_empty()
            })
    }
}

fn state(l: &WindowLimit, s: &Standing) -> WindowState {
    WindowState {
        window: l.window,
        limit: l.limit,
        remaining: l.limit.saturating_sub(s.count),
        reset_at_ms: s.reset_at_ms,
        algorithm: l.algorithm,
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
        // A tier has at most one limit per window.
        let limits = &limits[..limits.len().min(Window::ALL.len())];
        let mut standings: [Standing; 5] = Default::default();
        for (s, l) in standings.iter_mut().zip(limits) {
            *s = c.stand(l, now_ms);
        }
        let stood = |i: usize| &standings[i];
        // The latest time among exhausted windows: nothing is admitted before it.
        let exhausted_until = limits
            .iter()
            .enumerate()
            .filter(|(i, l)| stood(*i).count >= l.limit)
            .map(|(i, _)| stood(i).reset_at_ms)
            .max();
        if c.blocked_until_ms > now_ms {
            // A retry must outlast both the block and every exhausted window.
            let retry_at = c.blocked_until_ms.max(exhausted_until.unwrap_or(0));
            return LimitDecision::refused(c.states(limits, now_ms), retry_at, now_ms);
        }
        let exhausted = limits
            .iter()
            .enumerate()
            .filter(|(i, l)| stood(*i).count >= l.limit)
            .max_by_key(|(_, l)| l.window);
        if let Some((i, l)) = exhausted {
            let mut retry_at = exhausted_until.unwrap_or(now_ms);
            let origin = (l.window, stood(i).origin);
            if !block.is_zero() && c.block_origin != Some(origin) {
                c.blocked_until_ms = now_ms + block.as_millis() as u64;
                c.block_origin = Some(origin);
                retry_at = retry_at.max(c.blocked_until_ms);
            }
            return LimitDecision::refused(c.states(limits, now_ms), retry_at, now_ms);
        }
        for l in limits {
            c.add(l);
        }
        LimitDecision::admitted(c.admitted_states(limits, now_ms))
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
        c.roll(window, now_ms);
        c.counts[window as usize] += 1;
    }

    /// Takes back one event counted for `key` in the current instance of `window`.
    pub fn release(&self, key: &str, window: Window, now_ms: u64) {
        if let Some(mut entry) = self.counters.get_mut(key) {
            let c = entry.value_mut();
            c.roll(window, now_ms);
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
