//! One decision for another proxy: the data plane's chain run on the original
//! request ([`crate::proxy::decide`] with [`Door::Authorizer`]), and what the
//! decision tells each side — the upstream's header changes when it is allowed
//! (the same [`crate::proxy::forward::ForwardPlan`] the proxy applies), the
//! client's headers, and the refusal (status, body in the API's dialect, headers)
//! when it is not. Recorded like a proxied request ([`crate::proxy::record`]).

use super::original::Original;
use crate::error::GateError;
use crate::obs::traces::RequestSpan;
use crate::proxy::decide::{decide, Decision, Door};
use crate::proxy::forward::Edits;
use crate::proxy::front::{note_allowed, note_refusal};
use crate::proxy::limit_headers::rate_limit_headers;
use crate::proxy::runtime::Runtime;
use crate::proxy::Shared;
use http::{HeaderValue, StatusCode};
use std::sync::Arc;
use std::time::Instant;

/// A request decided by the authorizer.
pub struct Judged {
    /// When it arrived.
    pub start: Instant,
    /// The config it was decided on.
    pub rt: Arc<Runtime>,
    /// What was decided.
    pub decision: Decision,
    /// Why it was refused, if it was.
    pub error: Option<GateError>,
    /// Its request id (the proxy's, when sane; else a fresh one).
    pub request_id: HeaderValue,
    /// The original request is a gRPC call.
    pub grpc: bool,
    /// Its span, when traces are on.
    span: Option<Box<RequestSpan>>,
}

/// A refusal as the client gets it.
pub struct Refusal {
    /// Its status.
    pub status: StatusCode,
    /// Its headers (`Retry-After`, `WWW-Authenticate`, `X-RateLimit-*`, …).
    pub headers: Vec<(&'static str, HeaderValue)>,
    /// Its body, in the API's dialect.
    pub body: Vec<u8>,
}

/// Decides `original` (arrived at `start`).
pub async fn judge(
    shared: &Shared,
    rt: Arc<Runtime>,
    original: &Original<'_>,
    start: Instant,
) -> Judged {
    let request_id = crate::proxy::forward::request_id(
        original.headers.get("x-request-id").map(|v| v.as_bytes()),
    );
    let span = shared
        .tracing
        .as_ref()
        .map(|t| Box::new(t.begin(&original.method, &original.headers, start)));
    let mut decision = Decision::default();
    let result = decide(
        shared,
        &rt,
        Door::Authorizer,
        &original.method,
        &original.uri,
        &original.headers,
        original.client_ip,
        &mut decision,
    )
    .await;
    let error = match result {
        Ok(()) => {
            note_allowed(&decision);
            None
        }
        Err(err) => {
            note_refusal(shared, &rt, &decision, original.client_ip, &err).await;
            Some(err)
        }
    };
    Judged {
        start,
        grpc: crate::proxy::grpc::is_grpc(&original.headers),
        rt,
        decision,
        error,
        request_id,
        span,
    }
}

impl Judged {
    /// The headers the client gets either way: where the caller stands against its
    /// limits (`X-RateLimit-*`, and the IETF pair when configured) and the request
    /// id.
    pub fn client_headers(&self, now_ms: u64) -> Vec<(&'static str, HeaderValue)> {
        let mut out = match (&self.decision.principal, &self.decision.limit) {
            (Some(_), Some(d)) => rate_limit_headers(d, self.rt.header_style, now_ms),
            _ => Vec::with_capacity(1),
        };
        out.push(("X-Request-Id", self.request_id.clone()));
        out
    }

    /// How the upstream request must change, for an allowed request: the proxy's
    /// own rule ([`crate::proxy::forward::ForwardPlan::edits`]), and the
    /// `traceparent` naming keygate's span when traces are on. `X-Forwarded-For`
    /// stays the calling proxy's.
    pub fn upstream_changes(&self, original: &Original<'_>) -> Edits {
        let principal = if self.decision.public {
            None
        } else {
            self.decision.principal.as_ref()
        };
        let mut edits = self.rt.forward.edits(
            &original.headers,
            original.uri.query(),
            principal,
            &self.request_id,
        );
        if let Some(span) = &self.span {
            edits.set.push((
                http::HeaderName::from_static("traceparent"),
                span.traceparent().clone(),
            ));
        }
        edits
    }

    /// The refusal the client gets, for a refused request.
    pub fn refusal(&self, shared: &Shared) -> Option<Refusal> {
        let err = self.error.as_ref()?;
        let body = self.rt.dialect.refusal(
            err,
            None,
            self.request_id.to_str().unwrap_or(""),
            shared.clock.now_utc(),
        );
        let mut headers: Vec<(&'static str, HeaderValue)> = vec![
            ("Content-Type", HeaderValue::from_static("application/json")),
            ("Cache-Control", HeaderValue::from_static("no-store")),
        ];
        for (name, value) in err.headers() {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.push((name, v));
            }
        }
        headers.extend(self.client_headers(shared.clock.now_ms()));
        Some(Refusal {
            status: err.status(),
            headers,
            body,
        })
    }

    /// Records the decision (metrics, usage, access line, span) as answered with
    /// `status` (an allowed request's is the original's outcome to come, counted
    /// as 200).
    pub fn finish(mut self, shared: &Shared, original: &Original<'_>, protocol: &'static str) {
        let span = self.span.take();
        let status = match &self.error {
            Some(e) => e.status().as_u16(),
            None => 200,
        };
        let finished = crate::proxy::record::Finished {
            rt: &self.rt,
            decision: &self.decision,
            error: self.error.as_ref(),
            cut_reason: None,
            grpc: false,
            written: status,
            protocol,
            method: &original.method,
            path: original.uri.path(),
            request_id: &self.request_id,
            client_ip: original.client_ip,
            elapsed: self.start.elapsed(),
            upstream_time: None,
        };
        crate::proxy::record::record(shared, &finished, span);
    }
}
