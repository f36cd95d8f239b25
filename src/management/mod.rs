//! The management API (docs/configuration.md, Management API), answered by keygate
//! itself on the data plane under `management.prefix`; these requests never reach the
//! upstream.
//!
//! [`Management::handle`] takes a parsed request and returns a JSON answer or a
//! [`GateError`]; the gate reads the body and writes the response. This version
//! serves accounts and tokens (`/auth/…`), the key lifecycle (`/keys…`), usage,
//! `/keys/verify`, `/credits` and its own OpenAPI document (`/openapi.json`). Key
//! calls need an API key with `keys:manage` (their owner's keys) or `admin` (all
//! keys), or a JWT (the keys its subject owns; all keys with the `admin` scope).

pub mod accounts;
mod audit;
pub mod auth;
pub mod keys;
mod query;
pub mod users;
mod validate;

use crate::accounts::Accounts;
use crate::auth::authenticator::{AuthSettings, Authenticator};
use crate::auth::jwt::issue::TokenIssuer;
use crate::auth::{AuthMethod, Principal};
use crate::clock::Clock;
use crate::config::Operation;
use crate::error::GateError;
use crate::keys::policy::Actor;
use crate::keys::rules::KeyRules;
use crate::keys::service::KeyService;
use crate::ledger::usage::UsageRecorder;
use crate::local::router::{self, Route, Routed, Seg};
use crate::local::LocalRequest;
use crate::store::{KeyStore, StoreError};
use http::StatusCode;
use serde_json::Value;
use std::sync::Arc;

/// Largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;

/// Largest body of `POST {prefix}/keys/import` (about 150,000 keys of JSON Lines);
/// bigger imports go through `keygate keys import`, or several calls.
pub const MAX_IMPORT_BODY: usize = 32 * 1024 * 1024;

/// The path (below the prefix) of the import endpoint.
pub const IMPORT_PATH: &str = "/keys/import";

/// A successful answer.
#[derive(Debug)]
pub struct ApiResponse {
    /// Status (200 or 201).
    pub status: StatusCode,
    /// JSON body.
    pub body: Value,
}

impl ApiResponse {
    fn ok(body: Value) -> Self {
        ApiResponse {
            status: StatusCode::OK,
            body,
        }
    }

    fn created(body: Value) -> Self {
        ApiResponse {
            status: StatusCode::CREATED,
            body,
        }
    }
}

/// What a management call reads of the running config (swapped on reload).
#[derive(Clone, Copy)]
pub struct ApiContext<'a> {
    /// The key rules in force.
    pub rules: KeyRules<'a>,
    /// `management.registration: open`: anyone may create an account.
    pub registration_open: bool,
    /// What authentication reads of it.
    pub auth: AuthSettings<'a>,
    /// `management.prefix`, where the API is served.
    pub prefix: &'a str,
    /// `portal.prefix` when the portal is on (where reset links lead).
    pub portal_prefix: Option<&'a str>,
    /// `management.refresh_token_prefix`.
    pub refresh_prefix: &'a str,
}

impl<'a> ApiContext<'a> {
    /// The key rules of the config in force, with its compiled key format.
    pub fn key_rules(&self) -> KeyRules<'a> {
        self.rules
    }
}

/// The management service.
pub struct Management {
    store: Arc<dyn KeyStore>,
    accounts: Option<Arc<Accounts>>,
    issuer: Option<Arc<TokenIssuer>>,
    auth: Arc<Authenticator>,
    usage: Arc<UsageRecorder>,
    keys: Arc<KeyService>,
    clock: Arc<dyn Clock>,
}

