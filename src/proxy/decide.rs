//! The access decision, as one straight chain that stops at the first refusal:
//! route → client-IP limit → credential → verify → key status → environment →
//! scopes → tier limits → credits (docs/configuration.md, On the wire). On a
//! `pool: account` tier the limits and credits are the account's.

use super::path::{canonicalize, CanonicalPath};
use super::routes::{Found, Route};
use super::shared::Shared;
use crate::auth::credentials::extract;
use crate::auth::Principal;
use crate::config::{RouteAuth, RouteEnvironment};
use crate::domain::Pool;
use crate::error::GateError;
use crate::limit::LimitDecision;
use crate::obs::metrics;
use crate::proxy::runtime::Runtime;
use crate::store::{Debit, Holder, StoreError};
use http::{HeaderMap, Method, Uri};
use std::net::IpAddr;

/// What the decision learned, kept for the response and the logs even on refusal.
#[derive(Debug, Default)]
pub struct Decision {
    /// Index of the matched route.
    pub route: usize,
    /// True when the matched route needs no credential.
    pub public: bool,
    /// The authenticated caller, once known.
    pub principal: Option<Principal>,
    /// Where the caller stands against its tier, once known.
    pub limit: Option<LimitDecision>,
    /// For a management API call: the path below the prefix (e.g. `/keys`).
    pub management: Option<String>,
    /// For one of keygate's operations mounted at a documented path (`dialect:`).
    pub mounted: Option<crate::dialect::Mounted>,
    /// For a portal page: the path below `portal.prefix` (e.g. `/login`).
    pub portal: Option<String>,
    /// A CORS preflight, answered by keygate before authentication.
    pub preflight: bool,
    /// The path to forward instead of the request's own (its canonical form), when
    /// the two differ: the upstream sees the path the decision used.
    pub forward_path: Option<String>,
    /// Credits debited for this request: whose balance, how many, and when (Unix
    /// seconds); taken, once, by a refund.
    pub debited: Option<(Holder, u64, i64)>,
}

impl Decision {
    /// True when keygate answers the request itself: a management API call, an
    /// operation at a documented path, or a portal page.
    pub fn answered_here(&self) -> bool {
        self.management.is_some() || self.mounted.is_some() || self.portal.is_some()
    }
}

/// Which door a request came through: what keygate answers itself (a CORS
/// preflight, the management API, the portal, operations at documented paths) is
/// served on the proxy's listener only; the authorizer decides every path as a
/// route of the API's, and lets CORS preflights through (with `cors:` set) to be
/// answered behind the proxy that asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Door {
    /// keygate's own listener, in front of the upstream.
    Proxy,
    /// The authorizer's listener, deciding for another proxy.
    Authorizer,
}

