//! [`RequestCtx`]: what keygate keeps of one request from its first phase to its
//! last — the config it started on, the decision, the refusal if any, and what the
//! access line and metrics report.

use super::decide::Decision;
use super::live_streams::LiveTicket;
use super::runtime::Runtime;
use crate::error::GateError;
use crate::net::h2_streams::StreamTicket;
use http::HeaderValue;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Per-request state.
pub struct RequestCtx {
    pub(super) start: Instant,
    pub(super) rt: Arc<Runtime>,
    pub(super) decision: Decision,
    pub(super) error: Option<GateError>,
    pub(super) request_id: HeaderValue,
    pub(super) client_ip: Option<IpAddr>,
    /// The request's `Origin`, kept only when `cors:` is set.
    pub(super) origin: Option<HeaderValue>,
    pub(super) upstream_start: Option<Instant>,
    pub(super) upstream_time: Option<Duration>,
    /// `h1` or `h2`: the `protocol` label and access-log field.
    pub(super) protocol: &'static str,
    /// A gRPC call: keygate's own answers are gRPC statuses.
    pub(super) grpc: bool,
    /// This request's place in its HTTP/2 connection's budget.
    pub(super) stream: Option<StreamTicket>,
    /// A request that outlives its decision (an upgrade, a gRPC call, an event
    /// stream), watched until it ends.
    pub(super) live: Option<LiveTicket>,
    /// This request's span, when traces are on (boxed: most requests of most
    /// deployments have none, and the context is in every request's future).
    pub(super) trace: Option<Box<crate::obs::traces::RequestSpan>>,
}

/// The client's address, an IPv4-mapped IPv6 address as IPv4 (the proxy's
/// session and the authorizer's alike).
pub(crate) fn client_ip(session: &pingora::protocols::http::ServerSession) -> Option<IpAddr> {
    let ip = session.client_addr()?.as_inet()?.ip();
    Some(match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    })
}
