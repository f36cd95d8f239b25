//! [`Shared`]: what every request of the data plane reads — the swappable compiled
//! config and the long-lived services.

use super::runtime::Runtime;
use crate::auth::authenticator::Authenticator;
use crate::clock::Clock;
use crate::ledger::usage::UsageRecorder;
use crate::limit::Limiter;
use crate::management::Management;
use crate::store::KeyStore;
use arc_swap::ArcSwap;
use std::sync::Arc;

/// State shared by every request: the swappable runtime and the long-lived services.
pub struct Shared {
    /// Compiled config; replaced whole on reload.
    pub runtime: ArcSwap<Runtime>,
    /// Credentials to principals: API keys (with their cache) and JWTs.
    pub auth: Arc<Authenticator>,
    /// The key store.
    pub store: Arc<dyn KeyStore>,
    /// Spends credits on metered routes (group commit to the store).
    pub credits: crate::ledger::credits::CreditLedger,
    /// Rate-limit counters.
    pub limiter: Arc<dyn Limiter>,
    /// Time source.
    pub clock: Arc<dyn Clock>,
    /// Signs management tokens (`jwt.issue`; fixed for the process's life).
    pub issuer: Option<Arc<crate::auth::jwt::issue::TokenIssuer>>,
    /// The management API.
    pub management: Management,
    /// The portal's pages.
    pub portal: crate::portal::Portal,
    /// Per-key usage, flushed in the background.
    pub usage: Arc<UsageRecorder>,
    /// Requests that outlive their decision, ended when their credential is not
    /// good any more.
    pub live: Arc<super::live_streams::LiveStreams>,
    /// The webhook outbox (not with the read-only file store).
    pub events: Option<Arc<dyn crate::store::events::EventStore>>,
    /// Where the request path announces its events (with the outbox).
    pub announce: Option<crate::events::sink::EventSink>,
    /// The queue behind `announce`, taken by the writer when serving starts.
    pub announced: parking_lot::Mutex<Option<crate::events::sink::EventQueue>>,
    /// Spans of requests, when `telemetry:` is set (fixed for the process's life).
    pub tracing: Option<crate::obs::traces::Tracing>,
}
