//! Finding the credential in a request: `header:NAME`, `bearer`, `query:NAME`, in
//! the configured order. Two different credentials in one request are refused,
//! never guessed between.

use http::header::AUTHORIZATION;
use http::HeaderMap;
use std::fmt;

/// A configured credential source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A request header (name lower-cased).
    Header(http::HeaderName),
    /// `Authorization: Bearer <credential>`.
    Bearer,
    /// A query-string parameter.
    Query(String),
}

impl Source {
    /// Parses `bearer`, `header:NAME` or `query:NAME` (NAME an HTTP token; a header
    /// name is lower-cased). The one grammar of `api_keys.sources`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let token = |name: &str| !name.is_empty() && name.bytes().all(is_token_char);
        let parsed = match text.split_once(':') {
            None if text == "bearer" => Some(Source::Bearer),
            Some(("header", name)) if token(name) => {
                http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                    .ok()
                    .map(Source::Header)
            }
            Some(("query", name)) if token(name) => Some(Source::Query(name.to_string())),
            _ => None,
        };
        parsed.ok_or_else(|| {
            format!("`{text}` is not a source (use bearer, header:NAME or query:NAME)")
        })
    }

    /// Parses `api_keys.sources` in order: at least one, none twice (names compared
    /// without case). Every problem is returned, located by its YAML path.
    pub fn parse_all(texts: &[String]) -> Result<Vec<Self>, Vec<crate::config::Problem>> {
        use crate::config::Problem;
        let mut problems = Vec::new();
        if texts.is_empty() {
            problems.push(Problem::new(
                "api_keys.sources",
                "at least one source is required",
            ));
        }
        let mut sources = Vec::with_capacity(texts.len());
        for (i, text) in texts.iter().enumerate() {
            match Source::parse(text) {
                Ok(source) => sources.push(source),
                Err(e) => problems.push(Problem::new(format!("api_keys.sources[{i}]"), e)),
            }
            if texts[..i].iter().any(|o| o.eq_ignore_ascii_case(text)) {
                problems.push(Problem::new(
                    format!("api_keys.sources[{i}]"),
                    "duplicate source",
                ));
            }
        }
        if problems.is_empty() {
            Ok(sources)
        } else {
            Err(problems)
        }
    }
}

/// A character of an HTTP token (RFC 9110 `tchar`).
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A credential as presented. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// The raw value; empty when the header was present but unusable.
    pub value: String,
}

impl Drop for Credential {
    /// The presented secret is wiped when the request is done with it.
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.value);
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Credential({})",
            crate::auth::api_key::redact(&self.value)
        )
    }
}

/// Why no single credential could be taken from a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// No source held a credential.
    #[error("no credential")]
    Missing,
    /// Sources held different credentials.
    #[error("ambiguous credentials")]
    Ambiguous,
}

/// Longest value considered; longer values are kept as an unusable credential.
/// (Above the 8 KiB token limit, so an oversized JWT is refused as a token.)
const MAX_VALUE: usize = 16 * 1024;

