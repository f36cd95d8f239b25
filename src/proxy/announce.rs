//! The request path's webhook events (docs/operations.md, Webhooks), announced to
//! the [`EventSink`] — never written here — when some receiver wants them:
//! `rate_limit.exceeded` once per key (or pooled account) per window instance, and
//! `credits.low` once per threshold per refill period.

use crate::auth::Identity;
use crate::domain::event::{self, Event};
use crate::events::sink::EventSink;
use crate::events::Announced;
use crate::limit::LimitDecision;
use chrono::{TimeZone, Utc};
use serde_json::json;

/// The key (and its account) an event is about, and whose balance or windows it
/// concerns: the account's on a pooled tier, else the key's.
fn who(identity: &Identity, pooled: bool) -> (serde_json::Value, String) {
    let key = identity.key_id().unwrap_or(identity.subject());
    let holder = match (pooled, identity.account_id()) {
        (true, Some(account)) => account.to_string(),
        _ => key.to_string(),
    };
    let about = json!({
        "key": { "id": key, "account": identity.account_id() },
        "pool": if pooled { "account" } else { "key" },
    });
    (about, holder)
}

fn at(ms: u64) -> chrono::DateTime<Utc> {
    Utc.timestamp_millis_opt(ms as i64)
        .single()
        .unwrap_or_default()
}

fn iso(ms: u64) -> String {
    at(ms).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A request of `identity` on `tier` (its name, and whether its windows are the
/// account's) was refused by `decision` at `now_ms`: announces
/// `rate_limit.exceeded` for the first exhausted window's instance.
pub fn rate_limited(
    sink: Option<&EventSink>,
    wanted: &Announced,
    identity: &Identity,
    (tier, pooled): (&str, bool),
    decision: &LimitDecision,
    now_ms: u64,
) {
    let Some(sink) = sink.filter(|_| wanted.rate_limit_exceeded) else {
        return;
    };
    let Some(full) = decision.windows.iter().find(|w| w.remaining == 0) else {
        return;
    };
    let (about, holder) = who(identity, pooled);
    let window = full.window.name();
    let id = event::rate_limit_event_id(&holder, window, full.window.instance(now_ms));
    sink.announce(id, || {
        let mut data = about;
        data["tier"] = json!(tier);
        data["window"] = json!(window);
        data["limit"] = json!(full.limit);
        data["retry_after"] = json!(decision.retry_after_secs);
        data["retry_at"] = json!(iso(decision.retry_at_ms));
        Event::new("rate_limit.exceeded", at(now_ms), data)
    });
}

/// A debit of `cost` left `remaining` credits on the balance of `identity` (its
/// account's when `pooled`), refilled to `refill` in the period starting `period`:
/// announces `credits.low` for each threshold it crossed.
#[allow(clippy::too_many_arguments)]
pub fn debited(
    sink: Option<&EventSink>,
    wanted: &Announced,
    identity: &Identity,
    pooled: bool,
    cost: u64,
    remaining: i64,
    refill: Option<crate::domain::RefillDue>,
    now_ms: u64,
) {
    let Some(sink) = sink.filter(|_| wanted.credits_low) else {
        return;
    };
    let before = remaining.saturating_add(i64::try_from(cost).unwrap_or(i64::MAX));
    let amount = refill.map(|r| r.amount);
    let crossed = event::thresholds_crossed(&wanted.low_at, amount, before, remaining);
    if crossed.is_empty() {
        return;
    }
    let (about, holder) = who(identity, pooled);
    let period = refill.map_or(0, |r| r.period);
    for level in crossed {
        let id = event::credits_low_event_id(&holder, level, period);
        sink.announce(id, || {
            let mut data = about.clone();
            data["remaining"] = json!(remaining);
            data["threshold"] = json!(level);
            data["refill"] = json!(amount);
            Event::new("credits.low", at(now_ms), data)
        });
    }
}
