//! [`UserAdmin`]: what an admin does to users (docs/configuration.md, Users) —
//! list them, disable or enable them, delete them, issue a one-time
//! password-reset link — with the keys and the account each change takes along.

use super::Accounts;
use crate::domain::AuditOrigin;
use crate::domain::{AccountPatch, AccountStatus, UserRecord};
use crate::error::GateError;
use crate::keys::policy::{Actor, Role};
use crate::keys::rules::KeyRules;
use crate::keys::service::KeyService;
use chrono::{DateTime, Utc};

/// An admin's view of the users, over the people, keys and accounts services.
pub struct UserAdmin<'a> {
    /// The people.
    pub accounts: &'a Accounts,
    /// Their keys (and, through it, their accounts).
    pub keys: &'a KeyService,
}

fn admin_only(actor: &Actor<'_>) -> Result<(), GateError> {
    match actor.role {
        Role::Operator | Role::Admin => Ok(()),
        _ => Err(GateError::Forbidden("Only an admin may do this".into())),
    }
}

impl UserAdmin<'_> {
    /// A page of users in id order (of one email, or all), at most `limit`, after
    /// the id `after`.
    pub async fn list(
        &self,
        actor: &Actor<'_>,
        email: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<UserRecord>, GateError> {
        admin_only(actor)?;
        Ok(self
            .accounts
            .users()
            .list_users(email, after, limit)
            .await?)
    }

    /// Disables a user: they cannot sign in, every session and refresh token of
    /// theirs ends, and their own account is suspended, so every key of it is
    /// refused at once on every replica. Enabling undoes both.
    pub async fn set_disabled(
        &self,
        rules: &KeyRules<'_>,
        actor: &Actor<'_>,
        id: &str,
        disabled: bool,
    ) -> Result<UserRecord, GateError> {
        admin_only(actor)?;
        if actor.subject == Some(id) && disabled {
            return Err(GateError::Conflict(
                "An admin cannot disable themselves".into(),
            ));
        }
        let origin = actor.audit_origin();
        let action = if disabled {
            "user.disabled"
        } else {
            "user.enabled"
        };
        let audit = self.accounts.audit(&origin, action, id, &["disabled"]);
        let user = self
            .accounts
            .users()
            .set_disabled(id, disabled, &audit)
            .await?;
        self.set_account_status(rules, &origin, id, disabled)
            .await?;
        tracing::info!(user = %id, disabled, "user disabled or enabled");
        Ok(user)
    }

    /// Suspends or resumes `user`'s own account as the operator would (an admin
    /// may not suspend their own credential's account; this follows a change
    /// to the user), logged as `origin`'s.
    async fn set_account_status(
        &self,
        rules: &KeyRules<'_>,
        origin: &AuditOrigin,
        user: &str,
        suspended: bool,
    ) -> Result<(), GateError> {
        let Some(accounts) = self.keys.accounts() else {
            return Ok(());
        };
        let own = accounts.own(rules, user).await?;
        let patch = AccountPatch {
            status: Some(if suspended {
                AccountStatus::Suspended
            } else {
                AccountStatus::Active
            }),
            ..Default::default()
        };
        accounts
            .update(rules, &Actor::operator().from(origin), &own.id, patch)
            .await?;
        Ok(())
    }

    /// Deletes a user: every key they own is revoked and their own account
    /// suspended first (its history stays), then the user goes with their sessions,
    /// refresh tokens and reset links.
    pub async fn delete(
        &self,
        rules: &KeyRules<'_>,
        actor: &Actor<'_>,
        id: &str,
    ) -> Result<(), GateError> {
        admin_only(actor)?;
        if actor.subject == Some(id) {
            return Err(GateError::Conflict(
                "An admin cannot delete themselves".into(),
            ));
        }
        if self.accounts.users().user_by_id(id).await?.is_none() {
            return Err(GateError::NotFound);
        }
        let theirs = Actor::user(id, None);
        let origin = actor.audit_origin();
        let by = Actor::operator().from(&origin);
        for k in self.keys.list(rules, &theirs).await? {
            if k.status == crate::domain::KeyStatus::Active {
                self.keys.revoke(rules, &by, &k.id).await?;
            }
        }
        self.set_account_status(rules, &origin, id, true).await?;
        let audit = self.accounts.audit(&origin, "user.deleted", id, &[]);
        self.accounts.users().delete_user(id, &audit).await?;
        tracing::info!(user = %id, "user deleted");
        Ok(())
    }

    /// A one-time password-reset link token for user `id` and when it expires;
    /// shown to the admin, sent nowhere.
    pub async fn issue_reset(
        &self,
        actor: &Actor<'_>,
        id: &str,
    ) -> Result<(String, DateTime<Utc>), GateError> {
        admin_only(actor)?;
        self.accounts.issue_reset(id, &actor.audit_origin()).await
    }
}
