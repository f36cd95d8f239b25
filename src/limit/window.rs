//! Fixed windows aligned to the Unix epoch, and the limits a tier puts on them.

use crate::config::TierConfig;
use std::time::Duration;

/// One of the four window sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Window {
    /// 1 second.
    Second = 0,
    /// 60 seconds.
    Minute = 1,
    /// 3600 seconds.
    Hour = 2,
    /// 86400 seconds.
    Day = 3,
}

impl Window {
    /// Every window, shortest first.
    pub const ALL: [Window; 4] = [Window::Second, Window::Minute, Window::Hour, Window::Day];

    /// Length in milliseconds.
    pub const fn len_ms(self) -> u64 {
        match self {
            Window::Second => 1_000,
            Window::Minute => 60_000,
            Window::Hour => 3_600_000,
            Window::Day => 86_400_000,
        }
    }

    /// Name used in headers and metrics: `second`, `minute`, `hour`, `day`.
    pub const fn name(self) -> &'static str {
        match self {
            Window::Second => "second",
            Window::Minute => "minute",
            Window::Hour => "hour",
            Window::Day => "day",
        }
    }

    /// Start (ms) of the window instance containing `now_ms`.
    pub const fn start(self, now_ms: u64) -> u64 {
        now_ms - now_ms % self.len_ms()
    }

    /// End (ms, exclusive) of the window instance containing `now_ms`.
    pub const fn reset_at(self, now_ms: u64) -> u64 {
        self.start(now_ms) + self.len_ms()
    }
}

/// A limit of `limit` requests per `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowLimit {
    /// The window.
    pub window: Window,
    /// Requests admitted per window instance.
    pub limit: u64,
}

/// A tier's compiled limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TierLimits {
    /// Tier name.
    pub name: String,
    /// Configured windows, shortest first.
    pub windows: Vec<WindowLimit>,
    /// Lockout after a window is exhausted.
    pub block: Duration,
    /// `name` as a header value (forwarded as the caller's tier).
    pub name_value: http::HeaderValue,
    /// `keygate_decisions_total{reason="allowed", tier=name}`, resolved once
    /// instead of by label on every admitted request.
    pub allowed: AllowedCounter,
}

/// A tier's counter of admitted requests. Any two compare equal: it is a handle,
/// not part of what a tier is.
#[derive(Clone, Debug)]
pub struct AllowedCounter(pub prometheus::IntCounter);

impl PartialEq for AllowedCounter {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for AllowedCounter {}

impl TierLimits {
    /// Compiles a tier from its config.
    pub fn from_config(name: &str, t: &TierConfig) -> Self {
        let windows = [
            (Window::Second, t.per_second),
            (Window::Minute, t.per_minute),
            (Window::Hour, t.per_hour),
            (Window::Day, t.per_day),
        ]
        .into_iter()
        .filter_map(|(window, limit)| limit.map(|limit| WindowLimit { window, limit }))
        .collect();
        TierLimits {
            name: name.to_string(),
            windows,
            block: t.block.get(),
            name_value: http::HeaderValue::from_str(name)
                .unwrap_or_else(|_| http::HeaderValue::from_static("invalid")),
            allowed: AllowedCounter(
                crate::metrics::DECISIONS
                    .with_label_values(&[crate::metrics::reason::ALLOWED, name]),
            ),
        }
    }
}

/// The configured tiers by name, and the one callers of an unknown tier get.
#[derive(Clone, Debug)]
pub struct Tiers {
    by_name: std::collections::HashMap<String, std::sync::Arc<TierLimits>>,
    default: std::sync::Arc<TierLimits>,
}

impl Tiers {
    /// Compiles `tiers:`; `default` names the fallback (`default_tier`).
    pub fn from_config(
        tiers: &std::collections::BTreeMap<String, TierConfig>,
        default: &str,
    ) -> Self {
        let by_name: std::collections::HashMap<_, _> = tiers
            .iter()
            .map(|(name, t)| {
                (
                    name.clone(),
                    std::sync::Arc::new(TierLimits::from_config(name, t)),
                )
            })
            .collect();
        let default = by_name
            .get(default)
            .or_else(|| by_name.values().next())
            .cloned()
            .unwrap_or_else(|| {
                std::sync::Arc::new(TierLimits::from_config("default", &TierConfig::default()))
            });
        Tiers { by_name, default }
    }

    /// The limits of tier `name`, or the default tier's when it is not configured.
    pub fn get(&self, name: &str) -> &std::sync::Arc<TierLimits> {
        self.by_name.get(name).unwrap_or(&self.default)
    }

    /// The default tier's limits.
    pub fn default_tier(&self) -> &std::sync::Arc<TierLimits> {
        &self.default
    }
}

/// Where a caller stands in one window after a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowState {
    /// The window.
    pub window: Window,
    /// Its limit.
    pub limit: u64,
    /// Requests left in the current instance.
    pub remaining: u64,
    /// When the current instance ends (Unix ms).
    pub reset_at_ms: u64,
}