impl Management {
    /// A service over `store` and `keys` (the key lifecycle) and, when the store
    /// holds users, `accounts`; authenticating callers with `auth`, issuing tokens
    /// with `issuer` (`jwt.issue`).
    pub fn new(
        store: Arc<dyn KeyStore>,
        keys: Arc<KeyService>,
        accounts: Option<Arc<Accounts>>,
        issuer: Option<Arc<TokenIssuer>>,
        auth: Arc<Authenticator>,
        usage: Arc<UsageRecorder>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Management {
            store,
            accounts,
            issuer,
            auth,
            usage,
            keys,
            clock,
        }
    }

    /// Now, on the injected clock.
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now_utc()
    }

    /// Authenticates the caller with the data plane's own authenticator.
    /// `manage`: the call changes or lists keys, so an API key needs `keys:manage`.
    async fn caller(
        &self,
        cx: &ApiContext<'_>,
        req: &LocalRequest<'_>,
        manage: bool,
    ) -> Result<Principal, GateError> {
        let p = self
            .auth
            .authenticate_request(&cx.auth, req.headers, req.query, req.client_ip)
            .await?;
        let id = &p.identity;
        if manage && id.method == AuthMethod::ApiKey && !p.has_scope("keys:manage") {
            return Err(GateError::MissingScope("keys:manage".into()));
        }
        Ok(p)
    }

    /// For the import endpoint, before its (large) body is read: the caller, when
    /// they may import; 401/403 otherwise, so nobody unauthenticated can make
    /// keygate buffer [`MAX_IMPORT_BODY`] bytes. [`Self::handle`] takes the caller
    /// back, so the request is authenticated once.
    pub async fn admit_import(
        &self,
        cx: &ApiContext<'_>,
        req: &LocalRequest<'_>,
    ) -> Result<Principal, GateError> {
        let caller = self.caller(cx, req, true).await?;
        crate::keys::policy::admit_import(&Actor::of(&caller))?;
        Ok(caller)
    }

    /// Answers one request: routes it, authenticates the caller once when the
    /// endpoint needs one (`admitted`: already done, by [`Self::admit_import`]),
    /// and calls the endpoint.
    pub async fn handle(
        &self,
        cx: &ApiContext<'_>,
        req: &LocalRequest<'_>,
        admitted: Option<Principal>,
    ) -> Result<ApiResponse, GateError> {
        let (endpoint, params) = match router::route(ROUTES, req.method, req.path) {
            Routed::To(endpoint, params) => (endpoint, params),
            Routed::WrongMethod(allow) => return Err(GateError::MethodNotAllowed { allow }),
            Routed::NotFound => return Err(GateError::NotFound),
        };
        let id = params.first().copied().unwrap_or_default();
        let caller = match (endpoint.access(), admitted) {
            (Access::Anyone, _) => None,
            (_, Some(caller)) => Some(caller),
            (access, None) => Some(self.caller(cx, req, access == Access::Manager).await?),
        };
        use Endpoint::*;
        match (endpoint, caller.as_ref()) {
            (OpenApi, _) => Ok(ApiResponse::ok(openapi(cx))),
            (Token, _) => auth::token(self, cx, req).await,
            (Refresh, _) => auth::refresh(self, cx, req).await,
            (Register, _) => auth::register(self, cx, req).await,
            (CreateKey, Some(c)) => keys::create(self, cx, req, c).await,
            (FirstKey, Some(c)) => keys::first(self, cx, req, c).await,
            (ListKeys, Some(c)) => keys::list(self, cx, req, c).await,
            (VerifyKey, Some(c)) => keys::verify(self, cx, c).await,
            (Import, Some(c)) => keys::import(self, cx, req, c).await,
            (GetKey, Some(c)) => keys::get(self, cx, c, id).await,
            (UpdateKey, Some(c)) => keys::update(self, cx, req, c, id).await,
            (RevokeKey, Some(c)) => keys::revoke(self, cx, req, c, id).await,
            (Regenerate, Some(c)) => keys::regenerate(self, cx, req, c, id).await,
            (Usage, Some(c)) => keys::usage(self, cx, req, c, id).await,
            (Credits, Some(c)) => keys::credits(self, cx, c).await,
            (ListAccounts, Some(c)) => accounts::list(self, cx, req, c).await,
            (GetAccount, Some(c)) => accounts::get(self, cx, c, id).await,
            (UpdateAccount, Some(c)) => accounts::update(self, cx, req, c, id).await,
            (AccountCredits, Some(c)) => accounts::credits(self, cx, req, c, id).await,
            (OwnAccount, Some(c)) => accounts::own(self, cx, c).await,
            (ListUsers, Some(c)) => users::list(self, req, c).await,
            (UpdateUser, Some(c)) => users::update(self, cx, req, c, id).await,
            (DeleteUser, Some(c)) => users::delete(self, cx, req, c, id).await,
            (ResetLink, Some(c)) => users::password_reset(self, cx, req, c, id).await,
            (Audit, Some(c)) => audit::list(self, req, c).await,
            // Every other endpoint's access is a caller's, authenticated above.
            (_, None) => Err(GateError::Internal),
        }
    }
}

