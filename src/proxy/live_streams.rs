//! Requests that outlive their decision: upgraded connections (WebSocket), gRPC
//! calls and event streams. A key revoked (or regenerated without grace, or moved
//! off the client's network) and a credential past its expiry end them within a
//! second on every replica, like any new request would be refused:
//!
//! - the store's change feed names the key ([`LiveStreams::key_changed`], or every
//!   key when the feed listens again: [`LiveStreams::recheck_all`]); each of its
//!   live streams is checked again against the store, by the secret it presented;
//! - a credential's end ([`crate::auth::Principal::valid_until_ms`]) is watched by
//!   [`LiveStreams::sweep`], run by housekeeping every [`SWEEP_EVERY`].
//!
//! A stream found no longer good is cut ([`LiveTicket::cut`]): its next message,
//! either way, is not forwarded (the gate's body filters); a gRPC call ends with
//! trailers `grpc-status: 16 UNAUTHENTICATED` (7 for an address no longer allowed);
//! an HTTP/1.1 connection (a WebSocket, an event stream) is closed at once through
//! its [`CutSwitch`], a WebSocket with a close frame 1008. An HTTP/2 connection is
//! closed whole only when every request in flight on it is cut: other callers'
//! streams on a shared connection go on. Each cut counts in
//! `keygate_streams_cut_total{reason}`.

use crate::auth::cache::KeyChecks;
use crate::auth::verify::{check_key, KeyError};
use crate::clock::Clock;
use crate::domain::KeyHash;
use crate::error::GateError;
use crate::net::cut::{Armed, CutSwitch};
use crate::net::h2_streams::StreamBudget;
use crate::obs::metrics;
use crate::store::KeyStore;
use dashmap::DashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// True when a response begins a request that outlives its decision: an upgrade
/// (`101`), a gRPC call, an event stream.
pub fn outlives_its_decision(resp: &pingora::http::ResponseHeader, grpc: bool) -> bool {
    grpc || resp.status.as_u16() == 101
        || resp
            .headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|t| t.as_bytes().starts_with(b"text/event-stream"))
}

/// How often credentials' ends are looked for.
pub const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// How long a cut HTTP/2 stream may go without a message (which would end it
/// cleanly) before its connection is closed, if nothing else is in flight on it.
const H2_IDLE_GRACE: Duration = Duration::from_millis(500);

/// Why a live stream was cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CutReason {
    /// The key was revoked.
    Revoked = 1,
    /// The key expired, or the token's `exp` passed.
    Expired = 2,
    /// The secret no longer matches the key (regenerated, deleted).
    Invalid = 3,
    /// The client's address is no longer on the key's allow-list.
    IpNotAllowed = 4,
    /// The key's account was suspended.
    Suspended = 5,
}

impl CutReason {
    fn from_code(code: u8) -> Option<CutReason> {
        Some(match code {
            1 => CutReason::Revoked,
            2 => CutReason::Expired,
            3 => CutReason::Invalid,
            4 => CutReason::IpNotAllowed,
            5 => CutReason::Suspended,
            _ => return None,
        })
    }

    /// The `reason` label of `keygate_streams_cut_total`: the word
    /// `keygate_decisions_total` gives the refusal a new request would get.
    pub fn label(self) -> &'static str {
        self.error().reason()
    }

    /// The access line's `reason` for a request that was cut.
    pub fn access_reason(self) -> &'static str {
        match self {
            CutReason::Revoked => "cut_revoked",
            CutReason::Expired => "cut_expired",
            CutReason::Invalid => "cut_invalid",
            CutReason::IpNotAllowed => "cut_ip",
            CutReason::Suspended => "cut_suspended",
        }
    }

    /// The refusal a new request would get, for the client's last word.
    pub fn error(self) -> GateError {
        match self {
            CutReason::Revoked => GateError::RevokedKey,
            CutReason::Expired => GateError::ExpiredKey,
            CutReason::Invalid => GateError::InvalidKey,
            CutReason::IpNotAllowed => GateError::IpNotAllowed,
            CutReason::Suspended => GateError::AccountSuspended,
        }
    }

    /// A WebSocket close frame's reason text.
    fn close_text(self) -> &'static str {
        match self {
            CutReason::Revoked => "API key has been revoked",
            CutReason::Suspended => "Account is suspended",
            CutReason::Expired => "credential has expired",
            CutReason::Invalid => "API key is no longer valid",
            CutReason::IpNotAllowed => "IP address not allowed",
        }
    }
}

