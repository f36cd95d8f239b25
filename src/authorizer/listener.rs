//! [`Authorizer`]: the authorizer's listener, a Pingora HTTP application serving
//! HTTP/1.1 and cleartext HTTP/2 on one port. A gRPC call is Envoy's ext_authz
//! `Check` (or the gRPC health check); any other request is a forward-auth
//! question (nginx `auth_request`, Traefik `forwardAuth`, Caddy `forward_auth`,
//! Envoy's `http_service`), answered 200 to allow and with the refusal itself to
//! refuse.

use super::envoy::{self, CheckRequest, CheckResponse, HttpResponse};
use super::judge::{judge, Judged};
use super::original::{self, Original, Undescribed};
use crate::error::GateError;
use crate::proxy::context::client_ip;
use crate::proxy::grpc::status_trailers;
use crate::proxy::runtime::Runtime;
use crate::proxy::Shared;
use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use pingora::apps::{HttpPersistentSettings, HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use prost::Message;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The largest gRPC message read (Envoy sends the request's headers, and its body
/// only when told to).
const MAX_MESSAGE: usize = 4 * 1024 * 1024;

/// How long a gRPC request's message may take to arrive.
const READ_MESSAGE_WITHIN: Duration = Duration::from_secs(10);

/// A forward-auth request that sends this header (nginx's shipped config does)
/// gets a refusal's body in `X-Keygate-Body` too: nginx drops the body of an
/// `auth_request` answer, and can only pass on its headers.
const BODY_AS_HEADER: &str = "x-keygate-body-as-header";

/// gRPC status codes keygate answers with itself.
mod code {
    pub const OK: i32 = 0;
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const PERMISSION_DENIED: i32 = 7;
    pub const UNIMPLEMENTED: i32 = 12;
}

/// The authorizer application.
pub struct Authorizer {
    shared: Arc<Shared>,
    options: HttpServerOptions,
}

impl Authorizer {
    /// An authorizer deciding over `shared`, HTTP/1.1 and cleartext HTTP/2 alike.
    pub fn new(shared: Arc<Shared>) -> Self {
        let mut options = HttpServerOptions::default();
        options.h2c = true;
        Authorizer { shared, options }
    }
}

fn protocol(session: &ServerSession) -> &'static str {
    if session.is_http2() {
        crate::obs::metrics::protocol::H2
    } else {
        crate::obs::metrics::protocol::H1
    }
}

#[async_trait]
impl HttpServerApp for Authorizer {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        match session.read_request().await {
            Ok(true) => {}
            _ => return None,
        }
        let start = Instant::now();
        // The config this request is decided on, read once.
        let rt = self.shared.runtime.load_full();
        let idle = crate::net::head_deadline::keepalive_secs(rt.idle_timeout);
        session.set_keepalive((!*shutdown.borrow()).then_some(idle));
        let grpc = crate::proxy::grpc::is_grpc(&session.req_header().headers);
        let written = if grpc && session.is_http2() {
            self.grpc_call(&mut session, rt, start).await
        } else {
            self.forward_auth(&mut session, rt, start).await
        };
        if written.is_err() {
            return None;
        }
        let settings = HttpPersistentSettings::for_session(&session);
        match session.finish().await {
            Ok(Some(s)) => Some(ReusedHttpStream::from_reusable_stream(s, settings)),
            _ => None,
        }
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        Some(&self.options)
    }
}

