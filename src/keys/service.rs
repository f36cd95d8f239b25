//! [`KeyService`]: the key lifecycle — create, read, list, update, revoke,
//! regenerate — with every rule applied once, for every door. The CLI, the
//! management API and the portal parse their own syntax into a [`KeyInput`] or a
//! [`KeyChange`], call the service as an [`Actor`], and render what it returns;
//! the same request gets the same answer and the same error from each.

use super::accounts::{max_keys_of, AccountService};
use super::import::{
    parse_line, AccountSettings, ImportLine, LineProblem, BATCH, MAX_LINE, MAX_LISTED_PROBLEMS,
};
use super::input::{validate_change, validate_new, FieldErrors, KeyChange, KeyInput};
use super::policy::{self, Actor, Current, Denied, UpdateRequest};
use super::rules::KeyRules;
use crate::auth::api_key::NewKey;
use crate::auth::cache::KeyCache;
use crate::clock::Clock;
use crate::domain::id::new_key_id;
use crate::domain::{AuditEntry, KeyRecord, KeyStatus, Pool};
use crate::store::users::UserStore;
use crate::store::{ImportMsg, KeyStore, NewSecret, QuotaScope, StoreError, IMPORT_CONFLICT};
use chrono::{DateTime, TimeZone, Utc};
use std::sync::Arc;
use std::time::Duration;

/// Longest regenerate grace period.
pub const MAX_GRACE: Duration = Duration::from_secs(30 * 86_400);

/// Why a key operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyServiceError {
    /// Field values that break a rule, by field (422).
    #[error("invalid fields: {}", .0.keys().cloned().collect::<Vec<_>>().join(", "))]
    Invalid(FieldErrors),
    /// Fields the actor may not set (403).
    #[error(transparent)]
    Denied(#[from] Denied),
    /// No such key, or one the actor may not see (404).
    #[error("no such key")]
    NotFound,
    /// The owner (or account) holds the tier's `max_keys` active keys (409).
    #[error("Key limit reached: tier {tier} allows {max} active keys per {per}")]
    QuotaReached {
        /// The tier.
        tier: String,
        /// Its `max_keys` (the account's own, if overridden).
        max: u64,
        /// Whose keys count: `owner` or `account`.
        per: &'static str,
    },
    /// A first key asked for by a caller who holds an active key already, or
    /// for no user at all (409).
    #[error("A first key is made once, for a user holding no active key: create more keys with POST /keys")]
    NotFirst,
    /// An account rule refused the key's account.
    #[error(transparent)]
    Account(crate::keys::accounts::AccountError),
    /// A revoked key cannot get a new secret (409).
    #[error("A revoked key cannot be regenerated")]
    Revoked,
    /// Lines of an import that break a rule; nothing was imported (422, exit 2).
    #[error("{} bad line(s); nothing was imported", .bad_lines)]
    ImportInvalid {
        /// The problems, in line order (at most [`MAX_LISTED_PROBLEMS`]).
        problems: Vec<LineProblem>,
        /// How many lines were bad in all.
        bad_lines: u64,
    },
    /// An import could not be read to its end; nothing was imported.
    #[error("could not read the import: {0}")]
    ImportRead(String),
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for KeyServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(_) => KeyServiceError::NotFound,
            StoreError::ImportConflict { line } => KeyServiceError::ImportInvalid {
                problems: vec![LineProblem {
                    line,
                    field: "hash".into(),
                    message: IMPORT_CONFLICT.into(),
                }],
                bad_lines: 1,
            },
            e => KeyServiceError::Store(e),
        }
    }
}

/// A key just created or given a new secret: its record, and the secret, which
/// is shown this once.
pub struct Issued {
    /// The stored key.
    pub record: KeyRecord,
    /// The plaintext secret (zeroized when dropped).
    pub secret: NewKey,
    /// With a grace period: when the previous secret stops working.
    pub previous_valid_until: Option<DateTime<Utc>>,
}