impl From<KeyError> for CutReason {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::Revoked => CutReason::Revoked,
            KeyError::AccountSuspended => CutReason::Suspended,
            KeyError::Expired => CutReason::Expired,
            KeyError::IpNotAllowed => CutReason::IpNotAllowed,
            KeyError::Invalid | KeyError::StoreUnavailable => CutReason::Invalid,
        }
    }
}

/// One live request.
#[derive(Debug)]
struct LiveStream {
    /// The key it presented: its id and its secret's hash (`None`: a token).
    key: Option<(String, KeyHash)>,
    client_ip: Option<IpAddr>,
    /// The credential's end, in Unix ms.
    valid_until_ms: AtomicI64,
    /// 0 while good, else a [`CutReason`].
    cut: AtomicU8,
    /// Its connection's switch.
    switch: Option<Arc<CutSwitch>>,
    /// The HTTP/2 connection it shares (the budget's key), if it is one.
    h2_connection: Option<usize>,
}

/// The live requests of this process.
pub struct LiveStreams {
    streams: DashMap<u64, Arc<LiveStream>>,
    next: AtomicU64,
    store: Arc<dyn KeyStore>,
    clock: Arc<dyn Clock>,
    budget: Arc<StreamBudget>,
}

/// What a request watched by [`LiveStreams`] holds: it leaves the watch when dropped.
pub struct LiveTicket {
    id: u64,
    stream: Arc<LiveStream>,
    streams: Arc<LiveStreams>,
}

impl std::fmt::Debug for LiveTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveTicket").field("id", &self.id).finish()
    }
}

impl LiveTicket {
    /// Why the request was cut, once it was.
    pub fn cut(&self) -> Option<CutReason> {
        CutReason::from_code(self.stream.cut.load(Ordering::SeqCst))
    }
}

impl Drop for LiveTicket {
    fn drop(&mut self) {
        self.streams.streams.remove(&self.id);
    }
}

/// What a request to be watched is.
pub struct Watch<'a> {
    /// The key and the hash of the secret it presented (`None`: a token).
    pub key: Option<(&'a str, KeyHash)>,
    /// The credential's end, in Unix ms.
    pub valid_until_ms: i64,
    /// The client's address (allow-lists are checked again).
    pub client_ip: Option<IpAddr>,
    /// Its connection's switch, if the connection has one.
    pub switch: Option<Arc<CutSwitch>>,
    /// The HTTP/2 connection it shares, or `None` for an HTTP/1.1 connection of its
    /// own.
    pub h2_connection: Option<usize>,
    /// An upgraded WebSocket (its connection says goodbye with a close frame).
    pub websocket: bool,
}

impl LiveStreams {
    /// Live requests checked against `store` on `clock`; `budget` counts what each
    /// HTTP/2 connection has in flight.
    pub fn new(store: Arc<dyn KeyStore>, clock: Arc<dyn Clock>, budget: Arc<StreamBudget>) -> Self {
        LiveStreams {
            streams: DashMap::new(),
            next: AtomicU64::new(1),
            store,
            clock,
            budget,
        }
    }

    /// The in-flight count of every HTTP/2 connection.
    pub fn budget(&self) -> &Arc<StreamBudget> {
        &self.budget
    }

