//! keygate's refusals (docs/configuration.md, On the wire): every refusal keygate
//! makes is one [`GateError`], turned into a status, JSON body and headers here and
//! nowhere else.

use crate::auth::credentials::CredentialError;
use crate::auth::jwt::TokenError;
use crate::auth::verify::KeyError;
use crate::obs::metrics::{outcome, reason};
use http::StatusCode;
use serde_json::{json, Value};

/// A refusal, as the client will see it. Its `Display` (the `#[error]` text) is
/// the wire's `message`, which never contains a credential; everything else about
/// it — status, `error` code, outcome and reason labels — is its row of
/// [`GateError::rejection`]'s table.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GateError {
    /// No credential.
    #[error("API key is required")]
    MissingCredential,
    /// More than one different credential.
    #[error("Ambiguous credentials: the request carries more than one different API key")]
    AmbiguousCredential,
    /// Unknown or malformed key.
    #[error("Invalid API key")]
    InvalidKey,
    /// Expired key.
    #[error("API key has expired")]
    ExpiredKey,
    /// A JWT failed a check.
    #[error("{0}")]
    InvalidToken(TokenError),
    /// Revoked key.
    #[error("API key has been revoked")]
    RevokedKey,
    /// Client IP outside the key's allow-list.
    #[error("IP address not allowed for this API key")]
    IpNotAllowed,
    /// The key's account is suspended.
    #[error("Account is suspended")]
    AccountSuspended,
    /// Route needs a scope the caller lacks.
    #[error("Missing scope: {0}")]
    MissingScope(String),
    /// Route does not admit this key environment.
    #[error("This route only accepts {required} keys")]
    WrongEnvironment {
        /// Environment the route requires.
        required: &'static str,
    },
    /// A tier window is exhausted, or the key is blocked.
    #[error("Rate limit exceeded. Try again in {}.", seconds(*.retry_after))]
    RateLimited {
        /// Seconds until a retry can succeed.
        retry_after: u64,
    },
    /// The client IP is over its request rate.
    #[error("Rate limit exceeded. Try again in {}.", seconds(*.retry_after))]
    IpRateLimited {
        /// Seconds until a retry can succeed.
        retry_after: u64,
    },
    /// The client IP failed authentication too often.
    #[error("Rate limit exceeded. Try again in {}.", seconds(*.retry_after))]
    TooManyFailures {
        /// Seconds until a retry can succeed.
        retry_after: u64,
    },
    /// Not enough credits for the route's cost.
    #[error("{}", insufficient_credits(*.remaining, *.cost))]
    InsufficientCredits {
        /// Credits left.
        remaining: i64,
        /// The route's cost.
        cost: u64,
    },
    /// The key store (or another backend) could not answer.
    #[error("Service temporarily unavailable")]
    BackendUnavailable,
    /// keygate is at capacity for this kind of work (password hashing); retry soon.
    #[error("Too many requests in progress. Try again in {}.", seconds(*.retry_after))]
    Overloaded {
        /// Seconds after which a retry is likely to succeed.
        retry_after: u64,
    },
    /// The request head is larger than `server.max_header_bytes`.
    #[error("Request headers too large")]
    HeadersTooLarge,
    /// The request body did not arrive within `server.body_timeout`.
    #[error("The request body was not received in time")]
    BodyTimeout,
    /// The upstream refused or broke the connection.
    #[error("Upstream service unavailable")]
    BadGateway,
    /// The upstream did not answer in time.
    #[error("Upstream service timed out")]
    GatewayTimeout,
    /// The request could not be understood.
    #[error("{0}")]
    BadRequest(&'static str),
    /// Nothing here.
    #[error("Not found")]
    NotFound,
    /// A request body that is not the JSON expected (management API).
    #[error("{0}")]
    InvalidBody(String),
    /// Field errors, by field name (management API).
    #[error("Request validation failed")]
    Validation(serde_json::Map<String, Value>),
    /// The request conflicts with the current state (e.g. `max_keys`).
    #[error("{0}")]
    Conflict(String),
    /// The body is larger than allowed.
    #[error("Request body too large")]
    PayloadTooLarge,
    /// The path exists but not with this method.
    #[error("Method not allowed")]
    MethodNotAllowed {
        /// The methods it does take (the `Allow` header).
        allow: String,
    },
    /// Wrong email or password (the same answer for both).
    #[error("Invalid email or password")]
    InvalidCredentials,
    /// A refresh token that is unknown, spent, revoked or expired.
    #[error("{0}")]
    InvalidRefresh(&'static str),
    /// Not allowed, for a reason other than scopes.
    #[error("{0}")]
    Forbidden(String),
    /// Fields of a management request the caller may not set, by field.
    #[error("Not permitted to set: {}", .0.0.keys().cloned().collect::<Vec<_>>().join(", "))]
    NotPermitted(#[from] crate::keys::policy::Denied),
    /// A portal form posted without the session's form token (CSRF).
    #[error("This form has expired or did not come from this site; reload the page and try again")]
    CsrfRejected,
    /// A bug or unexpected failure inside keygate.
    #[error("Internal error")]
    Internal,
}

impl GateError {
    /// One refusal of every row of the table, with sample values: what
    /// `keygate check` renders a dialect's error templates with.
    pub fn samples() -> Vec<GateError> {
        let mut fields = serde_json::Map::new();
        fields.insert("name".into(), json!("is required"));
        vec![
            GateError::MissingCredential,
            GateError::AmbiguousCredential,
            GateError::InvalidKey,
            GateError::ExpiredKey,
            GateError::RevokedKey,
            GateError::InvalidToken(TokenError::Expired),
            GateError::InvalidCredentials,
            GateError::InvalidRefresh("Invalid refresh token"),
            GateError::IpNotAllowed,
            GateError::AccountSuspended,
            GateError::MissingScope("search".into()),
            GateError::WrongEnvironment { required: "live" },
            GateError::Forbidden("Registration is closed".into()),
            GateError::NotPermitted(crate::keys::policy::Denied(fields.clone())),
            GateError::CsrfRejected,
            GateError::RateLimited { retry_after: 45 },
            GateError::IpRateLimited { retry_after: 1 },
            GateError::TooManyFailures { retry_after: 60 },
            GateError::InsufficientCredits {
                remaining: 0,
                cost: 1,
            },
            GateError::BackendUnavailable,
            GateError::Overloaded { retry_after: 1 },
            GateError::BadGateway,
            GateError::GatewayTimeout,
            GateError::BadRequest("Malformed request path"),
            GateError::InvalidBody("Malformed JSON body".into()),
            GateError::NotFound,
            GateError::MethodNotAllowed {
                allow: "GET".into(),
            },
            GateError::BodyTimeout,
            GateError::Conflict("Key limit reached".into()),
            GateError::PayloadTooLarge,
            GateError::Validation(fields),
            GateError::HeadersTooLarge,
            GateError::Internal,
        ]
    }
}

/// `1 second`, `45 seconds`.
fn seconds(n: u64) -> String {
    if n == 1 {
        "1 second".into()
    } else {
        format!("{n} seconds")
    }
}

fn insufficient_credits(remaining: i64, cost: u64) -> String {
    if remaining == 0 {
        "No credits remaining".into()
    } else {
        format!("Insufficient credits: this request costs {cost}, {remaining} remaining")
    }
}

/// A gRPC status code (the numbers of `grpc/status.h`) with its name: how a refusal
/// reads to a gRPC client (docs/configuration.md, HTTP/2 and gRPC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrpcStatus(pub u8, pub &'static str);

impl GrpcStatus {
    /// 3.
    pub const INVALID_ARGUMENT: GrpcStatus = GrpcStatus(3, "INVALID_ARGUMENT");
    /// 4.
    pub const DEADLINE_EXCEEDED: GrpcStatus = GrpcStatus(4, "DEADLINE_EXCEEDED");
    /// 7.
    pub const PERMISSION_DENIED: GrpcStatus = GrpcStatus(7, "PERMISSION_DENIED");
    /// 8.
    pub const RESOURCE_EXHAUSTED: GrpcStatus = GrpcStatus(8, "RESOURCE_EXHAUSTED");
    /// 9.
    pub const FAILED_PRECONDITION: GrpcStatus = GrpcStatus(9, "FAILED_PRECONDITION");
    /// 12.
    pub const UNIMPLEMENTED: GrpcStatus = GrpcStatus(12, "UNIMPLEMENTED");
    /// 13.
    pub const INTERNAL: GrpcStatus = GrpcStatus(13, "INTERNAL");
    /// 14.
    pub const UNAVAILABLE: GrpcStatus = GrpcStatus(14, "UNAVAILABLE");
    /// 16.
    pub const UNAUTHENTICATED: GrpcStatus = GrpcStatus(16, "UNAUTHENTICATED");
}

/// How one kind of refusal is answered and counted: its row of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// HTTP status.
    pub status: StatusCode,
    /// The status a gRPC call gets instead (in trailers, with HTTP 200).
    pub grpc: GrpcStatus,
    /// The contract's `error` code; clients branch on this.
    pub code: &'static str,
    /// `outcome` label of `keygate_requests_total`.
    pub outcome: &'static str,
    /// `reason` label of `keygate_decisions_total`.
    pub reason: &'static str,
    /// What the portal's HTML page says instead of the wire's message, where a
    /// person reading a page needs other words (`None`: the message).
    pub page: Option<&'static str>,
}

/// The table: one row per refusal — HTTP status, gRPC status, `error` code, its
/// labels (only the ones `crate::obs::metrics` declares, and lists in its help
/// text), and the portal page's own words where it needs them.
macro_rules! rejections {
    ($($variant:ident => $status:ident, $grpc:ident, $code:literal, $outcome:expr, $reason:expr, $page:expr;)*) => {
        impl GateError {
            /// This refusal's row of the table.
            pub fn rejection(&self) -> Rejection {
                match self {
                    $(GateError::$variant { .. } => Rejection {
                        status: StatusCode::$status,
                        grpc: GrpcStatus::$grpc,
                        code: $code,
                        outcome: $outcome,
                        reason: $reason,
                        page: $page,
                    },)*
                }
            }
        }

        /// The `error` code of every row, in table order (the codes a dialect's
        /// message texts may name).
        pub const CODES: &[&str] = &[$($code),*];
        /// The `reason` label of every row, in table order (for the tests).
        #[cfg(test)]
        const ROW_REASONS: &[&str] = &[$($reason),*];
        /// The `outcome` label of every row, in table order (for the tests).
        #[cfg(test)]
        const ROW_OUTCOMES: &[&str] = &[$($outcome),*];
        /// The HTTP and gRPC statuses of every row, in table order (for the tests).
        #[cfg(test)]
        const ROW_STATUSES: &[(StatusCode, GrpcStatus)] =
            &[$((StatusCode::$status, GrpcStatus::$grpc)),*];
    };
}

rejections! {
    MissingCredential   => UNAUTHORIZED,          UNAUTHENTICATED,     "unauthorized",         outcome::UNAUTHORIZED,   reason::MISSING,             None;
    AmbiguousCredential => UNAUTHORIZED,          UNAUTHENTICATED,     "unauthorized",         outcome::UNAUTHORIZED,   reason::AMBIGUOUS,           None;
    InvalidKey          => UNAUTHORIZED,          UNAUTHENTICATED,     "unauthorized",         outcome::UNAUTHORIZED,   reason::INVALID,             None;
    ExpiredKey          => UNAUTHORIZED,          UNAUTHENTICATED,     "unauthorized",         outcome::UNAUTHORIZED,   reason::EXPIRED,             None;
    RevokedKey          => UNAUTHORIZED,          UNAUTHENTICATED,     "unauthorized",         outcome::UNAUTHORIZED,   reason::REVOKED,             None;
    InvalidToken        => UNAUTHORIZED,          UNAUTHENTICATED,     "invalid_token",        outcome::UNAUTHORIZED,   reason::INVALID_TOKEN,       None;
    InvalidCredentials  => UNAUTHORIZED,          UNAUTHENTICATED,     "unauthorized",         outcome::UNAUTHORIZED,   reason::INVALID_LOGIN,       None;
    InvalidRefresh      => UNAUTHORIZED,          UNAUTHENTICATED,     "invalid_token",        outcome::UNAUTHORIZED,   reason::INVALID_REFRESH,     None;
    IpNotAllowed        => FORBIDDEN,             PERMISSION_DENIED,   "forbidden",            outcome::FORBIDDEN,      reason::IP,                  None;
    AccountSuspended    => FORBIDDEN,             PERMISSION_DENIED,   "account_suspended",    outcome::FORBIDDEN,      reason::SUSPENDED,           None;
    MissingScope        => FORBIDDEN,             PERMISSION_DENIED,   "forbidden",            outcome::FORBIDDEN,      reason::SCOPE,               None;
    WrongEnvironment    => FORBIDDEN,             PERMISSION_DENIED,   "forbidden",            outcome::FORBIDDEN,      reason::ENVIRONMENT,         None;
    Forbidden           => FORBIDDEN,             PERMISSION_DENIED,   "forbidden",            outcome::FORBIDDEN,      reason::FORBIDDEN,           None;
    NotPermitted        => FORBIDDEN,             PERMISSION_DENIED,   "forbidden",            outcome::FORBIDDEN,      reason::FORBIDDEN,           None;
    CsrfRejected        => FORBIDDEN,             PERMISSION_DENIED,   "forbidden",            outcome::FORBIDDEN,      reason::CSRF,                None;
    RateLimited         => TOO_MANY_REQUESTS,     RESOURCE_EXHAUSTED,  "rate_limit_exceeded",  outcome::RATE_LIMITED,   reason::RATE_LIMITED,        None;
    IpRateLimited       => TOO_MANY_REQUESTS,     RESOURCE_EXHAUSTED,  "rate_limit_exceeded",  outcome::RATE_LIMITED,   reason::IP_RATE_LIMITED,     None;
    TooManyFailures     => TOO_MANY_REQUESTS,     RESOURCE_EXHAUSTED,  "rate_limit_exceeded",  outcome::RATE_LIMITED,   reason::FAILED_AUTH_LIMITED, None;
    InsufficientCredits => PAYMENT_REQUIRED,      RESOURCE_EXHAUSTED,  "insufficient_credits", outcome::NO_CREDITS,     reason::NO_CREDITS,          None;
    BackendUnavailable  => SERVICE_UNAVAILABLE,   UNAVAILABLE,         "service_unavailable",  outcome::UNAVAILABLE,    reason::STORE_ERROR,         None;
    Overloaded          => SERVICE_UNAVAILABLE,   UNAVAILABLE,         "service_unavailable",  outcome::UNAVAILABLE,    reason::OVERLOADED,          None;
    BadGateway          => BAD_GATEWAY,           UNAVAILABLE,         "bad_gateway",          outcome::UPSTREAM_ERROR, reason::UPSTREAM_ERROR,      None;
    GatewayTimeout      => GATEWAY_TIMEOUT,       DEADLINE_EXCEEDED,   "gateway_timeout",      outcome::UPSTREAM_ERROR, reason::UPSTREAM_ERROR,      None;
    BadRequest          => BAD_REQUEST,           INVALID_ARGUMENT,    "invalid_request",      outcome::BAD_REQUEST,    reason::BAD_REQUEST,         None;
    InvalidBody         => BAD_REQUEST,           INVALID_ARGUMENT,    "invalid_request",      outcome::BAD_REQUEST,    reason::BAD_REQUEST,         None;
    NotFound            => NOT_FOUND,             UNIMPLEMENTED,       "not_found",            outcome::BAD_REQUEST,    reason::BAD_REQUEST,         Some("There is nothing here.");
    MethodNotAllowed    => METHOD_NOT_ALLOWED,    UNIMPLEMENTED,       "method_not_allowed",   outcome::BAD_REQUEST,    reason::BAD_REQUEST,         None;
    BodyTimeout         => REQUEST_TIMEOUT,       DEADLINE_EXCEEDED,   "request_timeout",      outcome::BAD_REQUEST,    reason::BAD_REQUEST,         None;
    Conflict            => CONFLICT,              FAILED_PRECONDITION, "conflict",             outcome::BAD_REQUEST,    reason::BAD_REQUEST,         None;
    PayloadTooLarge     => PAYLOAD_TOO_LARGE,     RESOURCE_EXHAUSTED,  "payload_too_large",    outcome::BAD_REQUEST,    reason::BAD_REQUEST,         None;
    Validation          => UNPROCESSABLE_ENTITY,  INVALID_ARGUMENT,    "validation_error",     outcome::BAD_REQUEST,    reason::BAD_REQUEST,         None;
    HeadersTooLarge     => REQUEST_HEADER_FIELDS_TOO_LARGE, RESOURCE_EXHAUSTED, "request_header_fields_too_large", outcome::BAD_REQUEST, reason::BAD_REQUEST, None;
    Internal            => INTERNAL_SERVER_ERROR, INTERNAL,            "internal_error",       outcome::UNAVAILABLE,    reason::INTERNAL,            None;
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
            e @ (KeyServiceError::QuotaReached { .. }
            | KeyServiceError::Revoked
            | KeyServiceError::NotFirst) => GateError::Conflict(e.to_string()),
            KeyServiceError::ImportInvalid {
                problems,
                bad_lines,
            } => {
                let mut details = serde_json::Map::new();
                details.insert("bad_lines".into(), Value::from(bad_lines));
                details.insert(
                    "lines".into(),
                    serde_json::to_value(problems).unwrap_or_default(),
                );
                GateError::Validation(details)
            }
            KeyServiceError::ImportRead(_) => GateError::BadRequest("The import could not be read"),
            KeyServiceError::Store(e) => e.into(),
            KeyServiceError::Account(e) => e.into(),
        }
    }
}

