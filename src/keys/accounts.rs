//! [`AccountService`]: the account rules (docs/configuration.md, Accounts), for
//! every door — which account a new key joins, who may read or change an account,
//! what a plan change, an override or a credit change may be.

use super::policy::{Actor, Role};
use super::rules::KeyRules;
use crate::auth::cache::KeyCache;
use crate::clock::Clock;
use crate::domain::account::MAX_METADATA_BYTES;
use crate::domain::id::new_id;
use crate::domain::{
    AccountFilter, AccountPatch, AccountRecord, AccountStatus, AuditEntry, CreditChange, KeyRecord,
    PlanOverrides, Pool,
};
use crate::store::accounts::AccountStore;
use crate::store::users::UserStore;
use crate::store::StoreError;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Map, Value};
use std::sync::Arc;

/// Largest page of a listing.
pub const MAX_PAGE: usize = 500;
/// A listing's page when none is asked for.
pub const DEFAULT_PAGE: usize = 100;

/// Why an account operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// Field values that break a rule, by field (422).
    #[error("invalid fields: {}", .0.keys().cloned().collect::<Vec<_>>().join(", "))]
    Invalid(Map<String, Value>),
    /// Only an admin may do this (403).
    #[error("only an admin may do this")]
    AdminOnly,
    /// No such account, or one the caller may not see (404).
    #[error("no such account")]
    NotFound,
    /// The change conflicts with who asks for it (409).
    #[error("{0}")]
    Conflict(String),
    /// This store keeps no accounts (the file store).
    #[error("this store keeps no accounts: use store.kind sqlite or postgres")]
    Unsupported,
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for AccountError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(_) => AccountError::NotFound,
            e => AccountError::Store(e),
        }
    }
}

fn invalid(field: &str, why: impl Into<String>) -> AccountError {
    let mut m = Map::new();
    m.insert(field.into(), Value::String(why.into()));
    AccountError::Invalid(m)
}

/// An account with its keys, as the management API shows it.
#[derive(Clone, Debug)]
pub struct AccountView {
    /// The account.
    pub account: AccountRecord,
    /// Its keys (revoked ones included), when asked for.
    pub keys: Option<Vec<KeyRecord>>,
    /// Notes on what a change did that the caller should know (a downgrade below
    /// the keys the account holds).
    pub warnings: Vec<String>,
}

/// The account rules over a store.
pub struct AccountService {
    store: Arc<dyn AccountStore>,
    users: Option<Arc<dyn UserStore>>,
    cache: Option<KeyCache>,
    clock: Arc<dyn Clock>,
}

impl AccountService {
    /// A service over `store`; `users` resolves accounts named by email; `cache`
    /// (this process's key cache, if it serves requests) forgets an account's keys
    /// at once when it changes.
    pub fn new(
        store: Arc<dyn AccountStore>,
        users: Option<Arc<dyn UserStore>>,
        cache: Option<KeyCache>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        AccountService {
            store,
            users,
            cache,
            clock,
        }
    }

    /// The audit entry of `actor` doing `action` to the account `id`.
    fn audit(
        &self,
        actor: &Actor<'_>,
        action: &'static str,
        id: &str,
        fields: &[&str],
    ) -> AuditEntry {
        let fields = fields.iter().map(|f| f.to_string()).collect();
        AuditEntry::new(&actor.audit_origin(), action, id, fields, self.now())
    }

