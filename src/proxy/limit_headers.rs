//! `X-RateLimit-*` and IETF `RateLimit` / `RateLimit-Policy` headers.

use crate::config::HeaderStyle;
use crate::limit::window::secs_until;
use crate::limit::LimitDecision;
use http::HeaderValue;

/// Headers describing `d` at `now_ms`. `X-RateLimit-*` is always present (the
/// contract promises it on every authenticated response); `ietf` and `both` add the
/// draft-ietf-httpapi-ratelimit-headers-11 pair.
pub fn rate_limit_headers(
    d: &LimitDecision,
    style: HeaderStyle,
    now_ms: u64,
) -> Vec<(&'static str, HeaderValue)> {
    let Some(tight) = d.tightest() else {
        return Vec::new();
    };
    // Refused (a window exhausted, or blocked): nothing remains until the retry
    // time, which may be a block's end rather than a window's.
    let (remaining, reset_at_ms) = if d.allowed {
        (tight.remaining, tight.reset_at_ms)
    } else {
        (0, d.retry_at_ms)
    };
    let mut out = Vec::with_capacity(5);
    out.push(("X-RateLimit-Limit", HeaderValue::from(tight.limit)));
    out.push(("X-RateLimit-Remaining", HeaderValue::from(remaining)));
    out.push((
        "X-RateLimit-Reset",
        HeaderValue::from(reset_at_ms.div_ceil(1000)),
    ));
    if d.degraded {
        // The shared backend failed and this replica decided alone.
        out.push(("X-RateLimit-Degraded", HeaderValue::from_static("local")));
    }
    if matches!(style, HeaderStyle::Ietf | HeaderStyle::Both) {
        let policy: Vec<String> = d
            .windows
            .iter()
            .map(|w| {
                format!(
                    "\"{}\";q={};w={}",
                    w.window.name(),
                    w.limit,
                    w.policy_secs(now_ms)
                )
            })
            .collect();
        let current = format!(
            "\"{}\";r={};t={}",
            tight.window.name(),
            remaining,
            secs_until(now_ms, reset_at_ms)
        );
        for (name, text) in [
            ("RateLimit-Policy", policy.join(", ")),
            ("RateLimit", current),
        ] {
            if let Ok(v) = HeaderValue::try_from(text) {
                out.push((name, v));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Algorithm;
    use crate::limit::{Window, WindowState};

    #[test]
    fn headers_describe_the_window_closest_to_exhaustion() {
        let now = 1_700_000_018_000;
        let d = LimitDecision {
            allowed: true,
            retry_after_secs: 0,
            retry_at_ms: 0,
            windows: vec![
                WindowState {
                    window: Window::Minute,
                    limit: 120,
                    remaining: 17,
                    reset_at_ms: 1_700_000_060_000,
                    algorithm: Algorithm::Fixed,
                },
                WindowState {
                    window: Window::Day,
                    limit: 10000,
                    remaining: 9000,
                    reset_at_ms: 1_700_006_400_000,
                    algorithm: Algorithm::Fixed,
                },
            ],
            degraded: false,
        };
        let h = rate_limit_headers(&d, HeaderStyle::Both, now);
        assert_eq!(h[0], ("X-RateLimit-Limit", HeaderValue::from(120u64)));
        assert_eq!(h[1].0, "X-RateLimit-Remaining");
        assert_eq!(h[1].1, "17");
        assert_eq!(h[2].0, "X-RateLimit-Reset");
        assert_eq!(h[2].1, "1700000060");
        assert_eq!(h[3].0, "RateLimit-Policy");
        assert_eq!(h[3].1, "\"minute\";q=120;w=60, \"day\";q=10000;w=86400");
        assert_eq!(h[4].0, "RateLimit");
        assert_eq!(h[4].1, "\"minute\";r=17;t=42");
        assert_eq!(
            rate_limit_headers(&d, HeaderStyle::XRateLimit, now).len(),
            3
        );
    }

    #[test]
    fn while_refused_nothing_remains_until_the_retry_time() {
        let now = 1_700_000_018_000;
        let windows = vec![WindowState {
            window: Window::Second,
            limit: 10,
            remaining: 7,
            reset_at_ms: 1_700_000_019_000,
            algorithm: Algorithm::Fixed,
        }];
        // Blocked until 40.5 s past the minute: the second window has room, but
        // the block decides.
        let d = LimitDecision::refused(windows, 1_700_000_040_500, now);
        assert_eq!(d.retry_after_secs, 23);
        let h = rate_limit_headers(&d, HeaderStyle::Both, now);
        assert_eq!(h[1].1, "0");
        assert_eq!(h[2].1, "1700000041");
        assert_eq!(h[4].1, "\"second\";r=0;t=23");
    }
}