/// User ids by email, looked up once each during an import (at most
/// [`OwnerIds::MAX`] remembered).
#[derive(Default)]
struct OwnerIds(std::collections::HashMap<String, Option<String>>);

impl OwnerIds {
    const MAX: usize = 100_000;

    /// The id of the user whose email `owner` is, if it is one.
    async fn resolve(
        &mut self,
        users: &dyn UserStore,
        owner: &str,
    ) -> Result<Option<String>, StoreError> {
        if !owner.contains('@') {
            return Ok(None);
        }
        if let Some(known) = self.0.get(owner) {
            return Ok(known.clone());
        }
        let id = users.user_by_email(owner).await?.map(|u| u.id);
        if self.0.len() < Self::MAX {
            self.0.insert(owner.to_string(), id.clone());
        }
        Ok(id)
    }
}

/// The key lifecycle over a store.
pub struct KeyService {
    store: Arc<dyn KeyStore>,
    cache: Option<KeyCache>,
    clock: Arc<dyn Clock>,
    /// The account rules, on stores that keep accounts.
    accounts: Option<Arc<AccountService>>,
}

impl KeyService {
    /// A service over `store`; `cache` (this process's key cache, if it serves
    /// requests) is invalidated at once when a key changes; time from `clock`.
    pub fn new(store: Arc<dyn KeyStore>, cache: Option<KeyCache>, clock: Arc<dyn Clock>) -> Self {
        KeyService {
            store,
            cache,
            clock,
            accounts: None,
        }
    }

    /// The same service, putting every new key in an account through `accounts`.
    pub fn with_accounts(mut self, accounts: Option<Arc<AccountService>>) -> Self {
        self.accounts = accounts;
        self
    }

    /// The account rules, on stores that keep accounts.
    pub fn accounts(&self) -> Option<&Arc<AccountService>> {
        self.accounts.as_ref()
    }

