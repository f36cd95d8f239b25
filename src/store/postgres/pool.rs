//! A small PostgreSQL connection pool for the request path.
//!
//! tokio-postgres pipelines concurrent queries on one connection, so a handful of
//! connections, shared rather than checked out, serve any number of requests. Each
//! connection caches its prepared statements. Connections are opened on the backend
//! runtime ([`crate::net::io_runtime`]); a dead one is replaced on next use. Every query is
//! bounded by the store timeout. Transactions use one separate connection behind a
//! lock (they cannot share a pipelined connection).
//!
//! While no connection is live, one connect is attempted at a time, and each call is
//! answered by an attempt that started after it arrived: a database that is back is
//! seen by the next request, never after a backoff (a replica must not serve cached
//! keys from memory once the store answers again). Attempts that fail fast (refused,
//! closed, "starting up") are at least [`FAST_RETRY`] apart, so a call waits at most
//! that long for the next one; attempts that time out (packets vanish) back off
//! exponentially up to 5 s, and calls meanwhile fail at once rather than each waiting
//! on a connect. When a connect succeeds after failures, `reachable` is notified (the
//! change feed listens again at once).

use super::target::PgTarget;
use crate::store::StoreError;
use arc_swap::ArcSwapOption;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Statement};

/// One open connection and its prepared statements.
pub struct Conn {
    /// The client end of the connection.
    pub client: Client,
    statements: Mutex<HashMap<&'static str, Statement>>,
    /// Set when a query on it timed out: queries pipelined behind a stuck one would
    /// wait too, so the connection is replaced rather than reused.
    stuck: std::sync::atomic::AtomicBool,
}

/// Least time between two connect attempts that failed fast.
pub const FAST_RETRY: Duration = Duration::from_millis(10);

/// Connect attempts of a slot.
#[derive(Default)]
struct Backoff {
    /// No new attempt before this.
    until: Option<Instant>,
    delay: Duration,
    /// The last attempt failed fast: a call waits for the next one rather than
    /// failing at once.
    fast: bool,
    /// When the last attempt started: its outcome answers every call that arrived
    /// before.
    last_attempt: Option<Instant>,
    /// The last attempt failed.
    failing: bool,
}

/// A connect failing within this time failed fast (the database answered).
fn fast_failure(timeout: Duration) -> Duration {
    (timeout / 2).min(Duration::from_millis(250))
}

fn unreachable() -> StoreError {
    StoreError::Unavailable("postgres unreachable (reconnecting)".into())
}

struct Slot {
    conn: ArcSwapOption<Conn>,
    connecting: tokio::sync::Mutex<Backoff>,
}

/// Shared connections to one database.
pub struct PgPool {
    target: PgTarget,
    slots: Arc<Vec<Slot>>,
    tx: tokio::sync::Mutex<Option<Client>>,
    next: AtomicUsize,
    timeout: Duration,
    /// Notified when a connect succeeds after failures.
    reachable: Arc<tokio::sync::Notify>,
    /// How the writes are going.
    writes: crate::store::write_health::WriteHealth,
}

/// Maps a driver error to the store's error (a unique violation is a conflict).
pub fn db_error(e: tokio_postgres::Error) -> StoreError {
    if let Some(code) = e.code() {
        if *code == tokio_postgres::error::SqlState::UNIQUE_VIOLATION {
            return StoreError::Conflict(e.to_string());
        }
    }
    let detail = match e.as_db_error() {
        Some(d) => d.message().to_string(),
        // The cause too: "error performing TLS handshake: invalid peer certificate: ...".
        None => {
            let mut text = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                text = format!("{text}: {c}");
                cause = c.source();
            }
            text
        }
    };
    StoreError::Unavailable(format!("postgres: {detail}"))
}

