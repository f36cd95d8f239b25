//! The account endpoints (docs/configuration.md, Accounts): `GET /accounts`,
//! `GET|PUT /accounts/{id}`, `POST /accounts/{id}/credits`, `GET /account`.
//! Parsing and rendering only; every rule is [`AccountService`]'s.

use super::keys::audit_origin;
use super::keys::key_object;
use super::query::{page_size, Query};
use super::{json_object, ApiContext, ApiResponse, Management};
use crate::auth::Principal;
use crate::domain::{AccountFilter, AccountPatch, CreditChange, PlanOverrides};
use crate::error::GateError;
use crate::keys::accounts::{parse_status, AccountService, AccountView, DEFAULT_PAGE};
use crate::keys::policy::Actor;
use crate::local::page::cut_page;
use crate::local::LocalRequest;
use serde_json::{json, Map, Value};
use std::sync::Arc;

fn service(m: &Management) -> Result<&Arc<AccountService>, GateError> {
    // A store without accounts (the file store) has no account endpoints.
    m.keys.accounts().ok_or(GateError::NotFound)
}

/// The account object, with its keys when the view holds them.
pub fn account_object(cx: &ApiContext<'_>, v: &AccountView, balance: Option<i64>) -> Value {
    let a = &v.account;
    let mut o = json!({
        "id": a.id,
        "plan": a.plan,
        "status": a.status,
        "overrides": a.overrides,
        "credits": balance,
        "refilled_at": a.refilled_at,
        "metadata": a.metadata,
        "owner": a.owner,
        "created_at": a.created_at,
    });
    if let Some(keys) = &v.keys {
        let rules = cx.key_rules();
        o["keys"] = Value::Array(keys.iter().map(|k| key_object(&rules, k)).collect());
    }
    if !v.warnings.is_empty() {
        o["warnings"] = json!(v.warnings);
    }
    o
}

async fn render(
    cx: &ApiContext<'_>,
    s: &AccountService,
    v: AccountView,
) -> Result<Value, GateError> {
    let balance = s.balance_of(&cx.key_rules(), &v.account);
    Ok(account_object(cx, &v, balance))
}

/// `GET /accounts?email=&org=&plan=&status=&limit=&cursor=` (admins).
pub async fn list(
    m: &Management,
    cx: &ApiContext<'_>,
    req: &LocalRequest<'_>,
    caller: &Principal,
) -> Result<ApiResponse, GateError> {
    let s = service(m)?;
    let q = Query::of(req.query);
    let mut problems = Map::new();
    let limit = page_size(&q, &mut problems).unwrap_or(DEFAULT_PAGE);
    let status = match q.get("status") {
        None => None,
        Some(st) => match parse_status(&st) {
            Ok(st) => Some(st),
            Err(_) => {
                problems.insert("status".into(), json!("must be one of: active, suspended"));
                None
            }
        },
    };
    if !problems.is_empty() {
        return Err(GateError::Validation(problems));
    }
    // An email names its user's own account.
    let owner = match q.get("email") {
        None => None,
        Some(email) => match s.user_of_email(&email).await? {
            Some(id) => Some(id),
            None => {
                return Ok(ApiResponse::ok(
                    json!({ "accounts": [], "next_cursor": null }),
                ))
            }
        },
    };
    let filter = AccountFilter {
        owner,
        plan: q.get("plan"),
        org: q.get("org"),
        status,
        after: q.get("cursor"),
        // One more than the page, to know whether another follows.
        limit: limit + 1,
    };
    let mut page = s.list(&Actor::of(caller), filter).await?;
    let next = cut_page(&mut page, limit, |a| &a.id);
    let mut items = Vec::with_capacity(page.len());
    for a in page {
        let balance = s.balance_of(&cx.key_rules(), &a);
        let view = AccountView {
            account: a,
            keys: None,
            warnings: Vec::new(),
        };
        items.push(account_object(cx, &view, balance));
    }
    Ok(ApiResponse::ok(
        json!({ "accounts": items, "next_cursor": next }),
    ))
}