impl Authorizer {
    /// A forward-auth question: 200 and the upstream's headers to allow, the
    /// refusal itself to refuse.
    async fn forward_auth(
        &self,
        session: &mut ServerSession,
        rt: Arc<Runtime>,
        start: Instant,
    ) -> pingora::Result<()> {
        // Nothing of a body is read (the original request is described by
        // headers); one sent anyway is dropped, within the body timeout.
        session.set_read_timeout(Some(rt.body_timeout));
        if session.drain_request_body().await.is_err() {
            session.set_keepalive(None);
        }
        let peer = client_ip(session);
        let req = session.req_header();
        let body_as_header = req.headers.contains_key(BODY_AS_HEADER);
        // The answer is made (and the decision recorded) while the question is
        // borrowed, then written.
        let (resp, body) = match original::of_forward_auth(
            &req.method,
            &req.uri,
            &req.headers,
            peer,
            &rt.authorizer_trusted,
        ) {
            Err(why) => plain_refusal(&undescribed(&why), body_as_header)?,
            Ok(original) => {
                let judged = judge(&self.shared, rt.clone(), &original, start).await;
                let answer = match judged.refusal(&self.shared) {
                    Some(refusal) => {
                        let mut headers = HeaderMap::with_capacity(12);
                        for (name, value) in refusal.headers {
                            headers.append(lowercase(name), value);
                        }
                        if body_as_header {
                            headers.insert(
                                HeaderName::from_static("x-keygate-body"),
                                body_header(&refusal.body),
                            );
                        }
                        (response_head(refusal.status, headers), refusal.body)
                    }
                    None => (
                        allowed_response(&judged, &original, self.shared.clock.now_ms())?,
                        Vec::new(),
                    ),
                };
                judged.finish(&self.shared, &original, protocol(session));
                answer
            }
        };
        write_whole(session, resp, body).await
    }

    /// A gRPC call on the authorizer: Envoy's `Check`, or the health check.
    async fn grpc_call(
        &self,
        session: &mut ServerSession,
        rt: Arc<Runtime>,
        start: Instant,
    ) -> pingora::Result<()> {
        let path = session.req_header().uri.path().to_string();
        let message = match read_message(session).await {
            Ok(m) => m,
            Err((status, why)) => return write_grpc_status(session, status, &why).await,
        };
        match path.as_str() {
            envoy::CHECK_PATH => self.check(session, rt, message, start).await,
            envoy::HEALTH_PATH => {
                let asked = envoy::HealthCheckRequest::decode(message.clone());
                match asked {
                    Ok(_) => {
                        let serving = envoy::HealthCheckResponse { status: 1 };
                        write_grpc_message(session, &serving).await
                    }
                    Err(_) => {
                        write_grpc_status(
                            session,
                            code::INVALID_ARGUMENT,
                            "not a HealthCheckRequest",
                        )
                        .await
                    }
                }
            }
            other => {
                write_grpc_status(
                    session,
                    code::UNIMPLEMENTED,
                    &format!("{other} is not served here"),
                )
                .await
            }
        }
    }

    /// Envoy's ext_authz `Check`: the original request described in a
    /// `CheckRequest`, believed only from a trusted peer.
    async fn check(
        &self,
        session: &mut ServerSession,
        rt: Arc<Runtime>,
        message: Bytes,
        start: Instant,
    ) -> pingora::Result<()> {
        if !original::is_trusted(&rt.authorizer_trusted, client_ip(session)) {
            return write_grpc_status(
                session,
                code::PERMISSION_DENIED,
                "this peer is not in authorizer.trust_forwarded_from",
            )
            .await;
        }
        let described = CheckRequest::decode(message)
            .ok()
            .and_then(|r| original::of_check(&r));
        let Some(original) = described else {
            return write_grpc_status(
                session,
                code::INVALID_ARGUMENT,
                "the CheckRequest describes no HTTP request",
            )
            .await;
        };
        let judged = judge(&self.shared, rt, &original, start).await;
        let answer = check_response(&judged, &original, &self.shared);
        judged.finish(&self.shared, &original, protocol(session));
        write_grpc_message(session, &answer).await
    }
}

/// The refusal for a description that could not be believed.
fn undescribed(why: &Undescribed) -> GateError {
    GateError::InvalidBody(format!("The original request is not described: {why}"))
}

