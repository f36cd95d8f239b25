//! Usage charts as inline SVG: one stacked bar per bucket (successful below,
//! failed above), a labelled axis, and a `<title>` on each bar that browsers show
//! on hover — readable in a screenshot, with no script. Colours come from the
//! stylesheet's classes (`ok`, `fail`), since the portal's CSP forbids inline style.

use maud::{html, Markup};

/// Requests in one bucket of a chart (an hour, a day).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    /// What the bucket is, as the axis shows it (`14:00`, `Nov 30`).
    pub label: String,
    /// Requests answered 2xx/3xx.
    pub successful: u64,
    /// Requests answered 4xx/5xx.
    pub failed: u64,
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
            .map(|b| b.successful + b.failed)
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
                @let ok_top = y_of(b.successful);
                @let all_top = y_of(b.successful + b.failed);
                g class="bar" {
                    title { (b.label) ": " (b.successful) " successful, " (b.failed) " failed" }
                    rect class="ok" x=(format!("{x:.1}")) y=(format!("{ok_top:.1}")) width=(format!("{bar_w:.1}"))
                        height=(format!("{:.1}", y_of(0) - ok_top)) {}
                    rect class="fail" x=(format!("{x:.1}")) y=(format!("{all_top:.1}")) width=(format!("{bar_w:.1}"))
                        height=(format!("{:.1}", ok_top - all_top)) {}
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
                successful: 3,
                failed: 1,
            },
            Bucket {
                label: "02:00".into(),
                successful: 0,
                failed: 0,
            },
        ];
        let svg = bars("Requests", &buckets, 1).into_string();
        assert_eq!(svg.matches("<g class=\"bar\">").count(), 2);
        assert!(svg.contains("&lt;b&gt;: 3 successful, 1 failed"));
        assert!(!svg.contains("<b>"));
        assert!(!svg.contains("style="), "the CSP forbids inline style");
    }
}
