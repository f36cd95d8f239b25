//! Reading the audit log (docs/operations.md, Audit log): admins and the CLI only,
//! newest first, in pages. Writing is the store's, in each change's transaction.

use super::policy::{Actor, Role};
use crate::domain::AuditEntry;
use crate::store::{KeyStore, StoreError};

/// Most entries one page holds.
pub const MAX_AUDIT_PAGE: usize = 1000;

/// Why the log was not read.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The caller is not an admin (or the CLI).
    #[error("Only an admin may read the audit log")]
    NotAdmin,
    /// The store could not answer, or keeps no log.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A page of the log for `actor`: at most `limit` (capped at
/// [`MAX_AUDIT_PAGE`]) entries older than the entry `before`, newest first.
pub async fn audit_page(
    store: &dyn KeyStore,
    actor: &Actor<'_>,
    before: Option<i64>,
    limit: usize,
) -> Result<Vec<AuditEntry>, AuditError> {
    if !matches!(actor.role, Role::Operator | Role::Admin) {
        return Err(AuditError::NotAdmin);
    }
    Ok(store
        .audit_log(before, limit.clamp(1, MAX_AUDIT_PAGE))
        .await?)
}
