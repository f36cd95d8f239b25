//! Key lifecycle endpoints: create (secret shown once), list, get, update, revoke,
//! regenerate (optionally with a grace period), verify, credits. A door onto
//! [`crate::keys::service::KeyService`]: these handlers read the JSON, call the
//! service as the caller, and write its answer. Keys of another owner answer 404,
//! never 403, so their existence does not leak.

use super::query::{page_size, Query};
use super::validate::Fields;
use super::{json_object, store_error, ApiContext, ApiResponse, Management};
use crate::auth::Principal;
use crate::domain::AuditOrigin;
use crate::domain::KeyRecord;
use crate::error::GateError;
use crate::keys::input::{validate_change, validate_new, KeyChange, KeyInput};
use crate::keys::policy::Actor;
use crate::keys::rules::KeyRules;
use crate::keys::service::{Issued, KeyServiceError};
use crate::ledger::usage::{top_endpoints_timed, Totals};
use crate::local::LocalRequest;
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

pub(super) fn key_object(rules: &KeyRules<'_>, r: &KeyRecord) -> Value {
    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
    v["limits"] = json!(rules.limits(r));
    v
}

/// The key object with its secret and, after a regenerate with a grace period,
/// when the previous secret stops working.
fn issued_object(rules: &KeyRules<'_>, issued: &Issued) -> Value {
    let mut v = key_object(rules, &issued.record);
    v["key"] = Value::String(issued.secret.plaintext.clone());
    if issued.previous_valid_until.is_some() {
        v["previous_key_valid_until"] = json!(issued.previous_valid_until);
    }
    v
}

/// A 422 naming the JSON type errors and what the key rules say of the rest.
fn invalid(
    mut errors: Map<String, Value>,
    rules: Option<crate::keys::input::FieldErrors>,
) -> GateError {
    for (field, why) in rules.unwrap_or_default() {
        errors.entry(field).or_insert(Value::String(why));
    }
    GateError::Validation(errors)
}

/// Reads a `POST /keys` body into what it asks for; JSON type errors are merged
/// with what the key rules find in the other fields.
pub fn parse_create(
    body: &[u8],
    tiers: &[&str],
    now: DateTime<Utc>,
) -> Result<KeyInput, GateError> {
    let body = json_object(body)?;
    let known = [
        "name",
        "tier",
        "scopes",
        "environment",
        "expires_at",
        "credits",
        "refill",
        "allowed_ips",
        "org",
        "owner",
        "account",
        "cap",
    ];
    let mut f = Fields::new(&body, &known);
    let input = KeyInput {
        name: f.text("name"),
        tier: f.text("tier"),
        scopes: f.text_list("scopes", false),
        environment: f.text("environment"),
        credits: f.int_or_null("credits"),
        refill: f.refill_or_null("refill"),
        expires_at: f.time_or_null("expires_at"),
        allowed_ips: f.text_list("allowed_ips", true),
        org: f.text("org"),
        owner: f.text("owner"),
        account: f.text("account"),
        cap: f.cap_or_null("cap").flatten(),
    };
    let errors = f.into_errors();
    if errors.is_empty() {
        return Ok(input);
    }
    let rules = validate_new(&input, tiers, now).err();
    Err(invalid(errors, rules))
}

/// Reads a `PUT /keys/{id}` body into the change it asks for.
pub fn parse_change(
    body: &[u8],
    tiers: &[&str],
    now: DateTime<Utc>,
) -> Result<KeyChange, GateError> {
    let body = json_object(body)?;
    let mut f = Fields::new(
        &body,
        &[
            "name",
            "tier",
            "scopes",
            "credits",
            "refill",
            "allowed_ips",
            "expires_at",
            "cap",
        ],
    );
    let change = KeyChange {
        name: f.text("name"),
        tier: f.text("tier"),
        scopes: f.text_list("scopes", false),
        credits: f.int_or_null("credits"),
        refill: f.refill_or_null("refill"),
        allowed_ips: f.text_list("allowed_ips", true),
        expires_at: f.time_or_null("expires_at"),
        cap: f.cap_or_null("cap"),
    };
    let errors = f.into_errors();
    if errors.is_empty() {
        return Ok(change);
    }
    let rules = validate_change(&change, tiers, now).err();
    Err(invalid(errors, rules))
}

/// `POST /keys`.
pub async fn create(
    m: &Management,
    cx: &ApiContext<'_>,
    req: &LocalRequest<'_>,
    caller: &Principal,
) -> Result<ApiResponse, GateError> {
    issue(m, cx, req, caller, false).await
}

