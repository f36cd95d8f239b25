//! Webhooks (docs/operations.md, Webhooks): the configured receivers, the
//! signature every delivery carries, and the worker that delivers the store's
//! outbox to them, off the request path.

pub mod signature;
pub mod webhooks;

use crate::config::secret::Secret;
use crate::config::types::WebhookConfig;
use crate::domain::event::receiver_name;
use std::collections::BTreeSet;
use std::time::Duration;

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
