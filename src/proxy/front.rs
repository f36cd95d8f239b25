//! The front door for the answers keygate makes itself. The gate's phases decide;
//! what is answered without the upstream is read and written here, through one
//! body reader with its limits: a refusal (the contract's JSON, a gRPC status, or
//! the portal's HTML page, from the refusal's one row in `crate::error`), a CORS
//! preflight, a management API call and a portal page. The management API and the
//! portal are applications behind [`LocalRequest`]: they never see Pingora.

use super::context::RequestCtx;
use super::grpc;
use super::limit_headers::rate_limit_headers;
use super::shared::Shared;
use crate::dialect::Said;
use crate::error::GateError;
use crate::local::LocalRequest;
use crate::management::{IMPORT_PATH, MAX_BODY, MAX_IMPORT_BODY};
use crate::obs::metrics;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora_proxy::Session;
use std::time::Duration;

/// How long a refused body too large is still read from (and dropped), so that
/// the client reads the 413 before the connection closes.
const LINGER: Duration = Duration::from_secs(2);

/// Counts a refusal by its reason and tier, and a failed authentication against
/// the client's address: the same for every door (the proxy, the authorizer).
pub(crate) async fn note_refusal(
    shared: &Shared,
    rt: &super::runtime::Runtime,
    decision: &super::decide::Decision,
    client_ip: Option<std::net::IpAddr>,
    err: &GateError,
) {
    let tier = decision
        .principal
        .as_ref()
        .map_or("none", |p| p.tier_name());
    metrics::DECISIONS
        .with_label_values(&[err.reason(), tier])
        .inc();
    if err.is_failed_authentication() {
        failed_authentication(shared, rt, client_ip).await;
    }
}

/// Counts a failed authentication against `client_ip` (its
/// `failed_auth_per_minute`).
async fn failed_authentication(
    shared: &Shared,
    rt: &super::runtime::Runtime,
    client_ip: Option<std::net::IpAddr>,
) {
    if let Some(ip) = client_ip {
        if let Err(e) = rt.ip_limits.record_failure(&*shared.limiter, ip).await {
            tracing::debug!(error = %e, "could not record failed authentication");
        }
    }
}

/// Counts a request let through (outside `auth: none` routes) for its tier.
pub(crate) fn note_allowed(decision: &super::decide::Decision) {
    if !decision.public {
        match &decision.principal {
            Some(p) => p.tier.allowed.0.inc(),
            None => metrics::DECISIONS
                .with_label_values(&[metrics::reason::ALLOWED, "none"])
                .inc(),
        }
    }
}

/// The local answers of one request, over the shared services.
pub(super) struct Front<'a> {
    pub(super) shared: &'a Shared,
}

