//! The contract's errors (section 3): every refusal keygate makes is one
//! [`GateError`], turned into a status, JSON body and headers here and nowhere else.

use crate::auth::credentials::CredentialError;
use crate::auth::jwt::TokenError;
use crate::auth::verify::KeyError;
use http::StatusCode;
use serde_json::{json, Value};

/// A refusal, as the client will see it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GateError {
    /// No credential.
    #[error("API key is required")]
    MissingCredential,
    /// More than one different credential.
    #[error("ambiguous credentials")]
    AmbiguousCredential,
    /// Unknown or malformed key.
    #[error("invalid API key")]
    InvalidKey,
    /// Expired key.
    #[error("expired API key")]
    ExpiredKey,
    /// A JWT failed a check.
    #[error("invalid token: {0}")]
    InvalidToken(TokenError),
    /// Revoked key.
    #[error("revoked API key")]
    RevokedKey,
    /// Client IP outside the key's allow-list.
    #[error("IP not allowed")]
    IpNotAllowed,
    /// Route needs a scope the caller lacks.
    #[error("missing scope {0}")]
    MissingScope(String),
    /// Route does not admit this key environment.
    #[error("wrong key environment")]
    WrongEnvironment {
        /// Environment the route requires.
        required: &'static str,
    },
    /// A tier window is exhausted, or the key is blocked.
    #[error("rate limited")]
    RateLimited {
        /// Seconds until a retry can succeed.
        retry_after: u64,
    },
    /// The client IP is over its request rate.
    #[error("IP rate limited")]
    IpRateLimited {
        /// Seconds until a retry can succeed.
        retry_after: u64,
    },
    /// The client IP failed authentication too often.
    #[error("too many failed authentications")]
    TooManyFailures {
        /// Seconds until a retry can succeed.
        retry_after: u64,
    },
    /// Not enough credits for the route's cost.
    #[error("insufficient credits")]
    InsufficientCredits {
        /// Credits left.
        remaining: i64,
        /// The route's cost.
        cost: u64,
    },
    /// The key store (or another backend) could not answer.
    #[error("backend unavailable")]
    BackendUnavailable,
    /// keygate is at capacity for this kind of work (password hashing); retry soon.
    #[error("overloaded")]
    Overloaded {
        /// Seconds after which a retry is likely to succeed.
        retry_after: u64,
    },
    /// The request head is larger than `server.max_header_bytes`.
    #[error("request head too large")]
    HeadersTooLarge,
    /// The request body did not arrive within `server.body_timeout`.
    #[error("request body timed out")]
    BodyTimeout,
    /// The upstream refused or broke the connection.
    #[error("upstream unavailable")]
    BadGateway,
    /// The upstream did not answer in time.
    #[error("upstream timed out")]
    GatewayTimeout,
    /// The request could not be understood.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// Nothing here.
    #[error("not found")]
    NotFound,
    /// A request body that is not the JSON expected (management API).
    #[error("invalid body: {0}")]
    InvalidBody(String),
    /// Field errors, by field name (management API).
    #[error("validation failed")]
    Validation(serde_json::Map<String, Value>),
    /// The request conflicts with the current state (e.g. `max_keys`).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The body is larger than allowed.
    #[error("payload too large")]
    PayloadTooLarge,
    /// The path exists but not with this method.
    #[error("method not allowed")]
    MethodNotAllowed {
        /// The methods it does take (the `Allow` header).
        allow: String,
    },
    /// Wrong email or password (the same answer for both).
    #[error("invalid credentials")]
    InvalidCredentials,
    /// A refresh token that is unknown, spent, revoked or expired.
    #[error("invalid refresh token: {0}")]
    InvalidRefresh(&'static str),
    /// Not allowed, for a reason other than scopes.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// Fields of a management request the caller may not set, by field.
    #[error("{0}")]
    NotPermitted(#[from] crate::keys::policy::Denied),
    /// A bug or unexpected failure inside keygate.
    #[error("internal error")]
    Internal,
}

impl From<CredentialError> for GateError {
    fn from(e: CredentialError) -> Self {
        match e {
            CredentialError::Missing => GateError::MissingCredential,
            CredentialError::Ambiguous => GateError::AmbiguousCredential,
        }
    }
}

impl From<crate::auth::authenticator::AuthError> for GateError {
    fn from(e: crate::auth::authenticator::AuthError) -> Self {
        use crate::auth::authenticator::AuthError;
        match e {
            AuthError::Credential(e) => e.into(),
            AuthError::Key(e) => e.into(),
            AuthError::Token(e) => GateError::InvalidToken(e),
        }
    }
}

impl From<crate::store::StoreError> for GateError {
    fn from(e: crate::store::StoreError) -> Self {
        use crate::store::StoreError;
        match e {
            StoreError::Conflict(why) => GateError::Conflict(why),
            StoreError::NotFound(_) => GateError::NotFound,
            other => {
                tracing::warn!(error = %other, "store failed");
                GateError::BackendUnavailable
            }
        }
    }
}

impl From<crate::keys::service::KeyServiceError> for GateError {
    fn from(e: crate::keys::service::KeyServiceError) -> Self {
        use crate::keys::service::KeyServiceError;
        match e {
            KeyServiceError::Invalid(fields) => GateError::Validation(
                fields
                    .into_iter()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect(),
            ),
            KeyServiceError::Denied(d) => GateError::NotPermitted(d),
            KeyServiceError::NotFound => GateError::NotFound,
            e @ (KeyServiceError::QuotaReached { .. } | KeyServiceError::Revoked) => {
                GateError::Conflict(e.to_string())
            }
            KeyServiceError::Store(e) => e.into(),
        }
    }
}

impl From<KeyError> for GateError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::Invalid => GateError::InvalidKey,
            KeyError::Expired => GateError::ExpiredKey,
            KeyError::Revoked => GateError::RevokedKey,
            KeyError::IpNotAllowed => GateError::IpNotAllowed,
            KeyError::StoreUnavailable => GateError::BackendUnavailable,
        }
    }
}