impl From<crate::keys::audit::AuditError> for GateError {
    fn from(e: crate::keys::audit::AuditError) -> Self {
        use crate::keys::audit::AuditError;
        match e {
            AuditError::NotAdmin => GateError::Forbidden(e.to_string()),
            AuditError::Store(e) => e.into(),
        }
    }
}

impl From<crate::keys::accounts::AccountError> for GateError {
    fn from(e: crate::keys::accounts::AccountError) -> Self {
        use crate::keys::accounts::AccountError;
        match e {
            AccountError::Invalid(fields) => GateError::Validation(fields),
            AccountError::AdminOnly => GateError::Forbidden("Only an admin may do this".into()),
            AccountError::NotFound => GateError::NotFound,
            AccountError::Unsupported => GateError::NotFound,
            AccountError::Conflict(why) => GateError::Conflict(why),
            AccountError::Store(e) => e.into(),
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
            KeyError::AccountSuspended => GateError::AccountSuspended,
            KeyError::StoreUnavailable => GateError::BackendUnavailable,
        }
    }
}

impl GateError {
    /// HTTP status.
    pub fn status(&self) -> StatusCode {
        self.rejection().status
    }

    /// The contract's `error` code; clients branch on this.
    pub fn code(&self) -> &'static str {
        self.rejection().code
    }

    /// The wire's `message` (never contains a credential).
    pub fn message(&self) -> String {
        self.to_string()
    }

    /// `outcome` label of `keygate_requests_total`.
    pub fn outcome(&self) -> &'static str {
        self.rejection().outcome
    }

    /// `reason` label of `keygate_decisions_total`.
    pub fn reason(&self) -> &'static str {
        self.rejection().reason
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

    /// What this refusal's body depends on besides its kind, when nothing else:
    /// `retry_after` (0 for none) for the refusals whose message and details are
    /// fixed by their kind and `retry_after`; `None` for those with words or
    /// details of their own. A dialect renders each `Some` once
    /// (`crate::dialect`).
    pub fn body_key(&self) -> Option<u64> {
        use GateError::*;
        match self {
            RateLimited { retry_after }
            | IpRateLimited { retry_after }
            | TooManyFailures { retry_after }
            | Overloaded { retry_after } => Some(*retry_after),
            MissingCredential | AmbiguousCredential | InvalidKey | ExpiredKey | RevokedKey
            | InvalidCredentials | IpNotAllowed | AccountSuspended | CsrfRejected
            | BackendUnavailable | HeadersTooLarge | BodyTimeout | BadGateway | GatewayTimeout
            | NotFound | PayloadTooLarge | Internal => Some(0),
            InvalidToken(_)
            | MissingScope(_)
            | WrongEnvironment { .. }
            | InsufficientCredits { .. }
            | BadRequest(_)
            | InvalidBody(_)
            | Validation(_)
            | Conflict(_)
            | MethodNotAllowed { .. }
            | InvalidRefresh(_)
            | Forbidden(_)
            | NotPermitted(_) => None,
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
        self.body_saying(&self.message())
    }

    /// The JSON body with `message` in place of this refusal's own (a dialect's
    /// text for it, `crate::dialect`).
    pub fn body_saying(&self, message: &str) -> Vec<u8> {
        let mut body =
            json!({ "error": self.code(), "message": message, "details": self.details() });
        if let Some(r) = self.retry_after() {
            body["retry_after"] = json!(r);
        }
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// What the portal's HTML page says of this refusal: the row's page words, the
    /// problems of a [`GateError::Validation`] as `field: why`, else the message.
    pub fn page_message(&self) -> String {
        match (self, self.rejection().page) {
            (_, Some(words)) => words.to_string(),
            (GateError::Validation(details), None) => details
                .iter()
                .map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or("invalid")))
                .collect::<Vec<_>>()
                .join("; "),
            _ => self.message(),
        }
    }

    /// The headers of the portal's HTML page: [`Self::headers`] without
    /// `WWW-Authenticate` (a browser would answer it with a password dialog).
    pub fn page_headers(&self) -> Vec<(&'static str, String)> {
        let mut h = self.headers();
        h.retain(|(name, _)| *name != "WWW-Authenticate");
        h
    }

    /// Extra headers: `WWW-Authenticate` on 401, `Retry-After` when there is a
    /// time to retry at, `Allow` on 405.
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
            GateError::RateLimited { retry_after: 1 }.message(),
            "Rate limit exceeded. Try again in 1 second."
        );
        assert_eq!(
            GateError::Overloaded { retry_after: 1 }.message(),
            "Too many requests in progress. Try again in 1 second."
        );
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
        assert_eq!(
            GateError::InsufficientCredits {
                remaining: 0,
                cost: 1
            }
            .to_string(),
            "No credits remaining",
            "Display is the wire message"
        );
    }

    #[test]
    fn the_samples_hold_one_refusal_of_every_row() {
        let samples = GateError::samples();
        assert_eq!(samples.len(), ROW_REASONS.len());
        let kinds: std::collections::HashSet<_> =
            samples.iter().map(std::mem::discriminant).collect();
        assert_eq!(kinds.len(), samples.len(), "one of each kind");
    }

    #[test]
    fn every_declared_label_is_some_row_and_no_row_uses_another() {
        for r in ROW_REASONS {
            assert!(
                reason::ALL.contains(r),
                "{r} is not declared in metrics::reason"
            );
        }
        for o in ROW_OUTCOMES {
            assert!(
                outcome::ALL.contains(o),
                "{o} is not declared in metrics::outcome"
            );
        }
        for r in reason::ALL.iter().filter(|r| **r != reason::ALLOWED) {
            assert!(ROW_REASONS.contains(r), "no refusal has reason {r}");
        }
        for o in outcome::ALL
            .iter()
            .filter(|o| ![outcome::ALLOWED, outcome::UPSTREAM_ERROR].contains(*o))
        {
            assert!(ROW_OUTCOMES.contains(o), "no refusal has outcome {o}");
        }
    }

    #[test]
    fn a_grpc_call_reads_each_refusal_by_the_contracts_table() {
        for (http, grpc) in ROW_STATUSES {
            let want = match http.as_u16() {
                401 => 16,
                403 => 7,
                402 | 429 => 8,
                502 | 503 => 14,
                504 => 4,
                _ => grpc.0,
            };
            assert_eq!(grpc.0, want, "HTTP {http} is gRPC {}", grpc.1);
            assert!((1..=16).contains(&grpc.0), "never OK: HTTP {http}");
        }
    }

    #[test]
    fn the_portal_page_of_a_refusal_is_its_row_in_words_a_person_reads() {
        assert_eq!(GateError::NotFound.page_message(), "There is nothing here.");
        assert_eq!(GateError::InvalidKey.page_message(), "Invalid API key");
        let mut fields = serde_json::Map::new();
        fields.insert("name".into(), json!("is required"));
        fields.insert("tier".into(), json!("unknown tier"));
        assert_eq!(
            GateError::Validation(fields).page_message(),
            "name: is required; tier: unknown tier"
        );
        // A browser shown 401 with WWW-Authenticate asks for a password.
        assert!(GateError::InvalidKey
            .headers()
            .iter()
            .any(|(n, _)| *n == "WWW-Authenticate"));
        assert!(GateError::InvalidKey.page_headers().is_empty());
        assert_eq!(
            GateError::RateLimited { retry_after: 7 }.page_headers(),
            vec![("Retry-After", "7".to_string())]
        );
    }
}
