//! Key lifecycle endpoints: create (secret shown once), list, get, update, revoke,
//! regenerate (optionally with a grace period), verify, credits. Keys of another
//! owner answer 404, never 403, so their existence does not leak.

use super::validate::Fields;
use super::{json_object, store_error, ApiContext, ApiRequest, ApiResponse, Caller, Management};
use crate::auth::api_key::generate;
use crate::domain::id::new_key_id;
use crate::domain::{Environment, KeyPatch, KeyRecord, KeyStatus};
use crate::error::GateError;
use crate::keys::policy::{self, CreateRequest};
use crate::store::StoreError;
use chrono::Utc;
use serde_json::{json, Value};
use std::time::Duration;

/// Longest regenerate grace period.
const MAX_GRACE: Duration = Duration::from_secs(30 * 86_400);

fn key_object(r: &KeyRecord) -> Value {
    serde_json::to_value(r).unwrap_or(Value::Null)
}

fn with_secret(r: &KeyRecord, secret: &str) -> Value {
    let mut v = key_object(r);
    v["key"] = Value::String(secret.to_string());
    v
}

/// What non-admin callers may grant, from the running config.
fn grants<'a>(cx: &ApiContext<'a>) -> policy::Grants<'a> {
    let config = &cx.config;
    policy::Grants {
        user_scopes: &config.management.user_scopes,
        user_tier: &config.default_tier,
    }
}

/// The key `id` if the caller may manage it; 404 otherwise.
async fn owned(m: &Management, caller: &Caller, id: &str) -> Result<KeyRecord, GateError> {
    match m.store.get(id).await.map_err(store_error)? {
        Some(r) if caller.may_manage(r.owner.as_deref()) => Ok(r),
        _ => Err(GateError::NotFound),
    }
}

/// Refuses when `owner` already holds `max_keys` active keys in `tier`.
async fn check_quota(
    m: &Management,
    cx: &ApiContext<'_>,
    owner: &str,
    tier: &str,
) -> Result<(), GateError> {
    let Some(max) = cx.config.tiers.get(tier).and_then(|t| t.max_keys) else {
        return Ok(());
    };
    let held = m
        .store
        .count_active(owner, tier)
        .await
        .map_err(store_error)?;
    if held >= max {
        return Err(quota_reached(tier, max));
    }
    Ok(())
}

/// The 409 for an owner at `tier`'s `max_keys`.
fn quota_reached(tier: &str, max: u64) -> GateError {
    GateError::Conflict(format!(
        "Key limit reached: tier {tier} allows {max} active keys per owner"
    ))
}

/// A validated `POST /keys` body: what it names, and what it asks for (which the
/// key rules, [`crate::keys::policy`], admit or refuse).
#[derive(Debug)]
pub struct CreateBody {
    /// Display name.
    pub name: String,
    /// `live` or `test`.
    pub environment: Environment,
    /// Networks the key may be used from (empty: any).
    pub allowed_ips: Vec<ipnet::IpNet>,
    /// Tier, scopes, credits, expiry, org and owner, as asked.
    pub request: CreateRequest,
}

impl CreateBody {
    /// Validates `body` (JSON), listing every problem at once.
    pub fn parse(body: &[u8], tiers: &[&str]) -> Result<Self, GateError> {
        let body = json_object(body)?;
        let known = [
            "name",
            "tier",
            "scopes",
            "environment",
            "expires_at",
            "credits",
            "allowed_ips",
            "org",
            "owner",
        ];
        let mut f = Fields::new(&body, &known);
        let name = f.string("name", true, 200);
        let request = CreateRequest {
            tier: f.one_of("tier", false, tiers),
            scopes: f.scopes("scopes").unwrap_or_default(),
            credits: f.credits("credits"),
            expires_at: f.future_time("expires_at"),
            org: f.string("org", false, 200),
            owner: f.string("owner", false, 200),
        };
        let environment = f.environment("environment").unwrap_or(Environment::Live);
        let allowed_ips = f.allowed_ips("allowed_ips").unwrap_or_default();
        f.finish()?;
        let Some(name) = name else {
            return Err(GateError::Internal);
        };
        Ok(CreateBody {
            name,
            environment,
            allowed_ips,
            request,
        })
    }
}

/// Validates a `PUT /keys/{id}` body into a patch, listing every problem at once.
pub fn parse_patch(body: &[u8], tiers: &[&str]) -> Result<KeyPatch, GateError> {
    let body = json_object(body)?;
    let mut f = Fields::new(
        &body,
        &[
            "name",
            "tier",
            "scopes",
            "credits",
            "allowed_ips",
            "expires_at",
        ],
    );
    let patch = KeyPatch {
        name: f.string("name", false, 200),
        tier: f.one_of("tier", false, tiers),
        scopes: f.scopes("scopes"),
        credits: f.credits("credits"),
        allowed_ips: f.allowed_ips("allowed_ips"),
        expires_at: f.future_time("expires_at"),
    };
    f.finish()?;
    Ok(patch)
}

