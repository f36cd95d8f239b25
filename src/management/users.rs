//! The user endpoints (docs/configuration.md, Users), admins only:
//! `GET /users`, `PUT|DELETE /users/{id}`, `POST /users/{id}/password-reset`.
//! Parsing and rendering only; the rules are [`UserAdmin`]'s.

use super::auth::user_object;
use super::keys::audit_origin;
use super::query::{page_size, Query};
use super::{json_object, ApiContext, ApiResponse, Management};
use crate::accounts::admin::UserAdmin;
use crate::auth::Principal;
use crate::error::GateError;
use crate::keys::accounts::DEFAULT_PAGE;
use crate::keys::policy::Actor;
use crate::local::LocalRequest;
use serde_json::{json, Map, Value};

fn admin(m: &Management) -> Result<UserAdmin<'_>, GateError> {
    let accounts = m.accounts.as_deref().ok_or(GateError::NotFound)?;
    Ok(UserAdmin {
        accounts,
        keys: &m.keys,
    })
}

/// `GET /users?email=&limit=&cursor=`: a page of users in id order.
pub async fn list(
    m: &Management,
    req: &LocalRequest<'_>,
    caller: &Principal,
) -> Result<ApiResponse, GateError> {
    let q = Query::of(req.query);
    let mut problems = Map::new();
    let limit = page_size(&q, &mut problems).unwrap_or(DEFAULT_PAGE);
    if !problems.is_empty() {
        return Err(GateError::Validation(problems));
    }
    let (email, cursor) = (q.get("email"), q.get("cursor"));
    let mut page = admin(m)?
        .list(
            &Actor::of(caller),
            email.as_deref(),
            cursor.as_deref(),
            limit + 1,
        )
        .await?;
    let next = crate::local::page::cut_page(&mut page, limit, |u| &u.id);
    let users: Vec<Value> = page.iter().map(user_object).collect();
    Ok(ApiResponse::ok(
        json!({ "users": users, "next_cursor": next }),
    ))
}

/// `PUT /users/{id}`: `{"disabled": true|false}`.
pub async fn update(
    m: &Management,
    cx: &ApiContext<'_>,
    req: &LocalRequest<'_>,
    caller: &Principal,
    id: &str,
) -> Result<ApiResponse, GateError> {
    let body = json_object(req.body)?;
    let disabled = match (body.get("disabled"), body.len()) {
        (Some(Value::Bool(b)), 1) => *b,
        _ => {
            let mut problems = Map::new();
            problems.insert(
                "disabled".into(),
                json!("required, true or false, and the only field"),
            );
            return Err(GateError::Validation(problems));
        }
    };
    let origin = audit_origin(req, caller);
    let user = admin(m)?
        .set_disabled(
            &cx.key_rules(),
            &Actor::of(caller).from(&origin),
            id,
            disabled,
        )
        .await?;
    Ok(ApiResponse::ok(user_object(&user)))
}

/// `DELETE /users/{id}`: the user, their keys revoked, their account suspended.
pub async fn delete(
    m: &Management,
    cx: &ApiContext<'_>,
    req: &LocalRequest<'_>,
    caller: &Principal,
    id: &str,
) -> Result<ApiResponse, GateError> {
    let origin = audit_origin(req, caller);
    admin(m)?
        .delete(&cx.key_rules(), &Actor::of(caller).from(&origin), id)
        .await?;
    Ok(ApiResponse::ok(json!({ "id": id, "deleted": true })))
}

/// `POST /users/{id}/password-reset`: a one-time link to the portal's reset
/// page, shown to the admin (nothing is sent by mail).
pub async fn password_reset(
    m: &Management,
    cx: &ApiContext<'_>,
    req: &LocalRequest<'_>,
    caller: &Principal,
    id: &str,
) -> Result<ApiResponse, GateError> {
    let admin = admin(m)?;
    let origin = audit_origin(req, caller);
    let actor = Actor::of(caller).from(&origin);
    let Some(portal) = cx.portal_prefix else {
        if !matches!(
            actor.role,
            crate::keys::policy::Role::Admin | crate::keys::policy::Role::Operator
        ) {
            return Err(GateError::Forbidden("Only an admin may do this".into()));
        }
        return Err(GateError::Conflict(
            "Password-reset links open the portal's reset page: turn the portal on (portal.enabled)"
                .into(),
        ));
    };
    let (token, expires_at) = admin.issue_reset(&actor, id).await?;
    Ok(ApiResponse::ok(json!({
        "user_id": id,
        "reset_url": format!("{portal}/reset/{token}"),
        "expires_at": expires_at,
    })))
}
