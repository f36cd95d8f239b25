//! [`Gate`]: keygate's Pingora `ProxyHttp` implementation, the phases alone. Each
//! is short and delegates: `request_filter` runs [`super::decide`] and hands what
//! is answered locally to [`super::front`], `upstream_request_filter` applies
//! [`super::forward`], `response_filter` adds keygate's headers, `logging` records
//! metrics and the access line.

use super::context::{client_ip, RequestCtx};
use super::decide::{decide, Decision, Door};
use super::forward::request_id;
use super::front::Front;
use super::grpc;
use super::live_streams::{CutReason, LiveTicket, Watch};
use super::shared::Shared;
use crate::config::UpstreamProtocol;
use crate::domain::Environment;
use crate::error::GateError;
use crate::net::h2_streams::{self, StreamBudget, StreamTicket};
use crate::net::head_deadline::keepalive_secs;
use crate::obs::metrics;
use crate::proxy::runtime::Upstream;
use crate::store::Holder;
use async_trait::async_trait;
use bytes::Bytes;
use http::HeaderValue;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most requests at once on one pooled HTTP/2 upstream connection before
/// another is opened.
const UPSTREAM_H2_STREAMS: usize = 100;

/// The proxy.
pub struct Gate {
    shared: Arc<Shared>,
    /// In-flight requests of each HTTP/2 connection.
    streams: Arc<StreamBudget>,
}

impl Gate {
    /// A gate over `shared`.
    pub fn new(shared: Arc<Shared>) -> Self {
        Gate {
            streams: shared.live.budget().clone(),
            shared,
        }
    }
}

impl Gate {
    /// The front door for this gate's local answers.
    fn front(&self) -> Front<'_> {
        Front {
            shared: &self.shared,
        }
    }

    /// Gives back the credits of a debited request that keygate answers 502/503/504
    /// itself because no upstream answer came (`credits.refund_on_upstream_error`).
    /// The debit is taken from `ctx`, so a request is refunded at most once.
    async fn refund_unanswered(&self, ctx: &mut RequestCtx, err: &GateError) {
        if !matches!(err.status().as_u16(), 502..=504) || !ctx.rt.refund_on_upstream_error {
            return;
        }
        let Some((holder, cost, debited_at)) = ctx.decision.debited.take() else {
            return;
        };
        let id = ctx.decision.principal.as_ref().and_then(|p| match holder {
            Holder::Key => p.identity.key_id(),
            Holder::Account => p.identity.account_id(),
        });
        if let Some(id) = id {
            self.shared
                .credits
                .refund(holder, id, cost, debited_at)
                .await;
        }
    }

    fn upstream_for(&self, ctx: &RequestCtx) -> Upstream {
        let test_key = ctx
            .decision
            .principal
            .as_ref()
            .is_some_and(|p| p.identity.environment == Environment::Test);
        match (&ctx.rt.sandbox, test_key) {
            (Some(s), true) => s.clone(),
            _ => ctx.rt.upstream.clone(),
        }
    }
}

/// The error that ends a live request cut for `why`.
fn cut_error(why: CutReason) -> Box<Error> {
    Error::explain(ErrorType::Custom("credential no longer good"), why.label())
}

impl Gate {
    /// Watches a request that outlives its decision, if a key or token let it in.
    fn watch_live(
        &self,
        session: &Session,
        ctx: &RequestCtx,
        websocket: bool,
    ) -> Option<LiveTicket> {
        let principal = ctx
            .decision
            .principal
            .as_ref()
            .filter(|_| !ctx.decision.public)?;
        let req = session.req_header();
        let key = principal.identity.key_id().and_then(|id| {
            crate::auth::credentials::extract(&ctx.rt.sources, &req.headers, req.uri.query())
                .ok()
                .map(|c| (id, crate::domain::KeyHash::of(&c.value)))
        });
        let switch = session
            .as_downstream()
            .digest()
            .and_then(|d| d.socket_digest.as_ref())
            .and_then(crate::net::cut::of_connection);
        // An HTTP/2 request holds its connection's place in the stream budget.
        let h2_connection = ctx.stream.as_ref().map(StreamTicket::connection);
        Some(self.shared.live.watch(Watch {
            key,
            valid_until_ms: principal.valid_until_ms,
            client_ip: ctx.client_ip,
            switch,
            h2_connection,
            websocket,
        }))
    }
}