    fn now(&self) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(self.clock.now_ms() as i64)
            .single()
            .unwrap_or_default()
    }

    fn forget(&self, id: &str) {
        if let Some(cache) = &self.cache {
            cache.invalidate_key_id(id);
        }
    }

    /// The audit entry of `actor` doing `action` to `target` now.
    fn audit(
        &self,
        actor: &Actor<'_>,
        action: &'static str,
        target: &str,
        fields: Vec<String>,
    ) -> AuditEntry {
        AuditEntry::new(&actor.audit_origin(), action, target, fields, self.now())
    }

    /// Creates a key for `actor`: validates `input`, applies the key rules, and
    /// stores it within its tier's `max_keys`.
    pub async fn create(
        &self,
        rules: &KeyRules<'_>,
        actor: &Actor<'_>,
        input: KeyInput,
    ) -> Result<Issued, KeyServiceError> {
        self.issue(rules, actor, input, false).await
    }

    /// Creates a user's first key, by the rules of [`Self::create`], only while
    /// its owner holds no active key in any tier ([`KeyServiceError::NotFirst`]
    /// otherwise); counted and stored in one transaction, so concurrent calls get
    /// one key. An ownerless key has no first.
    pub async fn create_first(
        &self,
        rules: &KeyRules<'_>,
        actor: &Actor<'_>,
        input: KeyInput,
    ) -> Result<Issued, KeyServiceError> {
        self.issue(rules, actor, input, true).await
    }

    async fn issue(
        &self,
        rules: &KeyRules<'_>,
        actor: &Actor<'_>,
        input: KeyInput,
        first: bool,
    ) -> Result<Issued, KeyServiceError> {
        let valid = validate_new(&input, &rules.tier_names(), self.now())
            .map_err(KeyServiceError::Invalid)?;
        // The account comes first: a user's keys get their account's plan.
        let account = match &self.accounts {
            Some(accounts) => Some(
                accounts
                    .for_new_key(
                        rules,
                        actor,
                        valid.account.as_deref(),
                        // The owner the key will get: the one named, else the
                        // actor (as the key policy gives it).
                        valid.owner.as_deref().or(actor.subject),
                        valid.tier.as_deref(),
                    )
                    .await
                    .map_err(KeyServiceError::Account)?,
            ),
            None if valid.account.is_some() => {
                let mut errors = FieldErrors::new();
                errors.insert(
                    "account".into(),
                    "this store keeps no accounts: use store.kind sqlite or postgres".into(),
                );
                return Err(KeyServiceError::Invalid(errors));
            }
            None => None,
        };
        let plan = account
            .as_ref()
            .map_or(rules.default_tier, |(a, _)| &a.plan);
        // A plan no longer configured falls back to the default tier.
        let plan = if rules.tiers.contains_key(plan) {
            plan
        } else {
            rules.default_tier
        };
        let mut grants = rules.grants();
        grants.user_tier = plan;
        let admitted = policy::admit_create(
            actor,
            &grants,
            plan,
            policy::CreateRequest {
                tier: valid.tier,
                scopes: valid.scopes,
                credits: valid.credits,
                refill: valid.refill,
                expires_at: valid.expires_at,
                org: valid.org,
                owner: valid
                    .owner
                    .or_else(|| account.as_ref().and_then(|(_, user)| user.clone())),
                cap: valid.cap.is_some(),
            },
        )?;
        // On a `pool: account` tier with an account, the account's balance pays:
        // the key has none of its own, and asking for one is a mistake said aloud.
        let pooled = account.is_some() && rules.pool(&admitted.tier) == Pool::Account;
        if let (Some(accounts), Some((a, _))) = (&self.accounts, account.as_ref()) {
            if pooled {
                accounts
                    .meter_for(rules, actor, a.clone(), &admitted.tier)
                    .await
                    .map_err(KeyServiceError::Account)?;
            }
        }
        if pooled && (valid.credits.is_some() || valid.refill.is_some()) {
            let mut errors = FieldErrors::new();
            let why = "on this tier the credits are the account's: \
                       POST /v1/accounts/{id}/credits (keygate accounts add-credits)";
            for (field, given) in [
                ("credits", valid.credits.is_some()),
                ("refill", valid.refill.is_some()),
            ] {
                if given {
                    errors.insert(field.into(), why.into());
                }
            }
            return Err(KeyServiceError::Invalid(errors));
        }
        // A key under a refill starts with the refill's amount (unless told
        // otherwise), as this period's refill.
        let refill = rules
            .refill_of(&admitted.tier, admitted.refill)
            .filter(|_| !pooled);
        let credits = match (valid.credits, refill) {
            _ if pooled => None,
            (None, Some(r)) => Some(i64::try_from(r.amount).unwrap_or(i64::MAX)),
            _ => admitted.credits,
        };
        let refilled_at = refill
            .and_then(|r| DateTime::from_timestamp(r.every.period_start(self.clock.now_ms()), 0));
        let secret = rules.key_format.generate(valid.environment);
        let record = KeyRecord {
            id: new_key_id(),
            name: valid.name,
            prefix: secret.prefix.clone(),
            last4: secret.last4.clone(),
            tier: admitted.tier,
            scopes: admitted.scopes,
            environment: valid.environment,
            org: admitted.org,
            owner: admitted.owner,
            account: account.as_ref().map(|(a, _)| a.id.clone()),
            cap: valid.cap,
            status: KeyStatus::Active,
            credits,
            refill: admitted.refill,
            refilled_at,
            allowed_ips: valid.allowed_ips,
            expires_at: admitted.expires_at,
            created_at: self.now(),
            last_used_at: None,
            secret_valid_until: None,
            account_gate: None,
        };
        if first && record.owner.is_none() {
            return Err(KeyServiceError::NotFirst);
        }
        let quota = match &account {
            _ if first => Some((1, QuotaScope::OwnerAnyTier)),
            Some((a, _)) if rules.pool(&record.tier) == Pool::Account => {
                max_keys_of(rules, a, &record.tier).map(|max| (max, QuotaScope::Account))
            }
            _ => rules
                .max_keys(&record.tier)
                .map(|max| (max, QuotaScope::Owner)),
        };
        let audit = self.audit(actor, "key.created", &record.id, created_fields(&record));
        let stored = match quota {
            Some((max, scope)) => {
                self.store
                    .insert_within_quota(&record, &secret.hash, max, scope, &audit)
                    .await
            }
            None => self.store.insert(&record, &secret.hash, &audit).await,
        };
        stored.map_err(|e| match e {
            StoreError::QuotaExceeded { .. } if first => KeyServiceError::NotFirst,
            StoreError::QuotaExceeded { max } => KeyServiceError::QuotaReached {
                tier: record.tier.clone(),
                max,
                per: match quota {
                    Some((_, QuotaScope::Account)) => "account",
                    _ => "owner",
                },
            },
            e => e.into(),
        })?;
        if let Some(cache) = &self.cache {
            cache.invalidate(&secret.hash);
        }
        Ok(Issued {
            record: self.present(rules, record),
            secret,
            previous_valid_until: None,
        })
    }

    /// A stored record as every door shows it: with the refill in force (its own
    /// or its tier's) and, when a refill is due, the balance and `refilled_at` the
    /// key's next use will find (the store applies it then, once).
    fn present(&self, rules: &KeyRules<'_>, mut r: KeyRecord) -> KeyRecord {
        r.refill = rules.refill_of(&r.tier, r.refill);
        if let Some(refill) = r.refill {
            let due = refill.due_at(self.clock.now_ms());
            let (credits, at) = due.apply(r.credits, r.refilled_at.map(|t| t.timestamp()));
            r.credits = credits;
            r.refilled_at = at.and_then(|t| DateTime::from_timestamp(t, 0));
        }
        r
    }

    /// The stored key `id`, if `actor` may see it (another owner's key is "not
    /// found").
    async fn find(&self, actor: &Actor<'_>, id: &str) -> Result<KeyRecord, KeyServiceError> {
        match self.store.get(id).await? {
            Some(r) if actor.may_manage(r.owner.as_deref()) => Ok(r),
            _ => Err(KeyServiceError::NotFound),
        }
    }

    /// The key `id`, if `actor` may see it (another owner's key is "not found").
    pub async fn get(
        &self,
        rules: &KeyRules<'_>,
        actor: &Actor<'_>,
        id: &str,
    ) -> Result<KeyRecord, KeyServiceError> {
        Ok(self.present(rules, self.find(actor, id).await?))
    }

    /// The key `id` as its holder sees it: the caller authenticated with that very
    /// key (`verify`, `credits`), so no owner check applies.
    pub async fn held(&self, rules: &KeyRules<'_>, id: &str) -> Result<KeyRecord, KeyServiceError> {
        let record = self.store.get(id).await?.ok_or(KeyServiceError::NotFound)?;
        Ok(self.present(rules, record))
    }

    /// The keys `actor` may see, newest first.
    pub async fn list(
        &self,
        rules: &KeyRules<'_>,
        actor: &Actor<'_>,
    ) -> Result<Vec<KeyRecord>, KeyServiceError> {
        let stored = match actor.owner_filter() {
            None => self.store.list().await?,
            Some(owner) => self.store.list_by_owner(owner).await?,
        };
        Ok(stored.into_iter().map(|r| self.present(rules, r)).collect())
    }

    /// A page of the keys `actor` may see (see [`KeyStore::list_page`]): at most
    /// `limit`, after the key with id `after`.
    pub async fn list_page(
        &self,
        rules: &KeyRules<'_>,
        actor: &Actor<'_>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<KeyRecord>, KeyServiceError> {
        let stored = self
            .store
            .list_page(actor.owner_filter(), after, limit)
            .await?;
        Ok(stored.into_iter().map(|r| self.present(rules, r)).collect())
    }

    /// Changes the key `id`: validates `change`, applies the key rules, and keeps a
    /// re-tiered active key within its new tier's `max_keys`.
    pub async fn update(
        &self,
        rules: &KeyRules<'_>,
        actor: &Actor<'_>,
        id: &str,
        change: KeyChange,
    ) -> Result<KeyRecord, KeyServiceError> {
        let current = self.find(actor, id).await?;
        let patch = validate_change(&change, &rules.tier_names(), self.now())
            .map_err(KeyServiceError::Invalid)?;
        policy::admit_update(
            actor,
            &rules.grants(),
            Current {
                tier: &current.tier,
                scopes: &current.scopes,
                credits: current.credits,
                refill: current.refill,
                expires_at: current.expires_at,
            },
            &UpdateRequest {
                tier: patch.tier.as_deref(),
                scopes: patch.scopes.as_deref(),
                credits: patch.credits,
                refill: patch.refill,
                expires_at: patch.expires_at,
                cap: patch.cap.is_some(),
            },
        )?;
        if let (Some(tier), Some(owner)) = (&patch.tier, &current.owner) {
            if *tier != current.tier && current.status == KeyStatus::Active {
                if let Some(max) = rules.max_keys(tier) {
                    if self.store.count_active(owner, tier).await? >= max {
                        return Err(KeyServiceError::QuotaReached {
                            tier: tier.clone(),
                            max,
                            per: "owner",
                        });
                    }
                }
            }
        }
        let audit = self.audit(actor, "key.updated", id, patch.field_names());
        let updated = self.store.update(id, &patch, &audit).await?;
        self.forget(id);
        Ok(self.present(rules, updated))
    }

    /// Revokes the key `id`; refused by every replica from then on.
    pub async fn revoke(
        &self,
        rules: &KeyRules<'_>,
        actor: &Actor<'_>,
        id: &str,
    ) -> Result<KeyRecord, KeyServiceError> {
        self.find(actor, id).await?;
        let audit = self.audit(actor, "key.revoked", id, vec!["status".into()]);
        self.store.revoke(id, &audit).await?;
        self.forget(id);
        let record = self.store.get(id).await?.ok_or(KeyServiceError::NotFound)?;
        Ok(self.present(rules, record))
    }

    /// Imports keys from JSON Lines (docs/configuration.md, Importing keys), all or
    /// nothing: every line is checked, and only if none is bad does the one store
    /// transaction commit. Blank lines are skipped. Lines are read as they come
    /// (nothing but the current batch is held); a read error abandons the import.
    /// Returns how many keys were written. Only an operator or an admin may import.
    ///
    /// An `owner` that is the email of one of `users` becomes that user's id, so the
    /// key shows on the user's portal pages; any other owner is kept as written.
    pub async fn import<I>(
        &self,
        rules: &KeyRules<'_>,
        actor: &Actor<'_>,
        users: Option<&dyn UserStore>,
        lines: I,
    ) -> Result<u64, KeyServiceError>
    where
        I: Iterator<Item = std::io::Result<String>> + Send,
    {
        policy::admit_import(actor)?;
        let (feed, receiver) = tokio::sync::mpsc::channel(2);
        let store = self.store.clone();
        let writer = tokio::spawn(async move { store.import(receiver).await });
        let now = self.now();
        let tiers = rules.tier_names();
        let mut problems: Vec<LineProblem> = Vec::new();
        let mut bad_lines = 0u64;
        let mut batch = Vec::with_capacity(BATCH);
        // Only a serving process has a cache to tell.
        let mut touched = Vec::new();
        let mut writer_gone = false;
        let mut owners = OwnerIds::default();
        let mut settings = AccountSettings::default();
        let mut touched_accounts: Vec<String> = Vec::new();
        for (i, line) in lines.enumerate() {
            let n = i as u64 + 1;
            let text = match line {
                Ok(t) => t,
                Err(e) => {
                    drop(feed);
                    let _ = writer.await;
                    return Err(KeyServiceError::ImportRead(format!("line {n}: {e}")));
                }
            };
            if text.trim().is_empty() {
                continue;
            }
            let parsed = if text.len() > MAX_LINE {
                Err(vec![LineProblem {
                    line: n,
                    field: "line".into(),
                    message: format!("longer than {MAX_LINE} bytes"),
                }])
            } else {
                parse_line(n, &text, rules, &tiers, now)
            };
            // What the line says of its account must agree with what earlier
            // lines said of it.
            let parsed = parsed.and_then(|line| {
                let setting = match &line {
                    ImportLine::Key(k) => k.account_setting.clone(),
                    ImportLine::Account(s) => Some(s.clone()),
                };
                match setting {
                    Some(s) => settings.merge(s).map(|()| line),
                    None => Ok(line),
                }
            });
            match parsed {
                Ok(ImportLine::Account(_)) => {}
                Ok(ImportLine::Key(mut key)) if bad_lines == 0 && !writer_gone => {
                    if let (Some(users), Some(owner)) = (users, &key.record.owner) {
                        if let Some(id) = owners.resolve(users, owner).await? {
                            key.record.owner = Some(id);
                        }
                    }
                    if self.cache.is_some() {
                        touched.push((key.record.id.clone(), key.hash));
                    }
                    batch.push(*key);
                    if batch.len() == BATCH {
                        let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                        writer_gone = feed.send(ImportMsg::Keys(full)).await.is_err();
                    }
                }
                Ok(_) => {}
                Err(found) => {
                    bad_lines += 1;
                    let room = MAX_LISTED_PROBLEMS.saturating_sub(problems.len());
                    problems.extend(found.into_iter().take(room));
                }
            }
        }
        if bad_lines > 0 {
            drop(feed);
            let _ = writer.await;
            return Err(KeyServiceError::ImportInvalid {
                problems,
                bad_lines,
            });
        }
        if !writer_gone {
            if !batch.is_empty() {
                let _ = feed.send(ImportMsg::Keys(batch)).await;
            }
            let accounts = settings.into_list();
            if !accounts.is_empty() {
                touched_accounts = accounts.iter().map(|a| a.id.clone()).collect();
                let fallback = rules.default_tier.to_string();
                let _ = feed.send(ImportMsg::Accounts(accounts, fallback)).await;
            }
            let audit = self.audit(actor, "keys.imported", "", Vec::new());
            let _ = feed.send(ImportMsg::Commit(audit)).await;
        }
        drop(feed);
        let written = writer
            .await
            .map_err(|e| KeyServiceError::Store(StoreError::Unavailable(e.to_string())))??;
        if let Some(cache) = &self.cache {
            for (id, hash) in &touched {
                cache.invalidate_key_id(id);
                cache.invalidate(hash);
            }
            for id in &touched_accounts {
                cache.invalidate_account(id);
            }
        }
        Ok(written)
    }

    /// Gives the key `id` a new secret, same id and settings. The old secret stops
    /// at once, or after `grace` (at most [`MAX_GRACE`]). A revoked key is refused.
    pub async fn regenerate(
        &self,
        rules: &KeyRules<'_>,
        actor: &Actor<'_>,
        id: &str,
        grace: Option<Duration>,
    ) -> Result<Issued, KeyServiceError> {
        let current = self.find(actor, id).await?;
        if current.status == KeyStatus::Revoked {
            return Err(KeyServiceError::Revoked);
        }
        if grace.is_some_and(|g| g > MAX_GRACE) {
            let mut errors = FieldErrors::new();
            errors.insert(
                "grace_period".into(),
                format!(
                    "must be at most {}",
                    crate::domain::duration::Dur(MAX_GRACE)
                ),
            );
            return Err(KeyServiceError::Invalid(errors));
        }
        let secret = rules.key_format.generate(current.environment);
        let previous_valid_until = grace
            .filter(|g| !g.is_zero())
            .and_then(|g| chrono::Duration::from_std(g).ok())
            .map(|g| self.now() + g);
        let mut fields = vec!["key".to_string()];
        if previous_valid_until.is_some() {
            fields.push("grace_period".into());
        }
        let audit = self.audit(actor, "key.regenerated", id, fields);
        let new = NewSecret {
            hash: &secret.hash,
            prefix: &secret.prefix,
            last4: &secret.last4,
        };
        self.store
            .replace_secret(id, &new, previous_valid_until, &audit)
            .await?;
        self.forget(id);
        let record = self.store.get(id).await?.ok_or(KeyServiceError::NotFound)?;
        Ok(Issued {
            record: self.present(rules, record),
            secret,
            previous_valid_until,
        })
    }
}

