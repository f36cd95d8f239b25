//! The change feed: one connection that `LISTEN`s on `keygate_keys` and hands each
//! announced key id to a [`ChangeHandler`]. The announcement comes from a trigger
//! (migration 0002), so it is sent when the change commits, whoever made it.
//!
//! The connection is pinged every few seconds; when it is lost, it is reopened with a
//! backoff, cut short as soon as the request path's pool reaches the database again
//! (`reachable`): the feed listens again the moment the store answers. The handler
//! gets [`StoreChange::Unwatched`] before the feed first listens and whenever it
//! stops (a change made meanwhile goes unannounced, so no cached key may be trusted
//! without reading it again), and [`StoreChange::All`] each time it starts listening,
//! the first time included: every key cached before must be re-read.

use super::target::PgTarget;
use crate::obs::metrics;
use crate::store::{ChangeHandler, StoreChange};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, Notify};
use tokio_postgres::AsyncMessage;

/// The channel the trigger announces on.
pub const CHANNEL: &str = "keygate_keys";

const PING_EVERY: Duration = Duration::from_secs(3);

/// Parses a notification payload: `<id> <unix ms>` (a key), `account:<id> <unix ms>`
/// (an account).
pub fn parse_payload(payload: &str) -> Option<StoreChange> {
    let mut parts = payload.split(' ');
    let id = parts.next().filter(|id| !id.is_empty())?;
    let changed_at_ms = parts.next().and_then(|t| t.parse().ok());
    Some(StoreChange::logged(id, changed_at_ms))
}

/// Runs the feed on the backend runtime until `stop` is dropped. `reachable` is
/// notified when the pool reconnects after a failure: a reconnect waiting out its
/// backoff goes at once.
pub fn spawn(
    target: PgTarget,
    timeout: Duration,
    handler: ChangeHandler,
    stop: watch::Receiver<()>,
    reachable: Arc<Notify>,
) {
    let mut target = target;
    // Named, so operators can see (and tests can find) the feed in pg_stat_activity.
    target.config.application_name("keygate-change-feed");
    handler(StoreChange::Unwatched);
    crate::net::io_runtime::handle().spawn(run(target, timeout, handler, stop, reachable));
}

async fn run(
    target: PgTarget,
    timeout: Duration,
    handler: ChangeHandler,
    mut stop: watch::Receiver<()>,
    reachable: Arc<Notify>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let session = listen_once(&target, timeout, &handler);
        tokio::select! {
            _ = stop.changed() => break,
            ended = session => {
                if matches!(ended, Ended::Lost(_)) {
                    handler(StoreChange::Unwatched);
                }
                metrics::KEY_CHANGE_FEED_UP.set(0);
                match ended {
                    Ended::Lost(reason) => {
                        tracing::warn!(%reason, "key change feed lost; reconnecting");
                        backoff = Duration::from_millis(100);
                    }
                    Ended::CannotConnect(reason) => {
                        metrics::KEY_CHANGE_FEED_CONNECTS.with_label_values(&["error"]).inc();
                        tracing::warn!(%reason, retry_in = ?backoff, "key change feed cannot connect");
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
        }
        tokio::select! {
            _ = stop.changed() => break,
            _ = tokio::time::sleep(backoff) => {}
            _ = reachable.notified() => {}
        }
    }
    metrics::KEY_CHANGE_FEED_UP.set(0);
}

enum Ended {
    CannotConnect(String),
    Lost(String),
}

async fn listen_once(target: &PgTarget, timeout: Duration, handler: &ChangeHandler) -> Ended {
    let (client, mut connection) =
        match tokio::time::timeout(timeout, target.config.connect(target.tls.clone())).await {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => return Ended::CannotConnect(e.to_string()),
            Err(_) => return Ended::CannotConnect(format!("no connection within {timeout:?}")),
        };
    let (tx, mut notifications) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    let _ = tx.send(n.payload().to_string());
                }
                Ok(_) => {}
                Err(e) => return e.to_string(),
            }
        }
        "connection closed".to_string()
    });
    let sql = format!("LISTEN {CHANNEL}");
    let listen = tokio::time::timeout(timeout, client.batch_execute(&sql));
    match listen.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            driver.abort();
            return Ended::CannotConnect(e.to_string());
        }
        Err(_) => {
            driver.abort();
            return Ended::CannotConnect(format!("LISTEN not answered within {timeout:?}"));
        }
    }
    metrics::KEY_CHANGE_FEED_CONNECTS
        .with_label_values(&["ok"])
        .inc();
    metrics::KEY_CHANGE_FEED_UP.set(1);
    // Keys cached before this point were read without the feed watching them.
    tracing::info!("key change feed listening; dropping every cached key");
    handler(StoreChange::All);
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let reason = loop {
        tokio::select! {
            payload = notifications.recv() => match payload {
                Some(p) => match parse_payload(&p) {
                    Some(change) => handler(change),
                    None => tracing::warn!(payload = %p, "ignoring a malformed key change notification"),
                },
                None => break "connection closed".to_string(),
            },
            _ = ping.tick() => {
                match tokio::time::timeout(timeout, client.simple_query("SELECT 1")).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => break e.to_string(),
                    Err(_) => break format!("ping not answered within {timeout:?}"),
                }
            }
        }
    };
    driver.abort();
    Ended::Lost(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_name_the_key_and_when_it_changed() {
        assert_eq!(
            parse_payload("key_abc 1700000000123"),
            Some(StoreChange::Key {
                id: "key_abc".into(),
                changed_at_ms: Some(1_700_000_000_123)
            })
        );
        assert_eq!(
            parse_payload("key_abc"),
            Some(StoreChange::Key {
                id: "key_abc".into(),
                changed_at_ms: None
            })
        );
        assert_eq!(parse_payload(""), None);
    }
}