/// The outcome of a limit check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitDecision {
    /// Admitted (and counted) or refused (and nothing counted).
    pub allowed: bool,
    /// When refused: whole seconds until a retry can succeed (at least 1).
    pub retry_after_secs: u64,
    /// When refused: when a retry can succeed (Unix ms): the end of a block or of
    /// the last exhausted window, whichever is later. 0 when admitted.
    pub retry_at_ms: u64,
    /// State of every configured window.
    pub windows: Vec<WindowState>,
    /// Decided by this replica alone because the shared backend was failing
    /// (`on_backend_error: local`); shown as `X-RateLimit-Degraded: local`.
    pub degraded: bool,
}

impl LimitDecision {
    /// An admitted decision with these window states.
    pub fn admitted(windows: Vec<WindowState>) -> Self {
        LimitDecision {
            allowed: true,
            retry_after_secs: 0,
            retry_at_ms: 0,
            windows,
            degraded: false,
        }
    }

    /// A refusal at `now_ms` that lasts until `retry_at_ms`.
    pub fn refused(windows: Vec<WindowState>, retry_at_ms: u64, now_ms: u64) -> Self {
        LimitDecision {
            allowed: false,
            retry_after_secs: secs_until(now_ms, retry_at_ms),
            retry_at_ms: retry_at_ms.max(now_ms),
            windows,
            degraded: false,
        }
    }

    /// The window closest to exhaustion: fewest remaining, then latest reset.
    pub fn tightest(&self) -> Option<&WindowState> {
        self.windows.iter().min_by(|a, b| {
            a.remaining
                .cmp(&b.remaining)
                .then(b.reset_at_ms.cmp(&a.reset_at_ms))
        })
    }
}

/// Builds a decision from a backend's counts: `counts[i]` is what window `limits[i]`
/// holds after the decision (after counting, when admitted). `blocked_until_ms` is
/// the end of a `block` lockout, if the backend has one (past values mean none).
pub fn decision_from_counts(
    limits: &[WindowLimit],
    counts: &[u64],
    allowed: bool,
    blocked_until_ms: u64,
    now_ms: u64,
) -> LimitDecision {
    let windows: Vec<WindowState> = limits
        .iter()
        .zip(counts.iter().chain(std::iter::repeat(&0)))
        .map(|(l, &count)| WindowState {
            window: l.window,
            limit: l.limit,
            remaining: l.limit.saturating_sub(count),
            reset_at_ms: l.window.reset_at(now_ms),
        })
        .collect();
    if allowed {
        return LimitDecision::admitted(windows);
    }
    let exhausted = windows
        .iter()
        .filter(|w| w.remaining == 0)
        .map(|w| w.reset_at_ms)
        .max()
        .unwrap_or(now_ms);
    LimitDecision::refused(windows, exhausted.max(blocked_until_ms), now_ms)
}

/// Whole seconds from `now_ms` until `at_ms`, rounded up, at least 1.
pub fn secs_until(now_ms: u64, at_ms: u64) -> u64 {
    at_ms.saturating_sub(now_ms).div_ceil(1000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_aligned_to_the_epoch() {
        let now = 1_700_000_123_456;
        assert_eq!(Window::Second.start(now), 1_700_000_123_000);
        assert_eq!(Window::Minute.start(now), 1_700_000_100_000);
        assert_eq!(Window::Minute.reset_at(now), 1_700_000_160_000);
        assert_eq!(Window::Hour.start(now) % 3_600_000, 0);
        assert_eq!(Window::Day.reset_at(now) % 86_400_000, 0);
        assert_eq!(Window::Minute.start(60_000), 60_000);
        assert_eq!(Window::Minute.start(59_999), 0);
    }

    #[test]
    fn seconds_until_round_up_and_never_say_zero() {
        assert_eq!(secs_until(1000, 1000), 1);
        assert_eq!(secs_until(1000, 1001), 1);
        assert_eq!(secs_until(1000, 46_000), 45);
        assert_eq!(secs_until(1000, 46_001), 46);
        assert_eq!(secs_until(5000, 1000), 1);
    }

    #[test]
    fn tiers_compile_only_their_configured_windows() {
        let t = TierConfig {
            per_second: Some(10),
            per_day: Some(1000),
            ..Default::default()
        };
        let l = TierLimits::from_config("free", &t);
        assert_eq!(l.windows.len(), 2);
        assert_eq!(l.windows[0].window, Window::Second);
        assert_eq!(
            l.windows[1],
            WindowLimit {
                window: Window::Day,
                limit: 1000
            }
        );
    }

    #[test]
    fn the_tightest_window_is_the_one_with_fewest_left() {
        let d = LimitDecision {
            allowed: true,
            retry_after_secs: 0,
            retry_at_ms: 0,
            windows: vec![
                WindowState {
                    window: Window::Second,
                    limit: 10,
                    remaining: 9,
                    reset_at_ms: 1,
                },
                WindowState {
                    window: Window::Minute,
                    limit: 30,
                    remaining: 3,
                    reset_at_ms: 60,
                },
                WindowState {
                    window: Window::Day,
                    limit: 100,
                    remaining: 3,
                    reset_at_ms: 86400,
                },
            ],
            degraded: false,
        };
        assert_eq!(d.tightest().unwrap().window, Window::Day);
    }
}