/// An allowed forward-auth answer: 200, the headers the upstream must get (the
/// caller's identity, the request id), the client's (`X-RateLimit-*`), and for
/// Envoy's HTTP service the headers to remove
/// (`x-envoy-auth-headers-to-remove`).
fn allowed_response(
    judged: &Judged,
    original: &Original<'_>,
    now_ms: u64,
) -> pingora::Result<ResponseHeader> {
    let changes = judged.upstream_changes(original);
    let mut headers = HeaderMap::with_capacity(16);
    for (name, value) in changes.set {
        headers.append(name, value);
    }
    for (name, value) in judged.client_headers(now_ms) {
        let name = lowercase(name);
        if name != X_REQUEST_ID || !headers.contains_key(&name) {
            headers.append(name, value);
        }
    }
    if !changes.remove.is_empty() {
        let names: Vec<&str> = changes.remove.iter().map(|n| n.as_str()).collect();
        if let Ok(v) = HeaderValue::from_str(&names.join(", ")) {
            headers.insert(HEADERS_TO_REMOVE, v);
        }
    }
    Ok(response_head(StatusCode::OK, headers))
}

/// A response head made of `headers` as they are: names lowercase, no case map
/// to keep (HTTP/1.1 names are case-insensitive, and every proxy reads them so).
fn response_head(status: StatusCode, headers: HeaderMap) -> ResponseHeader {
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = status;
    parts.headers = headers;
    ResponseHeader::from(parts)
}

/// Envoy's HTTP service reads the headers to remove from the upstream request here.
const HEADERS_TO_REMOVE: HeaderName = HeaderName::from_static("x-envoy-auth-headers-to-remove");

/// `X-Request-Id`.
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The header name of one of keygate's own response headers (`X-RateLimit-*`,
/// `Retry-After`, …), lowercase, without parsing the common ones.
fn lowercase(name: &'static str) -> HeaderName {
    match name {
        "X-RateLimit-Limit" => HeaderName::from_static("x-ratelimit-limit"),
        "X-RateLimit-Remaining" => HeaderName::from_static("x-ratelimit-remaining"),
        "X-RateLimit-Reset" => HeaderName::from_static("x-ratelimit-reset"),
        "X-Request-Id" => X_REQUEST_ID,
        other => HeaderName::from_bytes(other.as_bytes())
            .unwrap_or(HeaderName::from_static("x-keygate-invalid")),
    }
}

/// `body` as a header value: compact JSON on one line.
fn body_header(body: &[u8]) -> HeaderValue {
    let compact = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| serde_json::to_vec(&v).ok())
        .unwrap_or_else(|| {
            body.iter()
                .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b })
                .collect()
        });
    HeaderValue::from_bytes(&compact).unwrap_or_else(|_| HeaderValue::from_static("{}"))
}

/// A refusal made before any decision (the contract's body).
fn plain_refusal(
    err: &GateError,
    body_as_header: bool,
) -> pingora::Result<(ResponseHeader, Vec<u8>)> {
    let body = err.body();
    let mut resp = ResponseHeader::build(err.status(), Some(4))?;
    resp.insert_header("Content-Type", "application/json")?;
    resp.insert_header("Cache-Control", "no-store")?;
    if body_as_header {
        resp.insert_header("X-Keygate-Body", body_header(&body))?;
    }
    Ok((resp, body))
}

/// Writes a whole response with its length.
async fn write_whole(
    session: &mut ServerSession,
    mut resp: ResponseHeader,
    body: Vec<u8>,
) -> pingora::Result<()> {
    resp.insert_header("Content-Length", body.len().to_string())?;
    session.write_response_header(Box::new(resp)).await?;
    if !body.is_empty() {
        session.write_response_body(Bytes::from(body), true).await?;
    }
    Ok(())
}

