//! `GET /audit?limit=&before=` (docs/operations.md, Audit log): admins only, newest
//! first. Parsing and rendering only; who may read it is `keys::audit`'s rule.

use super::keys::audit_origin;
use super::query::{page_size, Query};
use super::{ApiResponse, Management};
use crate::auth::Principal;
use crate::error::GateError;
use crate::keys::accounts::DEFAULT_PAGE;
use crate::keys::audit::audit_page;
use crate::keys::policy::Actor;
use crate::local::LocalRequest;
use serde_json::{json, Map};

/// `GET /audit`: a page of entries older than `before` (an entry's `id`), and the
/// `before` of the next page (`null` on the last).
pub async fn list(
    m: &Management,
    req: &LocalRequest<'_>,
    caller: &Principal,
) -> Result<ApiResponse, GateError> {
    let q = Query::of(req.query);
    let mut problems = Map::new();
    let limit = page_size(&q, &mut problems).unwrap_or(DEFAULT_PAGE);
    let before = match q.get("before") {
        None => None,
        Some(b) => match b.parse::<i64>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                problems.insert(
                    "before".into(),
                    json!("must be an entry's id (a whole number above 0)"),
                );
                None
            }
        },
    };
    if !problems.is_empty() {
        return Err(GateError::Validation(problems));
    }
    let origin = audit_origin(req, caller);
    let actor = Actor::of(caller).from(&origin);
    let mut entries = audit_page(&*m.store, &actor, before, limit + 1).await?;
    let next = crate::local::page::cut_page(&mut entries, limit, |e| &e.id);
    Ok(ApiResponse::ok(json!({
        "entries": entries,
        "next_before": next,
    })))
}