    fn now(&self) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(self.clock.now_ms() as i64)
            .single()
            .unwrap_or_default()
    }

    /// A new account record on `plan`: its pooled balance starts at the plan's
    /// refill, as this period's, when the plan pools credits and refills.
    fn fresh(&self, rules: &KeyRules<'_>, id: String, plan: &str) -> AccountRecord {
        let mut a = AccountRecord::new(&id, plan, self.now());
        if let Some(t) = rules.tiers.get(plan).filter(|t| t.pool == Pool::Account) {
            if let Some(c) = t.credits {
                a.credits = Some(i64::try_from(c.refill).unwrap_or(i64::MAX));
                a.refilled_at =
                    DateTime::from_timestamp(c.every.period_start(self.clock.now_ms()), 0);
            }
        }
        a
    }

    /// The own account of user `owner`, made (on `default_tier`) if they have none.
    pub async fn own(
        &self,
        rules: &KeyRules<'_>,
        owner: &str,
    ) -> Result<AccountRecord, AccountError> {
        if let Some(a) = self.store.account_of_owner(owner).await? {
            return Ok(a);
        }
        let mut fresh = self.fresh(rules, new_id("acct"), rules.default_tier);
        fresh.owner = Some(owner.to_string());
        Ok(self.store.ensure_account(&fresh).await?)
    }

    /// The account a new key joins: the actor's own (a user, a managing key);
    /// for an admin, the one `named` (an id, made on first use on `tier` or
    /// `default_tier`; a user's email: that user's own), else the `owner`'s own,
    /// else a new account of the key's own. Answers the account and, when it was
    /// named by a user's email, that user's id (the key's owner, unless named).
    pub async fn for_new_key(
        &self,
        rules: &KeyRules<'_>,
        actor: &Actor<'_>,
        named: Option<&str>,
        owner: Option<&str>,
        tier: Option<&str>,
    ) -> Result<(AccountRecord, Option<String>), AccountError> {
        let admin = matches!(actor.role, Role::Operator | Role::Admin);
        if !admin {
            let own = self.own(rules, actor.subject.unwrap_or_default()).await?;
            if named.is_some_and(|n| n != own.id) {
                return Err(invalid(
                    "account",
                    "your keys join your own account: only an admin may name another",
                ));
            }
            return Ok((own, None));
        }
        let plan = tier.unwrap_or(rules.default_tier);
        match named {
            Some(email) if email.contains('@') => {
                let user = match &self.users {
                    Some(users) => users.user_by_email(email).await?,
                    None => None,
                };
                let Some(user) = user else {
                    return Err(invalid("account", format!("no user has the email {email}")));
                };
                Ok((self.own(rules, &user.id).await?, Some(user.id)))
            }
            Some(id) => {
                if !valid_account_id(id) {
                    return Err(invalid(
                        "account",
                        "must be 1-64 letters, digits, `_` or `-`, or a user's email",
                    ));
                }
                if let Some(a) = self.store.account(id).await? {
                    return Ok((a, None));
                }
                let fresh = self.fresh(rules, id.to_string(), plan);
                Ok((self.store.ensure_account(&fresh).await?, None))
            }
            None => match owner {
                Some(owner) => Ok((self.own(rules, owner).await?, None)),
                None => {
                    let fresh = self.fresh(rules, new_id("acct"), plan);
                    Ok((self.store.ensure_account(&fresh).await?, None))
                }
            },
        }
    }

    /// Meters `account` for `tier`: a `pool: account` tier whose credits refill
    /// spends the account's balance, so an unmetered account starts at the refill's
    /// amount (else its keys on that tier would spend nothing). Answers the account
    /// as it now stands.
    pub async fn meter_for(
        &self,
        rules: &KeyRules<'_>,
        actor: &Actor<'_>,
        account: AccountRecord,
        tier: &str,
    ) -> Result<AccountRecord, AccountError> {
        let refill = rules
            .tiers
            .get(tier)
            .filter(|t| t.pool == Pool::Account)
            .and_then(|t| t.credits);
        match refill {
            Some(c) if account.credits.is_none() => {
                let amount = i64::try_from(c.refill).unwrap_or(i64::MAX);
                let audit = self.audit(actor, "account.credits_changed", &account.id, &["credits"]);
                let metered = self
                    .store
                    .change_account_credits(&account.id, CreditChange::Set(Some(amount)), &audit)
                    .await?;
                self.forget(&metered.id);
                Ok(metered)
            }
            _ => Ok(account),
        }
    }

    /// The id of the user with this email, if there is one.
    pub async fn user_of_email(&self, email: &str) -> Result<Option<String>, AccountError> {
        Ok(match &self.users {
            Some(users) => users.user_by_email(email).await?.map(|u| u.id),
            None => None,
        })
    }

    /// The account `id`, for an admin or the account's own user; with its keys.
    pub async fn get(&self, actor: &Actor<'_>, id: &str) -> Result<AccountView, AccountError> {
        let account = self
            .store
            .account(id)
            .await?
            .ok_or(AccountError::NotFound)?;
        if !may_read(actor, &account) {
            return Err(AccountError::NotFound);
        }
        let keys = self.store.keys_of_account(id).await?;
        Ok(AccountView {
            account,
            keys: Some(keys),
            warnings: Vec::new(),
        })
    }

    /// A page of accounts (admins only).
    pub async fn list(
        &self,
        actor: &Actor<'_>,
        filter: AccountFilter,
    ) -> Result<Vec<AccountRecord>, AccountError> {
        if !is_admin(actor) {
            return Err(AccountError::AdminOnly);
        }
        Ok(self.store.list_accounts(&filter).await?)
    }

    /// Changes an account (admins only): the plan must be a configured tier, the
    /// overrides sensible, the metadata a JSON object of at most 4 KiB. A plan
    /// whose `max_keys` is below the active keys the account holds keeps them and
    /// says so in the view's warnings.
    pub async fn update(
        &self,
        rules: &KeyRules<'_>,
        actor: &Actor<'_>,
        id: &str,
        patch: AccountPatch,
    ) -> Result<AccountView, AccountError> {
        if !is_admin(actor) {
            return Err(AccountError::AdminOnly);
        }
        let mut problems = Map::new();
        if let Some(plan) = &patch.plan {
            if !rules.tiers.contains_key(plan) {
                problems.insert(
                    "plan".into(),
                    Value::String(format!("must be one of: {}", rules.tier_names().join(", "))),
                );
            }
        }
        if let Some(o) = &patch.overrides {
            if let Err(why) = check_overrides(o) {
                problems.insert("overrides".into(), Value::String(why));
            }
        }
        if let Some(m) = &patch.metadata {
            if let Err(why) = check_metadata(m) {
                problems.insert("metadata".into(), Value::String(why));
            }
        }
        if !problems.is_empty() {
            return Err(AccountError::Invalid(problems));
        }
        if patch.status == Some(AccountStatus::Suspended) {
            // An admin suspending the account whose key they present, or their
            // own, would lock themselves out.
            let own = match actor.account {
                Some(account) => account == id,
                None => match actor.subject {
                    Some(user) => self
                        .store
                        .account_of_owner(user)
                        .await?
                        .is_some_and(|a| a.id == id),
                    None => false,
                },
            };
            if own {
                return Err(AccountError::Conflict(
                    "An admin cannot suspend the account of the credential they use".into(),
                ));
            }
        }
        let audit = AuditEntry::new(
            &actor.audit_origin(),
            "account.updated",
            id,
            patch.field_names(),
            self.now(),
        );
        let mut updated = self.store.update_account(id, &patch, &audit).await?;
        if patch.plan.is_some() {
            let plan = updated.account.plan.clone();
            updated.account = self.meter_for(rules, actor, updated.account, &plan).await?;
        }
        self.forget(id);
        let keys = self.store.keys_of_account(id).await?;
        let mut warnings = Vec::new();
        let a = &updated.account;
        if let Some(max) = max_keys_of(rules, a, &a.plan) {
            let held = keys
                .iter()
                .filter(|k| k.tier == a.plan && k.status == crate::domain::KeyStatus::Active)
                .count() as u64;
            if held > max {
                warnings.push(format!(
                    "the account holds {held} active keys on plan {}, which allows {max}: \
                     they keep working, and new keys are refused until fewer than {max} remain",
                    a.plan
                ));
            }
        }
        Ok(AccountView {
            account: updated.account,
            keys: Some(keys),
            warnings,
        })
    }

    /// Adds to or sets an account's pooled balance (admins only).
    pub async fn change_credits(
        &self,
        actor: &Actor<'_>,
        id: &str,
        change: CreditChange,
    ) -> Result<AccountView, AccountError> {
        if !is_admin(actor) {
            return Err(AccountError::AdminOnly);
        }
        match change {
            CreditChange::Set(Some(n)) if n < 0 => {
                return Err(invalid("set", "must be a number of credits, at least 0"))
            }
            CreditChange::Add(n) if n.unsigned_abs() > 1_000_000_000_000 => {
                return Err(invalid("add", "must be at most 10^12 either way"))
            }
            _ => {}
        }
        let audit = self.audit(actor, "account.credits_changed", id, &["credits"]);
        let account = self
            .store
            .change_account_credits(id, change, &audit)
            .await?;
        self.forget(id);
        Ok(AccountView {
            account,
            keys: None,
            warnings: Vec::new(),
        })
    }

    /// The pooled balance of account `id` now (with a due refill applied as the
    /// next debit would), or `None` when unmetered.
    pub async fn balance(
        &self,
        rules: &KeyRules<'_>,
        id: &str,
    ) -> Result<Option<i64>, AccountError> {
        let a = self.find(id).await?;
        Ok(self.balance_of(rules, &a))
    }

    /// `a`'s pooled balance now, as [`Self::balance`] says it.
    pub fn balance_of(&self, rules: &KeyRules<'_>, a: &AccountRecord) -> Option<i64> {
        let refill = a.overrides.refill.or_else(|| {
            rules
                .tiers
                .get(&a.plan)
                .and_then(|t| t.credits)
                .map(|c| c.refill())
        });
        match refill {
            Some(r) => {
                let due = r.due_at(self.clock.now_ms());
                due.apply(a.credits, a.refilled_at.map(|t| t.timestamp())).0
            }
            None => a.credits,
        }
    }

    /// The account `id`, for the doors' own use (the caller has decided it may be
    /// read: a key's own account, say).
    pub async fn find(&self, id: &str) -> Result<AccountRecord, AccountError> {
        self.store.account(id).await?.ok_or(AccountError::NotFound)
    }

    /// Writes every key and account as import lines (docs/configuration.md,
    /// Importing keys), to `out`, one line per call: each key by its hash with its
    /// account's `plan` and `account_credits`, then each account without keys
    /// alone. Importing them into an empty store gives the same keys and accounts
    /// (a key's own refill and a regenerated key's previous secret are not carried).
    pub async fn export(
        &self,
        actor: &Actor<'_>,
        out: &mut (dyn FnMut(String) -> std::io::Result<()> + Send),
    ) -> Result<u64, AccountError> {
        if !is_admin(actor) {
            return Err(AccountError::AdminOnly);
        }
        let write = |e: std::io::Error| {
            AccountError::Store(StoreError::Unavailable(format!("cannot write: {e}")))
        };
        let mut accounts: std::collections::HashMap<String, AccountRecord> =
            std::collections::HashMap::new();
        let mut lines = 0u64;
        let mut after: Option<String> = None;
        loop {
            let page = self.store.export_keys(after.as_deref(), 1000).await?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.id.clone());
            for (k, hash) in page {
                let mut line = serde_json::json!({
                    "hash": hash.to_string(),
                    "id": k.id,
                    "name": k.name,
                    "prefix": k.prefix,
                    "last4": k.last4,
                    "tier": k.tier,
                    "scopes": k.scopes,
                    "environment": k.environment,
                    "org": k.org,
                    "owner": k.owner,
                    "status": k.status,
                    "credits": k.credits,
                    "allowed_ips": k.allowed_ips,
                    "expires_at": k.expires_at,
                    "created_at": k.created_at,
                });
                if let Some(id) = &k.account {
                    if !accounts.contains_key(id) {
                        if let Some(a) = self.store.account(id).await? {
                            accounts.insert(id.clone(), a);
                        }
                    }
                    line["account"] = id.clone().into();
                    if let Some(a) = accounts.get(id) {
                        line["plan"] = a.plan.clone().into();
                        line["account_credits"] = a.credits.into();
                        line["account_status"] = a.status.as_str().into();
                    }
                }
                out(line.to_string()).map_err(write)?;
                lines += 1;
            }
        }
        let mut after: Option<String> = None;
        loop {
            let filter = AccountFilter {
                after: after.clone(),
                limit: 1000,
                ..Default::default()
            };
            let page = self.store.list_accounts(&filter).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            for a in page.iter().filter(|a| !accounts.contains_key(&a.id)) {
                let line = serde_json::json!({
                    "account": a.id,
                    "plan": a.plan,
                    "account_credits": a.credits,
                    "account_status": a.status,
                });
                out(line.to_string()).map_err(write)?;
                lines += 1;
            }
        }
        Ok(lines)
    }

    fn forget(&self, id: &str) {
        if let Some(cache) = &self.cache {
            cache.invalidate_account(id);
        }
    }
}

