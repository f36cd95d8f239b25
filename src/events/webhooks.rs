//! The delivery worker: takes the store's lease (one process delivers at a time),
//! then sends each receiver the outbox's events after its cursor, in order, signed.
//!
//! At least once: an event's delivery and its receiver's cursor move are written
//! together after the receiver answered 2xx; a crash in between repeats that one
//! delivery. A failure (no 2xx, no answer within the receiver's timeout) is tried
//! again after 1 s, 2 s, 4 s, … (at most an hour apart) until the event is 24 h old,
//! then given up and the next one sent: a receiver's events reach it in order.

use super::signature;
use super::Receiver;
use crate::clock::Clock;
use crate::domain::event::Event;
use crate::obs::metrics;
use crate::store::events::{Cursor, Delivery, EventStore, Outcome};
use crate::store::StoreError;
use chrono::{DateTime, Duration as Span, Utc};
use std::sync::Arc;
use std::time::Duration;

/// The lease's name in the store.
const LEASE: &str = "webhooks";
/// How long the lease outlives its last renewal beyond the longest delivery: it is
/// renewed before each delivery, so it never lapses while its holder works, and a
/// holder that died is replaced this long after its receivers' longest timeout.
const LEASE_MARGIN: Duration = Duration::from_secs(5);
/// How long an event is tried before it is given up.
pub const RETRY_FOR: Duration = Duration::from_secs(24 * 3600);
/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// Events read from the outbox at a time.
const BATCH: u32 = 100;

/// The wait before attempt `failed + 1`, after `failed` failures: 1 s doubling, at
/// most [`MAX_BACKOFF`].
pub fn backoff(failed: u32) -> Duration {
    let doubled = 1u64
        .checked_shl(failed.saturating_sub(1))
        .unwrap_or(u64::MAX);
    Duration::from_secs(doubled).min(MAX_BACKOFF)
}

/// Delivers the outbox; one per process.
pub struct Webhooks {
    store: Arc<dyn EventStore>,
    clock: Arc<dyn Clock>,
    /// This process's name in the lease.
    holder: String,
    http: reqwest::Client,
    /// When keys about to expire were last looked for (Unix ms; 0: never).
    expiring_scanned_ms: std::sync::atomic::AtomicU64,
}

/// How often the lease holder looks for keys about to expire.
const EXPIRING_SCAN_EVERY_MS: u64 = 3_600_000;
/// Keys announced per scan at most (the rest in the next scan).
const EXPIRING_BATCH: u32 = 1_000;

