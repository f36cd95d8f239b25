//! CORS (the `cors:` section): browser preflights answered by keygate before
//! authentication, and the `Access-Control-*` headers on every response to an
//! allowed origin, keygate's own refusals included (so a script can read a 401 or a
//! 429). With `cors:` set keygate owns CORS: the upstream's own `Access-Control-*`
//! response headers are replaced. The anchors are Kong's and APISIX's CORS plugins.

use crate::config::{CorsConfig, OriginPattern};
use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_METHOD, ORIGIN,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method};

/// The compiled `cors:` section.
#[derive(Clone, Debug)]
pub struct CorsPolicy {
    any_origin: bool,
    origins: Vec<OriginPattern>,
    credentials: bool,
    allow_methods: Option<HeaderValue>,
    allow_headers: Option<HeaderValue>,
    expose_headers: Option<HeaderValue>,
    max_age: HeaderValue,
}

/// Headers to add to a response, in order.
pub type CorsHeaders = Vec<(HeaderName, HeaderValue)>;

fn joined(items: &[String]) -> Option<HeaderValue> {
    (!items.is_empty())
        .then(|| HeaderValue::from_str(&items.join(", ")).ok())
        .flatten()
}

/// True for a browser's preflight: `OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`.
pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS
        && headers.contains_key(ORIGIN)
        && headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
}

/// The response headers keygate owns when `cors:` is set (removed from the
/// upstream's answer before keygate's own are added).
pub const OWNED: [HeaderName; 3] = [
    ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_ALLOW_CREDENTIALS,
    ACCESS_CONTROL_EXPOSE_HEADERS,
];

impl CorsPolicy {
    /// Compiles a validated `cors:` section.
    pub fn new(c: &CorsConfig) -> Self {
        CorsPolicy {
            any_origin: c.allow_origins.iter().any(|o| o == "*"),
            // `check` refused any entry that does not parse.
            origins: c
                .allow_origins
                .iter()
                .filter_map(|o| OriginPattern::parse(o).ok())
                .collect(),
            credentials: c.allow_credentials,
            allow_methods: joined(&c.allow_methods),
            allow_headers: joined(&c.allow_headers),
            expose_headers: joined(&c.expose_headers),
            max_age: HeaderValue::from(c.max_age.get().as_secs()),
        }
    }

    /// The `Access-Control-Allow-Origin` value for `origin`, if it is allowed:
    /// `*` for any origin without credentials, else the origin itself.
    fn allow_origin(&self, origin: &HeaderValue) -> Option<HeaderValue> {
        if self.star() {
            return Some(HeaderValue::from_static("*"));
        }
        let text = origin.to_str().ok()?;
        OriginPattern::any_matches(&self.origins, text).then(|| origin.clone())
    }

    /// True when every origin gets the same `*`.
    fn star(&self) -> bool {
        self.any_origin && !self.credentials
    }

    /// `Vary: Origin`, unless every origin gets the same `*`.
    fn vary(&self, out: &mut CorsHeaders) {
        if !self.star() {
            out.push((http::header::VARY, HeaderValue::from_static("origin")));
        }
    }

    /// The answer to a preflight from `origin` (nothing but `Vary` when the origin
    /// is not allowed: the browser then refuses the request).
    pub fn preflight(&self, origin: Option<&HeaderValue>) -> CorsHeaders {
        let mut out = Vec::with_capacity(6);
        if let Some(allowed) = origin.and_then(|o| self.allow_origin(o)) {
            out.push((ACCESS_CONTROL_ALLOW_ORIGIN, allowed));
            if let Some(m) = &self.allow_methods {
                out.push((ACCESS_CONTROL_ALLOW_METHODS, m.clone()));
            }
            if let Some(h) = &self.allow_headers {
                out.push((ACCESS_CONTROL_ALLOW_HEADERS, h.clone()));
            }
            out.push((ACCESS_CONTROL_MAX_AGE, self.max_age.clone()));
            if self.credentials {
                out.push((
                    ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    HeaderValue::from_static("true"),
                ));
            }
        }
        self.vary(&mut out);
        out
    }

    /// The headers of an actual response to a request from `origin`.
    pub fn response(&self, origin: Option<&HeaderValue>) -> CorsHeaders {
        let mut out = Vec::with_capacity(4);
        let Some(origin) = origin else {
            return out;
        };
        if let Some(allowed) = self.allow_origin(origin) {
            out.push((ACCESS_CONTROL_ALLOW_ORIGIN, allowed));
            if let Some(e) = &self.expose_headers {
                out.push((ACCESS_CONTROL_EXPOSE_HEADERS, e.clone()));
            }
            if self.credentials {
                out.push((
                    ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    HeaderValue::from_static("true"),
                ));
            }
        }
        self.vary(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str) -> CorsPolicy {
        CorsPolicy::new(&serde_yaml::from_str(yaml).unwrap())
    }

    fn names(h: &CorsHeaders) -> Vec<&str> {
        h.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn allowed_origins_are_echoed_and_others_get_nothing() {
        let p = policy("{allow_origins: [\"https://app.example.com\"], allow_credentials: true}");
        let app = HeaderValue::from_static("https://app.example.com");
        let evil = HeaderValue::from_static("https://evil.example");
        let pre = p.preflight(Some(&app));
        assert_eq!(pre[0].1, app);
        assert_eq!(
            names(&pre),
            [
                "access-control-allow-origin",
                "access-control-allow-methods",
                "access-control-allow-headers",
                "access-control-max-age",
                "access-control-allow-credentials",
                "vary"
            ]
        );
        assert_eq!(pre[1].1, "GET, POST, PUT, DELETE");
        assert_eq!(pre[3].1, "600");
        assert_eq!(names(&p.preflight(Some(&evil))), ["vary"]);
        assert_eq!(names(&p.response(Some(&evil))), ["vary"]);
        assert!(p.response(None).is_empty());
        let r = p.response(Some(&app));
        assert_eq!(r[0].1, app);
        assert!(r[1].1.to_str().unwrap().contains("X-RateLimit-Remaining"));
    }

    #[test]
    fn subdomain_wildcards_echo_the_subdomain_and_refuse_lookalikes() {
        let p = policy("{allow_origins: [\"https://*.example.com\"]}");
        let sub = HeaderValue::from_static("https://app.example.com");
        assert_eq!(p.response(Some(&sub))[0].1, sub);
        for evil in [
            "https://evil-example.com",
            "https://example.com.evil.com",
            "http://app.example.com",
            "https://app.example.com:8443",
        ] {
            let evil = HeaderValue::from_static(evil);
            assert_eq!(names(&p.preflight(Some(&evil))), ["vary"], "{evil:?}");
        }
    }

    #[test]
    fn any_origin_without_credentials_is_a_star() {
        let p = policy("{allow_origins: [\"*\"]}");
        let r = p.response(Some(&HeaderValue::from_static("https://x.example")));
        assert_eq!(r[0].1, "*");
        assert!(!names(&r).contains(&"vary"));
    }

    #[test]
    fn preflights_are_recognised() {
        let mut h = HeaderMap::new();
        h.insert(ORIGIN, HeaderValue::from_static("https://a.example"));
        assert!(!is_preflight(&Method::OPTIONS, &h), "no requested method");
        h.insert(
            ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("PUT"),
        );
        assert!(is_preflight(&Method::OPTIONS, &h));
        assert!(!is_preflight(&Method::GET, &h));
    }
}
