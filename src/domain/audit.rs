//! The audit log (docs/operations.md, Audit log): one entry per change made through
//! the management API, the portal or the CLI — who made it, from where, what it
//! changed — written by the store in the same transaction as the change itself,
//! so a change and its entry are kept or lost together. Never a secret: an entry
//! names the fields a change touched, not their values.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Who makes a change, and from where: the audit log's view of a request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AuditOrigin {
    /// The credential's own id (a key id, or a user id for a JWT or a portal
    /// session), or `cli` for the command line.
    pub actor: String,
    /// The client's address, when the change came over the network.
    pub client_ip: Option<String>,
    /// The request's `X-Request-Id`, when the change came over the network.
    pub request_id: Option<String>,
}

impl AuditOrigin {
    /// The actor of a request that proved no identity (a sign-in attempt, a
    /// refresh token presented).
    pub const ANONYMOUS: &'static str = "anonymous";

    /// The command line.
    pub fn cli() -> Self {
        AuditOrigin {
            actor: "cli".into(),
            ..AuditOrigin::default()
        }
    }
}

/// One change, as the audit log keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// Its place in the log: larger is newer (0 before it is stored).
    pub id: i64,
    /// When the change was made.
    pub at: DateTime<Utc>,
    /// Who made it, and from where.
    #[serde(flatten)]
    pub origin: AuditOrigin,
    /// What was done: `key.created`, `key.updated`, `key.revoked`,
    /// `key.regenerated`, `keys.imported`, `account.updated`,
    /// `account.credits_changed`, `user.created`, `user.disabled`, `user.enabled`,
    /// `user.deleted`, `user.password_changed`, `user.password_reset`,
    /// `user.reset_link_issued`; and what changed nothing but is watched:
    /// `auth.sign_in_failed`, `auth.refresh_reuse` (the family was revoked).
    pub action: String,
    /// What it was done to (a key, an account or a user id; for an import, how
    /// many keys it wrote; empty for a failed sign-in naming no user).
    pub target: String,
    /// The names of the fields the change set (never their values).
    pub fields: Vec<String>,
}

impl AuditEntry {
    /// An entry for `action` on `target` by `origin` at `at`, touching `fields`.
    pub fn new(
        origin: &AuditOrigin,
        action: &'static str,
        target: &str,
        fields: Vec<String>,
        at: DateTime<Utc>,
    ) -> Self {
        AuditEntry {
            id: 0,
            at,
            origin: origin.clone(),
            action: action.to_string(),
            target: target.to_string(),
            fields,
        }
    }

    /// An entry for a change made from the command line, touching no named field.
    pub fn cli(action: &'static str, target: &str, at: DateTime<Utc>) -> Self {
        AuditEntry::new(&AuditOrigin::cli(), action, target, Vec::new(), at)
    }

    /// An import's target, once the store knows how many keys it wrote.
    pub fn imported_target(written: u64) -> String {
        format!("{written} keys")
    }

    /// `fields` as the store keeps them: a JSON array of names.
    pub fn fields_json(&self) -> String {
        serde_json::to_string(&self.fields).unwrap_or_else(|_| "[]".into())
    }
}