/// Why a pass stopped early.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    /// The store could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Webhooks {
    /// A worker over `store`, on `clock`.
    pub fn new(store: Arc<dyn EventStore>, clock: Arc<dyn Clock>) -> Self {
        let http = reqwest::Client::builder()
            // A receiver's redirect is not followed: events go where configured.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("keygate-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Webhooks {
            store,
            clock,
            holder: crate::domain::id::new_id("kgp"),
            http,
            expiring_scanned_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now_utc()
    }

    /// Takes or renews the lease for `ttl`; false when another process holds it.
    async fn lease(&self, ttl: Duration) -> Result<bool, StoreError> {
        let now = self.now();
        let until = now + Span::from_std(ttl).unwrap_or_default();
        self.store.take_lease(LEASE, &self.holder, now, until).await
    }

    /// One pass: when this process holds the lease, each receiver is sent what is
    /// due, the receivers side by side.
    pub async fn pass(&self, receivers: &[Receiver]) -> Result<(), PassError> {
        let longest = receivers.iter().map(|r| r.timeout).max();
        let Some(ttl) = longest.map(|t| t + LEASE_MARGIN) else {
            return Ok(());
        };
        if !self.lease(ttl).await? {
            return Ok(());
        }
        let last = self.store.last_event_seq().await?;
        let passes = receivers.iter().map(|r| self.deliver_due(r, last, ttl));
        for outcome in futures_util::future::join_all(passes).await {
            outcome?;
        }
        // After the deliveries, which give a new receiver its cursor first: what
        // this adds is after it, and goes out on the next pass.
        if receivers.iter().any(|r| r.wants("key.expiring")) {
            self.announce_expiring().await?;
        }
        Ok(())
    }

    /// Hourly (and on the first pass): adds a `key.expiring` event for each active
    /// key that expires within a week. Its id names the key and its expiry, so a
    /// key is announced once per expiry however many scans or replicas see it.
    async fn announce_expiring(&self) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        let now_ms = self.clock.now_ms();
        let last = self.expiring_scanned_ms.load(Ordering::Relaxed);
        if last != 0 && now_ms.saturating_sub(last) < EXPIRING_SCAN_EVERY_MS {
            return Ok(());
        }
        let now = self.now();
        let until = now + crate::domain::event::EXPIRING_NOTICE;
        let keys = self.store.keys_expiring(now, until, EXPIRING_BATCH).await?;
        let events: Vec<Event> = keys
            .iter()
            .filter_map(|k| crate::domain::event::key_expiring(k, now))
            .collect();
        if !events.is_empty() {
            self.store.append_events(&events).await?;
        }
        self.expiring_scanned_ms.store(now_ms, Ordering::Relaxed);
        Ok(())
    }

    /// The receiver's cursor; a receiver seen for the first time starts after the
    /// newest event (it gets what happens from now on).
    async fn cursor(&self, r: &Receiver, last: i64) -> Result<Cursor, StoreError> {
        if let Some(c) = self.store.cursor(&r.name).await? {
            return Ok(c);
        }
        let c = Cursor {
            seq: last,
            attempts: 0,
            next_attempt_at: DateTime::<Utc>::UNIX_EPOCH,
        };
        self.store.save_cursor(&r.name, &c, None).await?;
        tracing::info!(receiver = %r.name, from = last, "webhook receiver added: it gets the events after this one");
        Ok(c)
    }

    /// Sends `r` its events after its cursor, in order, until one fails or none is
    /// left.
    async fn deliver_due(&self, r: &Receiver, last: i64, ttl: Duration) -> Result<(), StoreError> {
        let mut cursor = self.cursor(r, last).await?;
        let depth = metrics::WEBHOOK_OUTBOX_DEPTH.with_label_values(&[&r.name]);
        let oldest = metrics::WEBHOOK_OLDEST_UNDELIVERED.with_label_values(&[&r.name]);
        depth.set(last.saturating_sub(cursor.seq));
        if cursor.next_attempt_at > self.now() {
            return Ok(());
        }
        loop {
            let events = self.store.events_after(cursor.seq, BATCH).await?;
            let Some(tail) = events.last().map(|e| e.seq) else {
                oldest.set(0.0);
                return Ok(());
            };
            let skipped_from = cursor.seq;
            for e in &events {
                if !r.wants(&e.kind) {
                    cursor.seq = e.seq;
                    continue;
                }
                // Renewed before each delivery: a process that lost it stops.
                if !self.lease(ttl).await? {
                    return Ok(());
                }
                let delivery = self.attempt(r, e, cursor.attempts + 1).await;
                metrics::WEBHOOK_DELIVERIES
                    .with_label_values(&[delivery.outcome.as_str()])
                    .inc();
                match delivery.outcome {
                    Outcome::Delivered | Outcome::GivenUp => {
                        if delivery.outcome == Outcome::GivenUp {
                            tracing::warn!(receiver = %r.name, event = %e.id, "webhook event given up after 24 h of failures");
                        }
                        cursor = Cursor {
                            seq: e.seq,
                            attempts: 0,
                            next_attempt_at: DateTime::<Utc>::UNIX_EPOCH,
                        };
                        self.store
                            .save_cursor(&r.name, &cursor, Some(&delivery))
                            .await?;
                        depth.set(last.saturating_sub(cursor.seq).max(0));
                    }
                    Outcome::Failed => {
                        let wait = backoff(delivery.attempt);
                        tracing::warn!(
                            receiver = %r.name, event = %e.id, attempt = delivery.attempt,
                            status = ?delivery.status, error = ?delivery.error, retry_in = ?wait,
                            "webhook delivery failed"
                        );
                        // The cursor stays before this event.
                        cursor.attempts = delivery.attempt;
                        cursor.next_attempt_at =
                            self.now() + Span::from_std(wait).unwrap_or_default();
                        self.store
                            .save_cursor(&r.name, &cursor, Some(&delivery))
                            .await?;
                        let age = (self.now() - e.created_at).num_milliseconds().max(0);
                        oldest.set(age as f64 / 1000.0);
                        return Ok(());
                    }
                }
            }
            if cursor.seq == tail && skipped_from != tail {
                // The batch ended on events this receiver does not want.
                self.store.save_cursor(&r.name, &cursor, None).await?;
            }
            if events.len() < BATCH as usize {
                oldest.set(0.0);
                return Ok(());
            }
        }
    }

    /// POSTs `e` to `r`, signed; what the attempt came to.
    async fn attempt(&self, r: &Receiver, e: &Event, attempt: u32) -> Delivery {
        let body = e.body();
        let t = self.now().timestamp();
        let sent = self
            .http
            .post(&r.url)
            .timeout(r.timeout)
            .header("Content-Type", "application/json")
            .header(
                signature::HEADER,
                signature::sign(r.secret.expose().as_bytes(), t, &body),
            )
            .header("Keygate-Event-Id", &e.id)
            .header("Keygate-Event-Type", &e.kind)
            .body(body)
            .send()
            .await;
        let (status, error) = match sent {
            Ok(resp) => {
                let status = resp.status();
                let error = (!status.is_success()).then(|| format!("answered {status}"));
                (Some(status.as_u16()), error)
            }
            // No URL (it may hold a credential) in what is kept: the error's kind.
            Err(err) => (None, Some(transport_error(&err))),
        };
        let outcome = match (&error, self.now() - e.created_at) {
            (None, _) => Outcome::Delivered,
            (Some(_), age) if age >= Span::from_std(RETRY_FOR).unwrap_or_default() => {
                Outcome::GivenUp
            }
            _ => Outcome::Failed,
        };
        Delivery {
            at: self.now(),
            receiver: r.name.clone(),
            event_id: e.id.clone(),
            kind: e.kind.clone(),
            attempt,
            outcome,
            status,
            error,
        }
    }
}

/// What went wrong sending, in words that name no URL.
fn transport_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "no answer within the timeout".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else if e.is_redirect() {
        "answered with a redirect".into()
    } else {
        "the exchange failed".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_from_a_second_to_an_hour() {
        let waits: Vec<u64> = [1, 2, 3, 4, 12, 13, 40, 1000]
            .into_iter()
            .map(|n| backoff(n).as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 2048, 3600, 3600, 3600]);
    }
}
