use super::*;
use crate::config::{DialectEndpoint, ErrorsDialect};
use serde_json::json;

fn said() -> Said<'static> {
    Said {
        request_id: "req_1",
        now: chrono::DateTime::parse_from_rfc3339("2026-01-15T10:30:00Z")
            .unwrap()
            .to_utc(),
    }
}

fn errors(body: Option<&str>, messages: &[(&str, &str)]) -> DialectConfig {
    DialectConfig {
        errors: ErrorsDialect {
            body: body.map(str::to_string),
            messages: messages
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        },
        endpoints: Vec::new(),
    }
}

fn endpoint(operation: Operation, method: &str, path: &str) -> DialectEndpoint {
    DialectEndpoint {
        operation,
        method: method.into(),
        path: path.into(),
        request: None,
        response: None,
        errors: None,
    }
}

fn json_of(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap()
}

#[test]
fn without_a_dialect_the_contract_speaks() {
    let d = Dialect::compile(&DialectConfig::default()).unwrap();
    assert!(d.speaks_contract());
    let err = GateError::RateLimited { retry_after: 45 };
    assert_eq!(d.error_body(&err, None, &said()), err.body());
}

#[test]
fn an_error_template_renders_every_refusal_with_the_dialects_words() {
    let d = Dialect::compile(&errors(
        Some(r#"{"error": {{ message }}}"#),
        &[(
            "rate_limit_exceeded",
            "Rate limit exceeded. Please try again later.",
        )],
    ))
    .unwrap();
    assert_eq!(
        json_of(&d.error_body(&GateError::MissingCredential, None, &said())),
        json!({"error": "API key is required"})
    );
    assert_eq!(
        json_of(&d.error_body(&GateError::RateLimited { retry_after: 3 }, None, &said())),
        json!({"error": "Rate limit exceeded. Please try again later."})
    );
    // Every variable, and a reason more precise than its code.
    let d = Dialect::compile(&errors(
        Some(
            r#"{"s": {{ status }}, "c": {{ code }}, "r": {{ reason }}, "m": {{ message }},
                "d": {{ details }}, "ra": {{ retry_after }}, "id": {{ request_id }}, "t": {{ timestamp }}}"#,
        ),
        &[("unauthorized", "Unauthorized"), ("expired", "Key expired")],
    ))
    .unwrap();
    let v = json_of(&d.error_body(&GateError::ExpiredKey, None, &said()));
    assert_eq!(
        v,
        json!({"s": 401, "c": "unauthorized", "r": "expired", "m": "Key expired", "d": {},
               "ra": null, "id": "req_1", "t": "2026-01-15T10:30:00.000Z"})
    );
    assert_eq!(
        json_of(&d.error_body(&GateError::RevokedKey, None, &said()))["m"],
        "Unauthorized"
    );
    let v = json_of(&d.error_body(&GateError::MissingScope("search".into()), None, &said()));
    assert_eq!(v["d"], json!({"required_scope": "search"}));
    assert_eq!(
        json_of(&d.error_body(&GateError::Overloaded { retry_after: 2 }, None, &said()))["ra"],
        2
    );
}

#[test]
fn message_texts_alone_keep_the_contracts_shape() {
    let d = Dialect::compile(&errors(None, &[("missing", "No key")])).unwrap();
    let v = json_of(&d.error_body(&GateError::MissingCredential, None, &said()));
    assert_eq!(
        v,
        json!({"error": "unauthorized", "message": "No key", "details": {}})
    );
}

