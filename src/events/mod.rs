//! Webhooks (docs/operations.md, Webhooks): the configured receivers, the
//! signature every delivery carries, and the worker that delivers the store's
//! outbox to them, off the request path.

pub mod signature;
pub mod sink;
pub mod webhooks;

use crate::config::secret::Secret;
use crate::config::types::WebhookConfig;
use crate::domain::event::receiver_name;
use std::collections::BTreeSet;
use std::time::Duration;

/// What the request path announces, compiled from the config: whether any receiver
/// wants each of its event types, and the `credits.low` thresholds.
#[derive(Clone, Debug, Default)]
pub struct Announced {
    /// Some receiver gets `rate_limit.exceeded`.
    pub rate_limit_exceeded: bool,
    /// Some receiver gets `credits.low`.
    pub credits_low: bool,
    /// `credits.low_at`.
    pub low_at: Vec<crate::domain::event::CreditThreshold>,
}

impl Announced {
    /// What `receivers` want, with the thresholds of `credits`.
    pub fn of(receivers: &[Receiver], credits: &crate::config::types::CreditsConfig) -> Self {
        Announced {
            rate_limit_exceeded: receivers.iter().any(|r| r.wants("rate_limit.exceeded")),
            credits_low: receivers.iter().any(|r| r.wants("credits.low")),
            low_at: credits
                .low_at
                .iter()
                .filter_map(|l| l.threshold().ok())
                .collect(),
        }
    }
}

/// One configured receiver, ready to deliver to.
#[derive(Clone, Debug)]
pub struct Receiver {
    /// Its name in the store ([`receiver_name`]).
    pub name: String,
    /// Where events are POSTed, as configured.
    pub url: String,
    /// The event types it gets (`None`: every type).
    pub events: Option<BTreeSet<String>>,
    /// The signing secret.
    pub secret: Secret,
    /// How long one delivery may take.
    pub timeout: Duration,
}

impl Receiver {
    /// The receiver `c` configures (checked by the config's validation).
    pub fn of(c: &WebhookConfig) -> Self {
        Receiver {
            name: receiver_name(&c.url).unwrap_or_else(|_| c.url.clone()),
            url: c.url.clone(),
            events: c.events.as_ref().map(|e| e.iter().cloned().collect()),
            secret: c.secret.clone(),
            timeout: c.timeout.get(),
        }
    }

    /// True when it gets events of type `kind`.
    pub fn wants(&self, kind: &str) -> bool {
        self.events.as_ref().is_none_or(|e| e.contains(kind))
    }
}