impl Front<'_> {
    /// Answers a request the decision keeps local: a CORS preflight, a management
    /// API call or a portal page. `Ok(true)`: the request is answered.
    pub(super) async fn answer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        if ctx.decision.preflight {
            self.answer_preflight(session, ctx).await
        } else if ctx.decision.management.is_some() {
            self.serve_management(session, ctx).await
        } else if ctx.decision.mounted.is_some() {
            self.serve_mounted(session, ctx).await
        } else {
            self.serve_portal(session, ctx).await
        }
    }

    /// Writes `err` as the contract's JSON error, with rate-limit headers when the
    /// caller is known; to a gRPC call, as its gRPC status (trailers-only).
    pub(super) async fn respond(
        &self,
        session: &mut Session,
        ctx: &RequestCtx,
        err: &GateError,
    ) -> pingora::Result<()> {
        if ctx.grpc {
            let mut resp = ResponseHeader::build(http::StatusCode::OK, Some(10))?;
            for (name, value) in grpc::refusal_headers(err) {
                resp.insert_header(name, value)?;
            }
            self.add_common_headers(&mut resp, ctx)?;
            // Pingora's proxy session never ends an HTTP/2 stream with its header
            // block (it sends an empty DATA frame after it, which gRPC clients
            // reject as a malformed trailers-only response): end it on the
            // HTTP/2 session itself.
            if let pingora::protocols::http::ServerSession::H2(h2) = session.as_downstream_mut() {
                return h2.write_response_header(Box::new(resp), true);
            }
            resp.insert_header("Content-Length", "0")?;
            return session.write_response_header(Box::new(resp), true).await;
        }
        let body = ctx.rt.dialect.refusal(
            err,
            ctx.decision.mounted.as_ref().map(|m| m.index),
            ctx.request_id.to_str().unwrap_or(""),
            self.shared.clock.now_utc(),
        );
        self.write_json(session, ctx, err.status(), body, err.headers())
            .await
    }

    /// Writes a complete JSON response with keygate's common headers.
    async fn write_json(
        &self,
        session: &mut Session,
        ctx: &RequestCtx,
        status: http::StatusCode,
        body: Vec<u8>,
        extra: Vec<(&'static str, String)>,
    ) -> pingora::Result<()> {
        let mut resp = ResponseHeader::build(status, Some(8))?;
        resp.insert_header("Content-Type", "application/json")?;
        resp.insert_header("Content-Length", body.len().to_string())?;
        resp.insert_header("Cache-Control", "no-store")?;
        for (name, value) in extra {
            resp.insert_header(name, value)?;
        }
        self.add_common_headers(&mut resp, ctx)?;
        Self::write_complete(session, resp, body).await
    }

    /// Writes a whole response keygate made itself (no body for `HEAD`).
    async fn write_complete(
        session: &mut Session,
        resp: ResponseHeader,
        body: Vec<u8>,
    ) -> pingora::Result<()> {
        let head_only = session.req_header().method == http::Method::HEAD;
        session
            .write_response_header(Box::new(resp), head_only)
            .await?;
        if !head_only {
            session
                .write_response_body(Some(Bytes::from(body)), true)
                .await?;
        }
        Ok(())
    }

    /// Answers a refusal: counts it, records a failed authentication against the
    /// client IP, and writes the contract's JSON error.
    pub(super) async fn refuse(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        err: GateError,
    ) -> pingora::Result<bool> {
        note_refusal(self.shared, &ctx.rt, &ctx.decision, ctx.client_ip, &err).await;
        if ctx.decision.portal.is_some() {
            // The portal answers in HTML, even a refusal made before it was reached.
            let page = self
                .shared
                .portal
                .error_page(&ctx.rt.portal_context(), &err);
            self.write_portal(session, ctx, page).await?;
        } else {
            self.respond(session, ctx, &err).await?;
        }
        ctx.error = Some(err);
        Ok(true)
    }

    /// Answers a portal request (never proxied): reads the form body, lets the
    /// portal render, writes the page.
    async fn serve_portal(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        let deadline = ctx.rt.body_timeout;
        let body = match Self::read_body(session, crate::portal::MAX_BODY, deadline).await {
            Ok(b) => b,
            Err(e) => return self.refuse_body(session, ctx, e).await,
        };
        let path = ctx.decision.portal.clone().unwrap_or_default();
        let request = Self::local_request(session.req_header(), &path, &body, ctx);
        let page = self
            .shared
            .portal
            .handle(&ctx.rt.portal_context(), &request)
            .await;
        if page.failed_authentication {
            metrics::DECISIONS
                .with_label_values(&[metrics::reason::INVALID_LOGIN, "none"])
                .inc();
            failed_authentication(self.shared, &ctx.rt, ctx.client_ip).await;
        }
        self.write_portal(session, ctx, page).await?;
        Ok(true)
    }

    /// Writes a portal response with the portal's security headers.
    async fn write_portal(
        &self,
        session: &mut Session,
        ctx: &RequestCtx,
        page: crate::portal::PortalResponse,
    ) -> pingora::Result<()> {
        let mut resp = ResponseHeader::build(page.status, Some(12))?;
        for (name, value) in crate::portal::SECURITY_HEADERS {
            resp.insert_header(name, value)?;
        }
        resp.insert_header(
            "Content-Security-Policy",
            ctx.rt.portal.branding.csp.as_str(),
        )?;
        for (name, value) in page.headers {
            resp.append_header(name, value)?;
        }
        resp.insert_header("Content-Length", page.body.len().to_string())?;
        resp.insert_header("X-Request-Id", ctx.request_id.clone())?;
        Self::write_complete(session, resp, page.body).await
    }

    /// Refuses a body that could not be read. A client still sending a body too
    /// large is read from (and its bytes dropped) for at most [`LINGER`] after the
    /// refusal is written: closing on unread bytes makes the kernel reset the
    /// connection, and a reset can destroy the refusal before the client reads it.
    async fn refuse_body(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        err: GateError,
    ) -> pingora::Result<bool> {
        let too_large = err == GateError::PayloadTooLarge;
        let answered = self.refuse(session, ctx, err).await;
        let switch = session
            .as_downstream()
            .digest()
            .and_then(|d| d.socket_digest.as_ref())
            .and_then(crate::net::cut::of_connection);
        if let (true, Ok(_), Some(switch)) = (too_large, &answered, switch) {
            switch.last_request();
            let drain = async { while let Ok(Some(_)) = session.read_request_body().await {} };
            let _ = tokio::time::timeout(LINGER, drain).await;
        }
        answered
    }

    /// Reads the whole request body within `deadline`, refusing more than `limit`
    /// bytes. On failure the connection is not reused (the body is not drained).
    async fn read_body(
        session: &mut Session,
        limit: usize,
        deadline: Duration,
    ) -> Result<Vec<u8>, GateError> {
        let read = tokio::time::timeout(deadline, Self::read_body_within(session, limit)).await;
        let result = read.unwrap_or(Err(GateError::BodyTimeout));
        if result.is_err() {
            session.set_keepalive(None);
        }
        result
    }

    async fn read_body_within(session: &mut Session, limit: usize) -> Result<Vec<u8>, GateError> {
        let declared = session
            .req_header()
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(GateError::PayloadTooLarge);
        }
        let mut body = Vec::new();
        loop {
            match session.read_request_body().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > limit {
                        return Err(GateError::PayloadTooLarge);
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(body),
                Err(_) => return Err(GateError::BadRequest("Could not read the request body")),
            }
        }
    }

    /// The local application's view of the request `req` to `path` (below its
    /// prefix) with `body`.
    fn local_request<'a>(
        req: &'a pingora::http::RequestHeader,
        path: &'a str,
        body: &'a [u8],
        ctx: &'a RequestCtx,
    ) -> LocalRequest<'a> {
        LocalRequest {
            method: &req.method,
            path,
            query: req.uri.query(),
            headers: &req.headers,
            body,
            client_ip: ctx.client_ip,
            request_id: ctx.request_id.to_str().ok(),
        }
    }

    /// Answers a management API call (never proxied).
    async fn serve_management(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        let deadline = ctx.rt.body_timeout;
        let path = ctx.decision.management.clone().unwrap_or_default();
        let mut limit = MAX_BODY;
        let mut admitted = None;
        if path == IMPORT_PATH && session.req_header().method == http::Method::POST {
            // Only a caller who may import gets the large body limit.
            let head = Self::local_request(session.req_header(), &path, &[], ctx);
            match self
                .shared
                .management
                .admit_import(&ctx.rt.api_context(), &head)
                .await
            {
                Ok(caller) => admitted = Some(caller),
                Err(e) => {
                    session.set_keepalive(None);
                    return self.refuse(session, ctx, e).await;
                }
            }
            limit = MAX_IMPORT_BODY;
        }
        let body = match Self::read_body(session, limit, deadline).await {
            Ok(b) => b,
            Err(e) => return self.refuse_body(session, ctx, e).await,
        };
        let api = Self::local_request(session.req_header(), &path, &body, ctx);
        match self
            .shared
            .management
            .handle(&ctx.rt.api_context(), &api, admitted)
            .await
        {
            Ok(resp) => {
                let bytes = serde_json::to_vec(&resp.body).unwrap_or_default();
                self.write_json(session, ctx, resp.status, bytes, Vec::new())
                    .await?;
                Ok(true)
            }
            Err(err) => self.refuse(session, ctx, err).await,
        }
    }

    /// Answers one of keygate's operations mounted at a documented path: the
    /// request's body through the endpoint's request template, the management
    /// API's own operation (its rules and authorization), and its answer through
    /// the response template. Refusals are written by the endpoint's dialect.
    async fn serve_mounted(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        let Some(mounted) = ctx.decision.mounted.clone() else {
            return self.refuse(session, ctx, GateError::Internal).await;
        };
        let dialect = ctx.rt.dialect.clone();
        let Some(endpoint) = dialect.endpoint(mounted.index) else {
            return self.refuse(session, ctx, GateError::Internal).await;
        };
        let body = match Self::read_body(session, MAX_BODY, ctx.rt.body_timeout).await {
            Ok(b) => b,
            Err(e) => return self.refuse_body(session, ctx, e).await,
        };
        let id = mounted.id.as_deref();
        let req = session.req_header();
        let sent = match dialect.request_body(mounted.index, &body, id, req.uri.query()) {
            Ok(sent) => sent,
            Err(e) => return self.refuse(session, ctx, e).await,
        };
        let (method, path) = crate::management::operation_target(endpoint.operation, id);
        let api = LocalRequest {
            method: &method,
            path: &path,
            query: req.uri.query(),
            headers: &req.headers,
            body: &sent,
            client_ip: ctx.client_ip,
            request_id: ctx.request_id.to_str().ok(),
        };
        match self
            .shared
            .management
            .handle(&ctx.rt.api_context(), &api, None)
            .await
        {
            Ok(resp) => {
                let said = Said {
                    request_id: ctx.request_id.to_str().unwrap_or(""),
                    now: self.shared.clock.now_utc(),
                };
                let bytes = dialect.response_body(
                    mounted.index,
                    &resp.body,
                    resp.status.as_u16(),
                    id,
                    session.req_header().uri.query(),
                    &said,
                );
                self.write_json(session, ctx, resp.status, bytes, Vec::new())
                    .await?;
                Ok(true)
            }
            Err(err) => self.refuse(session, ctx, err).await,
        }
    }

    pub(super) fn add_common_headers(
        &self,
        resp: &mut ResponseHeader,
        ctx: &RequestCtx,
    ) -> pingora::Result<()> {
        if ctx.decision.principal.is_some() {
            if let Some(d) = &ctx.decision.limit {
                for (name, value) in
                    rate_limit_headers(d, ctx.rt.header_style, self.shared.clock.now_ms())
                {
                    resp.insert_header(name, value)?;
                }
            }
        }
        resp.insert_header("X-Request-Id", ctx.request_id.clone())?;
        if let Some(cors) = &ctx.rt.cors {
            for name in &super::cors::OWNED {
                resp.remove_header(name);
            }
            for (name, value) in cors.response(ctx.origin.as_ref()) {
                resp.append_header(name, value)?;
            }
        }
        Ok(())
    }

    /// Answers a CORS preflight: 204 with the `Access-Control-*` headers.
    async fn answer_preflight(
        &self,
        session: &mut Session,
        ctx: &RequestCtx,
    ) -> pingora::Result<bool> {
        let mut resp = ResponseHeader::build(http::StatusCode::NO_CONTENT, Some(8))?;
        if let Some(cors) = &ctx.rt.cors {
            for (name, value) in cors.preflight(ctx.origin.as_ref()) {
                resp.append_header(name, value)?;
            }
        }
        resp.insert_header("X-Request-Id", ctx.request_id.clone())?;
        session.write_response_header(Box::new(resp), true).await?;
        Ok(true)
    }
}
