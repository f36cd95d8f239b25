//! [`AccountStore`] for PostgreSQL.

use super::pool::db_error;
use super::{decode, PostgresStore};
use crate::domain::{
    AccountFilter, AccountPatch, AccountRecord, AccountStatus, AuditEntry, CreditChange, KeyHash,
    KeyRecord, PlanOverrides,
};
use crate::store::accounts::{AccountStore, AccountUpdated};
use crate::store::StoreError;
use async_trait::async_trait;
use tokio_postgres::Row;

/// The account columns' `SELECT`, as a literal `concat!` can extend (the pool
/// caches statements by `&'static str`).
macro_rules! select_account {
    () => {
        "SELECT id, plan, status, overrides, credits, refilled_at, metadata, owner, created_at \
         FROM accounts"
    };
}

fn decode_account(row: &Row) -> Result<AccountRecord, StoreError> {
    let id: String = row.try_get(0).map_err(db_error)?;
    let corrupt = |reason: String| StoreError::Corrupt {
        id: id.clone(),
        reason,
    };
    let status: String = row.try_get(2).map_err(db_error)?;
    let overrides: String = row.try_get(3).map_err(db_error)?;
    let metadata: String = row.try_get(6).map_err(db_error)?;
    Ok(AccountRecord {
        plan: row.try_get(1).map_err(db_error)?,
        status: AccountStatus::parse(&status)
            .ok_or_else(|| corrupt(format!("status `{status}`")))?,
        overrides: PlanOverrides::from_json(&overrides)
            .map_err(|e| corrupt(format!("overrides: {e}")))?,
        credits: row.try_get(4).map_err(db_error)?,
        refilled_at: row.try_get(5).map_err(db_error)?,
        metadata: serde_json::from_str(&metadata).map_err(|e| corrupt(format!("metadata: {e}")))?,
        owner: row.try_get(7).map_err(db_error)?,
        created_at: row.try_get(8).map_err(db_error)?,
        id,
    })
}

/// The account `id` as `tx` sees it (`None`: none, or a row that does not decode).
pub(super) async fn read_account(
    tx: &tokio_postgres::Transaction<'_>,
    id: &str,
) -> Result<Option<AccountRecord>, tokio_postgres::Error> {
    const SQL: &str = concat!(select_account!(), " WHERE id = $1");
    let row = tx.query_opt(SQL, &[&id]).await?;
    Ok(row.and_then(|r| decode_account(&r).ok()))
}

#[async_trait]
impl AccountStore for PostgresStore {
    async fn account(&self, id: &str) -> Result<Option<AccountRecord>, StoreError> {
        const SQL: &str = concat!(select_account!(), " WHERE id = $1");
        self.pool
            .query_opt(SQL, &[&id])
            .await?
            .map(|r| decode_account(&r))
            .transpose()
    }

    async fn account_of_owner(&self, owner: &str) -> Result<Option<AccountRecord>, StoreError> {
        const SQL: &str = concat!(select_account!(), " WHERE owner = $1");
        self.pool
            .query_opt(SQL, &[&owner])
            .await?
            .map(|r| decode_account(&r))
            .transpose()
    }

    async fn ensure_account(&self, r: &AccountRecord) -> Result<AccountRecord, StoreError> {
        // Both the id and the owner are unique: a concurrent insert of either
        // makes this one do nothing, and the stored account is read back.
        const INSERT: &str = "INSERT INTO accounts \
             (id, plan, status, overrides, credits, refilled_at, metadata, owner, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING";
        let (status, overrides, metadata) = (
            r.status.as_str(),
            r.overrides.to_json(),
            r.metadata.to_string(),
        );
        self.pool
            .execute(
                INSERT,
                &[
                    &r.id,
                    &r.plan,
                    &status,
                    &overrides,
                    &r.credits,
                    &r.refilled_at,
                    &metadata,
                    &r.owner,
                    &r.created_at,
                ],
            )
            .await?;
        if let Some(found) = self.account(&r.id).await? {
            return Ok(found);
        }
        match &r.owner {
            Some(owner) => self.account_of_owner(owner).await?,
            None => None,
        }
        .ok_or_else(|| StoreError::Unavailable("the account was not stored".into()))
    }

    async fn list_accounts(&self, f: &AccountFilter) -> Result<Vec<AccountRecord>, StoreError> {
        const SQL: &str = concat!(
            select_account!(),
            " WHERE ($1::text IS NULL OR owner = $1) AND ($2::text IS NULL OR plan = $2) \
              AND ($3::text IS NULL OR status = $3) AND ($4::text IS NULL OR id > $4) \
              AND ($6::text IS NULL OR EXISTS (SELECT 1 FROM api_keys k \
                   WHERE k.account = accounts.id AND k.org = $6)) \
              ORDER BY id LIMIT $5",
        );
        let status = f.status.map(|s| s.as_str());
        let limit = f.limit as i64;
        self.pool
            .query(SQL, &[&f.owner, &f.plan, &status, &f.after, &limit, &f.org])
            .await?
            .iter()
            .map(decode_account)
            .collect()
    }

