//! Per-key usage as it is stored: one row per key, hour and endpoint.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Usage of one key on one endpoint during one hour.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UsageRow {
    /// Key id.
    pub key_id: String,
    /// Start of the hour.
    pub hour: DateTime<Utc>,
    /// Route name.
    pub endpoint: String,
    /// Requests.
    pub total: u64,
    /// Requests answered 2xx/3xx.
    pub successful: u64,
    /// Requests answered 4xx/5xx.
    pub failed: u64,
    /// Sum of response times in milliseconds.
    pub total_ms: u64,
}
