//! The webhook outbox: the [`EventStore`] trait (docs/operations.md, Webhooks).
//!
//! Events are rows of the `events` table, in `seq` order. Each receiver reads them
//! from its own [`Cursor`]; a delivery's outcome and the cursor's move are written
//! together, so a crash repeats at most the delivery in flight (at least once). A
//! [lease](EventStore::take_lease) lets one process deliver at a time.

use super::StoreError;
use crate::domain::event::Event;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// Where a receiver is in the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// The last event dealt with (delivered, given up, or not wanted).
    pub seq: i64,
    /// Failed attempts at the event after `seq`.
    pub attempts: u32,
    /// No attempt before this.
    pub next_attempt_at: DateTime<Utc>,
}

/// How an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver answered 2xx.
    Delivered,
    /// Another status, or no answer: tried again later.
    Failed,
    /// Failed for longer than the retry period: not tried again.
    GivenUp,
}

impl Outcome {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Failed => "failed",
            Outcome::GivenUp => "given_up",
        }
    }

    /// The outcome named `s` (a failure when unknown).
    pub fn parse(s: &str) -> Self {
        match s {
            "delivered" => Outcome::Delivered,
            "given_up" => Outcome::GivenUp,
            _ => Outcome::Failed,
        }
    }
}

/// One attempt at delivering one event to one receiver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// When it was made.
    pub at: DateTime<Utc>,
    /// The receiver's name.
    pub receiver: String,
    /// The event's id and type.
    pub event_id: String,
    /// The event's type.
    pub kind: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// How it ended.
    pub outcome: Outcome,
    /// The receiver's status, when it answered.
    pub status: Option<u16>,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

/// The outbox, the receivers' cursors, the deliveries and the delivery lease.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Adds `events` (one whose id is stored already is skipped), in one transaction.
    async fn append_events(&self, events: &[Event]) -> Result<(), StoreError>;
    /// At most `limit` events after `seq`, oldest first.
    async fn events_after(&self, seq: i64, limit: u32) -> Result<Vec<Event>, StoreError>;
    /// The newest event's `seq` (0 when there is none).
    async fn last_event_seq(&self) -> Result<i64, StoreError>;
    /// The receiver's cursor, if it has one.
    async fn cursor(&self, receiver: &str) -> Result<Option<Cursor>, StoreError>;
    /// Moves the receiver's cursor to `cursor` and records `delivery` (if any), in
    /// one transaction.
    async fn save_cursor(
        &self,
        receiver: &str,
        cursor: &Cursor,
        delivery: Option<&Delivery>,
    ) -> Result<(), StoreError>;
    /// The newest `limit` deliveries, newest first.
    async fn recent_deliveries(&self, limit: u32) -> Result<Vec<Delivery>, StoreError>;
    /// Takes (or keeps) the lease `name` for `holder` until `until`, unless another
    /// holder has it past `now`. True when `holder` has it.
    async fn take_lease(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Active keys whose `expires_at` falls after `after` and at or before
    /// `until`, at most `limit`, soonest first (for `key.expiring`).
    async fn keys_expiring(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<crate::domain::KeyRecord>, StoreError>;
    /// Deletes at most `limit` events and deliveries made before `before`; returns
    /// how many.
    async fn prune_events(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError>;
}
