//! How many requests of one HTTP/2 connection keygate works on at once.
//!
//! HTTP/2 bounds the streams a client has open (`server.h2_max_concurrent_streams`),
//! but a stream the client resets is closed at once while the work it started
//! (authentication, the upstream request) goes on: a client opening and resetting
//! streams in a loop (rapid reset, CVE-2023-44487) would otherwise have any number
//! of requests in flight on one connection. Each HTTP/2 request takes a
//! [`StreamTicket`] from its connection's count before any work and gives it back
//! when the request is done; past the cap it is refused at once.
//!
//! The cap is twice the advertised stream limit: a well-behaved client may open a
//! new stream as soon as a response's last frame is out, a moment before keygate
//! has finished with that request (its access line, its metrics).

use dashmap::DashMap;
use std::sync::Arc;

/// In-flight requests by HTTP/2 connection.
#[derive(Debug, Default)]
pub struct StreamBudget {
    in_flight: DashMap<usize, u32>,
}

/// One request's place in its connection's count, given back when dropped.
#[derive(Debug)]
pub struct StreamTicket {
    budget: Arc<StreamBudget>,
    connection: usize,
}

impl StreamBudget {
    /// A place for one more request on `connection` (any value unique among open
    /// connections) if it has fewer than `cap` in flight.
    pub fn enter(self: &Arc<Self>, connection: usize, cap: u32) -> Option<StreamTicket> {
        let mut n = self.in_flight.entry(connection).or_insert(0);
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(StreamTicket {
            budget: self.clone(),
            connection,
        })
    }

    /// Requests in flight on `connection`.
    pub fn in_flight(&self, connection: usize) -> u32 {
        self.in_flight.get(&connection).map_or(0, |n| *n)
    }

    /// Connections with a request in flight.
    pub fn connections(&self) -> usize {
        self.in_flight.len()
    }
}

impl StreamTicket {
    /// The connection this request counts against.
    pub fn connection(&self) -> usize {
        self.connection
    }
}

impl Drop for StreamTicket {
    fn drop(&mut self) {
        self.budget
            .in_flight
            .remove_if_mut(&self.connection, |_, n| {
                *n = n.saturating_sub(1);
                *n == 0
            });
    }
}

/// The in-flight cap for a connection advertising `max_streams`.
pub fn cap(max_streams: u32) -> u32 {
    max_streams.saturating_mul(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_gets_at_most_its_cap_and_places_come_back() {
        let b = Arc::new(StreamBudget::default());
        let held: Vec<_> = (0..3).map(|_| b.enter(1, 3).unwrap()).collect();
        assert!(b.enter(1, 3).is_none());
        let other = b.enter(2, 3).expect("another connection has its own count");
        assert_eq!(b.in_flight(1), 3);
        drop(held);
        assert_eq!(b.in_flight(1), 0);
        assert!(b.enter(1, 3).is_some());
        drop(other);
        assert_eq!(
            b.connections(),
            0,
            "finished connections leave nothing behind"
        );
    }
}
