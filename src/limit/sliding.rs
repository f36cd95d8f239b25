//! Sliding windows: a window of length `W` and limit `N` never admits more than `N`
//! requests in any interval of length `W`, wherever the interval starts.
//!
//! # Design: a bucketed window, counted conservatively
//!
//! Time is cut into buckets of `b = W / BUCKETS` milliseconds, numbered from the
//! epoch (`bucket(t) = floor(t / b)`). A window keeps one count per bucket for the
//! newest `BUCKETS + 1` buckets (a ring, [`Ring`]). A request at time `t`, in bucket
//! `k`, is admitted only if the requests counted in buckets `k - BUCKETS ..= k` are
//! fewer than `N`; it is then counted in bucket `k`.
//!
//! # Why no interval of length `W` admits more than `N`
//!
//! Take any interval `I = [s, s + W)` and the last request admitted in it, at time `t`
//! in bucket `k`. Bucket `k - BUCKETS` starts at `(k - BUCKETS) * b <= t - W < s`, so
//! buckets `k - BUCKETS ..= k` cover every instant of `I` up to `t`: every request
//! admitted in `I` before this one was counted in the sum that admitted it, and that
//! sum was below `N`. With it, `I` holds at most `N`. ∎
//!
//! The price is under-admission: a request stops counting between `W` and `W + b`
//! after it was admitted (when its bucket's `BUCKETS + 1`-th successor starts), so a
//! client sending at exactly the limit's rate is held back by at most one bucket
//! (`1 / BUCKETS` of the window). Nothing is approximated: the counts are exact.
//!
//! The same ring lives in process memory ([`super::memory`]) and in one Redis hash per
//! window (`super::redis`), updated by one script in one round trip, so the bound
//! holds across replicas. Replicas whose clocks differ count conservatively: a ring
//! whose newest bucket is ahead of a caller's clock is read at that newest bucket, so
//! nothing counted by a replica that is ahead is ever left out.
//!
//! # When a refused request may retry
//!
//! With the ring's counts `c[k - BUCKETS] .. c[k]` summing to `S >= N`, room for one
//! more request appears when the oldest buckets holding `S - N + 1` requests have left
//! the window: at the start of bucket `j + BUCKETS + 1`, where `j` is the first
//! bucket at which the running sum from the oldest reaches `S - N + 1`
//! ([`Ring::free_bucket`], [`leaves_at_ms`]). While refusals count nothing, that time
//! does not move, which also makes it the identity of a `block` lockout's cause.
//! A window with room reports when it will be empty again (its newest request
//! leaves), as a fixed window reports its instance's end: one bucket to look at, so
//! the Redis script reads two fields of the ring per admitted request, not 21.

use super::window::Window;

/// Buckets per window: a request stops counting at most `1 / BUCKETS` of the
/// window after the window's length.
pub const BUCKETS: u64 = 20;

/// Counts kept per window: the current bucket and the `BUCKETS` before it.
pub const SLOTS: usize = BUCKETS as usize + 1;

/// Length of one of `w`'s buckets, in milliseconds.
pub const fn bucket_ms(w: Window) -> u64 {
    w.len_ms() / BUCKETS
}

/// The bucket of `w` containing `now_ms`.
pub const fn bucket(w: Window, now_ms: u64) -> u64 {
    now_ms / bucket_ms(w)
}

/// When a request counted in `bucket` stops counting (Unix ms).
pub const fn leaves_at_ms(w: Window, bucket: u64) -> u64 {
    (bucket + BUCKETS + 1) * bucket_ms(w)
}

/// One window's counts for the newest [`SLOTS`] buckets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ring {
    /// The window counted.
    pub window: Window,
    /// The newest bucket the ring holds.
    newest: u64,
    /// Count of bucket `b` at `b % SLOTS`, for `newest - BUCKETS ..= newest`.
    counts: [u32; SLOTS],
    /// The sum of `counts`, kept as they change.
    total: u64,
}

