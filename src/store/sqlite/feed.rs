//! The SQLite change feed: a thread that follows the `key_changes` log (migration
//! 0005) every [`POLL_EVERY`] and hands each changed key id to a [`ChangeHandler`],
//! so a revoke made by `keygate keys revoke` (or by another keygate on the same file)
//! applies to this process's cache within a poll, not after `cache.ttl`.
//!
//! The log is appended by triggers in the change's own transaction, so nothing
//! committed is missed. Rows older than [`KEEP`] are pruned; a follower that finds
//! rows it never saw pruned (it was stopped longer than that) hands over
//! [`StoreChange::All`]. Until it has first found where the log ends, and from a
//! failed read until a read succeeds again, it says [`StoreChange::Unwatched`]; the
//! read that finds the log again hands over [`StoreChange::All`].

use crate::clock::Clock;
use crate::obs::metrics;
use crate::store::{ChangeHandler, StoreChange};
use rusqlite::{params, Connection};
use std::path::PathBuf;
use std::sync::Weak;
use std::time::{Duration, Instant};

/// How often the log is read.
pub const POLL_EVERY: Duration = Duration::from_millis(200);
/// How long a change stays in the log.
const KEEP: Duration = Duration::from_secs(600);
/// How often old rows are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Follows the log of the database at `path` until `alive` can no longer be
/// upgraded (the store was dropped).
pub fn spawn(path: PathBuf, handler: ChangeHandler, alive: Weak<()>) {
    let spawned = std::thread::Builder::new()
        .name("keygate-sqlite-changes".into())
        .spawn(move || follow(&path, &handler, &alive));
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the SQLite change feed; changes made elsewhere show after cache.ttl");
    }
}

fn now_ms() -> i64 {
    crate::clock::SystemClock.now_ms() as i64
}

fn open(path: &PathBuf) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(2))?;
    Ok(conn)
}

/// The reading loop; reconnects (and hands over `All`) after a failure.
fn follow(path: &PathBuf, handler: &ChangeHandler, alive: &Weak<()>) {
    handler(StoreChange::Unwatched);
    let mut last: Option<i64> = None;
    let mut conn: Option<Connection> = None;
    let mut pruned_at = Instant::now();
    while alive.upgrade().is_some() {
        if conn.is_none() {
            match open(path) {
                Ok(c) => conn = Some(c),
                Err(e) => tracing::warn!(error = %e, "SQLite change feed cannot open the database"),
            }
        }
        if let Some(c) = &conn {
            match read(c, &mut last, handler) {
                Ok(()) => metrics::KEY_CHANGE_FEED_UP.set(1),
                Err(e) => {
                    tracing::warn!(error = %e, "SQLite change feed failed; reopening");
                    metrics::KEY_CHANGE_FEED_UP.set(0);
                    conn = None;
                    // Whatever happens until the log is read again is unknown.
                    last = None;
                    handler(StoreChange::Unwatched);
                }
            }
            if pruned_at.elapsed() >= PRUNE_EVERY {
                pruned_at = Instant::now();
                let cutoff = now_ms() - KEEP.as_millis() as i64;
                if let Some(c) = &conn {
                    if let Err(e) =
                        c.execute("DELETE FROM key_changes WHERE changed_at < ?1", [cutoff])
                    {
                        tracing::debug!(error = %e, "could not prune the key change log");
                    }
                }
            }
        }
        std::thread::sleep(POLL_EVERY);
    }
    metrics::KEY_CHANGE_FEED_UP.set(0);
}

/// Delivers the changes after `last`. The first read only finds where the log ends.
fn read(
    conn: &Connection,
    last: &mut Option<i64>,
    handler: &ChangeHandler,
) -> rusqlite::Result<()> {
    let Some(seen) = *last else {
        let end: i64 =
            conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM key_changes", [], |r| {
                r.get(0)
            })?;
        *last = Some(end);
        // Followed from here on; whatever was cached before may have missed a change.
        handler(StoreChange::All);
        return Ok(());
    };
    let oldest: Option<i64> =
        conn.query_row("SELECT MIN(seq) FROM key_changes", [], |r| r.get(0))?;
    if oldest.is_some_and(|o| o > seen + 1) {
        // Rows after `seen` were pruned before they were read.
        handler(StoreChange::All);
    }
    let mut stmt = conn.prepare_cached(
        "SELECT seq, key_id, changed_at FROM key_changes WHERE seq > ?1 ORDER BY seq LIMIT 1000",
    )?;
    let rows = stmt.query_map(params![seen], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    for row in rows {
        let (seq, id, at) = row?;
        handler(StoreChange::logged(&id, u64::try_from(at).ok()));
        *last = Some(seq);
    }
    Ok(())
}
