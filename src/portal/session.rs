//! The portal's cookies and form tokens.
//!
//! A signed-in browser holds `kg_session`: a random token whose SHA-256 is the
//! store's row, so replicas share it and a sign-out ends it everywhere. A browser
//! that has not signed in yet holds `kg_pre`, a random value that exists only to
//! bind the sign-in and sign-up forms to it. Every form carries the token
//! [`form_token`] derives from the cookie in force; a third-party page can neither
//! read the cookie nor compute the token, so it cannot post a form (CSRF).

use crate::domain::id::random_base62;
use http::HeaderMap;
use sha2::{Digest, Sha256};
use std::time::Duration;

/// The session cookie.
pub const SESSION_COOKIE: &str = "kg_session";
/// The pre-sign-in cookie the sign-in and sign-up forms are bound to.
pub const PRE_COOKIE: &str = "kg_pre";
/// How long a `kg_pre` cookie lasts.
const PRE_TTL: Duration = Duration::from_secs(3600);

/// A fresh session token: `kg_ps_` and 43 base62 characters (256 bits).
pub fn new_session_token() -> String {
    format!("kg_ps_{}", random_base62(43))
}

/// A fresh `kg_pre` value (190 bits).
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

/// The form token bound to a cookie value: 32 hex characters of a SHA-256 that
/// only the holder of the cookie can compute.
pub fn form_token(cookie_value: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"keygate portal form token\0");
    h.update(cookie_value.as_bytes());
    hex::encode(&h.finalize()[..16])
}

/// True when `presented` is the form token of `cookie_value` (compared in
/// constant time).
pub fn form_token_matches(cookie_value: &str, presented: &str) -> bool {
    let expected = form_token(cookie_value);
    expected.len() == presented.len()
        && expected
            .bytes()
            .zip(presented.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Cookie attributes in force: scoped to the portal's path, never readable by
/// script, never sent from another site, `Secure` when keygate terminates TLS.
#[derive(Clone, Copy, Debug)]
pub struct CookiePolicy<'a> {
    /// `Path=`: the portal's prefix.
    pub path: &'a str,
    /// Add `Secure`.
    pub secure: bool,
}

impl CookiePolicy<'_> {
    fn build(&self, name: &str, value: &str, max_age: u64) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!(
            "{name}={value}; Path={}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}",
            self.path
        )
    }

    /// `Set-Cookie` for a new session lasting `ttl`.
    pub fn session(&self, token: &str, ttl: Duration) -> String {
        self.build(SESSION_COOKIE, token, ttl.as_secs())
    }

    /// `Set-Cookie` for a new `kg_pre`.
    pub fn pre(&self, value: &str) -> String {
        self.build(PRE_COOKIE, value, PRE_TTL.as_secs())
    }

    /// `Set-Cookie` deleting cookie `name`.
    pub fn clear(&self, name: &str) -> String {
        self.build(name, "", 0)
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
    fn a_form_token_belongs_to_one_cookie() {
        let t = form_token("abc");
        assert!(form_token_matches("abc", &t));
        assert!(!form_token_matches("abd", &t));
        assert!(!form_token_matches("abc", ""));
        assert!(!form_token_matches("abc", &t[..31]));
        assert_eq!(t.len(), 32);
    }

    #[test]
    fn cookies_are_http_only_strict_and_scoped() {
        let p = CookiePolicy {
            path: "/portal",
            secure: true,
        };
        let c = p.session("kg_ps_x", Duration::from_secs(60));
        assert_eq!(
            c,
            "kg_session=kg_ps_x; Path=/portal; Max-Age=60; HttpOnly; SameSite=Strict; Secure"
        );
        assert!(p.clear(SESSION_COOKIE).contains("Max-Age=0"));
    }
}