/// `POST /keys/first`: the caller's first key, as `POST /keys` makes it, only
/// while they hold no active key (409 after). A dialect mounts it where an API
/// documents its one-time setup (Altus4's `POST /api/management/setup`).
pub async fn first(
    m: &Management,
    cx: &ApiContext<'_>,
    req: &LocalRequest<'_>,
    caller: &Principal,
) -> Result<ApiResponse, GateError> {
    issue(m, cx, req, caller, true).await
}

async fn issue(
    m: &Management,
    cx: &ApiContext<'_>,
    req: &LocalRequest<'_>,
    caller: &Principal,
    first: bool,
) -> Result<ApiResponse, GateError> {
    let input = parse_create(req.body, &cx.rules.tier_names(), m.now())?;
    let origin = audit_origin(req, caller);
    let (rules, actor) = (cx.key_rules(), Actor::of(caller).from(&origin));
    let issued = if first {
        m.keys.create_first(&rules, &actor, input).await?
    } else {
        m.keys.create(&rules, &actor, input).await?
    };
    Ok(ApiResponse::created(issued_object(&rules, &issued)))
}

/// `GET /keys[?limit=&cursor=]`: every key the caller may see, newest first; with
/// `limit` or `cursor`, one page of them (`limit` default 100) and the cursor of
/// the next (`null` on the last page). `total` counts the keys in this answer.
pub async fn list(
    m: &Management,
    cx: &ApiContext<'_>,
    req: &LocalRequest<'_>,
    caller: &Principal,
) -> Result<ApiResponse, GateError> {
    let rules = cx.key_rules();
    let q = Query::of(req.query);
    let mut problems = serde_json::Map::new();
    let limit = page_size(&q, &mut problems);
    if !problems.is_empty() {
        return Err(GateError::Validation(problems));
    }
    let cursor = q.get("cursor");
    // `last_used_at` as of now: what this process counted is written first.
    m.usage
        .flush(&*m.store, crate::ledger::usage::Flush::Exact)
        .await;
    let (keys, next) = if limit.is_none() && cursor.is_none() {
        (m.keys.list(&rules, &Actor::of(caller)).await?, None)
    } else {
        let limit = limit.unwrap_or(crate::keys::accounts::DEFAULT_PAGE);
        // One more than the page, to know whether another follows.
        let mut page = m
            .keys
            .list_page(&rules, &Actor::of(caller), cursor.as_deref(), limit + 1)
            .await?;
        let next = crate::local::page::cut_page(&mut page, limit, |k| &k.id);
        (page, next)
    };
    let items: Vec<Value> = keys.iter().map(|k| key_object(&rules, k)).collect();
    Ok(ApiResponse::ok(
        json!({ "api_keys": items, "total": keys.len(), "next_cursor": next }),
    ))
}

/// `GET /keys/{id}`.
pub async fn get(
    m: &Management,
    cx: &ApiContext<'_>,
    caller: &Principal,
    id: &str,
) -> Result<ApiResponse, GateError> {
    m.usage
        .flush(&*m.store, crate::ledger::usage::Flush::Exact)
        .await;
    Ok(ApiResponse::ok(key_object(
        &cx.key_rules(),
        &m.keys.get(&cx.key_rules(), &Actor::of(caller), id).await?,
    )))
}

/// `PUT /keys/{id}`: name, tier, scopes, credits, allowed_ips, expires_at.
pub async fn update(
    m: &Management,
    cx: &ApiContext<'_>,
    req: &LocalRequest<'_>,
    caller: &Principal,
    id: &str,
) -> Result<ApiResponse, GateError> {
    let origin = audit_origin(req, caller);
    let actor = Actor::of(caller).from(&origin);
    // Another owner's key is 404 before its body is looked at.
    m.keys.get(&cx.key_rules(), &actor, id).await?;
    let change = parse_change(req.body, &cx.rules.tier_names(), m.now())?;
    let updated = m.keys.update(&cx.key_rules(), &actor, id, change).await?;
    Ok(ApiResponse::ok(key_object(&cx.key_rules(), &updated)))
}