/// What a management endpoint does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    OpenApi,
    Token,
    Refresh,
    Register,
    CreateKey,
    FirstKey,
    ListKeys,
    VerifyKey,
    Import,
    GetKey,
    UpdateKey,
    RevokeKey,
    Regenerate,
    Usage,
    Credits,
    ListAccounts,
    GetAccount,
    UpdateAccount,
    AccountCredits,
    OwnAccount,
    ListUsers,
    UpdateUser,
    DeleteUser,
    ResetLink,
    Audit,
}

/// Who may call an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    /// No credential (the endpoint takes its own: a password, a refresh token).
    Anyone,
    /// Any valid credential (the view of its own key).
    Caller,
    /// A credential that may manage keys: an API key needs `keys:manage`.
    Manager,
}

impl Endpoint {
    /// Who may call it.
    fn access(self) -> Access {
        use Endpoint::*;
        match self {
            OpenApi | Token | Refresh | Register => Access::Anyone,
            VerifyKey | Credits | OwnAccount => Access::Caller,
            // The account rules decide who (admins; an account's own user reads it).
            ListAccounts | GetAccount | UpdateAccount | AccountCredits => Access::Caller,
            // Admins only, as UserAdmin says.
            ListUsers | UpdateUser | DeleteUser | ResetLink => Access::Caller,
            // Admins only, as keys::audit says.
            Audit => Access::Caller,
            CreateKey | FirstKey | ListKeys | Import | GetKey | UpdateKey | RevokeKey
            | Regenerate | Usage => Access::Manager,
        }
    }
}

/// Every route of the management API, below its prefix, in the order they are
/// tried; its 405s and their `Allow` come from here too.
const ROUTES: &[Route<Endpoint>] = {
    use Endpoint::*;
    use Seg::{Lit, Param};
    &[
        Route::new(&[Lit("openapi.json")], "GET", OpenApi),
        Route::new(&[Lit("auth"), Lit("token")], "POST", Token),
        Route::new(&[Lit("auth"), Lit("refresh")], "POST", Refresh),
        Route::new(&[Lit("auth"), Lit("register")], "POST", Register),
        Route::new(&[Lit("keys")], "GET", ListKeys),
        Route::new(&[Lit("keys")], "POST", CreateKey),
        Route::new(&[Lit("keys"), Lit("verify")], "POST", VerifyKey),
        Route::new(&[Lit("keys"), Lit("first")], "POST", FirstKey),
        Route::new(&[Lit("keys"), Lit("import")], "POST", Import),
        Route::new(&[Lit("keys"), Param], "GET", GetKey),
        Route::new(&[Lit("keys"), Param], "PUT", UpdateKey),
        Route::new(&[Lit("keys"), Param], "PATCH", UpdateKey),
        Route::new(&[Lit("keys"), Param], "DELETE", RevokeKey),
        Route::new(&[Lit("keys"), Param, Lit("regenerate")], "POST", Regenerate),
        Route::new(&[Lit("keys"), Param, Lit("usage")], "GET", Usage),
        Route::new(&[Lit("credits")], "GET", Credits),
        Route::new(&[Lit("accounts")], "GET", ListAccounts),
        Route::new(&[Lit("accounts"), Param], "GET", GetAccount),
        Route::new(&[Lit("accounts"), Param], "PUT", UpdateAccount),
        Route::new(&[Lit("accounts"), Param], "PATCH", UpdateAccount),
        Route::new(
            &[Lit("accounts"), Param, Lit("credits")],
            "POST",
            AccountCredits,
        ),
        Route::new(&[Lit("account")], "GET", OwnAccount),
        Route::new(&[Lit("users")], "GET", ListUsers),
        Route::new(&[Lit("audit")], "GET", Audit),
        Route::new(&[Lit("users"), Param], "PUT", UpdateUser),
        Route::new(&[Lit("users"), Param], "PATCH", UpdateUser),
        Route::new(&[Lit("users"), Param], "DELETE", DeleteUser),
        Route::new(
            &[Lit("users"), Param, Lit("password-reset")],
            "POST",
            ResetLink,
        ),
    ]
};

