//! What a decided request leaves behind, whichever door it came through (the
//! proxy, the authorizer): its route's metrics, its key's usage, its access line
//! and its span. One rule for every door, so a request decided for another proxy
//! counts exactly as one keygate proxied.

use super::decide::Decision;
use super::runtime::Runtime;
use super::shared::Shared;
use crate::error::GateError;
use crate::obs::metrics;
use crate::obs::traces::{RequestSpan, SpanEnd};
use http::{HeaderValue, Method};
use std::net::IpAddr;
use std::time::Duration;

/// One request at its end.
pub struct Finished<'a> {
    /// The config it was decided on.
    pub rt: &'a Runtime,
    /// What was decided.
    pub decision: &'a Decision,
    /// Why it was refused (or failed), if it was.
    pub error: Option<&'a GateError>,
    /// Why keygate ended it after letting it in (`-` when it did not), for a
    /// request that outlived its decision.
    pub cut_reason: Option<&'static str>,
    /// A gRPC call: a refusal written as HTTP 200 counts as the status it stands for.
    pub grpc: bool,
    /// The status written (0: none).
    pub written: u16,
    /// `h1` or `h2`.
    pub protocol: &'static str,
    /// Its method.
    pub method: &'a Method,
    /// Its path (never its query).
    pub path: &'a str,
    /// Its request id.
    pub request_id: &'a HeaderValue,
    /// The client's address.
    pub client_ip: Option<IpAddr>,
    /// From its arrival to now.
    pub elapsed: Duration,
    /// How long the upstream took to answer, if it was asked.
    pub upstream_time: Option<Duration>,
}

impl Finished<'_> {
    /// A management API call (at `/v1` or at a documented path): counted under
    /// `management`, never as a key's usage.
    fn management(&self) -> bool {
        self.decision.management.is_some() || self.decision.mounted.is_some()
    }

    /// The route name it counts under, and that route's metrics.
    fn route(&self) -> (&str, &crate::obs::metrics::RouteMetrics) {
        let d = self.decision;
        match (self.management(), &d.portal) {
            (true, _) => ("management", &self.rt.management_metrics),
            (false, Some(_)) => ("portal", &self.rt.portal_metrics),
            (false, None) => {
                let r = self.rt.routes.get(d.route);
                (r.name.as_str(), &r.metrics)
            }
        }
    }

    /// The status it counts as.
    pub fn status(&self) -> u16 {
        match (self.error, self.grpc) {
            (Some(e), true) => e.status().as_u16(),
            _ => self.written,
        }
    }

    /// Its `outcome` label.
    pub fn outcome(&self) -> &'static str {
        let status = self.status();
        match self.error {
            Some(e) => e.outcome(),
            None if status >= 500 || status == 0 => metrics::outcome::UPSTREAM_ERROR,
            None => metrics::outcome::ALLOWED,
        }
    }

    /// Why it was refused or cut (`-`: it was not).
    pub fn reason(&self) -> &'static str {
        match (self.error, self.cut_reason) {
            (Some(e), _) => e.reason(),
            (None, Some(why)) => why,
            (None, None) => "-",
        }
    }
}

/// Records `f`: route metrics, the key's usage (not for keygate's own
/// endpoints), the access line when logging lets it through, and its span.
pub fn record(shared: &Shared, f: &Finished<'_>, span: Option<Box<RequestSpan>>) {
    let (route, route_metrics) = f.route();
    let status = f.status();
    let outcome = f.outcome();
    let reason = f.reason();
    route_metrics.count(outcome, status, f.protocol);
    let principal = f.decision.principal.as_ref();
    let key_id = principal.and_then(|p| p.identity.key_id());
    if let (Some(key_id), false) = (key_id, f.management()) {
        let class = usage_class(outcome, status);
        let us = f.elapsed.as_micros().min(u64::MAX as u128) as u64;
        let endpoint = crate::ledger::usage::endpoint_of(f.path);
        shared
            .usage
            .record(key_id, &endpoint, class, us, shared.clock.now_utc());
    }
    route_metrics.duration.observe(f.elapsed.as_secs_f64());
    if let Some(t) = f.upstream_time {
        route_metrics.upstream.observe(t.as_secs_f64());
    }
    let request_id = f.request_id.to_str().unwrap_or("-");
    if crate::obs::access_log::enabled() {
        let line = crate::obs::access_log::AccessLine {
            request_id,
            method: f.method.as_str(),
            protocol: f.protocol,
            route,
            path: f.path,
            outcome,
            reason,
            status,
            key_id: key_id.unwrap_or("-"),
            client: f.client_ip,
            latency_ms: f.elapsed.as_secs_f64() * 1000.0,
        };
        crate::obs::access_log::write(&line, crate::clock::log_timestamp_us());
    }
    if let Some(span) = span {
        span.finish(
            f.method,
            &SpanEnd {
                route,
                outcome,
                reason,
                status,
                key_id,
                account_id: principal.and_then(|p| p.identity.account_id()),
                tier: principal.map(|p| p.tier_name()),
                auth_method: principal.map(|p| p.identity.method.as_str()),
                request_id,
                protocol_version: if f.protocol == metrics::protocol::H2 {
                    "2"
                } else {
                    "1.1"
                },
                elapsed: f.elapsed,
            },
        );
    }
}

/// How a key's request counts in its usage: by the `outcome` its metrics gave it
/// and the `status` written (0: none).
fn usage_class(outcome: &str, status: u16) -> crate::domain::UsageClass {
    use crate::domain::UsageClass;
    match outcome {
        metrics::outcome::RATE_LIMITED => UsageClass::RateLimited,
        metrics::outcome::NO_CREDITS => UsageClass::NoCredits,
        metrics::outcome::UPSTREAM_ERROR => UsageClass::ApiError,
        metrics::outcome::ALLOWED if (100..400).contains(&status) => UsageClass::Successful,
        metrics::outcome::ALLOWED => UsageClass::ApiError,
        _ => UsageClass::Refused,
    }
}

#[cfg(test)]
mod tests {
    use super::usage_class;
    use crate::domain::UsageClass;
    use crate::obs::metrics::outcome;

    #[test]
    fn a_keys_usage_names_why_a_request_failed() {
        for (o, status, class) in [
            (outcome::ALLOWED, 200, UsageClass::Successful),
            (outcome::ALLOWED, 101, UsageClass::Successful),
            (outcome::ALLOWED, 304, UsageClass::Successful),
            (outcome::ALLOWED, 404, UsageClass::ApiError),
            (outcome::UPSTREAM_ERROR, 502, UsageClass::ApiError),
            (outcome::UPSTREAM_ERROR, 0, UsageClass::ApiError),
            (outcome::RATE_LIMITED, 429, UsageClass::RateLimited),
            (outcome::NO_CREDITS, 402, UsageClass::NoCredits),
            (outcome::FORBIDDEN, 403, UsageClass::Refused),
            (outcome::BAD_REQUEST, 413, UsageClass::Refused),
            (outcome::UNAVAILABLE, 503, UsageClass::Refused),
        ] {
            assert_eq!(usage_class(o, status), class, "{o} {status}");
        }
    }
}