/// Opens one connection on the backend runtime; its driver task lives there.
pub async fn connect(target: &PgTarget, timeout: Duration) -> Result<Client, StoreError> {
    let target = target.clone();
    let open = crate::net::io_runtime::run(async move {
        let (client, connection) = target.config.connect(target.tls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "postgres connection closed");
            }
        });
        Ok::<_, tokio_postgres::Error>(client)
    });
    match tokio::time::timeout(timeout, open).await {
        Ok(Ok(Ok(client))) => Ok(client),
        Ok(Ok(Err(e))) => Err(db_error(e)),
        Ok(Err(e)) => Err(StoreError::Unavailable(e.to_string())),
        Err(_) => Err(StoreError::Unavailable(format!(
            "postgres: no connection within {timeout:?}"
        ))),
    }
}

fn live(slot: &Slot) -> Option<Arc<Conn>> {
    slot.conn
        .load_full()
        .filter(|c| !c.client.is_closed() && !c.stuck.load(Ordering::Relaxed))
}

/// Reopens `slot`'s connection for a call that `arrived` then, unless another task
/// just did. An attempt that started after the call arrived and failed answers it;
/// otherwise the call makes the next attempt itself, after waiting out a fast
/// failure's [`FAST_RETRY`]. During a slow failure's backoff it fails at once: no
/// request waits on a database whose packets vanish.
async fn reconnect(
    slot: &Slot,
    target: &PgTarget,
    timeout: Duration,
    reachable: &tokio::sync::Notify,
    arrived: Instant,
) -> Result<Arc<Conn>, StoreError> {
    let mut backoff = slot.connecting.lock().await;
    if let Some(c) = live(slot) {
        return Ok(c);
    }
    if backoff.last_attempt.is_some_and(|t| t >= arrived) {
        return Err(unreachable());
    }
    if let Some(until) = backoff.until.filter(|t| Instant::now() < *t) {
        if !backoff.fast {
            return Err(unreachable());
        }
        tokio::time::sleep_until(until.into()).await;
    }
    let started = Instant::now();
    backoff.last_attempt = Some(started);
    match connect(target, timeout).await {
        Ok(client) => {
            if backoff.failing {
                reachable.notify_one();
            }
            *backoff = Backoff {
                last_attempt: Some(started),
                ..Backoff::default()
            };
            let conn = Arc::new(Conn {
                client,
                statements: Mutex::new(HashMap::new()),
                stuck: std::sync::atomic::AtomicBool::new(false),
            });
            slot.conn.store(Some(conn.clone()));
            Ok(conn)
        }
        Err(e) => {
            backoff.failing = true;
            backoff.fast = started.elapsed() < fast_failure(timeout);
            backoff.delay = if backoff.fast {
                FAST_RETRY
            } else {
                (backoff.delay * 2).clamp(Duration::from_millis(100), Duration::from_secs(5))
            };
            backoff.until = Some(Instant::now() + backoff.delay);
            Err(e)
        }
    }
}

impl PgPool {
    /// A pool of `size` connections (opened lazily), each query bounded by `timeout`.
    pub fn new(target: PgTarget, size: usize, timeout: Duration) -> Self {
        PgPool {
            target,
            slots: Arc::new(
                (0..size.max(1))
                    .map(|_| Slot {
                        conn: ArcSwapOption::empty(),
                        connecting: tokio::sync::Mutex::new(Backoff::default()),
                    })
                    .collect(),
            ),
            tx: tokio::sync::Mutex::new(None),
            next: AtomicUsize::new(0),
            timeout,
            reachable: Arc::new(tokio::sync::Notify::new()),
            writes: Default::default(),
        }
    }

    /// How the writes are going.
    pub fn write_health(&self) -> &crate::store::write_health::WriteHealth {
        &self.writes
    }

    /// Notified when a connect succeeds after failures (the database answers again).
    pub fn reachable(&self) -> Arc<tokio::sync::Notify> {
        self.reachable.clone()
    }

    /// The connection settings.
    pub fn target(&self) -> &PgTarget {
        &self.target
    }

    /// The per-query timeout.
    /// A connection of its own, outside the pool, for long work (an import) that
    /// must not hold a pooled or transaction connection.
    pub async fn dedicated(&self) -> Result<Client, StoreError> {
        connect(&self.target, self.timeout).await
    }

