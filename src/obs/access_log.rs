//! The access line: one per request (target `keygate::access`, level INFO, so
//! `RUST_LOG` turns it on and off like any other), formatted here by hand into the
//! same text or JSON shape `tracing`'s formatter gives every other line, and handed
//! to [`crate::obs::log_writer`]. Formatting it through `tracing` cost about 5 µs of CPU
//! per request (field visitors, `Debug` padding, a timestamp formatted per line);
//! this writes a few dozen bytes with one cached timestamp per second.

use crate::obs::log_writer;
use std::cell::RefCell;
use std::io::Write;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};

/// What one access line says (never a key or a token: the key's id at most).
#[derive(Clone, Copy, Debug)]
pub struct AccessLine<'a> {
    /// `X-Request-Id` as sent upstream.
    pub request_id: &'a str,
    /// Request method.
    pub method: &'a str,
    /// `h1` or `h2`.
    pub protocol: &'a str,
    /// The route's configured name (or `management`, `portal`).
    pub route: &'a str,
    /// The request's path, never its query string (which may carry a key).
    pub path: &'a str,
    /// `outcome` label.
    pub outcome: &'a str,
    /// `reason` label, or `-`.
    pub reason: &'a str,
    /// Response status (0: none written).
    pub status: u16,
    /// The API key's id, or `-`.
    pub key_id: &'a str,
    /// Client address.
    pub client: Option<IpAddr>,
    /// Time from the request's arrival to its log line, in milliseconds.
    pub latency_ms: f64,
}

/// JSON lines (`serve --log-format json`) instead of text.
static JSON: AtomicBool = AtomicBool::new(false);

/// Writes access lines as JSON objects (like the rest of the log) when `json`.
pub fn set_json(json: bool) {
    JSON.store(json, Ordering::Relaxed);
}

/// True when `RUST_LOG` lets access lines through.
#[inline]
pub fn enabled() -> bool {
    tracing::enabled!(target: "keygate::access", tracing::Level::INFO)
}

thread_local! {
    /// This thread's line being built, and the second its timestamp prefix is for.
    static SCRATCH: RefCell<(Vec<u8>, u64, [u8; 19])> = const { RefCell::new((Vec::new(), u64::MAX, [0; 19])) };
}

/// `YYYY-MM-DDTHH:MM:SS` of `secs` since the epoch (UTC).
fn second_prefix(secs: u64) -> [u8; 19] {
    let mut out = [b'0'; 19];
    let t = chrono::DateTime::from_timestamp(secs as i64, 0).unwrap_or_default();
    let text = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let n = text.len().min(19);
    out[..n].copy_from_slice(&text.as_bytes()[..n]);
    out
}

/// Writes `s` as a JSON string (quoted, escaped): the quoting of both formats.
fn quoted(buf: &mut Vec<u8>, s: &str) {
    if s.bytes()
        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\' || b == b' ')
    {
        buf.push(b'"');
        buf.extend_from_slice(s.as_bytes());
        buf.push(b'"');
    } else {
        let _ = serde_json::to_writer(&mut *buf, s);
    }
}

fn number(buf: &mut Vec<u8>, n: u64) {
    buf.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn client(buf: &mut Vec<u8>, ip: Option<IpAddr>) {
    match ip {
        Some(IpAddr::V4(v4)) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf.push(b'.');
                }
                number(buf, octet.into());
            }
        }
        Some(ip) => {
            let _ = write!(buf, "{ip}");
        }
        None => {}
    }
}

