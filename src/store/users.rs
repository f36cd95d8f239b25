//! Users and refresh tokens: the [`UserStore`] trait.

use crate::domain::{canonical_email, AuditEntry, KeyHash, UserRecord};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;

/// What presenting a refresh token did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rotation {
    /// Spent; the new token of the same family was stored.
    Rotated {
        /// The token's user.
        user_id: String,
    },
    /// Already spent before: the whole family is now revoked.
    Reused {
        /// The family's user.
        user_id: String,
    },
    /// Past its inactivity expiry.
    Expired,
    /// Unknown, or its family was revoked.
    Invalid,
}

/// User and refresh-token storage.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Stores a new user under the canonical form of its email, and `audit` in the
    /// same transaction; `Conflict` when that is taken.
    async fn create_user(&self, user: &UserRecord, audit: &AuditEntry) -> Result<(), StoreError>;
    /// The user with this email: its [`canonical_email`] form, compared exactly
    /// (never by the database's own case rules).
    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError>;
    /// The user with this id.
    async fn user_by_id(&self, id: &str) -> Result<Option<UserRecord>, StoreError>;
    /// Starts a refresh-token family with its first token.
    async fn insert_refresh(
        &self,
        hash: &KeyHash,
        family: &str,
        user_id: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Spends `old` and stores `new` in its family, atomically; a second use of a
    /// spent token revokes the family and writes `reuse` (its target set to the
    /// family's user) in the same transaction.
    async fn rotate_refresh(
        &self,
        old: &KeyHash,
        new: &KeyHash,
        new_expires_at: DateTime<Utc>,
        reuse: &AuditEntry,
    ) -> Result<Rotation, StoreError>;
    /// Writes `entry` to the audit log alone: for what changes nothing stored but
    /// belongs in the log (a failed sign-in).
    async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError>;
    /// Stores a new sign-in session for `user_id` (its token hashed), valid until
    /// `expires_at`; sessions of the user that have expired are deleted.
    async fn create_session(
        &self,
        hash: &KeyHash,
        user_id: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// The user of a session that exists and has not expired (on the store's clock).
    async fn session_user(&self, hash: &KeyHash) -> Result<Option<UserRecord>, StoreError>;
    /// Ends a session (signing out); ending an unknown one is not an error.
    async fn end_session(&self, hash: &KeyHash) -> Result<(), StoreError>;
    /// The secret named `name`, shared by every process on this store: the value
    /// stored, or `candidate`, stored now if no process stored one before.
    async fn shared_secret(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>, StoreError>;
    /// Users in id order: of one email (its [`canonical_email`] form) or all, after
    /// the id `after` (the cursor), at most `limit`.
    async fn list_users(
        &self,
        email: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<UserRecord>, StoreError>;
    /// Disables or enables a user; disabling ends every session and refresh-token
    /// family of theirs in the same transaction, which writes `audit` too.
    /// `NotFound` if there is no such user.
    async fn set_disabled(
        &self,
        id: &str,
        disabled: bool,
        audit: &AuditEntry,
    ) -> Result<UserRecord, StoreError>;
    /// Deletes a user with their sessions, refresh tokens and reset links, and
    /// writes `audit` in the same transaction. `NotFound` if there is no such user.
    async fn delete_user(&self, id: &str, audit: &AuditEntry) -> Result<(), StoreError>;
    /// Replaces a user's password hash and ends every session and refresh-token
    /// family of theirs but the session `keep` (the one that changed it), in one
    /// transaction, which writes `audit` too. `NotFound` if there is no such user.
    async fn set_password(
        &self,
        id: &str,
        password_hash: &str,
        keep: Option<&KeyHash>,
        audit: &AuditEntry,
    ) -> Result<(), StoreError>;
    /// Stores a one-time password-reset link for `user_id` (its token hashed),
    /// valid until `expires_at`, and `audit`; the user's earlier links stop working.
    async fn create_password_reset(
        &self,
        hash: &KeyHash,
        user_id: &str,
        expires_at: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<(), StoreError>;
    /// The user of a reset link that exists, is unused and has not expired (on the
    /// store's clock), marking it used in the same transaction: a link works once,
    /// however many use it at once.
    async fn take_password_reset(&self, hash: &KeyHash) -> Result<Option<String>, StoreError>;
    /// The user of a reset link that exists, is unused and has not expired, without
    /// using it (to show its form).
    async fn peek_password_reset(&self, hash: &KeyHash) -> Result<Option<String>, StoreError>;
}

/// The migration of stored emails to their [`canonical_email`] form: given every
/// user's `(id, email)`, the `(id, canonical)` updates to make. Two accounts whose
/// emails have one canonical form are never merged, nor one of them renamed: the
/// migration fails, naming every such pair, until an operator gives one of them
/// another address.
pub fn canonical_email_updates(
    users: Vec<(String, String)>,
) -> Result<Vec<(String, String)>, String> {
    let mut by_form: std::collections::BTreeMap<String, Vec<(String, String)>> =
        std::collections::BTreeMap::new();
    for (id, email) in users {
        by_form
            .entry(canonical_email(&email))
            .or_default()
            .push((id, email));
    }
    let mut collisions = Vec::new();
    let mut updates = Vec::new();
    for (form, holders) in by_form {
        match holders.as_slice() {
            [(id, email)] => {
                if *email != form {
                    updates.push((id.clone(), form));
                }
            }
            many => collisions.push(format!(
                "{} are one address ({form})",
                many.iter()
                    .map(|(id, email)| format!("{id} <{email}>"))
                    .collect::<Vec<_>>()
                    .join(" and ")
            )),
        }
    }
    if collisions.is_empty() {
        Ok(updates)
    } else {
        Err(format!(
            "users whose emails differ only in case or Unicode spelling cannot be told \
             apart at sign-in, and keygate never merges accounts: {}. Give all but one \
             of each another email (UPDATE users SET email = '...' WHERE id = '...') and \
             start again",
            collisions.join("; ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::canonical_email_updates;

    fn users(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(i, e)| (i.to_string(), e.to_string()))
            .collect()
    }

    #[test]
    fn emails_move_to_their_canonical_form_and_collisions_are_named() {
        let updates = canonical_email_updates(users(&[
            ("usr_a", "Alice@Example.com"),
            ("usr_b", "bob@example.com"),
            ("usr_c", "Stra\u{df}e@x.de"),
        ]))
        .unwrap();
        assert_eq!(
            updates,
            users(&[("usr_a", "alice@example.com"), ("usr_c", "strasse@x.de")])
        );
        let err = canonical_email_updates(users(&[
            ("usr_a", "Stra\u{df}e@x.de"),
            ("usr_b", "STRASSE@x.de"),
            ("usr_c", "\u{ff41}lice@example.com"),
            ("usr_d", "alice@example.com"),
        ]))
        .unwrap_err();
        assert!(
            err.contains("usr_a <Stra\u{df}e@x.de> and usr_b <STRASSE@x.de>"),
            "{err}"
        );
        assert!(err.contains("usr_c"), "{err}");
        assert!(err.contains("usr_d"), "{err}");
    }
}