/// `GET /accounts/{id}` (admins, or the account's own user).
pub async fn get(
    m: &Management,
    cx: &ApiContext<'_>,
    caller: &Principal,
    id: &str,
) -> Result<ApiResponse, GateError> {
    let s = service(m)?;
    let view = s.get(&Actor::of(caller), id).await?;
    Ok(ApiResponse::ok(render(cx, s, view).await?))
}

/// `GET /account`: the caller's own account (a key's, or a signed-in user's).
pub async fn own(
    m: &Management,
    cx: &ApiContext<'_>,
    caller: &Principal,
) -> Result<ApiResponse, GateError> {
    let s = service(m)?;
    let id = match caller.identity.account_id() {
        Some(id) => id.to_string(),
        None => s.own(&cx.key_rules(), caller.identity.subject()).await?.id,
    };
    // The caller's own: shown whatever their role.
    let view = s.get(&Actor::operator(), &id).await?;
    Ok(ApiResponse::ok(render(cx, s, view).await?))
}

/// `PUT /accounts/{id}`: `{plan?, status?, overrides?, metadata?}` (admins).
pub async fn update(
    m: &Management,
    cx: &ApiContext<'_>,
    req: &LocalRequest<'_>,
    caller: &Principal,
    id: &str,
) -> Result<ApiResponse, GateError> {
    let s = service(m)?;
    let body = json_object(req.body)?;
    let mut problems = Map::new();
    let mut patch = AccountPatch::default();
    for (field, value) in &body {
        match field.as_str() {
            "plan" => match value.as_str() {
                Some(p) => patch.plan = Some(p.to_string()),
                None => {
                    problems.insert("plan".into(), json!("must be a tier name"));
                }
            },
            "status" => match value.as_str().map(parse_status) {
                Some(Ok(st)) => patch.status = Some(st),
                _ => {
                    problems.insert("status".into(), json!("must be one of: active, suspended"));
                }
            },
            "overrides" => {
                let o = if value.is_null() {
                    Ok(PlanOverrides::default())
                } else {
                    serde_json::from_value::<PlanOverrides>(value.clone())
                };
                match o {
                    Ok(o) => patch.overrides = Some(o),
                    Err(e) => {
                        problems.insert(
                            "overrides".into(),
                            json!(format!(
                                "{e}; the fields are per_second, per_minute, per_hour, per_day, \
                                 per_month, max_keys, refill {{amount, every}}"
                            )),
                        );
                    }
                }
            }
            "metadata" => patch.metadata = Some(value.clone()),
            other => {
                problems.insert(other.into(), json!("unknown field"));
            }
        }
    }
    if !problems.is_empty() {
        return Err(GateError::Validation(problems));
    }
    let origin = audit_origin(req, caller);
    let view = s
        .update(&cx.key_rules(), &Actor::of(caller).from(&origin), id, patch)
        .await?;
    Ok(ApiResponse::ok(render(cx, s, view).await?))
}

/// `POST /accounts/{id}/credits`: `{add: N}` or `{set: N|null}` (admins).
pub async fn credits(
    m: &Management,
    cx: &ApiContext<'_>,
    req: &LocalRequest<'_>,
    caller: &Principal,
    id: &str,
) -> Result<ApiResponse, GateError> {
    let s = service(m)?;
    let body = json_object(req.body)?;
    let change = match (body.get("add"), body.get("set"), body.len()) {
        (Some(n), None, 1) => n.as_i64().map(CreditChange::Add),
        (None, Some(Value::Null), 1) => Some(CreditChange::Set(None)),
        (None, Some(n), 1) => n.as_i64().map(|n| CreditChange::Set(Some(n))),
        _ => None,
    };
    let Some(change) = change else {
        let mut problems = Map::new();
        problems.insert(
            "body".into(),
            json!("must be {\"add\": N} (an increment) or {\"set\": N or null}"),
        );
        return Err(GateError::Validation(problems));
    };
    let origin = audit_origin(req, caller);
    let view = s
        .change_credits(&Actor::of(caller).from(&origin), id, change)
        .await?;
    Ok(ApiResponse::ok(render(cx, s, view).await?))
}
