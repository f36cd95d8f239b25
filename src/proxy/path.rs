//! Request-path normalisation for route matching.
//!
//! A route table is only as strong as its path matching: `/health/../admin` or
//! `/he%61lth` must not match a public `/health` route while the upstream serves
//! something else. Paths are percent-decoded, duplicate slashes collapsed and a
//! trailing slash dropped for matching; dot segments, encoded slashes, backslashes
//! and control characters are refused outright.

use std::borrow::Cow;

/// Why a path was refused.
pub const MALFORMED_PATH: &str = "Malformed request path";

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The normalised form of `raw` (the path part of the request URI), or an error.
pub fn normalize(raw: &str) -> Result<Cow<'_, str>, &'static str> {
    if !raw.starts_with('/') {
        return Err(MALFORMED_PATH);
    }
    let simple = raw.len() == 1
        || (!raw.ends_with('/')
            && !raw.contains("//")
            && raw
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'%' && b != b'\\')
            && !raw.split('/').any(|s| s == "." || s == ".."));
    if simple {
        return Ok(Cow::Borrowed(raw));
    }
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let (hi, lo) = match (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                (Some(h), Some(l)) => (h, l),
                _ => return Err(MALFORMED_PATH),
            };
            let c = hi << 4 | lo;
            if c == b'/' || c == b'\\' || c < 0x20 || c == 0x7f {
                return Err(MALFORMED_PATH);
            }
            decoded.push(c);
            i += 3;
        } else {
            if b == b'\\' || b < 0x20 || b == 0x7f {
                return Err(MALFORMED_PATH);
            }
            decoded.push(b);
            i += 1;
        }
    }
    let text = String::from_utf8_lossy(&decoded);
    let mut out = String::with_capacity(text.len());
    for segment in text.split('/').filter(|s| !s.is_empty()) {
        if segment == "." || segment == ".." {
            return Err(MALFORMED_PATH);
        }
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_pass_unchanged() {
        assert_eq!(normalize("/").unwrap(), "/");
        assert_eq!(normalize("/api/search").unwrap(), "/api/search");
        assert!(matches!(
            normalize("/api/search").unwrap(),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn encodings_slashes_and_trailing_slash_are_normalised() {
        assert_eq!(normalize("/he%61lth").unwrap(), "/health");
        assert_eq!(normalize("//api///search/").unwrap(), "/api/search");
        assert_eq!(normalize("/api/search/").unwrap(), "/api/search");
    }

    #[test]
    fn traversal_and_smuggled_separators_are_refused() {
        for bad in [
            "/health/../admin",
            "/./x",
            "/a/%2e%2e/b",
            "/a%2fb",
            "/a%5cb",
            "/a\\b",
            "/a%00",
            "/a%zz",
            "/a%4",
            "relative",
            "",
        ] {
            assert!(normalize(bad).is_err(), "{bad}");
        }
    }
}