/// `DELETE /keys/{id}`: revokes; effective at once on this process.
pub async fn revoke(
    m: &Management,
    cx: &ApiContext<'_>,
    req: &LocalRequest<'_>,
    caller: &Principal,
    id: &str,
) -> Result<ApiResponse, GateError> {
    let origin = audit_origin(req, caller);
    let record = m
        .keys
        .revoke(&cx.key_rules(), &Actor::of(caller).from(&origin), id)
        .await?;
    let mut body = key_object(&cx.key_rules(), &record);
    body["revoked_at"] = json!(m.now());
    Ok(ApiResponse::ok(body))
}

/// `POST /keys/{id}/regenerate` with an optional `grace_period`.
pub async fn regenerate(
    m: &Management,
    cx: &ApiContext<'_>,
    req: &LocalRequest<'_>,
    caller: &Principal,
    id: &str,
) -> Result<ApiResponse, GateError> {
    let origin = audit_origin(req, caller);
    let actor = Actor::of(caller).from(&origin);
    m.keys.get(&cx.key_rules(), &actor, id).await?;
    let body = json_object(req.body)?;
    let mut f = Fields::new(&body, &["grace_period"]);
    // The maximum is the key service's rule, said there.
    let grace = f.duration("grace_period");
    f.finish()?;
    let issued = m
        .keys
        .regenerate(&cx.key_rules(), &actor, id, grace)
        .await?;
    Ok(ApiResponse::ok(issued_object(&cx.key_rules(), &issued)))
}

/// Who is calling from where, as the audit log records their changes: the key
/// they present, else the user their token names.
pub(super) fn audit_origin(req: &LocalRequest<'_>, caller: &Principal) -> AuditOrigin {
    let id = &caller.identity;
    req.audit_origin(id.key_id().unwrap_or(id.subject()))
}

/// `POST /keys/import`: JSON Lines of existing keys (docs/configuration.md, Importing
/// keys), admins only; all or nothing (422 listing the bad lines).
pub async fn import(
    m: &Management,
    cx: &ApiContext<'_>,
    req: &LocalRequest<'_>,
    caller: &Principal,
) -> Result<ApiResponse, GateError> {
    let lines = req.body.split(|b| *b == b'\n').map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        String::from_utf8(line.to_vec())
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8"))
    });
    let origin = audit_origin(req, caller);
    let imported = m
        .keys
        .import(
            &cx.key_rules(),
            &Actor::of(caller).from(&origin),
            m.accounts.as_ref().map(|a| &**a.users()),
            lines,
        )
        .await?;
    Ok(ApiResponse::ok(serde_json::json!({ "imported": imported })))
}

/// The caller's own API key record (fresh from the store), for verify and credits.
async fn own_key(
    m: &Management,
    cx: &ApiContext<'_>,
    caller: &Principal,
) -> Result<KeyRecord, GateError> {
    let Some(key_id) = caller.identity.key_id() else {
        return Err(GateError::InvalidBody(
            "This endpoint needs an API key as the credential".into(),
        ));
    };
    m.keys
        .held(&cx.key_rules(), key_id)
        .await
        .map_err(|e| match e {
            KeyServiceError::NotFound => GateError::InvalidKey,
            e => e.into(),
        })
}

/// `POST /keys/verify`: the caller's own key.
pub async fn verify(
    m: &Management,
    cx: &ApiContext<'_>,
    caller: &Principal,
) -> Result<ApiResponse, GateError> {
    let r = own_key(m, cx, caller).await?;
    let mut body = json!({
        "valid": true,
        "key_id": r.id,
        "tier": r.tier,
        "scopes": r.scopes,
        "environment": r.environment,
        "credits_remaining": r.credits,
        "refilled_at": r.refilled_at,
        "limits": cx.key_rules().limits(&r),
        "user_id": r.owner,
        "account_id": r.account,
    });
    if let Some(pooled) = pooled_balance(m, cx, &r).await? {
        body["credits_remaining"] = json!(pooled.credits);
        body["refilled_at"] = json!(pooled.refilled_at);
        body["user_id"] = json!(pooled.user_id);
        body["account_id"] = json!(pooled.account_id);
    }
    Ok(ApiResponse::ok(body))
}

/// An account's pooled balance, as `credits` and `verify` show it.
struct Pooled {
    credits: Option<i64>,
    refilled_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The account's user (its id when it has none).
    user_id: String,
    account_id: String,
}