/// The `CheckResponse` for a decision: `OK` with the upstream's changes, or the
/// refusal's gRPC status with the client's answer (status, headers, body).
fn check_response(judged: &Judged, original: &Original<'_>, shared: &Shared) -> CheckResponse {
    let option = |name: &str, value: &HeaderValue| {
        // keygate's own values are visible ASCII.
        envoy::header(name, value.to_str().unwrap_or_default())
    };
    match judged.refusal(shared) {
        None => {
            let changes = judged.upstream_changes(original);
            CheckResponse {
                status: Some(envoy::RpcStatus {
                    code: code::OK,
                    message: String::new(),
                }),
                http_response: Some(HttpResponse::Ok(envoy::OkHttpResponse {
                    headers: changes
                        .set
                        .iter()
                        .map(|(n, v)| option(n.as_str(), v))
                        .collect(),
                    headers_to_remove: changes.remove.iter().map(|n| n.to_string()).collect(),
                    response_headers_to_add: judged
                        .client_headers(shared.clock.now_ms())
                        .iter()
                        .map(|(n, v)| option(n, v))
                        .collect(),
                    query_parameters_to_remove: changes.remove_params,
                })),
            }
        }
        Some(refusal) => {
            let err = judged.error.as_ref().unwrap_or(&GateError::Internal);
            let crate::error::GrpcStatus(grpc_code, _) = err.rejection().grpc;
            let mut headers: Vec<envoy::HeaderValueOption> =
                refusal.headers.iter().map(|(n, v)| option(n, v)).collect();
            if judged.grpc {
                // A gRPC client reads the outcome from these, as behind keygate.
                for (name, value) in crate::proxy::grpc::refusal_headers(err) {
                    if name.starts_with("grpc-") {
                        headers.push(envoy::header(&name, &value));
                    }
                }
            }
            CheckResponse {
                status: Some(envoy::RpcStatus {
                    code: i32::from(grpc_code),
                    message: err.message(),
                }),
                http_response: Some(HttpResponse::Denied(envoy::DeniedHttpResponse {
                    status: Some(envoy::HttpStatus {
                        code: i32::from(refusal.status.as_u16()),
                    }),
                    headers,
                    body: String::from_utf8_lossy(&refusal.body).into_owned(),
                })),
            }
        }
    }
}

/// Reads one length-prefixed gRPC message (uncompressed).
async fn read_message(session: &mut ServerSession) -> Result<Bytes, (i32, String)> {
    let read = async {
        let mut body = BytesMut::new();
        while let Some(chunk) = session.read_request_body().await.map_err(|e| {
            (
                code::INVALID_ARGUMENT,
                format!("could not read the call: {e}"),
            )
        })? {
            if body.len() + chunk.len() > MAX_MESSAGE + 5 {
                return Err((
                    code::INVALID_ARGUMENT,
                    "the message is too large".to_string(),
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    let body = tokio::time::timeout(READ_MESSAGE_WITHIN, read)
        .await
        .map_err(|_| {
            (
                code::INVALID_ARGUMENT,
                "the message took too long".to_string(),
            )
        })??;
    if body.len() < 5 {
        return Err((code::INVALID_ARGUMENT, "no message".to_string()));
    }
    if body[0] != 0 {
        return Err((
            code::UNIMPLEMENTED,
            "compressed messages are not accepted".to_string(),
        ));
    }
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    if body.len() != 5 + len {
        return Err((
            code::INVALID_ARGUMENT,
            "one whole message expected".to_string(),
        ));
    }
    Ok(body.freeze().slice(5..))
}

/// The response headers of a gRPC answer.
fn grpc_head() -> pingora::Result<ResponseHeader> {
    let mut resp = ResponseHeader::build(StatusCode::OK, Some(2))?;
    resp.insert_header("content-type", "application/grpc")?;
    Ok(resp)
}

/// Answers a call with `message` and status `OK`, encoded straight into its frame.
async fn write_grpc_message(
    session: &mut ServerSession,
    message: &impl Message,
) -> pingora::Result<()> {
    session
        .write_response_header(Box::new(grpc_head()?))
        .await?;
    let len = message.encoded_len();
    let mut framed = BytesMut::with_capacity(5 + len);
    framed.put_u8(0);
    framed.put_u32(len as u32);
    if message.encode(&mut framed).is_err() {
        return Err(pingora::Error::explain(
            pingora::ErrorType::InternalError,
            "could not encode the answer",
        ));
    }
    session.write_response_body(framed.freeze(), false).await?;
    session
        .write_response_trailers(status_trailers(code::OK, ""))
        .await
}

/// Answers a call with status `status` and no message.
async fn write_grpc_status(
    session: &mut ServerSession,
    status: i32,
    message: &str,
) -> pingora::Result<()> {
    session
        .write_response_header(Box::new(grpc_head()?))
        .await?;
    session
        .write_response_trailers(status_trailers(status, message))
        .await
}
