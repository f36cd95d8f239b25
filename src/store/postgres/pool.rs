//! A small PostgreSQL connection pool for the request path.
//!
//! tokio-postgres pipelines concurrent queries on one connection, so a handful of
//! connections, shared rather than checked out, serve any number of requests. Each
//! connection caches its prepared statements. Connections are opened on the backend
//! runtime ([`crate::io_runtime`]); a dead one is replaced on next use, with a backoff
//! so that while PostgreSQL is down requests fail at once instead of each waiting on a
//! connect. Every query is bounded by the store timeout. Transactions use one separate
//! connection behind a lock (they cannot share a pipelined connection).

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

/// Backoff state of a slot whose connect failed.
#[derive(Default)]
struct Backoff {
    until: Option<Instant>,
    delay: Duration,
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
    let open = crate::io_runtime::run(async move {
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

/// Reopens `slot`'s connection unless another task just did, or a recent failure
/// puts it in backoff (then it fails at once: no request waits on a dead database).
async fn reconnect(
    slot: &Slot,
    target: &PgTarget,
    timeout: Duration,
) -> Result<Arc<Conn>, StoreError> {
    let mut backoff = slot.connecting.lock().await;
    if let Some(c) = live(slot) {
        return Ok(c);
    }
    if backoff.until.is_some_and(|t| Instant::now() < t) {
        return Err(StoreError::Unavailable(
            "postgres unreachable (reconnecting)".into(),
        ));
    }
    match connect(target, timeout).await {
        Ok(client) => {
            *backoff = Backoff::default();
            let conn = Arc::new(Conn {
                client,
                statements: Mutex::new(HashMap::new()),
                stuck: std::sync::atomic::AtomicBool::new(false),
            });
            slot.conn.store(Some(conn.clone()));
            Ok(conn)
        }
        Err(e) => {
            backoff.delay =
                (backoff.delay * 2).clamp(Duration::from_millis(100), Duration::from_secs(5));
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
        }
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
        if let Some(c) = (1..n).find_map(|i| live(&self.slots[(start + i) % n])) {
            let (slots, target, timeout) = (self.slots.clone(), self.target.clone(), self.timeout);
            crate::io_runtime::handle().spawn(async move {
                let _ = reconnect(&slots[start], &target, timeout).await;
            });
            return Ok(c);
        }
        reconnect(&self.slots[start], &self.target, self.timeout).await
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
        let conn = self.conn().await?;
        let stmt = self.prepared(&conn, sql).await?;
        self.on(&conn, conn.client.execute(&stmt, params)).await
    }

    /// Runs a one-off statement built at run time (not cached).
    pub async fn execute_dynamic(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let conn = self.conn().await?;
        self.on(&conn, conn.client.execute(sql, params)).await
    }

    /// The transaction connection, reconnected if it died. Hold the guard for the
    /// whole transaction.
    pub async fn tx_client(
        &self,
    ) -> Result<tokio::sync::MutexGuard<'_, Option<Client>>, StoreError> {
        let mut guard = self.tx.lock().await;
        if guard.as_ref().is_none_or(|c| c.is_closed()) {
            *guard = Some(connect(&self.target, self.timeout).await?);
        }
        Ok(guard)
    }
}
