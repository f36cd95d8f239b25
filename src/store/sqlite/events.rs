//! The webhook outbox on SQLite ([`EventStore`]).

use super::{unavailable, write_event, SqliteStore};
use crate::domain::event::Event;
use crate::store::events::{Cursor, Delivery, EventStore, Outcome};
use crate::store::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{params, OptionalExtension};

fn at(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn append_events(&self, events: &[Event]) -> Result<(), StoreError> {
        let events = events.to_vec();
        self.with_writer(move |c| {
            let tx =
                rusqlite::Transaction::new_unchecked(c, rusqlite::TransactionBehavior::Immediate)
                    .map_err(unavailable)?;
            events.iter().try_for_each(|e| write_event(&tx, e))?;
            tx.commit().map_err(unavailable)
        })
        .await
    }

    async fn events_after(&self, seq: i64, limit: u32) -> Result<Vec<Event>, StoreError> {
        self.with_conn(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT seq, id, type, created_at, data FROM events \
                     WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                )
                .map_err(unavailable)?;
            let rows = stmt
                .query_map(params![seq, limit], |r| {
                    let data: String = r.get(4)?;
                    Ok(Event {
                        seq: r.get(0)?,
                        id: r.get(1)?,
                        kind: r.get(2)?,
                        created_at: at(r.get(3)?),
                        data: serde_json::from_str(&data).unwrap_or_default(),
                    })
                })
                .map_err(unavailable)?;
            rows.map(|r| r.map_err(unavailable)).collect()
        })
        .await
    }

    async fn last_event_seq(&self) -> Result<i64, StoreError> {
        self.with_conn(|c| {
            c.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))
                .map_err(unavailable)
        })
        .await
    }

    async fn cursor(&self, receiver: &str) -> Result<Option<Cursor>, StoreError> {
        let receiver = receiver.to_string();
        self.with_conn(move |c| {
            c.query_row(
                "SELECT seq, attempts, next_attempt_at FROM webhook_cursors WHERE receiver = ?1",
                [&receiver],
                |r| {
                    Ok(Cursor {
                        seq: r.get(0)?,
                        attempts: r.get(1)?,
                        next_attempt_at: at(r.get(2)?),
                    })
                },
            )
            .optional()
            .map_err(unavailable)
        })
        .await
    }

    async fn save_cursor(
        &self,
        receiver: &str,
        cursor: &Cursor,
        delivery: Option<&Delivery>,
    ) -> Result<(), StoreError> {
        let (receiver, cursor, delivery) =
            (receiver.to_string(), cursor.clone(), delivery.cloned());
        self.with_writer(move |c| {
            let tx =
                rusqlite::Transaction::new_unchecked(c, rusqlite::TransactionBehavior::Immediate)
                    .map_err(unavailable)?;
            tx.execute(
                "INSERT INTO webhook_cursors (receiver, seq, attempts, next_attempt_at) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (receiver) DO UPDATE SET \
                 seq = excluded.seq, attempts = excluded.attempts, \
                 next_attempt_at = excluded.next_attempt_at",
                params![
                    receiver,
                    cursor.seq,
                    cursor.attempts,
                    cursor.next_attempt_at.timestamp_millis()
                ],
            )
            .map_err(unavailable)?;
            if let Some(d) = &delivery {
                tx.execute(
                    "INSERT INTO webhook_deliveries \
                     (at, receiver, event_id, type, attempt, outcome, status, error) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        d.at.timestamp_millis(),
                        d.receiver,
                        d.event_id,
                        d.kind,
                        d.attempt,
                        d.outcome.as_str(),
                        d.status,
                        d.error
                    ],
                )
                .map_err(unavailable)?;
            }
            tx.commit().map_err(unavailable)
        })
        .await
    }

    async fn recent_deliveries(&self, limit: u32) -> Result<Vec<Delivery>, StoreError> {
        self.with_conn(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT at, receiver, event_id, type, attempt, outcome, status, error \
                     FROM webhook_deliveries ORDER BY id DESC LIMIT ?1",
                )
                .map_err(unavailable)?;
            let rows = stmt
                .query_map([limit], |r| {
                    let outcome: String = r.get(5)?;
                    Ok(Delivery {
                        at: at(r.get(0)?),
                        receiver: r.get(1)?,
                        event_id: r.get(2)?,
                        kind: r.get(3)?,
                        attempt: r.get(4)?,
                        outcome: Outcome::parse(&outcome),
                        status: r.get(6)?,
                        error: r.get(7)?,
                    })
                })
                .map_err(unavailable)?;
            rows.map(|r| r.map_err(unavailable)).collect()
        })
        .await
    }

    async fn take_lease(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (name, holder) = (name.to_string(), holder.to_string());
        let (now, until) = (now.timestamp_millis(), until.timestamp_millis());
        self.with_writer(move |c| {
            c.execute(
                "INSERT INTO leases (name, holder, until) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until \
                 WHERE leases.holder = excluded.holder OR leases.until <= ?4",
                params![name, holder, until, now],
            )
            .map(|n| n == 1)
            .map_err(unavailable)
        })
        .await
    }

    async fn keys_expiring(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<crate::domain::KeyRecord>, StoreError> {
        let (after, until) = (after.timestamp(), until.timestamp());
        self.with_conn(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {} FROM api_keys WHERE status = 'active' \
                     AND expires_at > ?1 AND expires_at <= ?2 ORDER BY expires_at LIMIT ?3",
                    super::COLUMNS
                ))
                .map_err(unavailable)?;
            let rows = stmt
                .query_map(params![after, until, limit], super::decode)
                .map_err(unavailable)?;
            rows.map(|r| r.map_err(unavailable)?).collect()
        })
        .await
    }

    async fn prune_events(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        let before = before.timestamp_millis();
        self.with_writer(move |c| {
            let events = c
                .execute(
                    "DELETE FROM events WHERE seq IN \
                       (SELECT seq FROM events WHERE created_at < ?1 ORDER BY seq LIMIT ?2)",
                    params![before, limit],
                )
                .map_err(unavailable)?;
            let deliveries = c
                .execute(
                    "DELETE FROM webhook_deliveries WHERE id IN \
                       (SELECT id FROM webhook_deliveries WHERE at < ?1 ORDER BY id LIMIT ?2)",
                    params![before, limit],
                )
                .map_err(unavailable)?;
            Ok((events + deliveries) as u64)
        })
        .await
    }
}
