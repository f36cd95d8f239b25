//! Events the request path announces — `rate_limit.exceeded`, `credits.low` — with
//! no change of its own to ride on: handed to a background writer through a
//! bounded queue (never a store write on the request path), each id once.
//!
//! Their ids are made from what they are about (the key or account, the window or
//! threshold, its instance), so the same event announced again, by this process or
//! another replica, is one row in the outbox: "once per key per window" holds
//! across replicas. The process remembers the ids it sent for an hour, so a flood
//! of refusals costs a lookup each, not a queue slot.

use crate::domain::event::Event;
use crate::store::events::EventStore;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Events that may wait for the writer; more are dropped (and counted).
const QUEUE: usize = 10_000;
/// Events written in one transaction at most.
const BATCH: usize = 200;

/// The request path's end of the queue.
#[derive(Clone)]
pub struct EventSink {
    tx: mpsc::Sender<Event>,
    sent: moka::sync::Cache<String, ()>,
}

/// The writer's end: drained by [`EventSink::run_writer`].
pub struct EventQueue(mpsc::Receiver<Event>);

impl EventSink {
    /// A sink and the queue its writer drains.
    pub fn new() -> (EventSink, EventQueue) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let sent = moka::sync::Cache::builder()
            .max_capacity(100_000)
            .time_to_live(Duration::from_secs(3600))
            .build();
        (EventSink { tx, sent }, EventQueue(rx))
    }

    /// Announces the event `id` (made by `make` only when it was not announced
    /// already): queued for the outbox, never waited for.
    pub fn announce(&self, id: String, make: impl FnOnce() -> Event) {
        if self.sent.contains_key(&id) {
            return;
        }
        self.sent.insert(id.clone(), ());
        let event = Event { id, ..make() };
        if self.tx.try_send(event).is_err() {
            crate::obs::metrics::WEBHOOK_EVENTS_DROPPED.inc();
        }
    }
}

impl EventQueue {
    /// Writes what is queued to `store`, in batches, until every sink is gone. A
    /// batch the store refuses is tried again a few times, then dropped (and
    /// counted): these events report, they change nothing.
    pub async fn run_writer(mut self, store: Arc<dyn EventStore>) {
        let mut batch = Vec::with_capacity(BATCH);
        while self.0.recv_many(&mut batch, BATCH).await > 0 {
            let mut tries = 0;
            while let Err(e) = store.append_events(&batch).await {
                tries += 1;
                if tries == 5 {
                    tracing::warn!(error = %e, dropped = batch.len(), "could not write events to the outbox");
                    crate::obs::metrics::WEBHOOK_EVENTS_DROPPED.inc_by(batch.len() as u64);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200 * tries)).await;
            }
            batch.clear();
        }
    }
}
