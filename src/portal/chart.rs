//! Usage charts as inline SVG: one stacked bar per bucket (successful at the
//! bottom, then each reason for failing), a labelled axis, and a `<title>` on
//! each bar that browsers show on hover — readable in a screenshot, with no
//! script. Colours come from the stylesheet's classes ([`SEGMENTS`]), since the
//! portal's CSP forbids inline style.

use crate::domain::Totals;
use maud::{html, Markup};

/// Requests in one bucket of a chart (an hour, a day).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    /// What the bucket is, as the axis shows it (`14:00`, `Nov 30`).
    pub label: String,
    /// Its requests, by how they ended.
    pub counts: Totals,
}

/// One part of a bar: the stylesheet's class, its words for one request and
/// for several (the legend's), and its count.
type Segment = (&'static str, &'static str, &'static str, fn(&Totals) -> u64);

/// The parts of a bar, bottom to top. Failures counted before keygate kept
/// reasons stack with the API's errors' colour under their own words.
pub const SEGMENTS: [Segment; 6] = [
    ("ok", "successful", "successful", |t| t.successful),
    ("limited", "rate limited", "rate limited", |t| {
        t.rate_limited
    }),
    ("credits", "out of credits", "out of credits", |t| {
        t.no_credits
    }),
    (
        "refused",
        "refused by the gateway",
        "refused by the gateway",
        |t| t.refused,
    ),
    ("apierr", "error from the API", "errors from the API", |t| {
        t.api_error
    }),
    (
        "apierr",
        "failed (reason not recorded)",
        "failed (reason not recorded)",
        |t| t.unclassified(),
    ),
];

/// What a bucket holds, in words: `5 successful, 2 rate limited` (only the
/// parts it has; `no requests` when empty).
pub fn describe(t: &Totals) -> String {
    let parts: Vec<String> = SEGMENTS
        .iter()
        .filter(|(_, _, _, n)| n(t) > 0)
        .map(|(_, one, many, n)| match n(t) {
            1 => format!("1 {one}"),
            k => format!("{k} {many}"),
        })
        .collect();
    if parts.is_empty() {
        "no requests".into()
    } else {
        parts.join(", ")
    }
}

/// The chart's legend: a swatch and the words of each part (the last, a
/// stand-in for old rows, only when `t` has some).
pub fn legend(t: &Totals) -> Markup {
    html! {
        p class="legend" {
            @for (i, (class, _, words, n)) in SEGMENTS.iter().enumerate() {
                @if i + 1 < SEGMENTS.len() || n(t) > 0 {
                    span class="legend-item" { span class={"swatch " (class)} {} " " (words) }
                }
            }
        }
    }
}

const WIDTH: u32 = 720;
const HEIGHT: u32 = 170;
const LEFT: u32 = 44;
const BOTTOM: u32 = 24;
const TOP: u32 = 10;

/// The smallest "nice" axis maximum at or above `n` (1, 2, 5 × 10^k).
fn nice_max(n: u64) -> u64 {
    let mut step = 1u64;
    loop {
        for m in [1, 2, 5] {
            if step.saturating_mul(m) >= n {
                return step.saturating_mul(m);
            }
        }
        step = step.saturating_mul(10);
    }
}

/// An SVG bar chart of `buckets`, titled `title` for screen readers; every
/// `label_every`-th bucket is labelled on the axis.
pub fn bars(title: &str, buckets: &[Bucket], label_every: usize) -> Markup {
    let max = nice_max(
        buckets
            .iter()
            .map(|b| b.counts.total)
            .max()
            .unwrap_or(0)
            .max(1),
    );
    let plot_w = WIDTH - LEFT - 4;
    let plot_h = HEIGHT - BOTTOM - TOP;
    let n = buckets.len().max(1) as u32;
    let slot = plot_w as f64 / n as f64;
    let bar_w = (slot * 0.8).max(1.0);
    let y_of = |v: u64| TOP as f64 + plot_h as f64 * (1.0 - v as f64 / max as f64);
    let label_every = label_every.max(1);
    // Each part of a bar that has requests: its class, top and height.
    let stack = |t: &Totals| -> Vec<(&'static str, f64, f64)> {
        let mut below = 0u64;
        SEGMENTS
            .iter()
            .filter_map(|(class, _, _, n)| {
                let v = n(t);
                if v == 0 {
                    return None;
                }
                let (top, bottom) = (y_of(below + v), y_of(below));
                below += v;
                Some((*class, top, bottom - top))
            })
            .collect()
    };
    html! {
        svg class="chart" viewBox={"0 0 " (WIDTH) " " (HEIGHT)} role="img" aria-label=(title)
            xmlns="http://www.w3.org/2000/svg" {
            title { (title) }
            @for tick in [0, max / 2, max] {
                line class="grid" x1=(LEFT) x2=(WIDTH - 4) y1=(format!("{:.1}", y_of(tick))) y2=(format!("{:.1}", y_of(tick))) {}
                text class="axis" x=(LEFT - 6) y=(format!("{:.1}", y_of(tick) + 4.0)) text-anchor="end" { (tick) }
            }
            @for (i, b) in buckets.iter().enumerate() {
                @let x = LEFT as f64 + slot * i as f64 + (slot - bar_w) / 2.0;
                g class="bar" {
                    title { (b.label) " UTC: " (describe(&b.counts)) }
                    @for (class, top, height) in stack(&b.counts) {
                        rect class=(class) x=(format!("{x:.1}")) y=(format!("{top:.1}")) width=(format!("{bar_w:.1}"))
                            height=(format!("{height:.1}")) {}
                    }
                    // An invisible full-height target, so hovering an empty hour works too.
                    rect class="hit" x=(format!("{x:.1}")) y=(TOP) width=(format!("{bar_w:.1}")) height=(plot_h) {}
                }
                @if i % label_every == 0 {
                    text class="axis" x=(format!("{:.1}", x + bar_w / 2.0)) y=(HEIGHT - 6) text-anchor="middle" { (b.label) }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_maxima_are_round() {
        assert_eq!(nice_max(1), 1);
        assert_eq!(nice_max(3), 5);
        assert_eq!(nice_max(7), 10);
        assert_eq!(nice_max(101), 200);
        assert_eq!(nice_max(u64::MAX), u64::MAX);
    }

    #[test]
    fn each_bucket_is_a_bar_with_its_counts_and_labels_are_escaped() {
        let buckets = vec![
            Bucket {
                label: "<b>".into(),
                counts: Totals {
                    total: 4,
                    successful: 3,
                    failed: 1,
                    rate_limited: 1,
                    ..Totals::default()
                },
            },
            Bucket {
                label: "02:00".into(),
                counts: Totals::default(),
            },
        ];
        let svg = bars("Requests", &buckets, 1).into_string();
        assert_eq!(svg.matches("<g class=\"bar\">").count(), 2);
        assert!(svg.contains("&lt;b&gt; UTC: 3 successful, 1 rate limited"));
        assert!(svg.contains("02:00 UTC: no requests"));
        assert_eq!(
            svg.matches("class=\"limited\"").count(),
            1,
            "one segment per part held"
        );
        assert!(!svg.contains("<b>"));
        assert!(!svg.contains("style="), "the CSP forbids inline style");
    }
}