#[test]
fn every_problem_is_named_by_its_path() {
    let mut config = errors(
        Some(r#"{"error": "{{ message }}"}"#),
        &[("nope", "x"), ("missing", "")],
    );
    let mut bad_syntax = endpoint(Operation::Verify, "POST", "/api/verify");
    bad_syntax.response = Some("{{ body.valid ".into());
    let mut undefined = endpoint(Operation::Credits, "GET", "/api/credits");
    undefined.response = Some(r#"{"c": {{ body.balance }}}"#.into());
    let mut not_json = endpoint(Operation::CreateKey, "POST", "/api/keys");
    not_json.request = Some(r#"{"name": {{ body.title }}"#.into());
    config.endpoints = vec![bad_syntax, undefined, not_json];
    let problems = Dialect::compile(&config).unwrap_err();
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "dialect.endpoints[0].response",
            "dialect.errors.messages.missing",
            "dialect.errors.messages.nope",
        ],
        "{problems:?}"
    );
    // Once the syntax and the texts are right, the samples are tried.
    config.errors.messages.clear();
    config.endpoints[0].response = Some(r#"{"valid": {{ body.valid }}}"#.into());
    let problems = Dialect::compile(&config).unwrap_err();
    let said: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(problems.len(), 3, "{said:?}");
    assert_eq!(problems[0].path, "dialect.errors.body");
    assert!(said[0].contains("valid JSON"), "{said:?}");
    assert_eq!(problems[1].path, "dialect.endpoints[1].response");
    assert!(said[1].contains("undefined"), "{said:?}");
    assert_eq!(problems[2].path, "dialect.endpoints[2].request");
}

#[test]
fn endpoints_match_their_method_and_path_and_name_the_key() {
    let config = DialectConfig {
        endpoints: vec![
            endpoint(Operation::ListKeys, "GET", "/api/keys"),
            endpoint(Operation::CreateKey, "post", "/api/keys"),
            endpoint(Operation::KeyUsage, "GET", "/api/keys/:keyId/usage"),
            endpoint(Operation::RevokeKey, "DELETE", "/api/keys/{id}"),
        ],
        ..DialectConfig::default()
    };
    let d = Dialect::compile(&config).unwrap();
    let get = http::Method::GET;
    assert_eq!(d.route(&get, "/api/keys").map(|m| m.index), Some(0));
    assert_eq!(
        d.route(&http::Method::POST, "/api/keys").map(|m| m.index),
        Some(1)
    );
    assert_eq!(
        d.route(&get, "/api/keys/key_abc/usage"),
        Some(Mounted {
            index: 2,
            id: Some("key_abc".into())
        })
    );
    assert_eq!(
        d.route(&http::Method::DELETE, "/api/keys/key_abc")
            .map(|m| m.id),
        Some(Some("key_abc".into()))
    );
    assert_eq!(d.route(&get, "/api/keys/key_abc"), None);
    assert_eq!(d.route(&get, "/api/keys/"), None);
    assert_eq!(d.route(&get, "/api/keys//usage"), None);
    assert_eq!(d.route(&http::Method::PUT, "/api/keys"), None);
    assert_eq!(d.route(&get, "/api"), None);
}

#[test]
fn request_and_response_templates_reshape_bodies_both_ways() {
    let mut e = endpoint(Operation::CreateKey, "POST", "/api/keys");
    e.request = Some(
        r#"{"name": {{ body.name }}{% if body.permissions %}, "scopes": {{ body.permissions }}{% endif %}}"#
            .into(),
    );
    e.response = Some(
        r#"{"success": true, "data": {"apiKey": {"id": {{ body.id }}, "permissions": {{ body.scopes }}}},
            "meta": {"timestamp": {{ timestamp }}, "requestId": {{ request_id }}}}"#
            .into(),
    );
    let d = Dialect::compile(&DialectConfig {
        endpoints: vec![e],
        ..DialectConfig::default()
    })
    .unwrap();
    let sent = br#"{"name": "Prod", "permissions": ["search"]}"#;
    assert_eq!(
        json_of(&d.request_body(0, sent, None, None).unwrap()),
        json!({"name": "Prod", "scopes": ["search"]})
    );
    assert_eq!(
        json_of(
            &d.request_body(0, br#"{"name": "Prod"}"#, None, None)
                .unwrap()
        ),
        json!({"name": "Prod"})
    );
    assert!(matches!(
        d.request_body(0, b"{not json", None, None),
        Err(GateError::InvalidBody(_))
    ));
    assert!(matches!(
        d.request_body(0, b"{}", None, None),
        Err(GateError::InvalidBody(_))
    ));
    let answer = json!({"id": "key_1", "scopes": ["search"], "key": "secret"});
    assert_eq!(
        json_of(&d.response_body(0, &answer, 201, None, None, &said())),
        json!({"success": true, "data": {"apiKey": {"id": "key_1", "permissions": ["search"]}},
               "meta": {"timestamp": "2026-01-15T10:30:00.000Z", "requestId": "req_1"}})
    );
    // An answer the template cannot render is written as the operation's own:
    // what it made (a secret) is never lost.
    let odd = json!({"key": "secret"});
    assert_eq!(
        json_of(&d.response_body(0, &odd, 201, None, None, &said())),
        odd
    );
}

#[test]
fn a_body_rendered_once_is_the_body_rendered_again() {
    let template =
        r#"{"e": {{ code }}, "m": {{ message }}, "d": {{ details }}, "r": {{ retry_after }}}"#;
    let cached = Dialect::compile(&errors(Some(template), &[("missing", "No key")])).unwrap();
    for err in GateError::samples()
        .into_iter()
        .chain([GateError::RateLimited { retry_after: 7 }])
    {
        let first = cached.error_body(&err, None, &said());
        let again = cached.error_body(&err, None, &said());
        let fresh = Dialect::compile(&errors(Some(template), &[("missing", "No key")]))
            .unwrap()
            .error_body(&err, None, &said());
        assert_eq!((&first, &again), (&fresh, &fresh), "{err:?}");
    }
    // 429s that differ only in retry_after are different bodies.
    let one =
        json_of(&cached.error_body(&GateError::RateLimited { retry_after: 1 }, None, &said()));
    let two =
        json_of(&cached.error_body(&GateError::RateLimited { retry_after: 2 }, None, &said()));
    assert_eq!((one["r"].clone(), two["r"].clone()), (json!(1), json!(2)));
    // A template that reads the time is rendered every time.
    let timed = Dialect::compile(&errors(Some(r#"{"t": {{ timestamp }}}"#), &[])).unwrap();
    let mut later = said();
    later.now += chrono::Duration::seconds(1);
    assert_ne!(
        timed.error_body(&GateError::InvalidKey, None, &said()),
        timed.error_body(&GateError::InvalidKey, None, &later)
    );
}
