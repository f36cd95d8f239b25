//! Accounts and tokens: `POST /auth/register` (with `registration: open`),
//! `POST /auth/token` (email + password → access JWT + refresh token) and
//! `POST /auth/refresh` (rotation: each refresh token works once; reusing a spent one
//! revokes its whole family).

use super::validate::Fields;
use super::{json_object, store_error, ApiContext, ApiResponse, Management};
use crate::accounts::sign_up_problems;
use crate::domain::id::{new_id, random_base62};
use crate::domain::{AuditEntry, AuditOrigin, KeyHash, UserRecord};
use crate::error::GateError;
use crate::local::LocalRequest;
use crate::store::users::Rotation;
use serde_json::{json, Value};

/// A fresh opaque refresh token: `management.refresh_token_prefix` (`kg_rt_`) and
/// 43 base62 characters (256 bits).
fn new_refresh_token(cx: &ApiContext<'_>) -> String {
    format!("{}{}", cx.refresh_prefix, random_base62(43))
}

/// `POST /auth/register`.
pub async fn register(
    m: &Management,
    cx: &ApiContext<'_>,
    req: &LocalRequest<'_>,
) -> Result<ApiResponse, GateError> {
    let accounts = m.accounts.as_ref().ok_or(GateError::NotFound)?;
    if !cx.registration_open {
        return Err(GateError::Forbidden("Registration is closed".into()));
    }
    let body = json_object(req.body)?;
    let mut f = Fields::new(&body, &["email", "password", "name"]);
    let email = f.string("email", true, 254);
    let pass = f.string("password", true, 200);
    let name = f.string("name", false, 200);
    if let (Some(e), Some(p)) = (&email, &pass) {
        for (field, why) in sign_up_problems(e, p) {
            f.error(field, &why);
        }
    }
    f.finish()?;
    let (Some(email), Some(pass)) = (email, pass) else {
        return Err(GateError::Internal);
    };
    let user = accounts
        .register(email, pass, name, &req.audit_origin("anonymous"))
        .await?;
    Ok(ApiResponse::created(user_object(&user)))
}

/// The public view of a user.
pub fn user_object(u: &UserRecord) -> Value {
    json!({
        "id": u.id,
        "email": u.email,
        "name": u.name,
        "is_admin": u.is_admin,
        "disabled": u.disabled,
        "created_at": u.created_at,
    })
}

/// `POST /auth/token`.
pub async fn token(
    m: &Management,
    cx: &ApiContext<'_>,
    req: &LocalRequest<'_>,
) -> Result<ApiResponse, GateError> {
    let (accounts, issuer) = (
        m.accounts.as_ref().ok_or(GateError::NotFound)?,
        m.issuer.as_ref().ok_or(GateError::NotFound)?,
    );
    let users = accounts.users();
    let body = json_object(req.body)?;
    let mut f = Fields::new(&body, &["email", "password"]);
    let email = f.string("email", true, 254);
    let pass = f.string("password", true, 200);
    f.finish()?;
    let (Some(email), Some(pass)) = (email, pass) else {
        return Err(GateError::Internal);
    };
    let from = req.audit_origin(AuditOrigin::ANONYMOUS);
    let user = accounts.sign_in(&email, pass, req.client_ip, &from).await?;
    let refresh = new_refresh_token(cx);
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
        "user": { "id": user.id, "email": user.email, "name": user.name },
    })))
}

/// `POST /auth/refresh`.
pub async fn refresh(
    m: &Management,
    cx: &ApiContext<'_>,
    req: &LocalRequest<'_>,
) -> Result<ApiResponse, GateError> {
    let (users, issuer) = (
        m.accounts.as_ref().ok_or(GateError::NotFound)?.users(),
        m.issuer.as_ref().ok_or(GateError::NotFound)?,
    );
    let body = json_object(req.body)?;
    let mut f = Fields::new(&body, &["refresh_token"]);
    let presented = f.string("refresh_token", true, 200);
    f.finish()?;
    let Some(presented) = presented else {
        return Err(GateError::Internal);
    };
    let next = new_refresh_token(cx);
    let expires = m.now() + chrono::Duration::from_std(issuer.refresh_ttl()).unwrap_or_default();
    // Whoever presents a spent token may be its thief: the entry names no actor.
    let reuse = AuditEntry::new(
        &req.audit_origin(AuditOrigin::ANONYMOUS),
        "auth.refresh_reuse",
        "",
        Vec::new(),
        m.now(),
    );
    let outcome = users
        .rotate_refresh(
            &KeyHash::of(&presented),
            &KeyHash::of(&next),
            expires,
            &reuse,
        )
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
        Rotation::Reused { user_id } => {
            tracing::warn!(user = %user_id, "refresh token reused: its family is revoked");
            Err(GateError::InvalidRefresh(
                "Refresh token was already used; all tokens of this session are revoked",
            ))
        }
        Rotation::Expired => Err(GateError::InvalidRefresh("Refresh token has expired")),
        Rotation::Invalid => Err(GateError::InvalidRefresh("Invalid refresh token")),
    }
}
