//! The portal's cookies, form tokens and same-origin rule.
//!
//! A signed-in browser holds the session cookie: a random token whose SHA-256 is the
//! store's row, so replicas share it and a sign-out ends it everywhere. A browser
//! that has not signed in yet holds the pre-sign-in cookie, a random value that
//! exists only to bind the sign-in and sign-up forms to it. Every form carries the
//! token [`FormKey::token`] derives from the cookie in force with a key only keygate
//! holds (HMAC-SHA256; the key is made once and shared by every replica through the
//! store), so no one can compute a form token offline.
//!
//! Against login CSRF through a planted cookie (a sibling subdomain can set a
//! cookie for the portal's host), two more rules hold. Served over TLS, the cookies
//! are `__Host-` cookies, which only the portal's own host can set. And a POST a
//! browser marks as coming from another site (`Sec-Fetch-Site`, else `Origin`
//! against `Host`) is refused before anything else: a forged form on
//! `evil.example.com` never reaches the sign-in, whatever cookie it planted.

use crate::domain::id::random_base62;
use http::HeaderMap;
use std::time::Duration;

/// The session cookie (plain HTTP).
pub const SESSION_COOKIE: &str = "kg_session";
/// The pre-sign-in cookie the sign-in and sign-up forms are bound to (plain HTTP).
pub const PRE_COOKIE: &str = "kg_pre";
/// The session cookie under TLS: only the portal's host can set it.
pub const SECURE_SESSION_COOKIE: &str = "__Host-kg_session";
/// The pre-sign-in cookie under TLS.
pub const SECURE_PRE_COOKIE: &str = "__Host-kg_pre";
/// How long a pre-sign-in cookie lasts.
const PRE_TTL: Duration = Duration::from_secs(3600);
/// The name of the form-token key among the store's shared secrets.
pub const FORM_KEY_NAME: &str = "portal_form_token_key";

/// A fresh session token: `kg_ps_` and 43 base62 characters (256 bits).
pub fn new_session_token() -> String {
    format!("kg_ps_{}", random_base62(43))
}

/// A fresh pre-sign-in value (190 bits).
pub fn new_pre_token() -> String {
    random_base62(32)
}

/// The value of cookie `name` in the request's `Cookie` headers, if it is there
/// once and looks like one of ours (base62 and `_`, at most 100 characters).
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    let mut found = None;
    for header in headers.get_all(http::header::COOKIE) {
        let Ok(text) = header.to_str() else { continue };
        for pair in text.split(';') {
            let Some((k, v)) = pair.trim().split_once('=') else {
                continue;
            };
            if k != name {
                continue;
            }
            let ok = !v.is_empty()
                && v.len() <= 100
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !ok || found.is_some_and(|f| f != v) {
                return None;
            }
            found = Some(v);
        }
    }
    found
}

/// The key form tokens are made with; shared by every replica on the store.
#[derive(Clone)]
pub struct FormKey(aws_lc_rs::hmac::Key);

impl std::fmt::Debug for FormKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FormKey(<redacted>)")
    }
}

impl FormKey {
    /// The key of `secret` (at least 32 bytes of randomness).
    pub fn new(secret: &[u8]) -> Self {
        FormKey(aws_lc_rs::hmac::Key::new(
            aws_lc_rs::hmac::HMAC_SHA256,
            secret,
        ))
    }

    /// A fresh secret for [`FormKey::new`] (256 bits).
    pub fn new_secret() -> [u8; 32] {
        rand::random()
    }

    /// The form token bound to a cookie value: 32 hex characters of an
    /// HMAC-SHA256 that only keygate can compute.
    pub fn token(&self, cookie_value: &str) -> String {
        let mut ctx = aws_lc_rs::hmac::Context::with_key(&self.0);
        ctx.update(b"keygate portal form token\0");
        ctx.update(cookie_value.as_bytes());
        hex::encode(&ctx.sign().as_ref()[..16])
    }

    /// True when `presented` is the form token of `cookie_value` (compared in
    /// constant time).
    pub fn matches(&self, cookie_value: &str, presented: &str) -> bool {
        let expected = self.token(cookie_value);
        aws_lc_rs::constant_time::verify_slices_are_equal(expected.as_bytes(), presented.as_bytes())
            .is_ok()
    }
}

/// True unless the browser says the request comes from another origin: its
/// `Sec-Fetch-Site` is `same-origin` or `none` (typed, bookmarked); without one
/// (older browsers), its `Origin` names the host the request was sent to; without
/// either, it is not a browser's cross-site form and the form token decides.
pub fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return matches!(site.as_bytes(), b"same-origin" | b"none");
    }
    let Some(origin) = headers.get(http::header::ORIGIN) else {
        return true;
    };
    let host = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, h)| h);
    !host.is_empty() && origin_host.is_some_and(|h| h.eq_ignore_ascii_case(host))
}

/// Cookie attributes in force: never readable by script, never sent from another
/// site. Over plain HTTP, scoped to the portal's path. Under TLS (keygate
/// terminates it), `__Host-` cookies: `Secure`, no `Domain`, and `Path=/` as that
/// prefix requires (keygate removes them from requests it forwards upstream).
#[derive(Clone, Copy, Debug)]
pub struct CookiePolicy<'a> {
    /// `Path=` over plain HTTP: the portal's prefix.
    pub path: &'a str,
    /// Served over TLS: `__Host-` cookies.
    pub secure: bool,
}

