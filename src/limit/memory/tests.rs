use super::*;
use crate::config::TierConfig;
use crate::domain::duration::Dur;
use std::sync::Arc;

fn tier(second: Option<u64>, minute: Option<u64>, block: u64) -> TierLimits {
    TierLimits::from_config(
        "t",
        &TierConfig {
            per_second: second,
            per_minute: minute,
            block: Dur::secs(block),
            ..Default::default()
        },
    )
}

const T0: u64 = 1_700_000_020_000; // 40 s into a minute

#[test]
fn a_limit_of_n_admits_exactly_n_then_refuses_until_the_window_resets() {
    let l = MemoryLimiter::new();
    let t = tier(None, Some(3), 0);
    for i in 0..3 {
        let d = l.check("k", &t, T0 + i);
        assert!(d.allowed);
        assert_eq!(d.windows[0].remaining, 2 - i);
    }
    let d = l.check("k", &t, T0 + 10);
    assert!(!d.allowed);
    assert_eq!(d.retry_after_secs, 20);
    assert_eq!(d.windows[0].remaining, 0);
    assert!(
        l.check("k", &t, T0 + 20_000).allowed,
        "next minute admits again"
    );
}

#[test]
fn a_refusal_by_one_window_consumes_nothing_in_the_others() {
    let l = MemoryLimiter::new();
    let t = tier(Some(2), Some(5), 0);
    assert!(l.check("k", &t, T0).allowed);
    assert!(l.check("k", &t, T0 + 1).allowed);
    for i in 0..10 {
        assert!(!l.check("k", &t, T0 + 2 + i).allowed);
    }
    let d = l.peek("k", &t.windows, T0 + 500);
    assert_eq!(
        d.windows[1].remaining, 3,
        "refused requests were not counted per minute"
    );
    assert!(l.check("k", &t, T0 + 1000).allowed);
    assert!(l.check("k", &t, T0 + 1001).allowed);
    assert!(l.check("k", &t, T0 + 2000).allowed);
    let d = l.check("k", &t, T0 + 2001);
    assert!(!d.allowed, "minute window of 5 is full");
    assert_eq!(d.retry_after_secs, 18);
}

#[test]
fn block_holds_the_key_and_refusals_never_extend_it() {
    let l = MemoryLimiter::new();
    let t = tier(Some(1), None, 10);
    assert!(l.check("k", &t, T0).allowed);
    let d = l.check("k", &t, T0 + 100);
    assert!(!d.allowed);
    assert_eq!(d.retry_after_secs, 10);
    for s in 1..10u64 {
        let d = l.check("k", &t, T0 + 100 + s * 1000);
        assert!(!d.allowed, "still blocked at +{s}s");
        assert_eq!(d.retry_after_secs, 10 - s);
    }
    assert!(l.check("k", &t, T0 + 10_100).allowed, "block ends on time");
}

#[test]
fn identities_are_independent_and_peek_counts_nothing() {
    let l = MemoryLimiter::new();
    let t = tier(None, Some(1), 0);
    assert!(l.peek("a", &t.windows, T0).allowed);
    assert!(l.check("a", &t, T0).allowed);
    assert!(!l.peek("a", &t.windows, T0).allowed);
    assert!(l.check("b", &t, T0).allowed);
    assert!(!l.check("a", &t, T0).allowed);
}

#[test]
fn record_counts_without_checking_and_sweep_forgets_old_identities() {
    let l = MemoryLimiter::new();
    let w = [WindowLimit::fixed(Window::Minute, 2)];
    l.record("ip", Window::Minute, T0);
    l.record("ip", Window::Minute, T0);
    l.record("ip", Window::Minute, T0);
    assert!(!l.peek("ip", &w, T0).allowed);
    l.sweep(T0 + 1);
    assert_eq!(l.len(), 1);
    l.sweep(T0 + 60_000);
    assert!(l.is_empty());
}

#[test]
fn concurrent_checks_admit_exactly_the_limit() {
    let l = Arc::new(MemoryLimiter::new());
    let t = Arc::new(tier(None, Some(50), 0));
    let admitted: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (l, t) = (l.clone(), t.clone());
                s.spawn(move || (0..25).filter(|_| l.check("k", &t, T0).allowed).count())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(admitted, 50);
}

fn sliding(second: Option<u64>, minute: Option<u64>, block: u64) -> TierLimits {
    TierLimits::from_config(
        "s",
        &TierConfig {
            per_second: second,
            per_minute: minute,
            block: Dur::secs(block),
            algorithm: crate::domain::Algorithm::Sliding,
            ..Default::default()
        },
    )
}