    async fn update_account(
        &self,
        id: &str,
        patch: &AccountPatch,
        audit: &AuditEntry,
    ) -> Result<AccountUpdated, StoreError> {
        const LOCK: &str = "SELECT plan FROM accounts WHERE id = $1 FOR UPDATE";
        const PLAN: &str = "UPDATE accounts SET plan = $2 WHERE id = $1";
        const MOVE_KEYS: &str = "UPDATE api_keys SET tier = $3 WHERE account = $1 AND tier = $2";
        const STATUS: &str = "UPDATE accounts SET status = $2 WHERE id = $1";
        const OVERRIDES: &str = "UPDATE accounts SET overrides = $2 WHERE id = $1";
        const METADATA: &str = "UPDATE accounts SET metadata = $2 WHERE id = $1";
        let overrides = patch.overrides.map(|o| o.to_json());
        let metadata = patch.metadata.as_ref().map(|m| m.to_string());
        let status = patch.status.map(|s| s.as_str());
        let work = async |client: &mut tokio_postgres::Client| {
            let tx = client.transaction().await?;
            let Some(row) = tx.query_opt(LOCK, &[&id]).await? else {
                return Ok(None);
            };
            let current: String = row.try_get(0)?;
            let mut moved = 0;
            if let Some(plan) = patch.plan.as_ref().filter(|p| **p != current) {
                tx.execute(PLAN, &[&id, plan]).await?;
                moved = tx.execute(MOVE_KEYS, &[&id, &current, plan]).await?;
            }
            if let Some(s) = &status {
                tx.execute(STATUS, &[&id, s]).await?;
            }
            if let Some(o) = &overrides {
                tx.execute(OVERRIDES, &[&id, o]).await?;
            }
            if let Some(m) = &metadata {
                tx.execute(METADATA, &[&id, m]).await?;
            }
            super::write_audit(&tx, audit).await?;
            tx.commit().await?;
            Ok(Some(moved))
        };
        let keys_moved = self
            .pool
            .write_transaction("account update", work)
            .await?
            .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        let account = self
            .account(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        Ok(AccountUpdated {
            account,
            keys_moved,
        })
    }

    async fn change_account_credits(
        &self,
        id: &str,
        change: CreditChange,
        audit: &AuditEntry,
    ) -> Result<AccountRecord, StoreError> {
        const ADD: &str =
            "UPDATE accounts SET credits = GREATEST(0, COALESCE(credits, 0) + $2) WHERE id = $1";
        const SET: &str = "UPDATE accounts SET credits = $2 WHERE id = $1";
        let work = async |client: &mut tokio_postgres::Client| {
            let tx = client.transaction().await?;
            let changed = match change {
                CreditChange::Add(n) => tx.execute(ADD, &[&id, &n]).await?,
                CreditChange::Set(n) => tx.execute(SET, &[&id, &n]).await?,
            };
            if changed == 0 {
                return Ok(false);
            }
            super::write_audit(&tx, audit).await?;
            tx.commit().await.map(|_| true)
        };
        if !self.pool.write_transaction("credits", work).await? {
            return Err(StoreError::NotFound(id.to_string()));
        }
        self.account(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(id.to_string()))
    }

    async fn keys_of_account(&self, id: &str) -> Result<Vec<KeyRecord>, StoreError> {
        const SQL: &str = "SELECT id, name, prefix, last4, tier, scopes, environment, org, owner, \
             status, credits, allowed_ips, expires_at, created_at, last_used_at, \
             refill_amount, refill_every, refilled_at, account, cap \
             FROM api_keys WHERE account = $1 ORDER BY created_at DESC, id";
        self.pool
            .query(SQL, &[&id])
            .await?
            .iter()
            .map(decode)
            .collect()
    }

    async fn export_keys(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(KeyRecord, KeyHash)>, StoreError> {
        const SQL: &str = "SELECT id, name, prefix, last4, tier, scopes, environment, org, owner, \
             status, credits, allowed_ips, expires_at, created_at, last_used_at, \
             refill_amount, refill_every, refilled_at, account, cap, \
             NULL::timestamptz, NULL::text, NULL::text, NULL::bigint, key_hash \
             FROM api_keys WHERE ($1::text IS NULL OR id > $1) ORDER BY id LIMIT $2";
        // `decode` reads columns 0-19 (20-23 are find_by_hash's: NULL here).
        let limit = limit as i64;
        self.pool
            .query(SQL, &[&after, &limit])
            .await?
            .iter()
            .map(|row| {
                let record = decode(row)?;
                let hash: Vec<u8> = row.try_get(24).map_err(db_error)?;
                let hash: [u8; 32] = hash.try_into().map_err(|_| StoreError::Corrupt {
                    id: record.id.clone(),
                    reason: "key_hash is not 32 bytes".into(),
                })?;
                Ok((record, KeyHash(hash)))
            })
            .collect()
    }
}
