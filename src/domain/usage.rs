//! Per-key usage as it is stored: one row per key, hour and endpoint, and the
//! counts every view of it (the management API's usage answer, the portal's key,
//! account and overview pages) sums in one way.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Usage of one key on one endpoint during one hour.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UsageRow {
    /// Key id.
    pub key_id: String,
    /// Start of the hour.
    pub hour: DateTime<Utc>,
    /// The path called, ids replaced by `{id}` ([`crate::ledger::usage::endpoint_of`]).
    /// Rows written before keygate recorded paths hold the route's name.
    pub endpoint: String,
    /// What was counted.
    #[serde(flatten)]
    pub counts: Totals,
}

/// How one request of a key ended, as its usage counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsageClass {
    /// Answered 1xx/2xx/3xx.
    Successful,
    /// Refused by a rate limit (429).
    RateLimited,
    /// Refused for want of credits (402).
    NoCredits,
    /// Refused by keygate for another reason (a scope, an environment, a
    /// suspended account, a body too large, keygate's own store down).
    Refused,
    /// Passed, and the API answered 4xx/5xx or could not be reached.
    ApiError,
}

/// Requests counted, by how they ended, and their summed response time: a row's
/// counts, and the sum of any rows ([`Totals::of`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Requests.
    pub total: u64,
    /// Answered 1xx/2xx/3xx.
    pub successful: u64,
    /// Answered 4xx/5xx: the four reasons below, and any counted before keygate
    /// kept reasons ([`Totals::unclassified`]).
    pub failed: u64,
    /// Of `failed`: refused by a rate limit.
    pub rate_limited: u64,
    /// Of `failed`: refused for want of credits.
    pub no_credits: u64,
    /// Of `failed`: refused by keygate for another reason.
    pub refused: u64,
    /// Of `failed`: the API answered 4xx/5xx or could not be reached.
    pub api_error: u64,
    /// Sum of response times, µs (from the request's arrival to its last byte).
    pub total_us: u64,
}

impl Totals {
    /// One request that ended as `class` after `elapsed_us`.
    pub fn one(class: UsageClass, elapsed_us: u64) -> Self {
        let mut t = Totals {
            total: 1,
            total_us: elapsed_us,
            ..Totals::default()
        };
        match class {
            UsageClass::Successful => t.successful = 1,
            UsageClass::RateLimited => t.rate_limited = 1,
            UsageClass::NoCredits => t.no_credits = 1,
            UsageClass::Refused => t.refused = 1,
            UsageClass::ApiError => t.api_error = 1,
        }
        t.failed = t.total - t.successful;
        t
    }

    /// Adds `other`'s counts.
    pub fn add(&mut self, other: &Totals) {
        self.total += other.total;
        self.successful += other.successful;
        self.failed += other.failed;
        self.rate_limited += other.rate_limited;
        self.no_credits += other.no_credits;
        self.refused += other.refused;
        self.api_error += other.api_error;
        self.total_us += other.total_us;
    }

    /// The sum of `rows`' counts.
    pub fn of<'a>(rows: impl IntoIterator<Item = &'a UsageRow>) -> Self {
        let mut t = Totals::default();
        for r in rows {
            t.add(&r.counts);
        }
        t
    }

    /// Failures counted before keygate kept their reason (rows from older versions).
    pub fn unclassified(&self) -> u64 {
        self.failed
            .saturating_sub(self.rate_limited + self.no_credits + self.refused + self.api_error)
    }

    /// Average response time in ms, to the µs (0 with no requests).
    pub fn average_ms(&self) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        (self.total_us as f64 / self.total as f64).round() / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_class_counts_once_and_failures_add_up() {
        let mut t = Totals::default();
        for (class, us) in [
            (UsageClass::Successful, 400),
            (UsageClass::RateLimited, 20),
            (UsageClass::NoCredits, 30),
            (UsageClass::Refused, 10),
            (UsageClass::ApiError, 1540),
        ] {
            t.add(&Totals::one(class, us));
        }
        assert_eq!((t.total, t.successful, t.failed), (5, 1, 4));
        assert_eq!(
            (t.rate_limited, t.no_credits, t.refused, t.api_error),
            (1, 1, 1, 1)
        );
        assert_eq!(t.unclassified(), 0);
        assert_eq!(t.average_ms(), 0.4);
        assert_eq!(Totals::default().average_ms(), 0.0);
    }

    #[test]
    fn a_sub_millisecond_average_keeps_its_microseconds() {
        let t = Totals {
            total: 3,
            successful: 3,
            total_us: 1000,
            ..Totals::default()
        };
        assert_eq!(t.average_ms(), 0.333);
    }
}