    /// Watches a request from now until its ticket is dropped.
    pub fn watch(self: &Arc<Self>, w: Watch<'_>) -> LiveTicket {
        if let Some(s) = &w.switch {
            s.arm(if w.websocket {
                Armed::WebSocket
            } else {
                Armed::Plain
            });
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let stream = Arc::new(LiveStream {
            key: w.key.map(|(id, hash)| (id.to_string(), hash)),
            client_ip: w.client_ip,
            valid_until_ms: AtomicI64::new(w.valid_until_ms),
            cut: AtomicU8::new(0),
            switch: w.switch,
            h2_connection: w.h2_connection,
        });
        self.streams.insert(id, stream.clone());
        LiveTicket {
            id,
            stream,
            streams: self.clone(),
        }
    }

    /// How many requests are watched.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// True when none is.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// Key `id` changed somewhere: its live streams are checked again.
    pub fn key_changed(self: &Arc<Self>, id: &str) {
        let of_key = self.matching(|s| s.key.as_ref().is_some_and(|(k, _)| k == id));
        self.recheck(of_key);
    }

    /// Changes may have been missed (the feed listens again, the key file was
    /// re-read): every live stream is checked again.
    pub fn recheck_all(self: &Arc<Self>) {
        let all = self.matching(|_| true);
        self.recheck(all);
    }

    /// Cuts every live stream whose credential's end has passed; a key's is
    /// checked again first (its expiry may have been moved).
    pub async fn sweep(self: &Arc<Self>) {
        let now = self.now_ms();
        let due = self.matching(|s| {
            s.valid_until_ms.load(Ordering::Relaxed) <= now && s.cut.load(Ordering::Relaxed) == 0
        });
        for (id, s) in due {
            if s.key.is_none() {
                self.trip(id, &s, CutReason::Expired);
            } else if !self.check(id, &s).await {
                // The store cannot say: the end it gave stands.
                self.trip(id, &s, CutReason::Expired);
            }
        }
    }

    fn now_ms(&self) -> i64 {
        i64::try_from(self.clock.now_ms()).unwrap_or(i64::MAX)
    }

    fn matching(&self, f: impl Fn(&LiveStream) -> bool) -> Vec<(u64, Arc<LiveStream>)> {
        self.streams
            .iter()
            .filter(|e| f(e.value()))
            .map(|e| (*e.key(), e.value().clone()))
            .collect()
    }

    fn recheck(self: &Arc<Self>, streams: Vec<(u64, Arc<LiveStream>)>) {
        if streams.is_empty() {
            return;
        }
        let this = self.clone();
        crate::net::io_runtime::handle().spawn(async move {
            // Many streams may share a secret: the store is asked once for each.
            let mut read = std::collections::HashMap::new();
            for (id, s) in streams {
                let Some((_, hash)) = &s.key else { continue };
                if !read.contains_key(hash) {
                    read.insert(*hash, this.store.find_by_hash(hash).await);
                }
                this.judge(id, &s, &read[hash]);
            }
        });
    }

    /// Checks a key's stream against the store as a new request with its secret
    /// would be; cuts it if that request would be refused. False when the store
    /// could not answer.
    async fn check(self: &Arc<Self>, id: u64, s: &Arc<LiveStream>) -> bool {
        let Some((_, hash)) = &s.key else {
            return true;
        };
        let found = self.store.find_by_hash(hash).await;
        self.judge(id, s, &found)
    }

    /// Judges a key's stream by what the store `found` under its secret; cuts it if
    /// a new request with that secret would be refused. False when the store could
    /// not answer.
    fn judge(
        self: &Arc<Self>,
        id: u64,
        s: &Arc<LiveStream>,
        found: &Result<Option<crate::domain::KeyRecord>, crate::store::StoreError>,
    ) -> bool {
        let Some((key_id, _)) = &s.key else {
            return true;
        };
        let verdict = match found {
            Ok(Some(record)) if record.id == *key_id => {
                let checks = KeyChecks::of(record);
                s.valid_until_ms.store(
                    checks.expires_at_ms.min(checks.secret_valid_until_ms),
                    Ordering::Relaxed,
                );
                check_key(&checks, self.now_ms(), s.client_ip).err()
            }
            Ok(_) => Some(KeyError::Invalid),
            Err(e) => {
                tracing::debug!(error = %e, "a live stream's key could not be checked again");
                return false;
            }
        };
        if let Some(e) = verdict {
            self.trip(id, s, e.into());
        }
        true
    }

    /// Cuts one stream (once).
    fn trip(self: &Arc<Self>, id: u64, s: &Arc<LiveStream>, why: CutReason) {
        if s.cut
            .compare_exchange(0, why as u8, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return;
        }
        metrics::STREAMS_CUT.with_label_values(&[why.label()]).inc();
        tracing::info!(
            key_id = s.key.as_ref().map_or("-", |(k, _)| k.as_str()),
            reason = why.label(),
            "ending a live request: its credential is no longer good"
        );
        match (s.h2_connection, &s.switch) {
            (None, Some(switch)) => switch.cut(why.close_text()),
            (Some(connection), Some(switch)) => {
                // Other requests may share the connection: close it only if none
                // of them is still good, once this one had time to end cleanly.
                let (this, switch) = (self.clone(), switch.clone());
                crate::net::io_runtime::handle().spawn(async move {
                    tokio::time::sleep(H2_IDLE_GRACE).await;
                    if this.streams.contains_key(&id) && this.only_cut_on(connection) {
                        switch.cut(why.close_text());
                    }
                });
            }
            _ => {}
        }
    }

    /// True when every request in flight on HTTP/2 `connection` is a cut stream.
    fn only_cut_on(&self, connection: usize) -> bool {
        let cut = self
            .streams
            .iter()
            .filter(|e| {
                e.value().h2_connection == Some(connection)
                    && e.value().cut.load(Ordering::SeqCst) != 0
            })
            .count();
        cut > 0 && self.budget.in_flight(connection) as usize <= cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::domain::KeyRecord;
    use crate::store::sqlite::SqliteStore;

    const NOW: u64 = 1_800_000_000_000;

    fn setup() -> (
        Arc<LiveStreams>,
        Arc<SqliteStore>,
        ManualClock,
        tempfile::TempDir,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("k.db")).unwrap());
        let clock = ManualClock::at(NOW);
        let live = Arc::new(LiveStreams::new(
            store.clone(),
            Arc::new(clock.clone()),
            Arc::default(),
        ));
        (live, store, clock, dir)
    }

