//! The windows a tier limits (second to calendar month), the algorithm that counts
//! them, and the limits a tier puts on them.

use crate::config::TierConfig;
use crate::domain::Algorithm;
use std::time::Duration;

/// One of the five window sizes.
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
    /// A calendar month in UTC (fixed); 30 days (sliding).
    Month = 4,
}

/// Milliseconds in a day.
const DAY_MS: u64 = 86_400_000;

impl Window {
    /// Every window, shortest first.
    pub const ALL: [Window; 5] = [
        Window::Second,
        Window::Minute,
        Window::Hour,
        Window::Day,
        Window::Month,
    ];

    /// Length in milliseconds: a sliding window's span. A month counts as 30 days
    /// here; a fixed month is the calendar month ([`Window::start`], [`Window::reset_at`]).
    pub const fn len_ms(self) -> u64 {
        match self {
            Window::Second => 1_000,
            Window::Minute => 60_000,
            Window::Hour => 3_600_000,
            Window::Day => DAY_MS,
            Window::Month => 30 * DAY_MS,
        }
    }

    /// Name used in headers and metrics: `second`, `minute`, `hour`, `day`, `month`.
    pub const fn name(self) -> &'static str {
        match self {
            Window::Second => "second",
            Window::Minute => "minute",
            Window::Hour => "hour",
            Window::Day => "day",
            Window::Month => "month",
        }
    }

    /// The fixed instance containing `now_ms`, numbered from the epoch (months since
    /// January 1970 for [`Window::Month`]).
    pub fn instance(self, now_ms: u64) -> u64 {
        match self {
            Window::Month => {
                let (y, m) = year_month(now_ms / DAY_MS);
                (y - 1970) as u64 * 12 + (m - 1) as u64
            }
            w => now_ms / w.len_ms(),
        }
    }

    /// Start (ms) of the fixed instance containing `now_ms`: epoch-aligned, and the
    /// first of the month at 00:00 UTC for [`Window::Month`].
    pub fn start(self, now_ms: u64) -> u64 {
        match self {
            Window::Month => {
                let (y, m) = year_month(now_ms / DAY_MS);
                days_from_civil(y, m) * DAY_MS
            }
            w => now_ms - now_ms % w.len_ms(),
        }
    }

    /// End (ms, exclusive) of the fixed instance containing `now_ms`.
    pub fn reset_at(self, now_ms: u64) -> u64 {
        match self {
            Window::Month => {
                let (y, m) = year_month(now_ms / DAY_MS);
                let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                days_from_civil(y, m) * DAY_MS
            }
            w => self.start(now_ms) + w.len_ms(),
        }
    }
}

/// The (year, month 1..=12) of a day counted from 1970-01-01 (H. Hinnant's
/// `civil_from_days`, for days on or after the epoch).
fn year_month(days: u64) -> (i64, u32) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m)
}

/// Days from 1970-01-01 to the first of month `m` of year `y` (`days_from_civil`).
fn days_from_civil(y: i64, m: u32) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe - 719_468).max(0) as u64
}

/// A limit of `limit` requests per `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowLimit {
    /// The window.
    pub window: Window,
    /// Requests admitted per window instance (fixed) or per any interval of the
    /// window's length (sliding).
    pub limit: u64,
    /// How the window counts.
    pub algorithm: Algorithm,
}

impl WindowLimit {
    /// A fixed window of `limit` per `window`.
    pub const fn fixed(window: Window, limit: u64) -> Self {
        WindowLimit {
            window,
            limit,
            algorithm: Algorithm::Fixed,
        }
    }
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
    /// How the tier's keys' credits refill (`tiers.<name>.credits`).
    pub refill: Option<crate::domain::Refill>,
    /// Whose counters and credits they are.
    pub pool: crate::domain::Pool,
    /// How windows the tier adds count (`tiers.<name>.algorithm`).
    pub algorithm: crate::domain::Algorithm,
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
            (Window::Month, t.per_month),
        ]
        .into_iter()
        .filter_map(|(window, limit)| {
            limit.map(|limit| WindowLimit {
                window,
                limit,
                algorithm: t.algorithm,
            })
        })
        .collect();
        TierLimits {
            name: name.to_string(),
            windows,
            block: t.block.get(),
            refill: t.credits.map(|c| c.refill()),
            pool: t.pool,
            algorithm: t.algorithm,
            name_value: http::HeaderValue::from_str(name)
                .unwrap_or_else(|_| http::HeaderValue::from_static("invalid")),
            allowed: AllowedCounter(
                crate::obs::metrics::DECISIONS
                    .with_label_values(&[crate::obs::metrics::reason::ALLOWED, name]),
            ),
        }
    }
}

impl TierLimits {
    /// The windows of a key's own `cap`, counting as this tier's do.
    pub fn cap_windows(&self, cap: &crate::domain::KeyCap) -> Vec<WindowLimit> {
        [
            (Window::Second, cap.per_second),
            (Window::Minute, cap.per_minute),
            (Window::Hour, cap.per_hour),
            (Window::Day, cap.per_day),
            (Window::Month, cap.per_month),
        ]
        .into_iter()
        .filter_map(|(window, limit)| {
            limit.map(|limit| WindowLimit {
                window,
                limit,
                algorithm: self.algorithm,
            })
        })
        .collect()
    }