/// Runs the chain for one request over `rt` (the config it started with) and the
/// long-lived services in `shared`. On refusal `out` still holds what was learned
/// (the principal and limit state, for `X-RateLimit-*` on the error response).
#[allow(clippy::too_many_arguments)] // the request's parts, as each door holds them
pub async fn decide(
    shared: &Shared,
    rt: &Runtime,
    door: Door,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    client_ip: Option<IpAddr>,
    out: &mut Decision,
) -> Result<(), GateError> {
    {
        // Until a route matches, the request counts under the default route.
        out.route = rt.routes.default_route().0;
        let canonical = canonicalize(uri.path()).map_err(GateError::BadRequest)?;
        if canonical.forward != uri.path() || uri.authority().is_some() {
            out.forward_path = Some(canonical.forward.clone().into_owned());
        }
        let path = &*canonical.decoded;
        if rt.cors.is_some() && super::cors::is_preflight(method, headers) {
            match door {
                Door::Proxy => out.preflight = true,
                // A browser's preflight carries no credential: the proxy that
                // asked passes it on, to be answered as its CORS setup says.
                Door::Authorizer => out.public = true,
            }
            return Ok(());
        }
        if door == Door::Proxy {
            out.mounted = rt.dialect.route(method, path);
            if out.mounted.is_none() {
                out.management = rt.management_prefix.as_deref().and_then(|p| below(path, p));
            }
            if out.management.is_none() && out.mounted.is_none() {
                out.portal = rt.portal_prefix.as_deref().and_then(|p| below(path, p));
            }
        }
        let answered_here = out.answered_here();
        let (index, route) = if answered_here {
            // Answered by keygate: no route applies.
            rt.routes.default_route()
        } else {
            match_route(rt, method, headers, uri.query(), &canonical)?
        };
        out.route = index;
        out.public = route.auth == RouteAuth::None && !answered_here;
        if let Some(ip) = client_ip {
            match rt.ip_limits.admit(&*shared.limiter, ip).await {
                Ok(Some(retry_after)) => return Err(GateError::IpRateLimited { retry_after }),
                Ok(None) => {}
                Err(e) => {
                    // Only with `on_backend_error: deny`: `local` never fails.
                    limiter_failed(&e);
                    return Err(GateError::BackendUnavailable);
                }
            }
        }
        if out.public {
            return Ok(());
        }
        // Management calls and portal pages authenticate inside keygate, after these
        // per-IP checks; they never reach the route's scopes, limits or credits.
        if let Some(ip) = client_ip {
            match rt.ip_limits.failures_exceeded(&*shared.limiter, ip).await {
                Ok(Some(retry_after)) => return Err(GateError::TooManyFailures { retry_after }),
                Ok(None) => {}
                Err(e) => {
                    limiter_failed(&e);
                    return Err(GateError::BackendUnavailable);
                }
            }
        }
        if answered_here {
            return Ok(());
        }
        let credential = extract(&rt.sources, headers, uri.query())?;
        let principal = out.principal.insert(
            shared
                .auth
                .authenticate(&rt.auth_settings(), &credential.value, client_ip)
                .await?,
        );
        let (identity, tier) = (&*principal.identity, &*principal.tier);
        if let Err(e) = authorize(route, principal) {
            out.limit = shared
                .limiter
                .peek(identity.limit_key_on(tier), &tier.windows)
                .await
                .ok();
            return Err(e);
        }
        // On a pooled tier a key may have a cap of its own below the account's,
        // counted for the key alone and checked first: a request the cap refuses
        // costs the account nothing; one the account refuses gives the cap back
        // what it counted.
        let capped = match (&identity.cap, tier.pool) {
            (Some(cap), Pool::Account) => {
                let own = tier.cap_windows(cap);
                match shared
                    .limiter
                    .check(identity.limit_key(), &own, std::time::Duration::ZERO)
                    .await
                {
                    Ok(d) if !d.allowed => {
                        let retry_after = d.retry_after_secs;
                        // The key's own cap: its event is the key's.
                        super::announce::rate_limited(
                            shared.announce.as_ref(),
                            &rt.announced,
                            identity,
                            (&tier.name, false),
                            &d,
                            shared.clock.now_ms(),
                        );
                        out.limit = Some(d);
                        return Err(GateError::RateLimited { retry_after });
                    }
                    Ok(d) => Some((own, d)),
                    Err(e) => {
                        limiter_failed(&e);
                        return Err(GateError::BackendUnavailable);
                    }
                }
            }
            _ => None,
        };
        let decision = match shared
            .limiter
            .check(identity.limit_key_on(tier), &tier.windows, tier.block)
            .await
        {
            Ok(d) => d,
            Err(e) => {
                limiter_failed(&e);
                return Err(GateError::BackendUnavailable);
            }
        };
        let decision = match capped {
            Some((own, cap_decision)) => {
                if !decision.allowed {
                    for w in &own {
                        let _ = shared.limiter.release(identity.limit_key(), w.window).await;
                    }
                }
                decision.with_cap(cap_decision)
            }
            None => decision,
        };
        let allowed = decision.allowed;
        let retry_after = decision.retry_after_secs;
        if !allowed {
            super::announce::rate_limited(
                shared.announce.as_ref(),
                &rt.announced,
                identity,
                (&tier.name, tier.pool == Pool::Account),
                &decision,
                shared.clock.now_ms(),
            );
        }
        out.limit = Some(decision);
        if !allowed {
            return Err(GateError::RateLimited { retry_after });
        }
        // On a `pool: account` tier the account's balance pays (its refill is the
        // tier's with the account's overrides); else the key's own.
        let pooled = match (&identity.account, tier.pool) {
            (Some(account), Pool::Account) => Some(account),
            _ => None,
        };
        let (holder, metered, own_refill) = match pooled {
            Some(account) => (Holder::Account, account.credits.is_some(), None),
            None => (
                Holder::Key,
                identity.credits.is_some(),
                identity.refill.as_deref(),
            ),
        };
        if route.cost > 0 && metered {
            let id = match holder {
                Holder::Account => identity.account_id(),
                Holder::Key => identity.key_id(),
            }
            .unwrap_or_default();
            let refill = own_refill
                .or(tier.refill.as_ref())
                .map(|r| r.due_at(shared.clock.now_ms()));
            let debit = shared.credits.debit(holder, id, route.cost, refill).await;
            metrics::count_store_query(metrics::StoreOp::DebitCredits, debit.is_ok());
            match debit {
                Ok(Debit::Done { remaining }) => {
                    super::announce::debited(
                        shared.announce.as_ref(),
                        &rt.announced,
                        identity,
                        holder == Holder::Account,
                        route.cost,
                        remaining,
                        refill,
                        shared.clock.now_ms(),
                    );
                    out.debited = Some((holder, route.cost, (shared.clock.now_ms() / 1000) as i64))
                }
                Ok(Debit::Unmetered) => {}
                Ok(Debit::Insufficient { remaining }) => {
                    return Err(GateError::InsufficientCredits {
                        remaining,
                        cost: route.cost,
                    })
                }
                Err(StoreError::NotFound(_)) => return Err(GateError::InvalidKey),
                Err(e) => {
                    tracing::warn!(error = %e, "credit debit failed");
                    return Err(GateError::BackendUnavailable);
                }
            }
        }
        Ok(())
    }
}