/// The fields a new key was given, by name, as its audit entry lists them.
fn created_fields(r: &KeyRecord) -> Vec<String> {
    let mut fields = vec!["name", "tier", "scopes", "environment"];
    for (name, set) in [
        ("owner", r.owner.is_some()),
        ("org", r.org.is_some()),
        ("account", r.account.is_some()),
        ("credits", r.credits.is_some()),
        ("refill", r.refill.is_some()),
        ("allowed_ips", !r.allowed_ips.is_empty()),
        ("expires_at", r.expires_at.is_some()),
        ("cap", r.cap.is_some()),
    ] {
        if set {
            fields.push(name);
        }
    }
    fields.into_iter().map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::config::Config;
    use crate::store::sqlite::SqliteStore;

    fn config() -> Config {
        crate::config::parse(
            "upstream: { url: 'http://127.0.0.1:1' }\ntiers:\n  free: { per_minute: 1, max_keys: 2 }\n  pro: { per_minute: 1 }\n",
        )
        .unwrap()
    }

    fn service(dir: &tempfile::TempDir, clock: Arc<ManualClock>) -> KeyService {
        let store = Arc::new(SqliteStore::open(&dir.path().join("k.db")).unwrap());
        KeyService::new(store, None, clock)
    }

    #[tokio::test]
    async fn the_lifecycle_follows_one_set_of_rules() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::at(1_800_000_000_000));
        let keys = service(&dir, clock.clone());
        let config = config();
        let format = crate::auth::key_format::KeyFormat::from_config(&config.api_keys).unwrap();
        let rules = KeyRules::new(&config, &format);
        let op = Actor::operator();
        let input = KeyInput {
            name: Some("ci".into()),
            owner: Some("alice".into()),
            ..Default::default()
        };
        let made = keys.create(&rules, &op, input.clone()).await.unwrap();
        assert_eq!(made.record.tier, "free");
        assert_eq!(
            made.record.created_at.timestamp_millis(),
            1_800_000_000_000,
            "the clock's time"
        );
        keys.create(&rules, &op, input.clone()).await.unwrap();
        assert!(matches!(
            keys.create(&rules, &op, input).await,
            Err(KeyServiceError::QuotaReached { max: 2, .. })
        ));
        let alice = Actor::user("alice", None);
        let bob = Actor::user("bob", None);
        assert_eq!(keys.list(&rules, &alice).await.unwrap().len(), 2);
        assert!(keys.list(&rules, &bob).await.unwrap().is_empty());
        assert!(matches!(
            keys.get(&rules, &bob, &made.record.id).await,
            Err(KeyServiceError::NotFound)
        ));
        let revoked = keys.revoke(&rules, &alice, &made.record.id).await.unwrap();
        assert_eq!(revoked.status, KeyStatus::Revoked);
        assert!(
            matches!(
                keys.regenerate(&rules, &op, &made.record.id, None).await,
                Err(KeyServiceError::Revoked)
            ),
            "for the operator too"
        );
        let past = KeyChange {
            expires_at: Some(Some(Utc.timestamp_opt(1_700_000_000, 0).unwrap())),
            ..Default::default()
        };
        let other = keys
            .list(&rules, &alice)
            .await
            .unwrap()
            .into_iter()
            .find(|k| k.status == KeyStatus::Active)
            .unwrap()
            .id;
        assert!(matches!(
            keys.update(&rules, &op, &other, past).await,
            Err(KeyServiceError::Invalid(e)) if e.contains_key("expires_at")
        ));
        let issued = keys
            .regenerate(&rules, &alice, &other, Some(Duration::from_secs(60)))
            .await
            .unwrap();
        assert_eq!(
            issued.previous_valid_until.unwrap().timestamp_millis(),
            1_800_000_060_000
        );
    }
}