    /// These limits with an account's `overrides` in place of the plan's: each
    /// window it sets replaces the tier's (or is added, counting as the tier's
    /// do), and its refill replaces the tier's.
    pub fn with_overrides(&self, overrides: &crate::domain::PlanOverrides) -> TierLimits {
        let mut windows = self.windows.clone();
        for (window, limit) in [
            (Window::Second, overrides.per_second),
            (Window::Minute, overrides.per_minute),
            (Window::Hour, overrides.per_hour),
            (Window::Day, overrides.per_day),
            (Window::Month, overrides.per_month),
        ] {
            let Some(limit) = limit else { continue };
            match windows.iter_mut().find(|w| w.window == window) {
                Some(w) => w.limit = limit,
                None => windows.push(WindowLimit {
                    window,
                    limit,
                    algorithm: self.algorithm,
                }),
            }
        }
        windows.sort_by_key(|w| w.window.len_ms());
        TierLimits {
            windows,
            refill: overrides.refill.or(self.refill),
            ..self.clone()
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
    /// When the current instance ends (Unix ms); for a sliding window, when the
    /// count next goes down (admitted) or room appears (exhausted).
    pub reset_at_ms: u64,
    /// How the window counts.
    pub algorithm: Algorithm,
}

impl WindowState {
    /// The window's length as `RateLimit-Policy` states it (`w=`, seconds): a fixed
    /// month is the current calendar month's.
    pub fn policy_secs(&self, now_ms: u64) -> u64 {
        match (self.algorithm, self.window) {
            (Algorithm::Fixed, Window::Month) => {
                (Window::Month.reset_at(now_ms) - Window::Month.start(now_ms)) / 1000
            }
            (_, w) => w.len_ms() / 1000,
        }
    }
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

    /// This decision (an account's) with `other` (its key's own cap, which
    /// admitted): refused if either is, each window shown at the tighter of the two
    /// (fewer remaining), and a retry when both would admit again.
    pub fn with_cap(mut self, other: LimitDecision) -> LimitDecision {
        for w in other.windows {
            match self.windows.iter_mut().find(|s| s.window == w.window) {
                Some(s) if w.remaining < s.remaining => *s = w,
                Some(_) => {}
                None => self.windows.push(w),
            }
        }
        self.windows.sort_by_key(|w| w.window.len_ms());
        if !other.allowed {
            self.allowed = false;
            self.retry_at_ms = self.retry_at_ms.max(other.retry_at_ms);
            self.retry_after_secs = self.retry_after_secs.max(other.retry_after_secs);
        }
        self.degraded |= other.degraded;
        self
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

/// Builds a decision from a backend's counts: `standing[i]` is what window
/// `limits[i]` holds after the decision (after counting, when admitted) and when it
/// resets (a fixed instance's end; for a sliding window, see
/// [`super::sliding::Ring::free_at_ms`]). `blocked_until_ms` is the end of a `block`
/// lockout, if the backend has one (past values mean none).
pub fn decision_from_counts(
    limits: &[WindowLimit],
    standing: &[(u64, u64)],
    allowed: bool,
    blocked_until_ms: u64,
    now_ms: u64,
) -> LimitDecision {
    let windows: Vec<WindowState> = limits
        .iter()
        .zip(standing.iter().chain(std::iter::repeat(&(0, 0))))
        .map(|(l, &(count, reset_at_ms))| WindowState {
            window: l.window,
            limit: l.limit,
            remaining: l.limit.saturating_sub(count),
            reset_at_ms: if reset_at_ms == 0 {
                l.window.reset_at(now_ms)
            } else {
                reset_at_ms
            },
            algorithm: l.algorithm,
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
    fn months_are_calendar_months_in_utc() {
        let day = 86_400_000;
        // 2024-02-29 (a leap day) 12:00Z: February 2024 runs 1st to 29th.
        let leap = 19_782 * day + day / 2;
        assert_eq!(Window::Month.start(leap), 19_754 * day);
        assert_eq!(Window::Month.reset_at(leap), 19_783 * day);
        // 2026-12-31T23:59:59.999Z ends with the year; 2027-01-01 starts the next.
        let year_end = 20_819 * day - 1;
        assert_eq!(Window::Month.reset_at(year_end), 20_819 * day);
        assert_eq!(Window::Month.start(20_819 * day), 20_819 * day);
        assert_eq!(
            Window::Month.instance(20_819 * day),
            Window::Month.instance(year_end) + 1
        );
        assert_eq!(Window::Month.instance(0), 0);
        assert_eq!(Window::Month.reset_at(0), 31 * day);
        // Every month boundary from 1970 to 2100 is the first of a month.
        let mut at = 0;
        for _ in 0..(131 * 12) {
            let next = Window::Month.reset_at(at);
            let len_days = (next - at) / day;
            assert!((28..=31).contains(&len_days), "{len_days}");
            assert_eq!(Window::Month.start(next), next);
            assert_eq!(Window::Month.start(next - 1), at);
            at = next;
        }
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
        assert_eq!(l.windows[1], WindowLimit::fixed(Window::Day, 1000));
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
                    algorithm: Algorithm::Fixed,
                },
                WindowState {
                    window: Window::Minute,
                    limit: 30,
                    remaining: 3,
                    reset_at_ms: 60,
                    algorithm: Algorithm::Fixed,
                },
                WindowState {
                    window: Window::Day,
                    limit: 100,
                    remaining: 3,
                    reset_at_ms: 86400,
                    algorithm: Algorithm::Fixed,
                },
            ],
            degraded: false,
        };
        assert_eq!(d.tightest().unwrap().window, Window::Day);
    }
}