/// Maps a proxying failure to the contract error the client receives.
fn proxy_error(e: &Error) -> Option<GateError> {
    use ErrorType::*;
    match e.esource() {
        ErrorSource::Upstream => Some(match e.etype() {
            ConnectTimedout | ReadTimedout | WriteTimedout | TLSHandshakeTimedout => {
                GateError::GatewayTimeout
            }
            _ => GateError::BadGateway,
        }),
        ErrorSource::Downstream => match e.etype() {
            ReadError | WriteError | ConnectionClosed => None,
            // A proxied body that stopped arriving (upstream.read_timeout per read).
            ReadTimedout => Some(GateError::BodyTimeout),
            _ => Some(GateError::BadRequest("Malformed request")),
        },
        ErrorSource::Internal | ErrorSource::Unset => match e.etype() {
            HTTPStatus(code) if (400..500).contains(code) => {
                Some(GateError::BadRequest("Malformed request"))
            }
            ConnectTimedout | ReadTimedout | WriteTimedout => Some(GateError::GatewayTimeout),
            ConnectRefused | ConnectNoRoute | ConnectError | TLSHandshakeFailure => {
                Some(GateError::BadGateway)
            }
            _ => Some(GateError::Internal),
        },
    }
}

#[async_trait]
impl ProxyHttp for Gate {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> Self::CTX {
        RequestCtx {
            start: Instant::now(),
            rt: self.shared.runtime.load_full(),
            decision: Decision::default(),
            error: None,
            request_id: HeaderValue::from_static(""),
            client_ip: None,
            origin: None,
            upstream_start: None,
            upstream_time: None,
            protocol: metrics::protocol::H1,
            grpc: false,
            stream: None,
            live: None,
            trace: None,
        }
    }