impl Ring {
    /// An empty ring for `window`.
    pub fn new(window: Window) -> Self {
        Ring {
            window,
            newest: 0,
            counts: [0; SLOTS],
            total: 0,
        }
    }

    /// Moves the ring to `now_ms`'s bucket, dropping buckets that left the window.
    /// A clock that went back leaves the ring where it is (counting conservatively).
    pub fn advance(&mut self, now_ms: u64) {
        let k = bucket(self.window, now_ms);
        if k <= self.newest {
            return;
        }
        if k - self.newest >= SLOTS as u64 {
            self.counts = [0; SLOTS];
            self.total = 0;
        } else {
            for b in self.newest + 1..=k {
                let slot = &mut self.counts[(b % SLOTS as u64) as usize];
                self.total -= u64::from(*slot);
                *slot = 0;
            }
        }
        self.newest = k;
    }

    /// Requests counted in the window (after [`Ring::advance`]).
    pub fn sum(&self) -> u64 {
        self.total
    }

    /// Counts one request in the newest bucket.
    pub fn add(&mut self) {
        let slot = &mut self.counts[(self.newest % SLOTS as u64) as usize];
        if *slot < u32::MAX {
            *slot += 1;
            self.total += 1;
        }
    }

    /// Takes back one request, from the newest bucket that holds one.
    pub fn remove(&mut self) {
        for back in 0..SLOTS as u64 {
            let Some(b) = self.newest.checked_sub(back) else {
                return;
            };
            let slot = &mut self.counts[(b % SLOTS as u64) as usize];
            if *slot > 0 {
                *slot -= 1;
                self.total -= 1;
                return;
            }
        }
    }

    /// With the window full (`sum >= limit`): the bucket whose leaving makes room,
    /// the first, oldest first, at which the running count reaches
    /// `sum - limit + 1`. With room: the newest bucket holding a request, whose
    /// leaving empties the window (the newest bucket when nothing is counted).
    pub fn free_bucket(&self, limit: u64) -> u64 {
        let oldest = self.newest.saturating_sub(BUCKETS);
        let at = |b: u64| u64::from(self.counts[(b % SLOTS as u64) as usize]);
        if self.total < limit {
            return (oldest..=self.newest)
                .rev()
                .find(|&b| at(b) > 0)
                .unwrap_or(self.newest);
        }
        let need = self.total + 1 - limit;
        let mut running = 0u64;
        for b in oldest..=self.newest {
            running += at(b);
            if running >= need {
                return b;
            }
        }
        self.newest
    }

    /// When the window next has room under `limit` (full), or when it is empty
    /// again (with room): see [`Ring::free_bucket`].
    pub fn free_at_ms(&self, limit: u64) -> u64 {
        leaves_at_ms(self.window, self.free_bucket(limit))
    }

    /// True when nothing is counted.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The newest bucket held.
    pub fn newest(&self) -> u64 {
        self.newest
    }
}

