use super::*;
use crate::config::{Dur, TierConfig};
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
    let w = [WindowLimit {
        window: Window::Minute,
        limit: 2,
    }];
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