/// `POST /keys`.
pub async fn create(
    m: &Management,
    cx: &ApiContext<'_>,
    req: &ApiRequest<'_>,
) -> Result<ApiResponse, GateError> {
    let caller = m.caller(cx, req, true).await?;
    let tiers: Vec<&str> = cx.config.tiers.keys().map(String::as_str).collect();
    let body = CreateBody::parse(req.body, &tiers)?;
    let config = &cx.config;
    let admitted = policy::admit_create(
        caller.actor(),
        &grants(cx),
        &caller.subject,
        &config.default_tier,
        body.request,
    )?;
    let max_keys = config.tiers.get(&admitted.tier).and_then(|t| t.max_keys);
    let key = generate(&cx.auth.key_format.prefix, body.environment);
    let record = KeyRecord {
        id: new_key_id(),
        name: body.name,
        prefix: key.prefix.clone(),
        last4: key.last4.clone(),
        tier: admitted.tier,
        scopes: admitted.scopes,
        environment: body.environment,
        org: admitted.org,
        owner: Some(admitted.owner),
        status: KeyStatus::Active,
        credits: admitted.credits,
        allowed_ips: body.allowed_ips,
        expires_at: admitted.expires_at,
        created_at: Utc::now(),
        last_used_at: None,
        secret_valid_until: None,
    };
    match max_keys {
        Some(max) => m.store.insert_within_quota(&record, &key.hash, max).await,
        None => m.store.insert(&record, &key.hash).await,
    }
    .map_err(|e| match e {
        StoreError::QuotaExceeded { max } => quota_reached(&record.tier, max),
        e => store_error(e),
    })?;
    m.cache().invalidate(&key.hash);
    Ok(ApiResponse::created(with_secret(&record, &key.plaintext)))
}

/// `GET /keys`.
pub async fn list(
    m: &Management,
    cx: &ApiContext<'_>,
    req: &ApiRequest<'_>,
) -> Result<ApiResponse, GateError> {
    let caller = m.caller(cx, req, true).await?;
    let keys = if caller.admin {
        m.store.list().await
    } else {
        m.store.list_by_owner(&caller.subject).await
    }
    .map_err(store_error)?;
    let items: Vec<Value> = keys.iter().map(key_object).collect();
    Ok(ApiResponse::ok(
        json!({ "api_keys": items, "total": keys.len() }),
    ))
}

/// `GET /keys/{id}`.
pub async fn get(
    m: &Management,
    cx: &ApiContext<'_>,
    req: &ApiRequest<'_>,
    id: &str,
) -> Result<ApiResponse, GateError> {
    let caller = m.caller(cx, req, true).await?;
    Ok(ApiResponse::ok(key_object(&owned(m, &caller, id).await?)))
}

/// `PUT /keys/{id}`: name, tier, scopes, credits, allowed_ips, expires_at.
pub async fn update(
    m: &Management,
    cx: &ApiContext<'_>,
    req: &ApiRequest<'_>,
    id: &str,
) -> Result<ApiResponse, GateError> {
    let caller = m.caller(cx, req, true).await?;
    let current = owned(m, &caller, id).await?;
    let tiers: Vec<&str> = cx.config.tiers.keys().map(String::as_str).collect();
    let patch = parse_patch(req.body, &tiers)?;
    policy::admit_update(
        caller.actor(),
        &grants(cx),
        policy::Current {
            tier: &current.tier,
            scopes: &current.scopes,
            credits: current.credits,
            expires_at: current.expires_at,
        },
        &policy::UpdateRequest {
            tier: patch.tier.as_deref(),
            scopes: patch.scopes.as_deref(),
            credits: patch.credits,
            expires_at: patch.expires_at,
        },
    )?;
    if let (Some(tier), Some(owner)) = (&patch.tier, &current.owner) {
        if *tier != current.tier && current.status == KeyStatus::Active {
            check_quota(m, cx, owner, tier).await?;
        }
    }
    let updated = m.store.update(id, &patch).await.map_err(store_error)?;
    m.cache().invalidate_key_id(id);
    Ok(ApiResponse::ok(key_object(&updated)))
}

/// `DELETE /keys/{id}`: revokes; effective at once on this process.
pub async fn revoke(
    m: &Management,
    cx: &ApiContext<'_>,
    req: &ApiRequest<'_>,
    id: &str,
) -> Result<ApiResponse, GateError> {
    let caller = m.caller(cx, req, true).await?;
    owned(m, &caller, id).await?;
    m.store.revoke(id).await.map_err(store_error)?;
    m.cache().invalidate_key_id(id);
    let record = m
        .store
        .get(id)
        .await
        .map_err(store_error)?
        .ok_or(GateError::NotFound)?;
    Ok(ApiResponse::ok(key_object(&record)))
}

