//! The shutdown drain: the data plane's open connections are counted so that on
//! SIGTERM, SIGINT or SIGQUIT keygate exits as soon as the last one has closed,
//! after flushing the usage their requests recorded, instead of always sleeping the
//! whole `grace_period`. Connections, not requests: one accepted just before the
//! listeners closed, whose request is still being read, must be served too. At
//! shutdown Pingora closes idle kept-alive connections at once and busy ones after
//! their current response.
//!
//! Pingora on its own broadcasts the shutdown (listeners close, keep-alive stops),
//! sleeps `grace_period`, then stops its runtimes. Its shutdown hooks run at the
//! broadcast, before the requests in flight finish, so a flush there misses them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A count of things in flight (connections being served).
#[derive(Debug, Default)]
pub struct InFlight {
    count: AtomicUsize,
}

/// The data plane's open connections.
pub static CONNECTIONS: InFlight = InFlight::new();

/// One thing in flight; dropping it ends it.
#[derive(Debug)]
pub struct InFlightGuard {
    of: &'static InFlight,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.of.count.fetch_sub(1, Ordering::Release);
    }
}

impl InFlight {
    /// An empty count.
    pub const fn new() -> Self {
        InFlight {
            count: AtomicUsize::new(0),
        }
    }

    /// Counts one until the guard is dropped.
    pub fn enter(&'static self) -> InFlightGuard {
        self.count.fetch_add(1, Ordering::Relaxed);
        InFlightGuard { of: self }
    }

    /// How many are in flight now.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Waits until none is in flight, at most `limit`; true if none is left.
    pub async fn wait_idle(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.count() == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_for_the_last_request_and_no_longer_than_the_limit() {
        static COUNT: InFlight = InFlight::new();
        assert!(COUNT.wait_idle(Duration::ZERO).await);
        let (a, b) = (COUNT.enter(), COUNT.enter());
        assert_eq!(COUNT.count(), 2);
        let started = Instant::now();
        assert!(!COUNT.wait_idle(Duration::from_millis(50)).await);
        assert!(started.elapsed() >= Duration::from_millis(50));
        drop(a);
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            drop(b);
        });
        let started = Instant::now();
        assert!(COUNT.wait_idle(Duration::from_secs(5)).await);
        assert!(started.elapsed() < Duration::from_secs(1));
        release.await.unwrap();
        assert_eq!(COUNT.count(), 0);
    }
}