    fn watch<'a>(key: Option<(&'a str, KeyHash)>, until: i64) -> Watch<'a> {
        Watch {
            key,
            valid_until_ms: until,
            client_ip: None,
            switch: Some(Arc::new(CutSwitch::default())),
            h2_connection: None,
            websocket: false,
        }
    }

    /// Waits (at most 10 s) until `ticket` is cut.
    async fn until_cut(ticket: &LiveTicket) {
        let start = std::time::Instant::now();
        while ticket.cut().is_none() && start.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_revoked_keys_stream_is_cut_and_a_good_one_is_not() {
        let (live, store, _clock, _dir) = setup();
        let record = KeyRecord::active("key_a", "free", chrono::DateTime::default());
        store
            .insert(
                &record,
                &KeyHash::of("a"),
                &crate::store::conformance::audited(),
            )
            .await
            .unwrap();
        let good = live.watch(watch(Some(("key_a", KeyHash::of("a"))), i64::MAX));
        let stale = live.watch(watch(Some(("key_a", KeyHash::of("old"))), i64::MAX));
        live.key_changed("key_a");
        // The recheck reads the store on the blocking pool: wait for its verdict
        // (a loaded machine takes longer), then for the good stream to have been
        // judged as well.
        until_cut(&stale).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(good.cut(), None);
        assert_eq!(
            stale.cut(),
            Some(CutReason::Invalid),
            "a secret no longer stored"
        );
        store
            .revoke("key_a", &crate::store::conformance::audited())
            .await
            .unwrap();
        live.key_changed("key_a");
        until_cut(&good).await;
        assert_eq!(good.cut(), Some(CutReason::Revoked));
        assert_eq!(live.len(), 2);
        drop((good, stale));
        assert!(live.is_empty(), "a finished request leaves the watch");
    }

    #[test]
    fn cut_labels_are_the_documented_words() {
        let labels = [
            CutReason::Revoked,
            CutReason::Expired,
            CutReason::Invalid,
            CutReason::IpNotAllowed,
        ]
        .map(CutReason::label);
        assert_eq!(labels, ["revoked", "expired", "invalid", "ip"]);
    }

    #[tokio::test]
    async fn a_credential_is_cut_when_its_end_passes_on_the_clock() {
        let (live, _store, clock, _dir) = setup();
        let token = live.watch(watch(None, (NOW + 1_000) as i64));
        live.sweep().await;
        assert_eq!(token.cut(), None);
        clock.advance_ms(1_000);
        live.sweep().await;
        assert_eq!(token.cut(), Some(CutReason::Expired));
    }
}
