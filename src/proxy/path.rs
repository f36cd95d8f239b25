//! Request paths: the one form the decision and the upstream share.
//!
//! A route table is only as strong as its path matching. If keygate matched one form
//! of a path and forwarded another, an upstream could serve something the decision
//! never saw: `//public/api/admin` read by a WHATWG URL parser as host `public`,
//! `/public/..;/api/admin` normalised by Tomcat to `/api/admin`, `/he%61lth` decoded
//! to `/health`. So [`canonicalize`] gives:
//! - `forward`: what the upstream receives — duplicate slashes collapsed, escapes of
//!   unreserved characters decoded (RFC 3986 §6.2.2.2) and the rest upper-cased,
//!   bytes a path may not hold raw escaped, the trailing slash kept;
//! - `decoded`: `forward` fully percent-decoded, without the trailing slash: what a
//!   decoding upstream routes on, and what routes are matched against;
//! - `without_params`: `decoded` with `;parameters` cut from every segment, when a
//!   segment has one (Tomcat and Spring drop them): the route must be the same both
//!   ways, or the request is refused.
//!
//! Refused outright: dot segments (`.`, `..`, escaped or carrying `;` parameters),
//! escaped `/` and `\`, backslashes, control characters, bad escapes, escapes that
//! decode to invalid UTF-8 (`%c0%ae`, an overlong `.` to lenient decoders), and
//! double-escaped dots and separators (`%252e`: `.` to an upstream that decodes
//! twice).

use std::borrow::Cow;

/// Why a path was refused.
pub const MALFORMED_PATH: &str = "Malformed request path";

/// A request path in the forms the request path needs (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanonicalPath<'a> {
    /// The path to forward upstream (borrowed when the request's own is canonical).
    pub forward: Cow<'a, str>,
    /// Fully decoded, no trailing slash: what routes match.
    pub decoded: Cow<'a, str>,
    /// `decoded` without `;parameters`, when some segment carries them.
    pub without_params: Option<String>,
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Bytes a path segment may hold unescaped (RFC 3986 `pchar` without `%`).
fn raw_ok(b: u8) -> bool {
    unreserved(b) || b"!$&'()*+,;=:@".contains(&b)
}

/// True for a byte no path may hold, escaped or not.
fn forbidden(b: u8) -> bool {
    b == b'\\' || b < 0x20 || b == 0x7f
}

/// True when the escape at `bytes[i]` is `%25` followed by the escape of a dot, a
/// slash or a backslash (`%252e`, `%252F`, `%255c`).
fn double_escaped(bytes: &[u8], i: usize) -> bool {
    bytes[i + 1] == b'2'
        && bytes[i + 2] == b'5'
        && bytes.get(i + 3..i + 5).is_some_and(|e| {
            let e = e.to_ascii_lowercase();
            matches!(&e[..], b"2e" | b"2f" | b"5c")
        })
}

/// True when `raw` is already canonical and needs no work: visible ASCII only, no
/// escapes, backslashes, parameters, empty or dot segments.
fn is_simple(raw: &str) -> bool {
    if raw == "/" {
        return true;
    }
    let body = raw.strip_suffix('/').unwrap_or(raw);
    !body.is_empty()
        && body.bytes().all(|b| (raw_ok(b) && b != b';') || b == b'/')
        && !body[1..]
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
}

fn push_escaped(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 15)]));
}

