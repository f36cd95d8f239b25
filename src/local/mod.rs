//! What keygate's local applications — the management API and the portal — are
//! given: one request, already read, with its path below the application's prefix.
//! The front door (`crate::proxy::front`) reads the body within its limits and
//! writes the answer; the applications never see Pingora.

use http::{HeaderMap, Method};
use std::net::IpAddr;

/// A request answered by keygate itself, already read.
pub struct LocalRequest<'a> {
    /// Method.
    pub method: &'a Method,
    /// Path below the application's prefix, canonical (`/keys/key_x`).
    pub path: &'a str,
    /// Query string.
    pub query: Option<&'a str>,
    /// Headers (credentials, cookies).
    pub headers: &'a HeaderMap,
    /// Body bytes, within the application's limit.
    pub body: &'a [u8],
    /// Client address (sign-in throttling, per-IP limits).
    pub client_ip: Option<IpAddr>,
    /// The request's id (`X-Request-Id`), for the audit log.
    pub request_id: Option<&'a str>,
}

impl LocalRequest<'_> {
    /// The audit log's view of this request made by `actor` (a key id or a user
    /// id).
    pub fn audit_origin(&self, actor: &str) -> crate::domain::AuditOrigin {
        crate::domain::AuditOrigin {
            actor: actor.to_string(),
            client_ip: self.client_ip.map(|ip| ip.to_string()),
            request_id: self.request_id.map(str::to_string),
        }
    }
}

pub mod page;
pub mod router;