impl CookiePolicy<'_> {
    /// The session cookie's name.
    pub fn session_name(&self) -> &'static str {
        if self.secure {
            SECURE_SESSION_COOKIE
        } else {
            SESSION_COOKIE
        }
    }

    /// The pre-sign-in cookie's name.
    pub fn pre_name(&self) -> &'static str {
        if self.secure {
            SECURE_PRE_COOKIE
        } else {
            PRE_COOKIE
        }
    }

    fn build(&self, name: &str, value: &str, max_age: u64) -> String {
        let (path, secure) = if self.secure {
            ("/", "; Secure")
        } else {
            (self.path, "")
        };
        format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}")
    }

    /// `Set-Cookie` for a new session lasting `ttl`.
    pub fn session(&self, token: &str, ttl: Duration) -> String {
        self.build(self.session_name(), token, ttl.as_secs())
    }

    /// `Set-Cookie` for a new pre-sign-in cookie.
    pub fn pre(&self, value: &str) -> String {
        self.build(self.pre_name(), value, PRE_TTL.as_secs())
    }

    /// `Set-Cookie` deleting the session cookie.
    pub fn clear_session(&self) -> String {
        self.build(self.session_name(), "", 0)
    }

    /// `Set-Cookie` deleting the pre-sign-in cookie.
    pub fn clear_pre(&self) -> String {
        self.build(self.pre_name(), "", 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(cookies: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for c in cookies {
            h.append(http::header::COOKIE, c.parse().unwrap());
        }
        h
    }

    #[test]
    fn cookies_are_found_once_and_only_in_our_alphabet() {
        let h = headers(&["a=1; kg_session=kg_ps_abc; b=2"]);
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("kg_ps_abc"));
        assert_eq!(cookie(&h, PRE_COOKIE), None);
        // Two different values (a cookie planted on a parent path): neither.
        let h = headers(&["kg_session=kg_ps_a", "kg_session=kg_ps_b"]);
        assert_eq!(cookie(&h, SESSION_COOKIE), None);
        let h = headers(&["kg_session=<script>"]);
        assert_eq!(cookie(&h, SESSION_COOKIE), None);
    }

    #[test]
    fn a_form_token_belongs_to_one_cookie_and_one_key() {
        let key = FormKey::new(&FormKey::new_secret());
        let t = key.token("abc");
        assert!(key.matches("abc", &t));
        assert!(!key.matches("abd", &t));
        assert!(!key.matches("abc", ""));
        assert!(!key.matches("abc", &t[..31]));
        assert_eq!(t.len(), 32);
        let other = FormKey::new(&FormKey::new_secret());
        assert!(!other.matches("abc", &t), "another key, another token");
        // Not the unkeyed digest an attacker could compute for a planted cookie.
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"keygate portal form token\0abc");
        assert!(!key.matches("abc", &hex::encode(&h.finalize()[..16])));
    }

    #[test]
    fn cookies_are_http_only_strict_and_host_only_under_tls() {
        let plain = CookiePolicy {
            path: "/portal",
            secure: false,
        };
        assert_eq!(
            plain.session("kg_ps_x", Duration::from_secs(60)),
            "kg_session=kg_ps_x; Path=/portal; Max-Age=60; HttpOnly; SameSite=Strict"
        );
        let tls = CookiePolicy {
            path: "/portal",
            secure: true,
        };
        assert_eq!(
            tls.session("kg_ps_x", Duration::from_secs(60)),
            "__Host-kg_session=kg_ps_x; Path=/; Max-Age=60; HttpOnly; SameSite=Strict; Secure"
        );
        assert!(tls.pre("v").starts_with("__Host-kg_pre=v; Path=/;"));
        assert!(tls.clear_session().contains("Max-Age=0"));
    }

    #[test]
    fn posts_a_browser_marks_as_cross_site_are_not_same_origin() {
        let h = |pairs: &[(&str, &str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(
                    http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            m
        };
        assert!(same_origin(&h(&[("sec-fetch-site", "same-origin")])));
        assert!(same_origin(&h(&[("sec-fetch-site", "none")])));
        assert!(!same_origin(&h(&[("sec-fetch-site", "same-site")])));
        assert!(!same_origin(&h(&[("sec-fetch-site", "cross-site")])));
        assert!(!same_origin(&h(&[
            ("sec-fetch-site", "same-site"),
            ("origin", "https://portal.example.com"),
            ("host", "portal.example.com"),
        ])));
        assert!(same_origin(&h(&[
            ("origin", "https://portal.example.com"),
            ("host", "portal.example.com")
        ])));
        assert!(!same_origin(&h(&[
            ("origin", "https://evil.example.com"),
            ("host", "portal.example.com")
        ])));
        assert!(!same_origin(&h(&[("origin", "null"), ("host", "x")])));
        assert!(same_origin(&h(&[])), "not a browser: the token decides");
    }
}