/// The forms of `raw` (the path part of the request target), or why it is refused.
pub fn canonicalize(raw: &str) -> Result<CanonicalPath<'_>, &'static str> {
    if !raw.starts_with('/') {
        return Err(MALFORMED_PATH);
    }
    if is_simple(raw) {
        let decoded = match raw.strip_suffix('/') {
            Some(body) if !body.is_empty() => body,
            _ => raw,
        };
        return Ok(CanonicalPath {
            forward: Cow::Borrowed(raw),
            decoded: Cow::Borrowed(decoded),
            without_params: None,
        });
    }
    let mut forward = String::with_capacity(raw.len());
    let mut decoded = String::with_capacity(raw.len());
    let mut without_params = String::with_capacity(raw.len());
    let mut has_params = false;
    let mut segment_bytes = Vec::new();
    for segment in raw[1..].split('/').filter(|s| !s.is_empty()) {
        forward.push('/');
        segment_bytes.clear();
        let bytes = segment.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b == b'%' {
                let c = match (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) {
                    (Some(h), Some(l)) => h << 4 | l,
                    _ => return Err(MALFORMED_PATH),
                };
                if c == b'/' || forbidden(c) || double_escaped(bytes, i) {
                    return Err(MALFORMED_PATH);
                }
                if unreserved(c) {
                    forward.push(char::from(c));
                } else {
                    push_escaped(&mut forward, c);
                }
                segment_bytes.push(c);
                i += 3;
            } else {
                if forbidden(b) {
                    return Err(MALFORMED_PATH);
                }
                if raw_ok(b) {
                    forward.push(char::from(b));
                } else {
                    push_escaped(&mut forward, b);
                }
                segment_bytes.push(b);
                i += 1;
            }
        }
        let text = std::str::from_utf8(&segment_bytes).map_err(|_| MALFORMED_PATH)?;
        let name = text.split(';').next().unwrap_or_default();
        if matches!(text, "." | "..") || matches!(name, "." | "..") {
            return Err(MALFORMED_PATH);
        }
        decoded.push('/');
        decoded.push_str(text);
        if name.len() != text.len() {
            has_params = true;
        }
        if !name.is_empty() {
            without_params.push('/');
            without_params.push_str(name);
        }
    }
    if forward.is_empty() || raw.ends_with('/') {
        forward.push('/');
    }
    if decoded.is_empty() {
        decoded.push('/');
    }
    if without_params.is_empty() {
        without_params.push('/');
    }
    Ok(CanonicalPath {
        forward: if forward == raw {
            Cow::Borrowed(raw)
        } else {
            Cow::Owned(forward)
        },
        decoded: Cow::Owned(decoded),
        without_params: has_params.then_some(without_params),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forms(raw: &str) -> (String, String, Option<String>) {
        let c = canonicalize(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
        (
            c.forward.into_owned(),
            c.decoded.into_owned(),
            c.without_params,
        )
    }

    #[test]
    fn plain_paths_pass_unchanged_and_borrowed() {
        for raw in [
            "/",
            "/api/search",
            "/api/search/",
            "/a-b_c~d.e/f:g@h!$&'()*+,=",
        ] {
            let c = canonicalize(raw).unwrap();
            assert!(matches!(c.forward, Cow::Borrowed(_)), "{raw}");
            assert!(matches!(c.decoded, Cow::Borrowed(_)), "{raw}");
        }
        assert_eq!(forms("/api/search/").1, "/api/search");
        assert_eq!(forms("/").1, "/");
    }

    #[test]
    fn what_is_forwarded_is_what_was_matched() {
        // Leading `//` would be read as an authority by a URL parser.
        assert_eq!(
            forms("//public/api/admin/users"),
            (
                "/public/api/admin/users".into(),
                "/public/api/admin/users".into(),
                None
            )
        );
        assert_eq!(forms("//api///search/").0, "/api/search/");
        assert_eq!(forms("//"), ("/".into(), "/".into(), None));
        assert_eq!(forms("/a//"), ("/a/".into(), "/a".into(), None));
        assert_eq!(
            forms("/he%61lth"),
            ("/health".into(), "/health".into(), None)
        );
        assert_eq!(
            forms("/files/a%20b%3f"),
            ("/files/a%20b%3F".into(), "/files/a b?".into(), None)
        );
        assert_eq!(forms("/caf\u{e9}").0, "/caf%C3%A9");
        assert_eq!(forms("/caf\u{e9}").1, "/caf\u{e9}");
        assert_eq!(forms("/caf%c3%a9").0, "/caf%C3%A9");
        assert_eq!(forms("/100%25").0, "/100%25", "a literal percent stays");
    }

    #[test]
    fn path_parameters_are_seen_both_ways() {
        assert_eq!(
            forms("/admin;jsessionid=x/users"),
            (
                "/admin;jsessionid=x/users".into(),
                "/admin;jsessionid=x/users".into(),
                Some("/admin/users".into())
            )
        );
        assert_eq!(forms("/admin%3Bx").2, Some("/admin".into()));
        assert_eq!(forms("/;x/admin").2, Some("/admin".into()));
    }

    #[test]
    fn traversal_and_smuggled_separators_are_refused() {
        for bad in [
            "/health/../admin",
            "/./x",
            "/a/%2e%2e/b",
            "/a/%2E/b",
            "/public/..;/api/admin/x",
            "/public/.;x/api",
            "/public/%2e%2e%3b/api",
            "/public/%c0%ae%c0%ae/api",
            "/public/%ff",
            "/public/%252e%252e/api",
            "/public/%252F",
            "/a%255Cb",
            "/a%2fb",
            "/a%5cb",
            "/a\\b",
            "/a%00",
            "/a%zz",
            "/a%4",
            "relative",
            "",
            "*",
        ] {
            assert!(canonicalize(bad).is_err(), "{bad}");
        }
    }
}