impl GateError {
    /// HTTP status.
    pub fn status(&self) -> StatusCode {
        use GateError::*;
        match self {
            MissingCredential | AmbiguousCredential | InvalidKey | ExpiredKey | RevokedKey
            | InvalidToken(_) | InvalidCredentials | InvalidRefresh(_) => StatusCode::UNAUTHORIZED,
            Forbidden(_) | NotPermitted(_) => StatusCode::FORBIDDEN,
            IpNotAllowed | MissingScope(_) | WrongEnvironment { .. } => StatusCode::FORBIDDEN,
            RateLimited { .. } | IpRateLimited { .. } | TooManyFailures { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            InsufficientCredits { .. } => StatusCode::PAYMENT_REQUIRED,
            BackendUnavailable | Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            BadGateway => StatusCode::BAD_GATEWAY,
            GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
            BadRequest(_) => StatusCode::BAD_REQUEST,
            NotFound => StatusCode::NOT_FOUND,
            InvalidBody(_) => StatusCode::BAD_REQUEST,
            Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Conflict(_) => StatusCode::CONFLICT,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The contract's `error` code; clients branch on this.
    pub fn code(&self) -> &'static str {
        use GateError::*;
        match self {
            MissingCredential | AmbiguousCredential | InvalidKey | ExpiredKey | RevokedKey => {
                "unauthorized"
            }
            InvalidToken(_) | InvalidRefresh(_) => "invalid_token",
            InvalidCredentials => "unauthorized",
            IpNotAllowed
            | MissingScope(_)
            | WrongEnvironment { .. }
            | Forbidden(_)
            | NotPermitted(_) => "forbidden",
            RateLimited { .. } | IpRateLimited { .. } | TooManyFailures { .. } => {
                "rate_limit_exceeded"
            }
            InsufficientCredits { .. } => "insufficient_credits",
            BackendUnavailable | Overloaded { .. } => "service_unavailable",
            HeadersTooLarge => "request_header_fields_too_large",
            BodyTimeout => "request_timeout",
            BadGateway => "bad_gateway",
            GatewayTimeout => "gateway_timeout",
            BadRequest(_) => "invalid_request",
            NotFound => "not_found",
            InvalidBody(_) => "invalid_request",
            Validation(_) => "validation_error",
            Conflict(_) => "conflict",
            PayloadTooLarge => "payload_too_large",
            MethodNotAllowed { .. } => "method_not_allowed",
            Internal => "internal_error",
        }
    }

    /// Human message (never contains a credential).
    pub fn message(&self) -> String {
        use GateError::*;
        match self {
            MissingCredential => "API key is required".into(),
            AmbiguousCredential => {
                "Ambiguous credentials: the request carries more than one different API key".into()
            }
            InvalidKey => "Invalid API key".into(),
            ExpiredKey => "API key has expired".into(),
            InvalidToken(e) => e.to_string(),
            InvalidCredentials => "Invalid email or password".into(),
            InvalidRefresh(why) => (*why).into(),
            Forbidden(why) => why.clone(),
            NotPermitted(denied) => format!(
                "Not permitted to set: {}",
                denied.0.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
            RevokedKey => "API key has been revoked".into(),
            IpNotAllowed => "IP address not allowed for this API key".into(),
            MissingScope(s) => format!("Missing scope: {s}"),
            WrongEnvironment { required } => format!("This route only accepts {required} keys"),
            RateLimited { retry_after }
            | IpRateLimited { retry_after }
            | TooManyFailures { retry_after } => {
                format!("Rate limit exceeded. Try again in {retry_after} seconds.")
            }
            InsufficientCredits { remaining: 0, .. } => "No credits remaining".into(),
            InsufficientCredits { remaining, cost } => {
                format!("Insufficient credits: this request costs {cost}, {remaining} remaining")
            }
            BackendUnavailable => "Service temporarily unavailable".into(),
            Overloaded { retry_after } => {
                format!("Too many requests in progress. Try again in {retry_after} seconds.")
            }
            HeadersTooLarge => "Request headers too large".into(),
            BodyTimeout => "The request body was not received in time".into(),
            BadGateway => "Upstream service unavailable".into(),
            GatewayTimeout => "Upstream service timed out".into(),
            BadRequest(why) => (*why).into(),
            NotFound => "Not found".into(),
            InvalidBody(why) => why.clone(),
            Validation(_) => "Request validation failed".into(),
            Conflict(why) => why.clone(),
            PayloadTooLarge => "Request body too large".into(),
            MethodNotAllowed { .. } => "Method not allowed".into(),
            Internal => "Internal error".into(),
        }
    }

    /// `details` of the body.
    pub fn details(&self) -> Value {
        use GateError::*;
        match self {
            MissingScope(s) => json!({ "required_scope": s }),
            WrongEnvironment { required } => json!({ "required_environment": required }),
            InsufficientCredits { remaining, cost } => {
                json!({ "credits_remaining": remaining, "cost": cost })
            }
            IpRateLimited { .. } => json!({ "limit": "ip" }),
            TooManyFailures { .. } => json!({ "limit": "failed_auth" }),
            Validation(fields) => Value::Object(fields.clone()),
            NotPermitted(denied) => Value::Object(denied.0.clone()),
            _ => json!({}),
        }
    }

    /// Seconds for `Retry-After` on a 429 (or a 503 for overload).
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            GateError::RateLimited { retry_after }
            | GateError::IpRateLimited { retry_after }
            | GateError::TooManyFailures { retry_after }
            | GateError::Overloaded { retry_after } => Some(*retry_after),
            _ => None,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Vec<u8> {
        let mut body =
            json!({ "error": self.code(), "message": self.message(), "details": self.details() });
        if let Some(r) = self.retry_after() {
            body["retry_after"] = json!(r);
        }
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// Extra headers: `WWW-Authenticate` on 401, `Retry-After` on 429.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut h = Vec::new();
        if self.status() == StatusCode::UNAUTHORIZED {
            let err = match self {
                GateError::MissingCredential => String::new(),
                GateError::InvalidCredentials => String::new(),
                GateError::InvalidToken(e) => {
                    format!(", error=\"invalid_token\", error_description=\"{e}\"")
                }
                _ => ", error=\"invalid_token\"".to_string(),
            };
            h.push(("WWW-Authenticate", format!("Bearer realm=\"keygate\"{err}")));
        }
        if let Some(r) = self.retry_after() {
            h.push(("Retry-After", r.to_string()));
        }
        if let GateError::MethodNotAllowed { allow } = self {
            h.push(("Allow", allow.clone()));
        }
        h
    }

    /// `outcome` label of `keygate_requests_total`.
    pub fn outcome(&self) -> &'static str {
        use GateError::*;
        match self {
            MissingCredential | AmbiguousCredential | InvalidKey | ExpiredKey | RevokedKey
            | InvalidToken(_) | InvalidCredentials | InvalidRefresh(_) => "unauthorized",
            IpNotAllowed
            | MissingScope(_)
            | WrongEnvironment { .. }
            | Forbidden(_)
            | NotPermitted(_) => "forbidden",
            RateLimited { .. } | IpRateLimited { .. } | TooManyFailures { .. } => "rate_limited",
            InsufficientCredits { .. } => "no_credits",
            BadGateway | GatewayTimeout => "upstream_error",
            BackendUnavailable | Overloaded { .. } | Internal => "unavailable",
            BadRequest(_)
            | NotFound
            | InvalidBody(_)
            | Validation(_)
            | Conflict(_)
            | PayloadTooLarge
            | MethodNotAllowed { .. }
            | HeadersTooLarge
            | BodyTimeout => "bad_request",
        }
    }

    /// `reason` label of `keygate_decisions_total`.
    pub fn reason(&self) -> &'static str {
        use GateError::*;
        match self {
            MissingCredential => "missing",
            AmbiguousCredential => "ambiguous",
            InvalidKey => "invalid",
            ExpiredKey => "expired",
            RevokedKey => "revoked",
            InvalidToken(_) => "invalid_token",
            InvalidCredentials => "invalid_login",
            InvalidRefresh(_) => "invalid_refresh",
            Forbidden(_) | NotPermitted(_) => "forbidden",
            IpNotAllowed => "ip",
            MissingScope(_) => "scope",
            WrongEnvironment { .. } => "environment",
            RateLimited { .. } => "rate_limited",
            IpRateLimited { .. } => "ip_rate_limited",
            TooManyFailures { .. } => "failed_auth_limited",
            InsufficientCredits { .. } => "no_credits",
            BackendUnavailable => "store_error",
            Overloaded { .. } => "overloaded",
            BadGateway | GatewayTimeout => "upstream_error",
            BadRequest(_)
            | NotFound
            | InvalidBody(_)
            | Validation(_)
            | Conflict(_)
            | PayloadTooLarge
            | MethodNotAllowed { .. }
            | HeadersTooLarge
            | BodyTimeout => "bad_request",
            Internal => "internal",
        }
    }

    /// True for failures that count toward the IP's failed-authentication limit.
    pub fn is_failed_authentication(&self) -> bool {
        matches!(
            self,
            GateError::InvalidKey
                | GateError::InvalidToken(_)
                | GateError::InvalidCredentials
                | GateError::InvalidRefresh(_)
                | GateError::AmbiguousCredential
                | GateError::ExpiredKey
                | GateError::RevokedKey
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_follow_the_contract() {
        let e = GateError::MissingCredential;
        let v: Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(
            v,
            json!({"error": "unauthorized", "message": "API key is required", "details": {}})
        );
        assert_eq!(
            e.headers(),
            vec![("WWW-Authenticate", "Bearer realm=\"keygate\"".to_string())]
        );
        let e = GateError::RateLimited { retry_after: 45 };
        let v: Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(v["error"], "rate_limit_exceeded");
        assert_eq!(
            v["message"],
            "Rate limit exceeded. Try again in 45 seconds."
        );
        assert_eq!(v["retry_after"], 45);
        assert_eq!(e.headers(), vec![("Retry-After", "45".to_string())]);
        assert_eq!(
            GateError::MissingScope("search".into()).message(),
            "Missing scope: search"
        );
        assert_eq!(
            GateError::InsufficientCredits {
                remaining: 0,
                cost: 1
            }
            .status(),
            402
        );
    }
}