/// The route of a request: the first that admits its method on its decoded path,
/// or 405. It must also be the route its method override and its path without
/// `;parameters` select, since upstreams that honour those serve them: else 400.
fn match_route<'r>(
    rt: &'r Runtime,
    method: &Method,
    headers: &HeaderMap,
    query: Option<&str>,
    canonical: &CanonicalPath<'_>,
) -> Result<(usize, &'r Route), GateError> {
    let path = &*canonical.decoded;
    let (index, route) = match rt.routes.find(method, path) {
        Found::Route(index, route) => (index, route),
        Found::MethodNotAllowed(allow) => return Err(GateError::MethodNotAllowed { allow }),
    };
    let routes_to =
        |m: &Method, p: &str| matches!(rt.routes.find(m, p), Found::Route(i, _) if i == index);
    if rt.routes.restricts_methods() {
        if let Some(other) = method_override(headers, query) {
            let same = Method::from_bytes(other.as_bytes())
                .is_ok_and(|m| m == method || routes_to(&m, path));
            if !same {
                return Err(GateError::BadRequest(
                    "A method override that changes the route is not allowed",
                ));
            }
        }
    }
    if let Some(bare) = &canonical.without_params {
        if !routes_to(method, bare) {
            return Err(GateError::BadRequest(
                "Path parameters (;) that change the route are not allowed",
            ));
        }
    }
    Ok((index, route))
}

/// Headers through which Express, Symfony, ASP.NET and others let a request name
/// another method than its own.
const METHOD_OVERRIDE_HEADERS: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// The method a request asks its upstream to run instead of its own, upper-cased:
/// from a method-override header or a `_method` query parameter. (An override in a
/// form body cannot be seen here; turn that off in the upstream framework.)
fn method_override(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let from_header = METHOD_OVERRIDE_HEADERS
        .iter()
        .find_map(|h| headers.get(*h))
        .map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .trim()
                .to_ascii_uppercase()
        });
    from_header.or_else(|| {
        query?
            .split('&')
            .find_map(|pair| pair.strip_prefix("_method="))
            .map(|m| {
                percent_encoding::percent_decode_str(m)
                    .decode_utf8_lossy()
                    .trim()
                    .to_ascii_uppercase()
            })
    })
}

/// Route-level authorization of a known caller: environment, then scopes.
pub fn authorize(route: &Route, p: &Principal) -> Result<(), GateError> {
    let env = p.identity.environment.as_str();
    match route.environment {
        RouteEnvironment::Live if env != "live" => {
            return Err(GateError::WrongEnvironment { required: "live" })
        }
        RouteEnvironment::Test if env != "test" => {
            return Err(GateError::WrongEnvironment { required: "test" })
        }
        _ => {}
    }
    match route.scopes.iter().find(|s| !p.has_scope(s)) {
        Some(missing) => Err(GateError::MissingScope(missing.clone())),
        None => Ok(()),
    }
}

fn limiter_failed(e: &crate::limit::LimitError) {
    // Counted by the limiter; logged once per outage by the backend.
    tracing::debug!(error = %e, "rate-limit backend error; answering 503 (on_backend_error: deny)");
}

/// The path below `prefix` (`/keys` of `/v1/keys`; `/` of `/v1`), if `path` is
/// under it.
fn below(path: &str, prefix: &str) -> Option<String> {
    let rest = path.strip_prefix(prefix)?;
    match rest {
        "" => Some("/".into()),
        r if r.starts_with('/') => Some(r.to_string()),
        _ => None,
    }
}