    /// The configured statement timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A live connection: the next slot's. When that slot's connection died, it is
    /// reopened in the background while another live one serves; when none is live,
    /// this call reopens one itself.
    async fn conn(&self) -> Result<Arc<Conn>, StoreError> {
        let n = self.slots.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        if let Some(c) = live(&self.slots[start]) {
            return Ok(c);
        }
        let arrived = Instant::now();
        if let Some(c) = (1..n).find_map(|i| live(&self.slots[(start + i) % n])) {
            let (slots, target, timeout) = (self.slots.clone(), self.target.clone(), self.timeout);
            let reachable = self.reachable.clone();
            crate::net::io_runtime::handle().spawn(async move {
                let _ = reconnect(&slots[start], &target, timeout, &reachable, arrived).await;
            });
            return Ok(c);
        }
        // No connection is live: every call goes through one slot, so one attempt
        // at a time is made, however many calls are waiting.
        reconnect(
            &self.slots[0],
            &self.target,
            self.timeout,
            &self.reachable,
            arrived,
        )
        .await
    }

    /// Runs a query on `conn`, bounded by the store timeout; a timeout retires the
    /// connection.
    async fn on<T>(
        &self,
        conn: &Conn,
        fut: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r.map_err(db_error),
            Err(_) => {
                conn.stuck.store(true, Ordering::Relaxed);
                Err(StoreError::Unavailable(format!(
                    "postgres: no answer within {:?}",
                    self.timeout
                )))
            }
        }
    }

    async fn prepared(&self, conn: &Conn, sql: &'static str) -> Result<Statement, StoreError> {
        if let Some(s) = conn.statements.lock().get(sql) {
            return Ok(s.clone());
        }
        let stmt = self.on(conn, conn.client.prepare(sql)).await?;
        conn.statements.lock().insert(sql, stmt.clone());
        Ok(stmt)
    }

    /// Runs a prepared (and cached) query.
    pub async fn query(
        &self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let conn = self.conn().await?;
        let stmt = self.prepared(&conn, sql).await?;
        self.on(&conn, conn.client.query(&stmt, params)).await
    }

    /// Runs a prepared (and cached) query returning at most one row.
    pub async fn query_opt(
        &self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, StoreError> {
        let conn = self.conn().await?;
        let stmt = self.prepared(&conn, sql).await?;
        self.on(&conn, conn.client.query_opt(&stmt, params)).await
    }

    /// Runs a prepared (and cached) statement; returns the rows it changed.
    pub async fn execute(
        &self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let written = async {
            let conn = self.conn().await?;
            let stmt = self.prepared(&conn, sql).await?;
            self.on(&conn, conn.client.execute(&stmt, params)).await
        };
        self.writes.record(written.await)
    }

    /// The transaction connection, reconnected if it died. Hold the guard for the
    /// whole transaction.
    async fn tx_client(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Client>>, StoreError> {
        let mut guard = self.tx.lock().await;
        if guard.as_ref().is_none_or(|c| c.is_closed()) {
            *guard = Some(connect(&self.target, self.timeout).await?);
        }
        Ok(guard)
    }

    /// Runs `work` (which opens and commits its own transaction) on the transaction
    /// connection, bounded by the store timeout, and records its outcome as a write.
    /// On a timeout the connection is dropped (the transaction may still hold
    /// locks) and the call fails with "postgres: `what` timed out".
    pub async fn write_transaction<T>(
        &self,
        what: &str,
        work: impl AsyncFnOnce(&mut Client) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, StoreError> {
        let mut guard = self.tx_client().await?;
        let Some(client) = guard.as_mut() else {
            return Err(StoreError::Unavailable("postgres: no connection".into()));
        };
        let outcome = match tokio::time::timeout(self.timeout, work(client)).await {
            Ok(r) => r.map_err(db_error),
            Err(_) => {
                *guard = None;
                Err(StoreError::Unavailable(format!(
                    "postgres: {what} timed out"
                )))
            }
        };
        self.writes.record(outcome)
    }
}