/// The method and path (below the prefix) at which this API serves `operation`,
/// on the key `id` for operations on one key: where a dialect's documented
/// endpoint sends its request (`crate::dialect`), so both doors are one operation.
pub fn operation_target(operation: Operation, id: Option<&str>) -> (http::Method, String) {
    use http::Method;
    use Operation::*;
    let key = |tail: &str| format!("/keys/{}{tail}", id.unwrap_or_default());
    match operation {
        Register => (Method::POST, "/auth/register".into()),
        Token => (Method::POST, "/auth/token".into()),
        Refresh => (Method::POST, "/auth/refresh".into()),
        FirstKey => (Method::POST, "/keys/first".into()),
        CreateKey => (Method::POST, "/keys".into()),
        ListKeys => (Method::GET, "/keys".into()),
        GetKey => (Method::GET, key("")),
        UpdateKey => (Method::PUT, key("")),
        RevokeKey => (Method::DELETE, key("")),
        RegenerateKey => (Method::POST, key("/regenerate")),
        KeyUsage => (Method::GET, key("/usage")),
        Verify => (Method::POST, "/keys/verify".into()),
        Credits => (Method::GET, "/credits".into()),
        Account => (Method::GET, "/account".into()),
    }
}

/// The OpenAPI 3 document of this API (`openapi/keygate.json`, generated by
/// `openapi/generate.py`), with its server URL set to the configured prefix and
/// the configured tiers as the values of `tier`.
fn openapi(cx: &ApiContext<'_>) -> Value {
    static DOC: once_cell::sync::Lazy<Value> = once_cell::sync::Lazy::new(|| {
        serde_json::from_str(include_str!("../../openapi/keygate.json")).unwrap_or(Value::Null)
    });
    let mut doc = DOC.clone();
    doc["servers"] = serde_json::json!([{ "url": cx.prefix }]);
    // The configured tiers are the only valid `tier` values.
    for schema in ["NewKey", "KeyUpdate"] {
        doc["components"]["schemas"][schema]["properties"]["tier"]["enum"] =
            serde_json::json!(cx.rules.tier_names());
    }
    doc
}

/// A store failure as the client sees it (details are logged, not sent).
fn store_error(e: StoreError) -> GateError {
    GateError::from(e)
}

/// Parses a JSON object body (an empty body is `{}`).
fn json_object(body: &[u8]) -> Result<serde_json::Map<String, Value>, GateError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(GateError::InvalidBody(
            "Request body must be a JSON object".into(),
        )),
        Err(e) => Err(GateError::InvalidBody(format!("Malformed JSON body: {e}"))),
    }
}

#[cfg(test)]
mod tests;
