//! Per-client-IP limits, applied before and regardless of authentication: a request
//! rate, and a failed-authentication rate that stops key guessing.

use super::{LimitError, Limiter, Window, WindowLimit};
use crate::config::IpLimitConfig;
use std::net::IpAddr;
use std::time::Duration;

/// The IP limits of one config.
#[derive(Clone, Debug)]
pub struct IpLimits {
    per_minute: Option<[WindowLimit; 1]>,
    failed_per_minute: Option<[WindowLimit; 1]>,
}

/// Counter key of an IP's request rate.
fn request_key(ip: IpAddr) -> String {
    format!("ip:{ip}")
}

/// Counter key of an IP's failed authentications.
fn failure_key(ip: IpAddr) -> String {
    format!("authfail:{ip}")
}

fn minute(limit: u64) -> Option<[WindowLimit; 1]> {
    (limit > 0).then_some([WindowLimit::fixed(Window::Minute, limit)])
}

impl IpLimits {
    /// Compiles `rate_limit.ip`; a limit of 0 turns that check off.
    pub fn from_config(c: &IpLimitConfig) -> Self {
        IpLimits {
            per_minute: minute(c.per_minute),
            failed_per_minute: minute(c.failed_auth_per_minute),
        }
    }

    /// Counts a request from `ip`; `Some(retry_after)` when the IP is over its rate.
    pub async fn admit(
        &self,
        limiter: &dyn Limiter,
        ip: IpAddr,
    ) -> Result<Option<u64>, LimitError> {
        let Some(limits) = &self.per_minute else {
            return Ok(None);
        };
        let d = limiter
            .check(&request_key(ip), limits, Duration::ZERO)
            .await?;
        Ok((!d.allowed).then_some(d.retry_after_secs))
    }

    /// `Some(retry_after)` when `ip` has failed authentication too often this minute.
    pub async fn failures_exceeded(
        &self,
        limiter: &dyn Limiter,
        ip: IpAddr,
    ) -> Result<Option<u64>, LimitError> {
        let Some(limits) = &self.failed_per_minute else {
            return Ok(None);
        };
        let d = limiter.peek(&failure_key(ip), limits).await?;
        Ok((!d.allowed).then_some(d.retry_after_secs))
    }

    /// Records one failed authentication from `ip`.
    pub async fn record_failure(
        &self,
        limiter: &dyn Limiter,
        ip: IpAddr,
    ) -> Result<(), LimitError> {
        if self.failed_per_minute.is_some() {
            limiter.record(&failure_key(ip), Window::Minute).await?;
        }
        Ok(())
    }
}