mod sliding_bound {
    use super::*;
    use crate::limit::sliding::most_in_any_interval;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Over random bursts spanning three minutes, no interval of a second admits
        /// more than the per-second limit and none of a minute more than the
        /// per-minute limit; a refusal by one window counts in neither.
        #[test]
        fn no_interval_of_any_window_admits_more_than_its_limit(
            bursts in proptest::collection::vec((0u64..180_000, 1usize..30), 1..60),
            per_second in 1u64..15,
            per_minute in 1u64..80,
        ) {
            let l = MemoryLimiter::new();
            let t = sliding(Some(per_second), Some(per_minute), 0);
            let mut arrivals: Vec<u64> = bursts
                .iter()
                .flat_map(|&(at, n)| (0..n as u64).map(move |i| T0 + at + i * 7))
                .collect();
            arrivals.sort_unstable();
            let admitted: Vec<u64> = arrivals
                .into_iter()
                .filter(|&at| l.check("k", &t, at).allowed)
                .collect();
            prop_assert!(most_in_any_interval(&admitted, 1_000) <= per_second);
            prop_assert!(most_in_any_interval(&admitted, 60_000) <= per_minute);
        }
    }
}

#[test]
fn sliding_refuses_n_more_just_after_a_boundary_and_says_when_room_appears() {
    let l = MemoryLimiter::new();
    let t = sliding(None, Some(5), 0);
    let boundary = T0 + 20_000; // the next minute
    for i in 0..5 {
        assert!(l.check("k", &t, boundary - 300 + i).allowed);
    }
    let d = l.check("k", &t, boundary + 300);
    assert!(!d.allowed, "a fixed window would admit here");
    // Room appears when the first request's bucket leaves: a minute and at most one
    // bucket (3 s) after it.
    assert!(d.retry_at_ms >= boundary - 300 + 60_000);
    assert!(d.retry_at_ms <= boundary - 300 + 63_000);
    assert_eq!(d.windows[0].remaining, 0);
    assert!(!l.check("k", &t, d.retry_at_ms - 1).allowed);
    assert!(l.check("k", &t, d.retry_at_ms).allowed);
}

#[test]
fn sliding_block_locks_out_once_per_exhaustion() {
    let l = MemoryLimiter::new();
    let t = sliding(None, Some(2), 5);
    assert!(l.check("k", &t, T0).allowed);
    assert!(l.check("k", &t, T0 + 1).allowed);
    let d = l.check("k", &t, T0 + 2);
    assert!(!d.allowed);
    let free_at = l.peek("k", &t.windows, T0 + 2).retry_at_ms;
    assert!(free_at > T0 + 60_000);
    assert_eq!(d.retry_at_ms, free_at, "the window outlasts the 5 s block");
    // After the block, while the same exhaustion lasts, refusals do not restart it.
    let d = l.check("k", &t, T0 + 6_000);
    assert!(!d.allowed);
    assert_eq!(d.retry_at_ms, free_at);
    assert!(l.check("k", &t, free_at).allowed);

    // A block longer than the window: it holds past the window's room, and the
    // next exhaustion starts a new one.
    let l = MemoryLimiter::new();
    let t = sliding(None, Some(2), 120);
    assert!(l.check("k", &t, T0).allowed);
    assert!(l.check("k", &t, T0 + 1).allowed);
    let d = l.check("k", &t, T0 + 2);
    assert_eq!(d.retry_at_ms, T0 + 2 + 120_000);
    let d = l.check("k", &t, T0 + 70_000);
    assert!(!d.allowed, "still blocked after the window has room");
    assert_eq!(d.retry_at_ms, T0 + 2 + 120_000);
    let again = T0 + 2 + 120_000;
    assert!(l.check("k", &t, again).allowed);
    assert!(l.check("k", &t, again + 1).allowed);
    let d = l.check("k", &t, again + 2);
    assert_eq!(
        d.retry_at_ms,
        again + 2 + 120_000,
        "a new exhaustion, a new block"
    );
}

#[test]
fn fixed_months_follow_the_calendar() {
    let l = MemoryLimiter::new();
    let t = TierLimits::from_config(
        "m",
        &TierConfig {
            per_month: Some(2),
            ..Default::default()
        },
    );
    // 2026-02-28T23:59:59Z, then 2026-03-01T00:00:00Z.
    let feb_end = 1_772_323_199_000;
    assert!(l.check("k", &t, feb_end).allowed);
    assert!(l.check("k", &t, feb_end).allowed);
    let d = l.check("k", &t, feb_end);
    assert!(!d.allowed);
    assert_eq!(d.retry_at_ms, feb_end + 1_000);
    assert!(l.check("k", &t, feb_end + 1_000).allowed);
}
