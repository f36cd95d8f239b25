//! Credential extraction from an arbitrary header set and query string: never a
//! panic, and a credential found is always one the request carried.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use keygate::auth::key_format::KeyFormat;
use keygate::auth::credentials::{bearer_token, extract, Source};
use keygate::auth::jwt::looks_like_jwt;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Input: header lines `name: value` separated by '\n'; a line starting with
    // '?' is the query string.
    let mut headers = HeaderMap::new();
    let mut query = None;
    for line in data.split(|b| *b == b'\n') {
        if let Some(q) = line.strip_prefix(b"?") {
            query = std::str::from_utf8(q).ok();
            continue;
        }
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            headers.append(n, v);
        }
        let _ = bearer_token(value);
    }
    let sources: Vec<Source> = ["header:x-api-key", "bearer", "query:api_key"]
        .iter()
        .filter_map(|s| Source::parse(s).ok())
        .collect();
    if let Ok(c) = extract(&sources, &headers, query) {
        let v = c.value.as_bytes();
        let carried = data.windows(v.len().max(1)).any(|w| w == v) || v.is_empty();
        assert!(carried, "a credential the request did not carry");
        let format = KeyFormat::parse(
            keygate::auth::key_format::DEFAULT_FORMAT,
            "kg",
            &["sk_".to_string()],
        );
        let _ = format.map(|f| f.classify(&c.value));
        let _ = looks_like_jwt(&c.value);
    }
});
