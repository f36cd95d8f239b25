//! Accounts and tokens: `POST /auth/register` (with `registration: open`),
//! `POST /auth/token` (email + password → access JWT + refresh token) and
//! `POST /auth/refresh` (rotation: each refresh token works once; reusing a spent one
//! revokes its whole family).

use super::validate::Fields;
use super::{json_object, password, store_error, ApiContext, ApiRequest, ApiResponse, Management};
use crate::config::Registration;
use crate::domain::id::{new_id, random_base62};
use crate::domain::{KeyHash, UserRecord};
use crate::error::GateError;
use crate::limit::{Window, WindowLimit};
use crate::store::users::Rotation;
use serde_json::{json, Value};
use std::time::Duration;

/// Failed logins allowed per minute, per client IP and per email.
const LOGIN_FAILURES_PER_MINUTE: u64 = 10;

/// A fresh opaque refresh token: `kg_rt_` and 43 base62 characters (256 bits).
fn new_refresh_token() -> String {
    format!("kg_rt_{}", random_base62(43))
}

fn valid_email(e: &str) -> bool {
    let Some((local, domain)) = e.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && e.len() <= 254
        && !e.chars().any(char::is_whitespace)
}

/// `POST /auth/register`.
pub async fn register(
    m: &Management,
    cx: &ApiContext<'_>,
    req: &ApiRequest<'_>,
) -> Result<ApiResponse, GateError> {
    let users = m.users.as_ref().ok_or(GateError::NotFound)?;
    if cx.config.management.registration != Registration::Open {
        return Err(GateError::Forbidden("Registration is closed".into()));
    }
    let body = json_object(req.body)?;
    let mut f = Fields::new(&body, &["email", "password", "name"]);
    let email = f.string("email", true, 254);
    let pass = f.string("password", true, 200);
    let name = f.string("name", false, 200);
    if email.as_deref().is_some_and(|e| !valid_email(e)) {
        f.error("email", "must be an email address");
    }
    if pass.as_deref().is_some_and(|p| p.chars().count() < 8) {
        f.error("password", "must be at least 8 characters");
    }
    f.finish()?;
    let (Some(email), Some(pass)) = (email, pass) else {
        return Err(GateError::Internal);
    };
    let password_hash = m.passwords.hash(pass).await.map_err(busy)?.map_err(|e| {
        tracing::error!(error = %e, "could not hash a password");
        GateError::Internal
    })?;
    let user = UserRecord {
        id: new_id("usr"),
        email,
        name,
        password_hash,
        is_admin: false,
        created_at: m.now(),
    };
    users.create_user(&user).await.map_err(store_error)?;
    Ok(ApiResponse::created(user_object(&user)))
}

/// The public view of a user.
pub fn user_object(u: &UserRecord) -> Value {
    json!({ "id": u.id, "email": u.email, "name": u.name, "is_admin": u.is_admin, "created_at": u.created_at })
}

/// The 503 for a full password-hashing pool.
fn busy(_: password::PoolBusy) -> GateError {
    GateError::Overloaded { retry_after: 1 }
}

const LOGIN_WINDOW: Window = Window::Minute;

/// Reserves one password check against the email and the client IP, atomically:
/// at most [`LOGIN_FAILURES_PER_MINUTE`] checks are in flight or have failed per
/// minute for each, however many arrive at once. Returns the reserved counters (a
/// successful login gives them back), or the 429 when either is used up.
async fn reserve_login(
    m: &Management,
    req: &ApiRequest<'_>,
    email: &str,
) -> Result<Vec<String>, GateError> {
    let limit = [WindowLimit {
        window: LOGIN_WINDOW,
        limit: LOGIN_FAILURES_PER_MINUTE,
    }];
    let mut reserved = Vec::new();
    for key in login_keys(req, email) {
        let refused = match m.limiter.check(&key, &limit, Duration::ZERO).await {
            Ok(decision) if decision.allowed => {
                reserved.push(key);
                continue;
            }
            Ok(decision) => GateError::TooManyFailures {
                retry_after: decision.retry_after_secs,
            },
            Err(e) => {
                tracing::warn!(error = %e, "login throttle unavailable");
                GateError::BackendUnavailable
            }
        };
        release_login(m, &reserved).await;
        return Err(refused);
    }
    Ok(reserved)
}

/// Gives back reserved login checks (the login succeeded, or never ran).
async fn release_login(m: &Management, reserved: &[String]) {
    for key in reserved {
        if let Err(e) = m.limiter.release(key, LOGIN_WINDOW).await {
            tracing::debug!(error = %e, "could not release a login reservation");
        }
    }
}