/// `POST /keys/{id}/regenerate` with an optional `grace_period`.
pub async fn regenerate(
    m: &Management,
    cx: &ApiContext<'_>,
    req: &ApiRequest<'_>,
    id: &str,
) -> Result<ApiResponse, GateError> {
    let caller = m.caller(cx, req, true).await?;
    let current = owned(m, &caller, id).await?;
    if current.status == KeyStatus::Revoked {
        return Err(GateError::Conflict(
            "A revoked key cannot be regenerated".into(),
        ));
    }
    let body = json_object(req.body)?;
    let mut f = Fields::new(&body, &["grace_period"]);
    let grace = f
        .duration("grace_period", MAX_GRACE)
        .filter(|d| !d.is_zero());
    f.finish()?;
    let key = generate(&cx.auth.key_format.prefix, current.environment);
    let old_valid_until = grace
        .and_then(|g| chrono::Duration::from_std(g).ok())
        .map(|g| Utc::now() + g);
    m.store
        .replace_secret(id, &key.hash, &key.prefix, &key.last4, old_valid_until)
        .await
        .map_err(store_error)?;
    m.cache().invalidate_key_id(id);
    let record = m
        .store
        .get(id)
        .await
        .map_err(store_error)?
        .ok_or(GateError::NotFound)?;
    let mut body = with_secret(&record, &key.plaintext);
    body["previous_key_valid_until"] = json!(old_valid_until);
    Ok(ApiResponse::ok(body))
}

/// The caller's own API key record (fresh from the store), for verify and credits.
async fn own_key(
    m: &Management,
    cx: &ApiContext<'_>,
    req: &ApiRequest<'_>,
) -> Result<KeyRecord, GateError> {
    let caller = m.caller(cx, req, false).await?;
    let Some(key_id) = caller.key_id else {
        return Err(GateError::InvalidBody(
            "This endpoint needs an API key as the credential".into(),
        ));
    };
    m.store
        .get(&key_id)
        .await
        .map_err(store_error)?
        .ok_or(GateError::InvalidKey)
}

/// `POST /keys/verify`: the caller's own key.
pub async fn verify(
    m: &Management,
    cx: &ApiContext<'_>,
    req: &ApiRequest<'_>,
) -> Result<ApiResponse, GateError> {
    let r = own_key(m, cx, req).await?;
    Ok(ApiResponse::ok(json!({
        "valid": true,
        "key_id": r.id,
        "tier": r.tier,
        "scopes": r.scopes,
        "environment": r.environment,
        "credits_remaining": r.credits,
    })))
}

/// `GET /credits`: the caller's key's credits (`null`: unmetered).
pub async fn credits(
    m: &Management,
    cx: &ApiContext<'_>,
    req: &ApiRequest<'_>,
) -> Result<ApiResponse, GateError> {
    let r = own_key(m, cx, req).await?;
    Ok(ApiResponse::ok(
        json!({ "credits": r.credits, "key_id": r.id }),
    ))
}

/// `GET /keys/{id}/usage?period=hour|day|week|month` (default `day`).
pub async fn usage(
    m: &Management,
    cx: &ApiContext<'_>,
    req: &ApiRequest<'_>,
    id: &str,
) -> Result<ApiResponse, GateError> {
    let caller = m.caller(cx, req, true).await?;
    owned(m, &caller, id).await?;
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
    m.usage.flush(&*m.store).await;
    let now = Utc::now();
    let current_hour = now.timestamp() - now.timestamp().rem_euclid(3600);
    let since =
        chrono::DateTime::from_timestamp(current_hour - (span_hours - 1) * 3600, 0).unwrap_or(now);
    let rows = m.store.usage(id, since).await.map_err(store_error)?;
    let (mut total, mut successful, mut failed, mut total_ms) = (0u64, 0u64, 0u64, 0u64);
    let mut endpoints: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    let mut hourly: std::collections::BTreeMap<i64, (u64, u64, u64)> =
        std::collections::BTreeMap::new();
    for r in &rows {
        total += r.total;
        successful += r.successful;
        failed += r.failed;
        total_ms += r.total_ms;
        *endpoints.entry(r.endpoint.as_str()).or_default() += r.total;
        let h = hourly.entry(r.hour.timestamp()).or_default();
        h.0 += r.total;
        h.1 += r.successful;
        h.2 += r.failed;
    }
    let mut top: Vec<(&str, u64)> = endpoints.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    top.truncate(10);
    let average = if total == 0 {
        0.0
    } else {
        total_ms as f64 / total as f64
    };
    Ok(ApiResponse::ok(json!({
        "key_id": id,
        "period": period,
        "since": since,
        "total_requests": total,
        "successful_requests": successful,
        "failed_requests": failed,
        "average_response_ms": (average * 100.0).round() / 100.0,
        "top_endpoints": top.iter().map(|(e, n)| json!({"endpoint": e, "requests": n})).collect::<Vec<_>>(),
        "hourly": hourly.iter().map(|(h, (t, s, f))| json!({
            "hour": chrono::DateTime::from_timestamp(*h, 0),
            "requests": t, "successful": s, "failed": f,
        })).collect::<Vec<_>>(),
    })))
}
