//! The management API in-process, on a manual clock: the rules that depend on time
//! (login throttling windows, refresh-token expiry, access-token lifetimes) are
//! checked by moving the clock, not by waiting for it.

use super::*;
use crate::app::testkit::Services;
use http::{HeaderMap, Method};
use std::ops::Deref;

/// The services, and calls to the management API.
struct Harness(Services);

impl Deref for Harness {
    type Target = Services;
    fn deref(&self) -> &Services {
        &self.0
    }
}

impl Harness {
    fn new() -> Self {
        Harness(Services::new())
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Value,
        bearer: Option<&str>,
    ) -> (u16, Value) {
        let mut headers = HeaderMap::new();
        if let Some(token) = bearer {
            headers.insert(
                http::header::AUTHORIZATION,
                format!("Bearer {token}").parse().unwrap(),
            );
        }
        let body = serde_json::to_vec(&body).unwrap();
        let req = LocalRequest {
            method: &method,
            path,
            query: None,
            headers: &headers,
            body: &body,
            client_ip: Some("10.0.0.1".parse().unwrap()),
        };
        match self
            .management()
            .handle(&self.rt().api_context(), &req, None)
            .await
        {
            Ok(r) => (r.status.as_u16(), r.body),
            Err(e) => (
                e.status().as_u16(),
                serde_json::from_slice(&e.body()).unwrap(),
            ),
        }
    }

    async fn login(&self, email: &str, password: &str) -> (u16, Value) {
        self.call(
            Method::POST,
            "/auth/token",
            serde_json::json!({"email": email, "password": password}),
            None,
        )
        .await
    }
}

#[tokio::test]
async fn ten_wrong_passwords_a_minute_then_429_until_the_window_turns() {
    let h = Harness::new();
    h.add_user("dave@example.com", "dave-password").await;
    // Start of a minute on the clock: the window holds all of them.
    for _ in 0..10 {
        assert_eq!(h.login("dave@example.com", "wrong").await.0, 401);
    }
    let (status, body) = h.login("dave@example.com", "dave-password").await;
    assert_eq!(
        status, 429,
        "even the right password, until the window turns: {body}"
    );
    assert_eq!(body["error"], "rate_limit_exceeded");
    h.clock.advance_ms(59_999);
    assert_eq!(h.login("dave@example.com", "dave-password").await.0, 429);
    h.clock.advance_ms(1);
    assert_eq!(h.login("dave@example.com", "dave-password").await.0, 200);
    // A successful login gives its place back: it never counts.
    for _ in 0..15 {
        assert_eq!(h.login("dave@example.com", "dave-password").await.0, 200);
    }
}

#[tokio::test]
async fn tokens_and_refresh_tokens_expire_on_the_clock() {
    let h = Harness::new();
    h.add_user("erin@example.com", "erin-password").await;
    let (_, pair) = h.login("erin@example.com", "erin-password").await;
    let access = pair["access_token"].as_str().unwrap().to_string();
    let (status, _) = h
        .call(Method::GET, "/keys", Value::Null, Some(&access))
        .await;
    assert_eq!(status, 200);
    // The access token lives 10 minutes (plus 30 s of leeway).
    h.clock.advance_ms(10 * 60_000 + 31_000);
    let (status, body) = h
        .call(Method::GET, "/keys", Value::Null, Some(&access))
        .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (401, Some("Token has expired"))
    );
    // The refresh token, unused, an hour.
    h.clock.advance_ms(50 * 60_000);
    let (status, body) = h
        .call(
            Method::POST,
            "/auth/refresh",
            serde_json::json!({"refresh_token": pair["refresh_token"]}),
            None,
        )
        .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (401, Some("Refresh token has expired"))
    );
}

#[test]
fn every_route_answers_and_allow_is_derived_from_the_routes() {
    assert_eq!(router::shadowed(ROUTES), Vec::<String>::new());
    for (method, path, allow) in [
        (Method::PUT, "/keys", "GET, POST"),
        (Method::GET, "/auth/token", "POST"),
        (Method::POST, "/keys/key_1", "GET, PUT, PATCH, DELETE"),
        (Method::GET, "/keys/key_1/regenerate", "POST"),
        (Method::POST, "/credits", "GET"),
        (Method::HEAD, "/openapi.json", "GET"),
    ] {
        assert_eq!(
            router::route(ROUTES, &method, path),
            Routed::WrongMethod(allow.into()),
            "{method} {path}"
        );
    }
    assert_eq!(
        router::route(ROUTES, &Method::GET, "/nothing"),
        Routed::NotFound
    );
}

#[tokio::test]
async fn a_wrong_method_is_405_before_any_credential_is_asked_for() {
    let h = Harness::new();
    let (status, body) = h.call(Method::DELETE, "/keys", Value::Null, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (405, Some("method_not_allowed"))
    );
    let (status, _) = h.call(Method::GET, "/keys", Value::Null, None).await;
    assert_eq!(status, 401);
}
