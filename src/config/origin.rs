//! The grammar of `cors.allow_origins`: an exact origin (`https://app.example.com`,
//! `http://localhost:3000`) or every subdomain of one (`https://*.example.com`),
//! parsed once for `check` and for the request path alike. A browser's `Origin`
//! header is matched by its parts (scheme, host, port), never as text: a wildcard
//! matches `https://a.example.com` and `https://a.b.example.com`, and never
//! `https://example.com`, `https://evil-example.com`, `https://example.com.evil.com`,
//! another scheme or another port.

/// An origin as its parts; the port is explicit (80 or 443 when the text had none).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Origin {
    https: bool,
    /// Lowercase host: a DNS name, an IPv4 address, or an IPv6 address in brackets.
    host: String,
    port: u16,
}

impl Origin {
    /// Parses `scheme://host[:port]` (no path, query, user or trailing dot), as a
    /// browser sends it in `Origin`.
    fn parse(text: &str) -> Option<Origin> {
        let (https, rest) = if let Some(r) = strip_prefix_ignore_case(text, "https://") {
            (true, r)
        } else {
            (false, strip_prefix_ignore_case(text, "http://")?)
        };
        let (host, port) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains(']') => {
                let digits = &rest[i + 1..];
                if digits.is_empty()
                    || digits.len() > 5
                    || !digits.bytes().all(|b| b.is_ascii_digit())
                {
                    return None;
                }
                (&rest[..i], digits.parse::<u16>().ok().filter(|p| *p > 0)?)
            }
            _ => (rest, if https { 443 } else { 80 }),
        };
        let valid = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            v6.parse::<std::net::Ipv6Addr>().is_ok()
        } else {
            dns_name(host)
        };
        valid.then(|| Origin {
            https,
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

fn strip_prefix_ignore_case<'t>(text: &'t str, prefix: &str) -> Option<&'t str> {
    (text.len() >= prefix.len()
        && text.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes()))
    .then(|| &text[prefix.len()..])
}

/// Dot-separated labels of letters, digits and inner `-`, each 1-63 long.
fn dns_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// One entry of `cors.allow_origins` other than `*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginPattern {
    origin: Origin,
    /// `*.` was written before the host: any subdomain of it matches, not itself.
    subdomains: bool,
}

impl OriginPattern {
    /// Parses one entry; the error says what is wrong and what is expected.
    pub fn parse(text: &str) -> Result<OriginPattern, String> {
        let wildcard = text.contains('*');
        let (subdomains, plain) = match text.split_once("://*.") {
            Some((scheme, host)) => (true, format!("{scheme}://{host}")),
            None => (false, text.to_string()),
        };
        let bad = || {
            format!(
                "`{text}` is not an origin such as https://app.example.com, nor every \
                 subdomain of one such as https://*.example.com"
            )
        };
        if plain.contains('*') || (wildcard && !subdomains) {
            return Err(format!(
                "{}: `*` stands only for the first labels of a host (https://*.example.com), \
                 or alone for every origin",
                bad()
            ));
        }
        let origin = Origin::parse(&plain).ok_or_else(bad)?;
        if subdomains && (origin.host.starts_with('[') || origin.host.split('.').count() < 2) {
            return Err(format!(
                "`{text}`: a wildcard covers the subdomains of a domain of at least two \
                 labels (https://*.example.com)"
            ));
        }
        Ok(OriginPattern { origin, subdomains })
    }

    /// True when the browser's `Origin` header `text` is allowed by one of
    /// `patterns` (the header is parsed once, whatever their number).
    pub fn any_matches(patterns: &[OriginPattern], text: &str) -> bool {
        !patterns.is_empty()
            && Origin::parse(text).is_some_and(|o| patterns.iter().any(|p| p.admits(&o)))
    }

    /// True when the browser's `Origin` header `text` is allowed by this entry.
    pub fn matches(&self, text: &str) -> bool {
        Self::any_matches(std::slice::from_ref(self), text)
    }

    /// True when the parsed origin `o` is allowed by this entry.
    fn admits(&self, o: &Origin) -> bool {
        if o.https != self.origin.https || o.port != self.origin.port {
            return false;
        }
        if !self.subdomains {
            return o.host == self.origin.host;
        }
        o.host.len() > self.origin.host.len() + 1
            && o.host.ends_with(&self.origin.host)
            && o.host.as_bytes()[o.host.len() - self.origin.host.len() - 1] == b'.'
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(pattern: &str, origin: &str) -> bool {
        OriginPattern::parse(pattern).unwrap().matches(origin)
    }

    #[test]
    fn a_wildcard_allows_subdomains_and_nothing_else() {
        let p = "https://*.example.com";
        for ok in [
            "https://a.example.com",
            "https://a.b.example.com",
            "https://A.Example.COM",
            "https://a.example.com:443",
        ] {
            assert!(allows(p, ok), "{ok}");
        }
        for refused in [
            "https://example.com",
            "https://evil-example.com",
            "https://example.com.evil.com",
            "https://aexample.com",
            "http://a.example.com",
            "https://a.example.com:8443",
            "https://a.example.com.",
            "https://a.example.com/",
            "https://user@a.example.com",
            "https://.example.com",
            "https://a..example.com",
            "null",
            "",
        ] {
            assert!(!allows(p, refused), "{refused}");
        }
        assert!(allows(
            "http://*.example.com:8080",
            "http://x.example.com:8080"
        ));
        assert!(!allows("http://*.example.com:8080", "http://x.example.com"));
    }

    #[test]
    fn exact_origins_match_by_their_parts() {
        assert!(allows("https://app.example.com", "https://APP.example.com"));
        assert!(allows(
            "https://app.example.com",
            "https://app.example.com:443"
        ));
        assert!(!allows(
            "https://app.example.com",
            "https://app.example.com:444"
        ));
        assert!(!allows("https://app.example.com", "http://app.example.com"));
        assert!(!allows(
            "https://app.example.com",
            "https://x.app.example.com"
        ));
        assert!(allows("http://localhost:3000", "http://localhost:3000"));
        assert!(allows("http://[::1]:8080", "http://[::1]:8080"));
        assert!(allows("http://127.0.0.1", "http://127.0.0.1:80"));
    }

    #[test]
    fn wildcards_anywhere_else_are_refused_with_the_reason() {
        for bad in [
            "https://a*.example.com",
            "https://*example.com",
            "*.example.com",
            "https://*.*.example.com",
            "https://example.*",
            "https://*.com",
            "https://*.[::1]",
            "ftp://*.example.com",
            "https://app.example.com/",
            "https://app.example.com/path",
            "app.example.com",
        ] {
            assert!(OriginPattern::parse(bad).is_err(), "{bad}");
        }
        let e = OriginPattern::parse("https://*.com").unwrap_err();
        assert!(e.contains("two labels"), "{e}");
    }
}