/// The most of `admitted` (sorted Unix ms) that any interval `[s, s + len)` holds,
/// by brute force over every interval that starts at an admitted request (an interval
/// holding the most can always be moved to start at one).
#[cfg(test)]
pub(crate) fn most_in_any_interval(admitted: &[u64], len: u64) -> u64 {
    (0..admitted.len())
        .map(|i| {
            admitted[i..]
                .iter()
                .take_while(|&&t| t < admitted[i] + len)
                .count() as u64
        })
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Admits `arrivals` (sorted, ms) through one ring of `limit` per second and
    /// returns the times admitted.
    fn admitted(arrivals: &[u64], limit: u64) -> Vec<u64> {
        let mut ring = Ring::new(Window::Second);
        let mut out = Vec::new();
        for &t in arrivals {
            ring.advance(t);
            assert_eq!(
                ring.sum(),
                ring.counts.iter().map(|&c| u64::from(c)).sum::<u64>(),
                "the running total is the sum of the buckets"
            );
            if ring.sum() < limit {
                ring.add();
                out.push(t);
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        /// Brute force: every interval of the window's length that starts at an
        /// admitted request (the intervals holding the most start at one) holds at
        /// most the limit.
        #[test]
        fn no_interval_of_a_window_ever_admits_more_than_the_limit(
            mut arrivals in proptest::collection::vec(0u64..10_000, 0..600),
            limit in 1u64..40,
            origin in 0u64..1_000_000,
        ) {
            for t in arrivals.iter_mut() {
                *t += 1_700_000_000_000 + origin;
            }
            arrivals.sort_unstable();
            let got = admitted(&arrivals, limit);
            let most = most_in_any_interval(&got, Window::Second.len_ms());
            prop_assert!(most <= limit, "{most} admitted in one second with limit {limit}");
        }

        /// The under-admission is bounded: a request refused at `t` had, in the
        /// window plus one bucket before it, at least the limit admitted; and the
        /// retry time is exact: refused just before it, admitted at it.
        #[test]
        fn a_refusal_means_the_window_and_one_bucket_hold_the_limit_and_the_retry_time_is_exact(
            mut arrivals in proptest::collection::vec(0u64..5_000, 1..300),
            limit in 1u64..20,
        ) {
            for t in arrivals.iter_mut() {
                *t += 1_700_000_000_000;
            }
            arrivals.sort_unstable();
            let mut ring = Ring::new(Window::Second);
            let mut got: Vec<u64> = Vec::new();
            let span = Window::Second.len_ms() + bucket_ms(Window::Second);
            for &t in &arrivals {
                ring.advance(t);
                if ring.sum() < limit {
                    ring.add();
                    got.push(t);
                    continue;
                }
                let recent = got.iter().filter(|&&a| a + span > t).count() as u64;
                prop_assert!(recent >= limit);
                let retry = ring.free_at_ms(limit);
                prop_assert!(retry > t);
                let mut before = ring.clone();
                before.advance(retry - 1);
                prop_assert!(before.sum() >= limit, "room before the retry time");
                let mut at = ring.clone();
                at.advance(retry);
                prop_assert!(at.sum() < limit, "no room at the retry time");
            }
        }
    }

    #[test]
    fn n_before_a_boundary_and_n_after_it_admit_only_n() {
        let mut ring = Ring::new(Window::Minute);
        let boundary = 1_700_000_040_000; // a minute boundary
        let mut admitted = 0;
        for i in 0..10 {
            ring.advance(boundary - 500 + i);
            if ring.sum() < 10 {
                ring.add();
                admitted += 1;
            }
        }
        for i in 0..10 {
            ring.advance(boundary + 500 + i);
            if ring.sum() < 10 {
                ring.add();
                admitted += 1;
            }
        }
        assert_eq!(admitted, 10);
        let retry = ring.free_at_ms(10);
        assert!(retry >= boundary - 500 + 60_000);
        assert!(retry <= boundary - 500 + 60_000 + bucket_ms(Window::Minute));
    }

    #[test]
    fn a_clock_that_goes_back_keeps_counting_what_it_has() {
        let mut ring = Ring::new(Window::Second);
        ring.advance(10_000);
        ring.add();
        ring.advance(9_000);
        assert_eq!(ring.sum(), 1);
        ring.advance(11_049);
        assert_eq!(ring.sum(), 1, "still inside the window plus a bucket");
        ring.advance(11_050);
        assert_eq!(ring.sum(), 0);
    }

    #[test]
    fn removing_takes_the_newest_request() {
        let mut ring = Ring::new(Window::Second);
        ring.advance(10_000);
        ring.add();
        ring.advance(10_500);
        ring.remove();
        assert_eq!(ring.sum(), 0);
        ring.remove();
        assert_eq!(ring.sum(), 0);
    }
}
