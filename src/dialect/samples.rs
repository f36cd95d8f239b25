//! Sample values that `keygate check` renders a dialect's templates with: each
//! operation's answer as the management API writes it (the management tests hold
//! these to the real answers, field by field), and request bodies in which every
//! field a template may read is present.

use crate::config::Operation;
use minijinja::value::{Enumerator, Object, Value};
use serde_json::json;
use std::sync::Arc;

/// A request body with every field: any field a request template reads is there,
/// all of one kind (the documented request's own fields are the API's to name
/// and type, so a template is tried with each kind in turn).
#[derive(Debug)]
pub struct AnyBody(Value);

impl Object for AnyBody {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        key.as_str().map(|_| self.0.clone())
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Empty
    }
}

/// Sample request bodies: every field a string, a list of strings, a number.
pub fn requests() -> [Value; 3] {
    [
        Value::from_object(AnyBody(Value::from("sample"))),
        Value::from_object(AnyBody(Value::from(vec!["sample"]))),
        Value::from_object(AnyBody(Value::from(1))),
    ]
}

fn key() -> serde_json::Value {
    json!({
        "id": "key_2xQ9fT7cLmN4pR8s",
        "name": "Production API Key",
        "prefix": "kg_sk_live_",
        "last4": "2345",
        "tier": "pro",
        "scopes": ["search", "analytics"],
        "environment": "live",
        "org": null,
        "owner": "usr_8hG2kLm4Np6qRs9t",
        "account": "acc_8hG2kLm4Np6qRs9t",
        "cap": null,
        "status": "active",
        "credits": 100,
        "refill": null,
        "refilled_at": null,
        "allowed_ips": [],
        "expires_at": null,
        "created_at": "2026-01-15T10:30:00Z",
        "last_used_at": "2026-01-15T11:00:00Z",
        "limits": limits(),
    })
}

/// A tier's limits: the windows it sets (here every one) and its block.
fn limits() -> serde_json::Value {
    json!({
        "algorithm": "fixed",
        "per_second": 10,
        "per_minute": 100,
        "per_hour": 1000,
        "per_day": 10000,
        "per_month": 100000,
        "block_seconds": 300,
        "refill": null,
    })
}

fn issued() -> serde_json::Value {
    let mut k = key();
    k["key"] = json!("kg_sk_live_4f9aAbCdEfGhIjKlMnOpQrStUvWxYz012345");
    k
}

fn user() -> serde_json::Value {
    json!({
        "id": "usr_8hG2kLm4Np6qRs9t",
        "email": "user@example.com",
        "name": "John Doe",
        "is_admin": false,
        "disabled": false,
        "created_at": "2026-01-15T10:30:00Z",
    })
}

fn tokens() -> serde_json::Value {
    json!({
        "access_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.e30.c2ln",
        "refresh_token": "kg_rt_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefg",
        "expires_in": 3600,
        "token_type": "Bearer",
        "user": user(),
    })
}

/// A sample of the answer `operation` writes.
pub fn answer(operation: Operation) -> serde_json::Value {
    use Operation::*;
    match operation {
        Register => user(),
        Token | Refresh => tokens(),
        FirstKey | CreateKey | RegenerateKey => issued(),
        GetKey | UpdateKey | RevokeKey => {
            let mut k = key();
            if operation == RevokeKey {
                k["status"] = json!("revoked");
                k["revoked_at"] = json!("2026-01-15T12:00:00Z");
            }
            k
        }
        ListKeys => json!({ "api_keys": [key()], "total": 1, "next_cursor": null }),
        KeyUsage => json!({
            "key_id": "key_2xQ9fT7cLmN4pR8s",
            "period": "day",
            "since": "2026-01-14T11:00:00Z",
            "total_requests": 1250,
            "successful_requests": 1200,
            "failed_requests": 50,
            "failed_by_reason": { "rate_limited": 40, "no_credits": 0, "refused": 2, "api_error": 8 },
            "average_response_ms": 245.512,
            "top_endpoints": [
                { "endpoint": "/api/search", "requests": 800, "failed": 30, "average_response_ms": 280.0 }
            ],
            "hourly": [{
                "hour": "2026-01-15T10:00:00Z",
                "requests": 120, "successful": 118, "failed": 2,
                "failed_by_reason": { "rate_limited": 2, "no_credits": 0, "refused": 0, "api_error": 0 },
                "average_response_ms": 0.412,
            }],
        }),
        Verify => json!({
            "valid": true,
            "key_id": "key_2xQ9fT7cLmN4pR8s",
            "tier": "pro",
            "scopes": ["search"],
            "environment": "live",
            "credits_remaining": 100,
            "refilled_at": null,
            "limits": limits(),
            "user_id": "usr_8hG2kLm4Np6qRs9t",
            "account_id": "acc_8hG2kLm4Np6qRs9t",
        }),
        Credits => json!({
            "credits": 100,
            "key_id": "key_2xQ9fT7cLmN4pR8s",
            "user_id": "usr_8hG2kLm4Np6qRs9t",
            "account_id": "acc_8hG2kLm4Np6qRs9t",
        }),
        Account => json!({
            "id": "acc_8hG2kLm4Np6qRs9t",
            "plan": "pro",
            "status": "active",
            "overrides": {},
            "credits": 100,
            "refilled_at": null,
            "metadata": {},
            "owner": "usr_8hG2kLm4Np6qRs9t",
            "created_at": "2026-01-15T10:30:00Z",
            "keys": [key()],
        }),
    }
}