    /// Decides the request. Returns `Ok(true)` after writing a refusal (the request
    /// goes no further), `Ok(false)` to proxy it.
    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> pingora::Result<bool> {
        if let Some(tracing) = &self.shared.tracing {
            let req = session.req_header();
            ctx.trace = Some(Box::new(tracing.begin(
                &req.method,
                &req.headers,
                ctx.start,
            )));
        }
        ctx.grpc = grpc::is_grpc(&session.req_header().headers);
        let downstream = session.as_downstream();
        if downstream.is_http2() {
            ctx.protocol = metrics::protocol::H2;
            // The connection's digest is shared by its streams: its address names
            // the connection for as long as any of them is in flight.
            let connection = downstream
                .digest()
                .map_or(0, |d| std::ptr::from_ref(d) as usize);
            let cap = h2_streams::cap(ctx.rt.h2_max_concurrent_streams);
            match self.streams.enter(connection, cap) {
                Some(ticket) => ctx.stream = Some(ticket),
                None => {
                    metrics::H2_STREAMS_REFUSED.inc();
                    let err = GateError::Overloaded { retry_after: 1 };
                    return self.front().refuse(session, ctx, err).await;
                }
            }
        }
        // Pingora keeps an idle HTTP/1.1 connection forever unless told otherwise;
        // the timeout set here applies while waiting for the next request.
        let idle = keepalive_secs(ctx.rt.idle_timeout);
        if session.get_keepalive().is_some_and(|t| t == 0 || t > idle) {
            session.set_keepalive(Some(idle));
        }
        ctx.client_ip = client_ip(session);
        ctx.request_id = request_id(
            session
                .req_header()
                .headers
                .get("x-request-id")
                .map(|v| v.as_bytes()),
        );
        if ctx.rt.cors.is_some() {
            ctx.origin = session
                .req_header()
                .headers
                .get(http::header::ORIGIN)
                .cloned();
        }
        let req = session.req_header();
        let result = decide(
            &self.shared,
            &ctx.rt,
            Door::Proxy,
            &req.method,
            &req.uri,
            &req.headers,
            ctx.client_ip,
            &mut ctx.decision,
        )
        .await;
        match result {
            Ok(()) if ctx.decision.preflight || ctx.decision.answered_here() => {
                self.front().answer(session, ctx).await
            }
            Ok(()) => {
                // A proxied body is read as the upstream consumes it; a client
                // trickling it is cut off like a silent upstream would be.
                session.set_read_timeout(Some(ctx.rt.upstream.read_timeout));
                super::front::note_allowed(&ctx.decision);
                Ok(false)
            }
            Err(err) => self.front().refuse(session, ctx, err).await,
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> pingora::Result<Box<HttpPeer>> {
        let up = self.upstream_for(ctx);
        let mut peer = HttpPeer::new(up.addr, up.tls, up.sni);
        peer.options.connection_timeout = Some(up.connect_timeout);
        peer.options.total_connection_timeout = Some(up.connect_timeout);
        peer.options.read_timeout = Some(up.read_timeout);
        if up.protocol != UpstreamProtocol::H1 {
            // HTTP/2 only (h2 by ALPN, h2c by prior knowledge), many requests at
            // once on each pooled connection.
            peer.options.set_http_version(2, 2);
            peer.options.max_h2_streams = UPSTREAM_H2_STREAMS;
        }
        ctx.upstream_start = Some(Instant::now());
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> pingora::Result<()> {
        // An HTTP/2 request names its host in `:authority`, which the origin-form
        // path below would drop: the upstream gets it as `Host` (RFC 9113 §8.3.1),
        // from which Pingora builds an HTTP/2 upstream's `:authority`.
        if !upstream_request.headers.contains_key(http::header::HOST) {
            if let Some(authority) = upstream_request.uri.authority() {
                let host = authority.as_str().to_owned();
                upstream_request.insert_header(http::header::HOST, host)?;
            }
        }
        if let Some(path) = &ctx.decision.forward_path {
            // The upstream gets the path the decision used, in origin form. (Not
            // taken: Pingora calls this again, on a fresh copy, when it retries.)
            let target = match upstream_request.uri.query() {
                Some(q) => format!("{path}?{q}"),
                None => path.clone(),
            };
            let uri = target
                .parse::<http::Uri>()
                .map_err(|e| Error::because(ErrorType::InternalError, "canonical path", e))?;
            upstream_request.set_uri(uri);
        }
        let principal = if ctx.decision.public {
            None
        } else {
            ctx.decision.principal.as_ref()
        };
        ctx.rt
            .forward
            .apply(upstream_request, principal, ctx.client_ip, &ctx.request_id)?;
        if let Some(span) = &ctx.trace {
            // The client's `traceparent` named its own span; the upstream's parent
            // is keygate's. (`tracestate` passes as the client sent it.)
            upstream_request.insert_header("traceparent", span.traceparent().clone())?;
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> pingora::Result<()> {
        if let Some(start) = ctx.upstream_start {
            ctx.upstream_time.get_or_insert_with(|| start.elapsed());
        }
        if ctx.live.is_none()
            && super::live_streams::outlives_its_decision(upstream_response, ctx.grpc)
        {
            ctx.live = self.watch_live(session, ctx, upstream_response.status.as_u16() == 101);
        }
        self.front().add_common_headers(upstream_response, ctx)
    }

    /// A message from the client of a live request whose credential is no longer
    /// good is not forwarded: the request ends.
    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> pingora::Result<()> {
        if let Some(why) = ctx.live.as_ref().and_then(LiveTicket::cut) {
            *body = None;
            return Err(cut_error(why));
        }
        Ok(())
    }

    /// A message to the client of a live request whose credential is no longer
    /// good is not forwarded: the request ends, a gRPC call with the refusal's
    /// status in its trailers.
    fn response_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> pingora::Result<Option<Duration>> {
        if let Some(why) = ctx.live.as_ref().and_then(LiveTicket::cut) {
            *body = None;
            if let (true, pingora::protocols::http::ServerSession::H2(h2)) =
                (ctx.grpc, session.as_downstream_mut())
            {
                let _ = h2.write_trailers(grpc::refusal_trailers(&why.error()));
            }
            return Err(cut_error(why));
        }
        Ok(None)
    }

    /// Pingora's own error line is replaced by the one [`Self::fail_to_proxy`] writes
    /// (with the request id), so each failure is logged once.
    fn suppress_error_log(&self, _session: &Session, _ctx: &Self::CTX, _error: &Error) -> bool {
        true
    }

    /// Answers a proxying failure with the contract's 502/504 (or 400/500) JSON and
    /// logs it; a client that went away gets nothing and only a debug line.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Self::CTX,
    ) -> FailToProxy {
        if let Some(why) = ctx.live.as_ref().and_then(LiveTicket::cut) {
            // Ended by keygate: its credential is no longer good.
            return FailToProxy {
                error_code: why.error().status().as_u16(),
                can_reuse_downstream: false,
            };
        }
        let Some(mut err) = proxy_error(e) else {
            tracing::debug!(request_id = ctx.request_id.to_str().unwrap_or("-"), error = %e, "client went away");
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        };
        if err == GateError::GatewayTimeout && !session.is_body_done() {
            // The upstream was still waiting for the rest of the body: the client
            // stalled, not the upstream.
            err = GateError::BodyTimeout;
        }
        tracing::warn!(request_id = ctx.request_id.to_str().unwrap_or("-"), error = %e, "proxying failed");
        let code = err.status().as_u16();
        if session.response_written().is_none() {
            self.refund_unanswered(ctx, &err).await;
            // The connection is not reused after a proxy failure: say so.
            session.set_keepalive(None);
            if let Err(write_err) = self.front().respond(session, ctx, &err).await {
                tracing::debug!(error = %write_err, "could not write error response");
            }
        }
        ctx.error = Some(err);
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Self::CTX) {
        let span = ctx.trace.take();
        let req = session.req_header();
        let finished = super::record::Finished {
            rt: &ctx.rt,
            decision: &ctx.decision,
            error: ctx.error.as_ref(),
            cut_reason: ctx
                .live
                .as_ref()
                .and_then(LiveTicket::cut)
                .map(|why| why.access_reason()),
            grpc: ctx.grpc,
            written: session.response_written().map_or(0, |r| r.status.as_u16()),
            protocol: ctx.protocol,
            method: &req.method,
            path: req.uri.path(),
            request_id: &ctx.request_id,
            client_ip: ctx.client_ip,
            elapsed: ctx.start.elapsed(),
            upstream_time: ctx.upstream_time,
        };
        super::record::record(&self.shared, &finished, span);
    }
}
