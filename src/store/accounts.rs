//! Accounts: the [`AccountStore`] trait (docs/configuration.md, Accounts).

use super::StoreError;
use crate::domain::{
    AccountFilter, AccountPatch, AccountRecord, AuditEntry, CreditChange, KeyHash, KeyRecord,
};
use async_trait::async_trait;

/// What changing an account's plan did.
#[derive(Clone, Debug, PartialEq)]
pub struct AccountUpdated {
    /// The account now.
    pub account: AccountRecord,
    /// How many of its keys moved from the old plan to the new one (keys with a
    /// tier of their own keep it).
    pub keys_moved: u64,
}

/// Account storage, shared by every replica on the store.
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// The account with this id.
    async fn account(&self, id: &str) -> Result<Option<AccountRecord>, StoreError>;
    /// The own account of the user with this id, if it was made.
    async fn account_of_owner(&self, owner: &str) -> Result<Option<AccountRecord>, StoreError>;
    /// Stores `record` unless an account with its id exists, or (when it has an
    /// owner) the owner already has one; either way answers the stored account.
    /// Concurrent calls for one id or owner store one account.
    async fn ensure_account(&self, record: &AccountRecord) -> Result<AccountRecord, StoreError>;
    /// Accounts matching `filter`, in id order, at most `filter.limit`.
    async fn list_accounts(&self, filter: &AccountFilter)
        -> Result<Vec<AccountRecord>, StoreError>;
    /// Applies `patch`; a new plan moves every key of the account that was on the
    /// old plan to the new one, in the same transaction, which writes `audit` too.
    /// `NotFound` if there is no such account.
    async fn update_account(
        &self,
        id: &str,
        patch: &AccountPatch,
        audit: &AuditEntry,
    ) -> Result<AccountUpdated, StoreError>;
    /// Changes the pooled balance (an increment never takes it below zero; adding to
    /// an unmetered account starts it at zero), and writes `audit` in the same
    /// transaction. `NotFound` if there is no such account.
    async fn change_account_credits(
        &self,
        id: &str,
        change: CreditChange,
        audit: &AuditEntry,
    ) -> Result<AccountRecord, StoreError>;
    /// The account's keys, newest first (revoked ones included).
    async fn keys_of_account(&self, id: &str) -> Result<Vec<KeyRecord>, StoreError>;
    /// Keys with the hash each is stored under, in id order after the id `after`,
    /// at most `limit` (for an export that can be imported again).
    async fn export_keys(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(KeyRecord, KeyHash)>, StoreError>;
}
