//! A key's limits as every door shows them (the management API's key object and
//! `verify`, the CLI's JSON, the portal's key page): its tier's windows and how they
//! count, the block, and the credit refill in force for the key.

use crate::config::TierConfig;
use crate::domain::Algorithm;
use crate::domain::Refill;
use serde::Serialize;

/// The limits a key is held to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LimitsView {
    /// `fixed` or `sliding`.
    pub algorithm: Algorithm,
    /// Requests per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_second: Option<u64>,
    /// Requests per minute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_minute: Option<u64>,
    /// Requests per hour.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_hour: Option<u64>,
    /// Requests per day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_day: Option<u64>,
    /// Requests per month (calendar month in UTC when fixed, 30 days when sliding).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_month: Option<u64>,
    /// Seconds of lockout after a window is exhausted (0: none).
    pub block_seconds: u64,
    /// The key's credit refill (its own, else its tier's); `null`: none.
    pub refill: Option<Refill>,
}

impl LimitsView {
    /// These limits with an account's `overrides` in place of the plan's (its
    /// refill too).
    pub fn with_overrides(mut self, o: &crate::domain::PlanOverrides) -> Self {
        for (window, value) in [
            (&mut self.per_second, o.per_second),
            (&mut self.per_minute, o.per_minute),
            (&mut self.per_hour, o.per_hour),
            (&mut self.per_day, o.per_day),
            (&mut self.per_month, o.per_month),
        ] {
            if value.is_some() {
                *window = value;
            }
        }
        if o.refill.is_some() {
            self.refill = o.refill;
        }
        self
    }

    /// The limits of a key in `tier` whose refill in force is `refill`.
    pub fn of(tier: &TierConfig, refill: Option<Refill>) -> Self {
        LimitsView {
            algorithm: tier.algorithm,
            per_second: tier.per_second,
            per_minute: tier.per_minute,
            per_hour: tier.per_hour,
            per_day: tier.per_day,
            per_month: tier.per_month,
            block_seconds: tier.block.get().as_secs(),
            refill,
        }
    }

    /// The windows, shortest first, as (name, limit): `("minute", 120)`.
    pub fn windows(&self) -> Vec<(&'static str, u64)> {
        [
            ("second", self.per_second),
            ("minute", self.per_minute),
            ("hour", self.per_hour),
            ("day", self.per_day),
            ("month", self.per_month),
        ]
        .into_iter()
        .filter_map(|(name, limit)| limit.map(|l| (name, l)))
        .collect()
    }
}
