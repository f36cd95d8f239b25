//! gRPC-shaped refusals (docs/configuration.md, HTTP/2 and gRPC). A gRPC client
//! reads a call's outcome from `grpc-status` and `grpc-message`, never from an HTTP
//! status or a JSON body, so a request with `content-type: application/grpc*` that
//! keygate answers itself gets HTTP 200 with the status in a trailers-only
//! response: one header block, ending the stream, holding the status and the
//! call's metadata (the `X-RateLimit-*` values, `Retry-After`, `WWW-Authenticate`).
//! Which status each refusal gets is a column of the one rejection table
//! ([`crate::error`]).

use crate::error::{GateError, GrpcStatus};
use http::header::CONTENT_TYPE;
use http::HeaderMap;

/// True when `headers` say the request is a gRPC call (`application/grpc`,
/// `application/grpc+proto`, `application/grpc-web`, ...).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// `message` as a `grpc-message` value: percent-encoded outside printable ASCII
/// and for `%` itself (the gRPC HTTP/2 protocol's rule).
pub fn encode_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `grpc-status` and `grpc-message` of a call refused with `err`.
fn status_and_message(err: &GateError) -> [(&'static str, String); 2] {
    let GrpcStatus(code, _) = err.rejection().grpc;
    [
        ("grpc-status", code.to_string()),
        ("grpc-message", encode_message(&err.message())),
    ]
}

/// The headers of the trailers-only response refusing a gRPC call with `err`
/// (the HTTP status is always 200): `content-type`, `grpc-status`, `grpc-message`
/// and `err`'s own headers as metadata, lowercase.
pub fn refusal_headers(err: &GateError) -> Vec<(String, String)> {
    let mut h = vec![("content-type".to_string(), "application/grpc".to_string())];
    h.extend(status_and_message(err).map(|(name, value)| (name.to_string(), value)));
    for (name, value) in err.headers() {
        h.push((name.to_ascii_lowercase(), value));
    }
    h
}

/// The trailers that end a call already answered, for `err`: `grpc-status` and
/// `grpc-message` (a live call whose credential stopped being good).
pub fn refusal_trailers(err: &GateError) -> http::HeaderMap {
    let GrpcStatus(code, _) = err.rejection().grpc;
    status_trailers(i32::from(code), &err.message())
}

/// Trailers ending a call with status `code`: `grpc-status`, and `grpc-message`
/// (percent-encoded) when there is a message.
pub fn status_trailers(code: i32, message: &str) -> http::HeaderMap {
    let mut t = http::HeaderMap::new();
    t.insert("grpc-status", http::HeaderValue::from(code));
    if !message.is_empty() {
        // Printable ASCII once percent-encoded.
        if let Ok(v) = http::HeaderValue::from_str(&encode_message(message)) {
            t.insert("grpc-message", v);
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_percent_encoded_outside_printable_ascii() {
        assert_eq!(encode_message("API key is required"), "API key is required");
        assert_eq!(encode_message("100% über"), "100%25 %C3%BCber");
        assert_eq!(encode_message("a\nb"), "a%0Ab");
    }

    #[test]
    fn a_refusal_carries_its_status_message_and_metadata() {
        let h = refusal_headers(&GateError::RateLimited { retry_after: 7 });
        let get = |n: &str| h.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        assert_eq!(get("grpc-status"), Some("8"));
        assert_eq!(
            get("grpc-message"),
            Some("Rate limit exceeded. Try again in 7 seconds.")
        );
        assert_eq!(get("retry-after"), Some("7"));
        assert_eq!(get("content-type"), Some("application/grpc"));
    }

    #[test]
    fn a_live_call_ends_with_its_refusals_status_in_trailers() {
        let t = refusal_trailers(&GateError::RevokedKey);
        assert_eq!(t["grpc-status"], "16");
        assert_eq!(t["grpc-message"], "API key has been revoked");
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn grpc_calls_are_told_by_their_content_type() {
        let mut h = HeaderMap::new();
        assert!(!is_grpc(&h));
        h.insert(CONTENT_TYPE, "application/grpc+proto".parse().unwrap());
        assert!(is_grpc(&h));
        h.insert(CONTENT_TYPE, "application/json".parse().unwrap());
        assert!(!is_grpc(&h));
    }
}