fn login_keys(req: &ApiRequest<'_>, email: &str) -> Vec<String> {
    let mut keys = vec![format!("login:email:{}", email.to_lowercase())];
    if let Some(ip) = req.client_ip {
        keys.push(format!("login:ip:{ip}"));
    }
    keys
}

/// `POST /auth/token`.
pub async fn token(
    m: &Management,
    _cx: &ApiContext<'_>,
    req: &ApiRequest<'_>,
) -> Result<ApiResponse, GateError> {
    let (users, issuer) = (
        m.users.as_ref().ok_or(GateError::NotFound)?,
        m.issuer.as_ref().ok_or(GateError::NotFound)?,
    );
    let body = json_object(req.body)?;
    let mut f = Fields::new(&body, &["email", "password"]);
    let email = f.string("email", true, 254);
    let pass = f.string("password", true, 200);
    f.finish()?;
    let (Some(email), Some(pass)) = (email, pass) else {
        return Err(GateError::Internal);
    };
    let reserved = reserve_login(m, req, &email).await?;
    let checked = async {
        let user = users.user_by_email(&email).await.map_err(store_error)?;
        let phc = user.as_ref().map(|u| u.password_hash.clone());
        let ok = m.passwords.verify(pass, phc).await.map_err(busy)?;
        Ok::<_, GateError>(user.filter(|_| ok))
    };
    let user = match checked.await {
        // A failed check keeps its reservation: it counts against the limit.
        Ok(None) => return Err(GateError::InvalidCredentials),
        Ok(Some(user)) => {
            release_login(m, &reserved).await;
            user
        }
        Err(e) => {
            release_login(m, &reserved).await;
            return Err(e);
        }
    };
    let refresh = new_refresh_token();
    let expires = m.now() + chrono::Duration::from_std(issuer.refresh_ttl()).unwrap_or_default();
    users
        .insert_refresh(&KeyHash::of(&refresh), &new_id("fam"), &user.id, expires)
        .await
        .map_err(store_error)?;
    token_pair(m, &user, refresh)
}

fn token_pair(
    m: &Management,
    user: &UserRecord,
    refresh: String,
) -> Result<ApiResponse, GateError> {
    let issuer = m.issuer.as_ref().ok_or(GateError::NotFound)?;
    let (access, expires_in) = issuer
        .access_token(&user.id, &user.email, user.is_admin, m.clock.now_secs())
        .map_err(|e| {
            tracing::error!(error = %e, "could not sign an access token");
            GateError::Internal
        })?;
    Ok(ApiResponse::ok(json!({
        "access_token": access,
        "refresh_token": refresh,
        "expires_in": expires_in,
        "token_type": "Bearer",
    })))
}

/// `POST /auth/refresh`.
pub async fn refresh(
    m: &Management,
    _cx: &ApiContext<'_>,
    req: &ApiRequest<'_>,
) -> Result<ApiResponse, GateError> {
    let (users, issuer) = (
        m.users.as_ref().ok_or(GateError::NotFound)?,
        m.issuer.as_ref().ok_or(GateError::NotFound)?,
    );
    let body = json_object(req.body)?;
    let mut f = Fields::new(&body, &["refresh_token"]);
    let presented = f.string("refresh_token", true, 200);
    f.finish()?;
    let Some(presented) = presented else {
        return Err(GateError::Internal);
    };
    let next = new_refresh_token();
    let expires = m.now() + chrono::Duration::from_std(issuer.refresh_ttl()).unwrap_or_default();
    let outcome = users
        .rotate_refresh(&KeyHash::of(&presented), &KeyHash::of(&next), expires)
        .await
        .map_err(store_error)?;
    match outcome {
        Rotation::Rotated { user_id } => {
            let user = users
                .user_by_id(&user_id)
                .await
                .map_err(store_error)?
                .ok_or(GateError::InvalidRefresh("Invalid refresh token"))?;
            token_pair(m, &user, next)
        }
        Rotation::Reused => {
            tracing::warn!("refresh token reused: its family is revoked");
            Err(GateError::InvalidRefresh(
                "Refresh token was already used; all tokens of this session are revoked",
            ))
        }
        Rotation::Expired => Err(GateError::InvalidRefresh("Refresh token has expired")),
        Rotation::Invalid => Err(GateError::InvalidRefresh("Invalid refresh token")),
    }
}