/// The most active keys `account` may hold on `tier`: its own override, else the
/// tier's `max_keys`.
pub fn max_keys_of(rules: &KeyRules<'_>, account: &AccountRecord, tier: &str) -> Option<u64> {
    let t = rules.tiers.get(tier)?;
    match t.pool {
        Pool::Account if tier == account.plan => account.overrides.max_keys.or(t.max_keys),
        _ => t.max_keys,
    }
}

fn is_admin(actor: &Actor<'_>) -> bool {
    matches!(actor.role, Role::Operator | Role::Admin)
}

fn may_read(actor: &Actor<'_>, account: &AccountRecord) -> bool {
    is_admin(actor) || (account.owner.is_some() && account.owner.as_deref() == actor.subject)
}

/// True when `id` may name an account: 1-64 letters, digits, `_` or `-`.
pub fn valid_account_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn check_overrides(o: &PlanOverrides) -> Result<(), String> {
    let windows = [
        o.per_second,
        o.per_minute,
        o.per_hour,
        o.per_day,
        o.per_month,
    ];
    if windows.iter().flatten().any(|n| *n == 0) {
        return Err("a window's limit is at least 1".into());
    }
    if o.refill.is_some_and(|r| r.amount > 1_000_000_000_000) {
        return Err("refill.amount is at most 10^12".into());
    }
    Ok(())
}

fn check_metadata(m: &Value) -> Result<(), String> {
    if !m.is_object() {
        return Err("must be a JSON object".into());
    }
    if m.to_string().len() > MAX_METADATA_BYTES {
        return Err(format!(
            "must be at most {MAX_METADATA_BYTES} bytes as JSON"
        ));
    }
    Ok(())
}

/// The status a door's word names.
pub fn parse_status(s: &str) -> Result<AccountStatus, AccountError> {
    AccountStatus::parse(s).ok_or_else(|| invalid("status", "must be one of: active, suspended"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_and_metadata_are_bounded() {
        assert!(valid_account_id("acct_abc-1"));
        assert!(!valid_account_id("a b"));
        assert!(!valid_account_id(&"a".repeat(65)));
        assert!(check_metadata(&serde_json::json!({"a": 1})).is_ok());
        assert!(check_metadata(&serde_json::json!([1])).is_err());
        assert!(check_metadata(&serde_json::json!({"a": "x".repeat(5000)})).is_err());
        assert!(check_overrides(&PlanOverrides {
            per_minute: Some(0),
            ..Default::default()
        })
        .is_err());
    }
}