/// The pooled balance of `r`'s account, when `r`'s tier pools per account.
async fn pooled_balance(
    m: &Management,
    cx: &ApiContext<'_>,
    r: &KeyRecord,
) -> Result<Option<Pooled>, GateError> {
    let rules = cx.key_rules();
    let (Some(accounts), Some(account)) = (m.keys.accounts(), &r.account) else {
        return Ok(None);
    };
    if rules.pool(&r.tier) != crate::domain::Pool::Account {
        return Ok(None);
    }
    // The caller's own key's account.
    let a = accounts.find(account).await?;
    let credits = accounts.balance_of(&rules, &a);
    Ok(Some(Pooled {
        credits,
        refilled_at: a.refilled_at,
        user_id: a.owner.unwrap_or_else(|| a.id.clone()),
        account_id: a.id,
    }))
}

/// `GET /credits`: the caller's key's credits (`null`: unmetered).
pub async fn credits(
    m: &Management,
    cx: &ApiContext<'_>,
    caller: &Principal,
) -> Result<ApiResponse, GateError> {
    let r = own_key(m, cx, caller).await?;
    if let Some(p) = pooled_balance(m, cx, &r).await? {
        return Ok(ApiResponse::ok(json!({
            "credits": p.credits,
            "key_id": r.id,
            "user_id": p.user_id,
            "account_id": p.account_id,
        })));
    }
    Ok(ApiResponse::ok(json!({
        "credits": r.credits,
        "key_id": r.id,
        "user_id": r.owner,
        "account_id": r.account,
    })))
}

/// Failed requests by why they failed, as the usage answer names them;
/// `unclassified` only for failures counted before keygate kept their reason.
fn failed_by_reason(t: &Totals) -> Value {
    let mut by = json!({
        "rate_limited": t.rate_limited,
        "no_credits": t.no_credits,
        "refused": t.refused,
        "api_error": t.api_error,
    });
    if t.unclassified() > 0 {
        by["unclassified"] = json!(t.unclassified());
    }
    by
}

/// `GET /keys/{id}/usage?period=hour|day|week|month` (default `day`).
pub async fn usage(
    m: &Management,
    cx: &ApiContext<'_>,
    req: &LocalRequest<'_>,
    caller: &Principal,
    id: &str,
) -> Result<ApiResponse, GateError> {
    m.keys.get(&cx.key_rules(), &Actor::of(caller), id).await?;
    let period = req
        .query
        .unwrap_or("")
        .split('&')
        .find_map(|p| p.strip_prefix("period="))
        .unwrap_or("day");
    let span_hours: i64 = match period {
        "hour" => 1,
        "day" => 24,
        "week" => 24 * 7,
        "month" => 24 * 30,
        _ => {
            let mut details = serde_json::Map::new();
            details.insert(
                "period".into(),
                json!("must be one of: hour, day, week, month"),
            );
            return Err(GateError::Validation(details));
        }
    };
    // What this process counted but has not flushed yet is included.
    m.usage
        .flush(&*m.store, crate::ledger::usage::Flush::Exact)
        .await;
    let now = m.now();
    let current_hour = now.timestamp() - now.timestamp().rem_euclid(3600);
    let since =
        chrono::DateTime::from_timestamp(current_hour - (span_hours - 1) * 3600, 0).unwrap_or(now);
    let rows = m.store.usage(Some(id), since).await.map_err(store_error)?;
    let totals = Totals::of(&rows);
    let top = top_endpoints_timed(&rows, 10);
    let mut hourly: std::collections::BTreeMap<i64, Vec<&crate::domain::UsageRow>> =
        std::collections::BTreeMap::new();
    for r in &rows {
        hourly.entry(r.hour.timestamp()).or_default().push(r);
    }
    Ok(ApiResponse::ok(json!({
        "key_id": id,
        "period": period,
        "since": since,
        "total_requests": totals.total,
        "successful_requests": totals.successful,
        "failed_requests": totals.failed,
        "failed_by_reason": failed_by_reason(&totals),
        "average_response_ms": totals.average_ms(),
        "top_endpoints": top.iter().map(|(e, t)| json!({
            "endpoint": e, "requests": t.total, "failed": t.failed,
            "average_response_ms": t.average_ms(),
        })).collect::<Vec<_>>(),
        "hourly": hourly.iter().map(|(h, rows)| {
            let t = Totals::of(rows.iter().copied());
            json!({
                "hour": chrono::DateTime::from_timestamp(*h, 0),
                "requests": t.total, "successful": t.successful, "failed": t.failed,
                "failed_by_reason": failed_by_reason(&t),
                "average_response_ms": t.average_ms(),
            })
        }).collect::<Vec<_>>(),
    })))
}
