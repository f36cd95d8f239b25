//! `X-RateLimit-*` and IETF `RateLimit` / `RateLimit-Policy` headers.

use crate::config::HeaderStyle;
use crate::limit::window::secs_until;
use crate::limit::LimitDecision;

/// Headers describing `d` at `now_ms`. `X-RateLimit-*` is always present (the
/// contract promises it on every authenticated response); `ietf` and `both` add the
/// draft-ietf-httpapi-ratelimit-headers-11 pair.
pub fn rate_limit_headers(
    d: &LimitDecision,
    style: HeaderStyle,
    now_ms: u64,
) -> Vec<(&'static str, String)> {
    let Some(tight) = d.tightest() else {
        return Vec::new();
    };
    let mut out = vec![
        ("X-RateLimit-Limit", tight.limit.to_string()),
        ("X-RateLimit-Remaining", tight.remaining.to_string()),
        (
            "X-RateLimit-Reset",
            tight.reset_at_ms.div_ceil(1000).to_string(),
        ),
    ];
    if matches!(style, HeaderStyle::Ietf | HeaderStyle::Both) {
        let policy: Vec<String> = d
            .windows
            .iter()
            .map(|w| {
                format!(
                    "\"{}\";q={};w={}",
                    w.window.name(),
                    w.limit,
                    w.window.len_ms() / 1000
                )
            })
            .collect();
        out.push(("RateLimit-Policy", policy.join(", ")));
        out.push((
            "RateLimit",
            format!(
                "\"{}\";r={};t={}",
                tight.window.name(),
                tight.remaining,
                secs_until(now_ms, tight.reset_at_ms)
            ),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limit::{Window, WindowState};

    #[test]
    fn headers_describe_the_window_closest_to_exhaustion() {
        let now = 1_700_000_018_000;
        let d = LimitDecision {
            allowed: true,
            retry_after_secs: 0,
            windows: vec![
                WindowState {
                    window: Window::Minute,
                    limit: 120,
                    remaining: 17,
                    reset_at_ms: 1_700_000_060_000,
                },
                WindowState {
                    window: Window::Day,
                    limit: 10000,
                    remaining: 9000,
                    reset_at_ms: 1_700_006_400_000,
                },
            ],
        };
        let h = rate_limit_headers(&d, HeaderStyle::Both, now);
        assert_eq!(h[0], ("X-RateLimit-Limit", "120".into()));
        assert_eq!(h[1], ("X-RateLimit-Remaining", "17".into()));
        assert_eq!(h[2], ("X-RateLimit-Reset", "1700000060".into()));
        assert_eq!(
            h[3],
            (
                "RateLimit-Policy",
                "\"minute\";q=120;w=60, \"day\";q=10000;w=86400".into()
            )
        );
        assert_eq!(h[4], ("RateLimit", "\"minute\";r=17;t=42".into()));
        assert_eq!(
            rate_limit_headers(&d, HeaderStyle::XRateLimit, now).len(),
            3
        );
    }
}