fn usable(bytes: &[u8]) -> String {
    if bytes.len() > MAX_VALUE {
        return String::new();
    }
    std::str::from_utf8(bytes)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Extracts the one credential of a request, looking at `sources` in order.
pub fn extract(
    sources: &[Source],
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Credential, CredentialError> {
    let mut found: Option<String> = None;
    let mut offer = |value: String| -> Result<(), CredentialError> {
        match &found {
            Some(existing) if *existing != value => Err(CredentialError::Ambiguous),
            Some(_) => Ok(()),
            None => {
                found = Some(value);
                Ok(())
            }
        }
    };
    for source in sources {
        match source {
            Source::Header(name) => {
                for v in headers.get_all(name) {
                    offer(usable(v.as_bytes()))?;
                }
            }
            Source::Bearer => {
                for v in headers.get_all(AUTHORIZATION) {
                    if let Some(token) = bearer_token(v.as_bytes()) {
                        offer(token)?;
                    }
                }
            }
            Source::Query(name) => {
                for (k, v) in query
                    .unwrap_or("")
                    .split('&')
                    .filter_map(|p| p.split_once('='))
                {
                    if k == name {
                        offer(usable(v.as_bytes()))?;
                    }
                }
            }
        }
    }
    found
        .map(|value| Credential { value })
        .ok_or(CredentialError::Missing)
}

/// The token of an `Authorization: Bearer …` value (scheme case-insensitive);
/// `None` for other schemes.
pub fn bearer_token(value: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(value).ok();
    let Some(text) = text else {
        return value
            .get(..7)
            .filter(|s| s.eq_ignore_ascii_case(b"bearer "))
            .map(|_| String::new());
    };
    // Compared as bytes: slicing the text at 6 panicked when a multi-byte
    // character straddled it (found by fuzz/fuzz_targets/credentials.rs).
    let bytes = text.trim_start().as_bytes();
    if bytes.len() >= 6
        && bytes[..6].eq_ignore_ascii_case(b"bearer")
        && (bytes.len() == 6 || bytes[6] == b' ')
    {
        Some(usable(&bytes[6..]))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn multi_byte_characters_near_the_scheme_do_not_panic() {
        // Regression: the fuzzer's crash input, a 2-byte character across byte 6.
        assert_eq!(bearer_token("(a ,ݔeݔey: by: b".as_bytes()), None);
        assert_eq!(bearer_token("bearerݔ".as_bytes()), None);
        assert_eq!(bearer_token("ééé".as_bytes()), None);
        assert_eq!(bearer_token("Bearer ééé".as_bytes()), Some("ééé".into()));
    }

    fn sources() -> Vec<Source> {
        ["header:x-api-key", "bearer", "query:api_key"]
            .iter()
            .map(|s| Source::parse(s).unwrap())
            .collect()
    }

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_bytes(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn each_source_is_found() {
        let s = sources();
        assert_eq!(
            extract(&s, &headers(&[("X-API-KEY", b"k1")]), None)
                .unwrap()
                .value,
            "k1"
        );
        assert_eq!(
            extract(&s, &headers(&[("authorization", b"bearer k2")]), None)
                .unwrap()
                .value,
            "k2"
        );
        assert_eq!(
            extract(&s, &HeaderMap::new(), Some("a=1&api_key=k3"))
                .unwrap()
                .value,
            "k3"
        );
    }

    #[test]
    fn nothing_or_other_schemes_is_missing() {
        let s = sources();
        assert_eq!(
            extract(&s, &HeaderMap::new(), None),
            Err(CredentialError::Missing)
        );
        assert_eq!(
            extract(&s, &headers(&[("authorization", b"Basic dTpw")]), None),
            Err(CredentialError::Missing)
        );
        assert_eq!(
            extract(&s, &HeaderMap::new(), Some("api_key")),
            Err(CredentialError::Missing)
        );
    }

    #[test]
    fn an_empty_bearer_is_a_present_but_unusable_credential() {
        let s = sources();
        assert_eq!(
            extract(&s, &headers(&[("authorization", b"Bearer ")]), None)
                .unwrap()
                .value,
            ""
        );
        assert_eq!(
            extract(&s, &headers(&[("authorization", b"Bearer")]), None)
                .unwrap()
                .value,
            ""
        );
    }

    #[test]
    fn different_credentials_are_ambiguous_and_the_same_one_twice_is_not() {
        let s = sources();
        let two = headers(&[("x-api-key", b"a"), ("authorization", b"Bearer b")]);
        assert_eq!(extract(&s, &two, None), Err(CredentialError::Ambiguous));
        let repeated = headers(&[("x-api-key", b"a"), ("x-api-key", b"b")]);
        assert_eq!(
            extract(&s, &repeated, None),
            Err(CredentialError::Ambiguous)
        );
        let same = headers(&[("x-api-key", b"a"), ("authorization", b"Bearer a")]);
        assert_eq!(extract(&s, &same, Some("api_key=a")).unwrap().value, "a");
        assert_eq!(
            extract(&s, &HeaderMap::new(), Some("api_key=a&api_key=b")),
            Err(CredentialError::Ambiguous)
        );
    }

    #[test]
    fn non_utf8_and_huge_values_are_unusable_not_panics() {
        let s = sources();
        assert_eq!(
            extract(&s, &headers(&[("x-api-key", b"\xff\xfe")]), None)
                .unwrap()
                .value,
            ""
        );
        let huge = vec![b'a'; 17 * 1024];
        assert_eq!(
            extract(&s, &headers(&[("x-api-key", &huge)]), None)
                .unwrap()
                .value,
            ""
        );
        assert!(!format!(
            "{:?}",
            Credential {
                value: "kg_sk_live_secretsecretsecret".into()
            }
        )
        .contains("secretsecret"));
    }
}
