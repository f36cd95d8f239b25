//! Credit refills (docs/configuration.md, Limits and credits): a key's credits are
//! reset to `amount` once per period, lazily, on the key's next use or read.
//!
//! Periods are cut from the Unix epoch in UTC: `day` starts at 00:00, `month` on the
//! first at 00:00, a duration at each multiple of it since the epoch. A key records
//! the start of the period it was last refilled in (`refilled_at`); it is due again
//! once the current period starts later than that. The store applies a due refill
//! inside the transaction that debits the key, under the row's lock, and records the
//! period: whichever replica gets there first refills, the others see it done, so a
//! refill happens once per period on any number of replicas.

use chrono::{DateTime, Datelike, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::Duration;

/// How often credits refill.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RefillEvery {
    /// Each UTC day, at 00:00.
    Day,
    /// Each calendar month in UTC, on the first at 00:00.
    Month,
    /// Each multiple of this duration (whole seconds, at least one) since the epoch.
    Every(Duration),
}

impl RefillEvery {
    /// Parses `day`, `month`, or a duration such as `7d` or `12h` (whole seconds, at
    /// least `1s`); the error says what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.trim() {
            "day" => Ok(RefillEvery::Day),
            "month" => Ok(RefillEvery::Month),
            other => {
                let d = crate::domain::duration::parse_duration(other)
                    .map_err(|e| format!("{e}; or `day` or `month`"))?;
                if d.as_secs() == 0 || d.subsec_millis() != 0 {
                    return Err(format!(
                        "`{other}`: a refill period is whole seconds, at least 1s"
                    ));
                }
                Ok(RefillEvery::Every(d))
            }
        }
    }

    /// Start (Unix seconds) of the period containing `now_ms`.
    pub fn period_start(self, now_ms: u64) -> i64 {
        let now = (now_ms / 1000) as i64;
        match self {
            RefillEvery::Day => now - now.rem_euclid(86_400),
            RefillEvery::Every(d) => {
                let len = d.as_secs().max(1) as i64;
                now - now.rem_euclid(len)
            }
            RefillEvery::Month => {
                let at = DateTime::<Utc>::from_timestamp(now, 0).unwrap_or_default();
                Utc.with_ymd_and_hms(at.year(), at.month(), 1, 0, 0, 0)
                    .single()
                    .map_or(now, |t| t.timestamp())
            }
        }
    }
}

impl fmt::Display for RefillEvery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefillEvery::Day => f.write_str("day"),
            RefillEvery::Month => f.write_str("month"),
            RefillEvery::Every(d) => write!(f, "{}", crate::domain::duration::Dur(*d)),
        }
    }
}

impl Serialize for RefillEvery {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RefillEvery {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        RefillEvery::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Credits reset to `amount` every `every`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refill {
    /// The balance each period starts with.
    pub amount: u64,
    /// The period.
    pub every: RefillEvery,
}

/// A refill the store applies before a debit if the key is due: set the credits
/// to `amount` and `refilled_at` to `period` unless `refilled_at >= period`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefillDue {
    /// The balance to reset to.
    pub amount: i64,
    /// Start (Unix seconds) of the current period.
    pub period: i64,
}

impl Refill {
    /// What the store needs to refill at `now_ms`.
    pub fn due_at(&self, now_ms: u64) -> RefillDue {
        RefillDue {
            amount: i64::try_from(self.amount).unwrap_or(i64::MAX),
            period: self.every.period_start(now_ms),
        }
    }
}

impl RefillDue {
    /// The balance and `refilled_at` of a metered key once this refill has been
    /// applied (unchanged when it is not due; an unmetered key is never refilled).
    pub fn apply(
        &self,
        credits: Option<i64>,
        refilled_at: Option<i64>,
    ) -> (Option<i64>, Option<i64>) {
        match credits {
            Some(_) if refilled_at.is_none_or(|at| at < self.period) => {
                (Some(self.amount), Some(self.period))
            }
            _ => (credits, refilled_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400_000;

    #[test]
    fn periods_start_at_midnight_the_first_or_a_multiple_since_the_epoch() {
        // 2026-12-02T05:30:00Z
        let now = 20_789 * DAY + 5 * 3_600_000 + 1_800_000;
        assert_eq!(RefillEvery::Day.period_start(now), (20_789 * 86_400) as i64);
        // December 2026 starts on day 20788.
        assert_eq!(
            RefillEvery::Month.period_start(now),
            (20_788 * 86_400) as i64
        );
        let hours = RefillEvery::parse("4h").unwrap();
        assert_eq!(
            hours.period_start(now),
            (20_789 * 86_400 + 4 * 3_600) as i64
        );
    }

    #[test]
    fn periods_parse_and_print_back_and_bad_ones_say_why() {
        for text in ["day", "month", "7d", "90s"] {
            assert_eq!(RefillEvery::parse(text).unwrap().to_string(), text);
        }
        assert!(RefillEvery::parse("week").unwrap_err().contains("day"));
        assert!(RefillEvery::parse("500ms")
            .unwrap_err()
            .contains("whole seconds"));
        assert!(RefillEvery::parse("0s").is_err());
    }

    #[test]
    fn a_refill_applies_once_per_period_and_never_to_an_unmetered_key() {
        let r = Refill {
            amount: 100,
            every: RefillEvery::Day,
        };
        let due = r.due_at(10 * DAY + 5);
        let period = (10 * 86_400) as i64;
        assert_eq!(due.apply(Some(3), None), (Some(100), Some(period)));
        assert_eq!(
            due.apply(Some(3), Some(period - 1)),
            (Some(100), Some(period))
        );
        assert_eq!(due.apply(Some(3), Some(period)), (Some(3), Some(period)));
        assert_eq!(due.apply(None, None), (None, None));
    }
}
