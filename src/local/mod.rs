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
}

pub mod page;
pub mod router;
