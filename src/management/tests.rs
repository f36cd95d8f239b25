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
            request_id: None,
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

/// The top-level field names of an answer.
fn fields(v: &Value) -> Vec<String> {
    let mut names: Vec<String> = v
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test]
async fn every_operation_a_dialect_mounts_is_served_with_the_fields_of_its_sample() {
    use crate::config::Operation::{self, *};
    use crate::dialect::samples::answer;
    let h = Harness::new();
    let mut answers: Vec<(Operation, u16, Value)> = Vec::new();
    let mut call = async |op: Operation, id: Option<&str>, body: Value, bearer: Option<&str>| {
        let (method, path) = operation_target(op, id);
        let (status, v) = h.call(method, &path, body, bearer).await;
        answers.push((op, status, v.clone()));
        (status, v)
    };
    let who = serde_json::json!({"email": "eve@example.com", "password": "eve-password"});
    let mut with_name = who.clone();
    with_name["name"] = "Eve".into();
    call(Register, None, with_name, None).await;
    let (_, tokens) = call(Token, None, who, None).await;
    let refresh = serde_json::json!({"refresh_token": tokens["refresh_token"]});
    let (_, tokens) = call(Refresh, None, refresh, None).await;
    let jwt = tokens["access_token"].as_str().unwrap().to_string();
    let named = |n: &str| serde_json::json!({ "name": n });
    let (_, first) = call(FirstKey, None, named("first"), Some(&jwt)).await;
    let key = first["key"].as_str().unwrap().to_string();
    let id = first["id"].as_str().unwrap().to_string();
    call(CreateKey, None, named("second"), Some(&jwt)).await;
    call(ListKeys, None, serde_json::json!({}), Some(&jwt)).await;
    call(GetKey, Some(&id), serde_json::json!({}), Some(&jwt)).await;
    call(UpdateKey, Some(&id), named("renamed"), Some(&jwt)).await;
    call(KeyUsage, Some(&id), serde_json::json!({}), Some(&jwt)).await;
    call(Verify, None, serde_json::json!({}), Some(&key)).await;
    call(Credits, None, serde_json::json!({}), Some(&key)).await;
    call(Account, None, serde_json::json!({}), Some(&jwt)).await;
    call(RegenerateKey, Some(&id), serde_json::json!({}), Some(&jwt)).await;
    call(RevokeKey, Some(&id), serde_json::json!({}), Some(&jwt)).await;
    // The first key is made once.
    let (again, _) = call(FirstKey, None, named("again"), Some(&jwt)).await;
    answers.pop();
    assert_eq!(again, 409);
    for (op, status, real) in &answers {
        assert!(*status < 300, "{op:?}: {status} {real}");
        let sample = answer(*op);
        assert_eq!(fields(real), fields(&sample), "{op:?}: {real}");
        if *op == ListKeys {
            assert_eq!(fields(&real["api_keys"][0]), fields(&sample["api_keys"][0]));
        }
    }
    let ops: std::collections::HashSet<String> =
        answers.iter().map(|(op, _, _)| format!("{op:?}")).collect();
    assert_eq!(ops.len(), 14, "every operation: {ops:?}");
}
