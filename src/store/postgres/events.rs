//! The webhook outbox on PostgreSQL ([`EventStore`]): the same model as SQLite's;
//! the lease is one row, taken with a conditional upsert, so one replica delivers
//! at a time.

use super::pool::db_error;
use super::{write_event, PostgresStore};
use crate::domain::event::Event;
use crate::store::events::{Cursor, Delivery, EventStore, Outcome};
use crate::store::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio_postgres::Row;

fn event(r: &Row) -> Result<Event, tokio_postgres::Error> {
    let data: String = r.try_get(4)?;
    Ok(Event {
        seq: r.try_get(0)?,
        id: r.try_get(1)?,
        kind: r.try_get(2)?,
        created_at: r.try_get(3)?,
        data: serde_json::from_str(&data).unwrap_or_default(),
    })
}

fn delivery(r: &Row) -> Result<Delivery, tokio_postgres::Error> {
    let outcome: String = r.try_get(5)?;
    let attempt: i32 = r.try_get(4)?;
    let status: Option<i32> = r.try_get(6)?;
    Ok(Delivery {
        at: r.try_get(0)?,
        receiver: r.try_get(1)?,
        event_id: r.try_get(2)?,
        kind: r.try_get(3)?,
        attempt: u32::try_from(attempt).unwrap_or_default(),
        outcome: Outcome::parse(&outcome),
        status: status.and_then(|s| u16::try_from(s).ok()),
        error: r.try_get(7)?,
    })
}

#[async_trait]
impl EventStore for PostgresStore {
    async fn append_events(&self, events: &[Event]) -> Result<(), StoreError> {
        let work = async |client: &mut tokio_postgres::Client| {
            let tx = client.transaction().await?;
            for e in events {
                write_event(&tx, e).await?;
            }
            tx.commit().await
        };
        self.pool.write_transaction("events", work).await
    }

    async fn events_after(&self, seq: i64, limit: u32) -> Result<Vec<Event>, StoreError> {
        const SQL: &str = "SELECT seq, id, type, created_at, data FROM events \
             WHERE seq > $1 ORDER BY seq LIMIT $2";
        let limit = i64::from(limit);
        let rows = self.pool.query(SQL, &[&seq, &limit]).await?;
        rows.iter()
            .map(event)
            .collect::<Result<_, _>>()
            .map_err(db_error)
    }

    async fn last_event_seq(&self) -> Result<i64, StoreError> {
        let rows = self
            .pool
            .query("SELECT COALESCE(MAX(seq), 0)::bigint FROM events", &[])
            .await?;
        rows.first()
            .map(|r| r.try_get(0))
            .transpose()
            .map(|s| s.unwrap_or(0))
            .map_err(db_error)
    }

    async fn cursor(&self, receiver: &str) -> Result<Option<Cursor>, StoreError> {
        const SQL: &str =
            "SELECT seq, attempts, next_attempt_at FROM webhook_cursors WHERE receiver = $1";
        let row = self.pool.query_opt(SQL, &[&receiver]).await?;
        row.map(|r| {
            let attempts: i32 = r.try_get(1)?;
            Ok(Cursor {
                seq: r.try_get(0)?,
                attempts: u32::try_from(attempts).unwrap_or_default(),
                next_attempt_at: r.try_get(2)?,
            })
        })
        .transpose()
        .map_err(db_error)
    }

    async fn save_cursor(
        &self,
        receiver: &str,
        cursor: &Cursor,
        delivery: Option<&Delivery>,
    ) -> Result<(), StoreError> {
        let attempts = i32::try_from(cursor.attempts).unwrap_or(i32::MAX);
        let work = async |client: &mut tokio_postgres::Client| {
            let tx = client.transaction().await?;
            tx.execute(
                "INSERT INTO webhook_cursors (receiver, seq, attempts, next_attempt_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (receiver) DO UPDATE SET \
                 seq = EXCLUDED.seq, attempts = EXCLUDED.attempts, \
                 next_attempt_at = EXCLUDED.next_attempt_at",
                &[&receiver, &cursor.seq, &attempts, &cursor.next_attempt_at],
            )
            .await?;
            if let Some(d) = delivery {
                let attempt = i32::try_from(d.attempt).unwrap_or(i32::MAX);
                let status = d.status.map(i32::from);
                tx.execute(
                    "INSERT INTO webhook_deliveries \
                     (at, receiver, event_id, type, attempt, outcome, status, error) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    &[
                        &d.at,
                        &d.receiver,
                        &d.event_id,
                        &d.kind,
                        &attempt,
                        &d.outcome.as_str(),
                        &status,
                        &d.error,
                    ],
                )
                .await?;
            }
            tx.commit().await
        };
        self.pool.write_transaction("webhook cursor", work).await
    }

    async fn recent_deliveries(&self, limit: u32) -> Result<Vec<Delivery>, StoreError> {
        const SQL: &str = "SELECT at, receiver, event_id, type, attempt, outcome, status, error \
             FROM webhook_deliveries ORDER BY id DESC LIMIT $1";
        let limit = i64::from(limit);
        let rows = self.pool.query(SQL, &[&limit]).await?;
        rows.iter()
            .map(delivery)
            .collect::<Result<_, _>>()
            .map_err(db_error)
    }

    async fn take_lease(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "INSERT INTO leases (name, holder, until) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, until = EXCLUDED.until \
             WHERE leases.holder = EXCLUDED.holder OR leases.until <= $4";
        let n = self
            .pool
            .execute(SQL, &[&name, &holder, &until, &now])
            .await?;
        Ok(n == 1)
    }

    async fn keys_expiring(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<crate::domain::KeyRecord>, StoreError> {
        const SQL: &str = "SELECT id, name, prefix, last4, tier, scopes, environment, org, owner, \
             status, credits, allowed_ips, expires_at, created_at, last_used_at, \
             refill_amount, refill_every, refilled_at, account, cap \
             FROM api_keys WHERE status = 'active' AND expires_at > $1 AND expires_at <= $2 \
             ORDER BY expires_at LIMIT $3";
        let limit = i64::from(limit);
        let rows = self.pool.query(SQL, &[&after, &until, &limit]).await?;
        rows.iter().map(super::decode).collect()
    }

    async fn prune_events(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        let limit = i64::from(limit);
        let events = self
            .pool
            .execute(
                "DELETE FROM events WHERE seq IN \
                   (SELECT seq FROM events WHERE created_at < $1 ORDER BY seq LIMIT $2)",
                &[&before, &limit],
            )
            .await?;
        let deliveries = self
            .pool
            .execute(
                "DELETE FROM webhook_deliveries WHERE id IN \
                   (SELECT id FROM webhook_deliveries WHERE at < $1 ORDER BY id LIMIT $2)",
                &[&before, &limit],
            )
            .await?;
        Ok(events + deliveries)
    }
}