/// Formats `line` at `now_us` (Unix microseconds) into `buf`: text or JSON.
pub fn format(
    buf: &mut Vec<u8>,
    line: &AccessLine<'_>,
    prefix: &[u8; 19],
    now_us: u64,
    json: bool,
) {
    let micros = now_us % 1_000_000;
    let mut frac = [b'0'; 6];
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(micros).as_bytes();
    frac[6 - digits.len()..].copy_from_slice(digits);
    let latency = (line.latency_ms * 1000.0).round() / 1000.0;
    let mut ryu = ryu::Buffer::new();
    let latency = ryu.format(latency).as_bytes();
    if json {
        buf.extend_from_slice(b"{\"timestamp\":\"");
        buf.extend_from_slice(prefix);
        buf.push(b'.');
        buf.extend_from_slice(&frac);
        buf.extend_from_slice(b"Z\",\"level\":\"INFO\",\"fields\":{\"request_id\":");
        quoted(buf, line.request_id);
        buf.extend_from_slice(b",\"method\":");
        quoted(buf, line.method);
        buf.extend_from_slice(b",\"protocol\":");
        quoted(buf, line.protocol);
        buf.extend_from_slice(b",\"route\":");
        quoted(buf, line.route);
        buf.extend_from_slice(b",\"path\":");
        quoted(buf, line.path);
        buf.extend_from_slice(b",\"outcome\":");
        quoted(buf, line.outcome);
        buf.extend_from_slice(b",\"reason\":");
        quoted(buf, line.reason);
        buf.extend_from_slice(b",\"status\":");
        number(buf, line.status.into());
        buf.extend_from_slice(b",\"key_id\":");
        quoted(buf, line.key_id);
        buf.extend_from_slice(b",\"client\":\"");
        client(buf, line.client);
        buf.extend_from_slice(b"\",\"latency_ms\":");
        buf.extend_from_slice(latency);
        buf.extend_from_slice(b"},\"target\":\"keygate::access\"}\n");
    } else {
        buf.extend_from_slice(prefix);
        buf.push(b'.');
        buf.extend_from_slice(&frac);
        buf.extend_from_slice(b"Z  INFO keygate::access: request_id=");
        quoted(buf, line.request_id);
        buf.extend_from_slice(b" method=");
        buf.extend_from_slice(line.method.as_bytes());
        buf.extend_from_slice(b" protocol=");
        buf.extend_from_slice(line.protocol.as_bytes());
        buf.extend_from_slice(b" route=");
        quoted(buf, line.route);
        buf.extend_from_slice(b" path=");
        quoted(buf, line.path);
        buf.extend_from_slice(b" outcome=");
        quoted(buf, line.outcome);
        buf.extend_from_slice(b" reason=");
        quoted(buf, line.reason);
        buf.extend_from_slice(b" status=");
        number(buf, line.status.into());
        buf.extend_from_slice(b" key_id=");
        quoted(buf, line.key_id);
        buf.extend_from_slice(b" client=");
        client(buf, line.client);
        buf.extend_from_slice(b" latency_ms=");
        buf.extend_from_slice(latency);
        buf.push(b'\n');
    }
}

/// Writes the access line of one request (when [`enabled`]), stamped `now_us`.
pub fn write(line: &AccessLine<'_>, now_us: u64) {
    let json = JSON.load(Ordering::Relaxed);
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        let (buf, second, prefix) = &mut *s;
        let secs = now_us / 1_000_000;
        if *second != secs {
            *prefix = second_prefix(secs);
            *second = secs;
        }
        buf.clear();
        format(buf, line, prefix, now_us, json);
        log_writer::append(buf);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line() -> AccessLine<'static> {
        AccessLine {
            request_id: "abc\"def",
            method: "GET",
            protocol: "h2",
            route: "/api/search",
            path: "/api/search",
            outcome: "allowed",
            reason: "-",
            status: 200,
            key_id: "key_1",
            client: Some("10.1.2.3".parse().unwrap()),
            latency_ms: 1.234_567,
        }
    }

    #[test]
    fn text_lines_have_the_shape_of_every_other_line() {
        let mut buf = Vec::new();
        let prefix = second_prefix(1_764_610_548);
        format(&mut buf, &line(), &prefix, 1_764_610_548_000_042, false);
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "2025-12-01T17:35:48.000042Z  INFO keygate::access: request_id=\"abc\\\"def\" method=GET \
             protocol=h2 route=\"/api/search\" path=\"/api/search\" outcome=\"allowed\" reason=\"-\" status=200 key_id=\"key_1\" \
             client=10.1.2.3 latency_ms=1.235\n"
        );
    }

    #[test]
    fn json_lines_parse_and_carry_every_field() {
        let mut buf = Vec::new();
        let prefix = second_prefix(1_764_610_548);
        let mut l = line();
        l.client = Some("::1".parse().unwrap());
        format(&mut buf, &l, &prefix, 1_764_610_548_123_456, true);
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["target"], "keygate::access");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["timestamp"], "2025-12-01T17:35:48.123456Z");
        assert_eq!(v["fields"]["request_id"], "abc\"def");
        assert_eq!(v["fields"]["status"], 200);
        assert_eq!(v["fields"]["protocol"], "h2");
        assert_eq!(v["fields"]["path"], "/api/search");
        assert_eq!(v["fields"]["client"], "::1");
        assert_eq!(v["fields"]["latency_ms"], 1.235);
    }

    #[test]
    fn control_characters_are_escaped() {
        let mut buf = Vec::new();
        quoted(&mut buf, "a\nb");
        assert_eq!(buf, b"\"a\\nb\"");
    }
}
