//! Users and refresh tokens: the [`UserStore`] trait.

use crate::domain::{KeyHash, UserRecord};
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
    Reused,
    /// Past its inactivity expiry.
    Expired,
    /// Unknown, or its family was revoked.
    Invalid,
}

/// User and refresh-token storage.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Stores a new user; `Conflict` when the email is taken.
    async fn create_user(&self, user: &UserRecord) -> Result<(), StoreError>;
    /// The user with this email (case-insensitive).
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
    /// spent token revokes the family.
    async fn rotate_refresh(
        &self,
        old: &KeyHash,
        new: &KeyHash,
        new_expires_at: DateTime<Utc>,
    ) -> Result<Rotation, StoreError>;
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
}
