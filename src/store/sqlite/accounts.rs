//! [`AccountStore`] for SQLite.

use super::{decode, unavailable, SqliteStore, COLUMNS};
use crate::domain::{
    AccountFilter, AccountPatch, AccountRecord, AccountStatus, AuditEntry, CreditChange, KeyHash,
    KeyRecord, PlanOverrides,
};
use crate::store::accounts::{AccountStore, AccountUpdated};
use crate::store::StoreError;
use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use rusqlite::{params, Connection, OptionalExtension, Row};

const ACCOUNT_COLUMNS: &str =
    "id, plan, status, overrides, credits, refilled_at, metadata, owner, created_at";

fn decode_account(row: &Row<'_>) -> rusqlite::Result<Result<AccountRecord, StoreError>> {
    let id: String = row.get(0)?;
    let corrupt = |reason: String| StoreError::Corrupt {
        id: id.clone(),
        reason,
    };
    let status: String = row.get(2)?;
    let overrides: String = row.get(3)?;
    let metadata: String = row.get(6)?;
    let at = |secs: Option<i64>| secs.and_then(|s| Utc.timestamp_opt(s, 0).single());
    let record = (|| {
        Ok(AccountRecord {
            plan: row.get(1).map_err(|e| corrupt(e.to_string()))?,
            status: AccountStatus::parse(&status)
                .ok_or_else(|| corrupt(format!("status `{status}`")))?,
            overrides: PlanOverrides::from_json(&overrides)
                .map_err(|e| corrupt(format!("overrides: {e}")))?,
            credits: row.get(4).map_err(|e| corrupt(e.to_string()))?,
            refilled_at: at(row.get(5).map_err(|e| corrupt(e.to_string()))?),
            metadata: serde_json::from_str(&metadata)
                .map_err(|e| corrupt(format!("metadata: {e}")))?,
            owner: row.get(7).map_err(|e| corrupt(e.to_string()))?,
            created_at: at(Some(row.get(8).map_err(|e| corrupt(e.to_string()))?))
                .unwrap_or_default(),
            id: id.clone(),
        })
    })();
    Ok(record)
}

pub(super) fn account_where(
    c: &Connection,
    condition: &str,
    arg: &dyn rusqlite::ToSql,
) -> Result<Option<AccountRecord>, StoreError> {
    c.prepare_cached(&format!(
        "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE {condition}"
    ))
    .map_err(unavailable)?
    .query_row([arg], decode_account)
    .optional()
    .map_err(unavailable)?
    .transpose()
}

#[async_trait]
impl AccountStore for SqliteStore {
    async fn account(&self, id: &str) -> Result<Option<AccountRecord>, StoreError> {
        let id = id.to_string();
        self.with_conn(move |c| account_where(c, "id = ?1", &id))
            .await
    }

    async fn account_of_owner(&self, owner: &str) -> Result<Option<AccountRecord>, StoreError> {
        let owner = owner.to_string();
        self.with_conn(move |c| account_where(c, "owner = ?1", &owner))
            .await
    }

    async fn ensure_account(&self, r: &AccountRecord) -> Result<AccountRecord, StoreError> {
        let r = r.clone();
        self.with_writer(move |c| {
            // On the writer: no other insert can come between these statements.
            if let Some(found) = account_where(c, "id = ?1", &r.id)? {
                return Ok(found);
            }
            if let Some(owner) = &r.owner {
                if let Some(found) = account_where(c, "owner = ?1", owner)? {
                    return Ok(found);
                }
            }
            c.execute(
                &format!(
                    "INSERT INTO accounts ({ACCOUNT_COLUMNS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                ),
                params![
                    r.id,
                    r.plan,
                    r.status.as_str(),
                    r.overrides.to_json(),
                    r.credits,
                    r.refilled_at.map(|t| t.timestamp()),
                    r.metadata.to_string(),
                    r.owner,
                    r.created_at.timestamp(),
                ],
            )
            .map_err(unavailable)?;
            Ok(r)
        })
        .await
    }

    async fn list_accounts(&self, f: &AccountFilter) -> Result<Vec<AccountRecord>, StoreError> {
        let f = f.clone();
        self.with_conn(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {ACCOUNT_COLUMNS} FROM accounts \
                     WHERE (?1 IS NULL OR owner = ?1) AND (?2 IS NULL OR plan = ?2) \
                     AND (?3 IS NULL OR status = ?3) AND (?4 IS NULL OR id > ?4) \
                     AND (?6 IS NULL OR EXISTS (SELECT 1 FROM api_keys k \
                          WHERE k.account = accounts.id AND k.org = ?6)) \
                     ORDER BY id LIMIT ?5"
                ))
                .map_err(unavailable)?;
            let rows = stmt
                .query_map(
                    params![
                        f.owner,
                        f.plan,
                        f.status.map(|s| s.as_str()),
                        f.after,
                        f.limit as i64,
                        f.org
                    ],
                    decode_account,
                )
                .map_err(unavailable)?;
            rows.map(|r| r.map_err(unavailable)?).collect()
        })
        .await
    }

    async fn update_account(
        &self,
        id: &str,
        patch: &AccountPatch,
        audit: &AuditEntry,
    ) -> Result<AccountUpdated, StoreError> {
        let (id, patch, audit) = (id.to_string(), patch.clone(), audit.clone());
        self.with_writer(move |c| {
            let tx =
                rusqlite::Transaction::new_unchecked(c, rusqlite::TransactionBehavior::Immediate)
                    .map_err(unavailable)?;
            let current =
                account_where(&tx, "id = ?1", &id)?.ok_or(StoreError::NotFound(id.clone()))?;
            let mut keys_moved = 0;
            if let Some(plan) = patch.plan.as_ref().filter(|p| **p != current.plan) {
                tx.execute(
                    "UPDATE accounts SET plan = ?2 WHERE id = ?1",
                    params![id, plan],
                )
                .map_err(unavailable)?;
                keys_moved = tx
                    .execute(
                        "UPDATE api_keys SET tier = ?3 WHERE account = ?1 AND tier = ?2",
                        params![id, current.plan, plan],
                    )
                    .map_err(unavailable)? as u64;
            }
            if let Some(status) = patch.status {
                tx.execute(
                    "UPDATE accounts SET status = ?2 WHERE id = ?1",
                    params![id, status.as_str()],
                )
                .map_err(unavailable)?;
            }
            if let Some(o) = &patch.overrides {
                tx.execute(
                    "UPDATE accounts SET overrides = ?2 WHERE id = ?1",
                    params![id, o.to_json()],
                )
                .map_err(unavailable)?;
            }
            if let Some(m) = &patch.metadata {
                tx.execute(
                    "UPDATE accounts SET metadata = ?2 WHERE id = ?1",
                    params![id, m.to_string()],
                )
                .map_err(unavailable)?;
            }
            let account =
                account_where(&tx, "id = ?1", &id)?.ok_or(StoreError::NotFound(id.clone()))?;
            super::write_audit(&tx, &audit)?;
            tx.commit().map_err(unavailable)?;
            Ok(AccountUpdated {
                account,
                keys_moved,
            })
        })
        .await
    }

    async fn change_account_credits(
        &self,
        id: &str,
        change: CreditChange,
        audit: &AuditEntry,
    ) -> Result<AccountRecord, StoreError> {
        let id = id.to_string();
        self.with_audited(audit, move |c| {
            let n = match change {
                CreditChange::Add(n) => c.execute(
                    "UPDATE accounts SET credits = MAX(0, COALESCE(credits, 0) + ?2) WHERE id = ?1",
                    params![id, n],
                ),
                CreditChange::Set(n) => c.execute(
                    "UPDATE accounts SET credits = ?2 WHERE id = ?1",
                    params![id, n],
                ),
            }
            .map_err(unavailable)?;
            if n == 0 {
                return Err(StoreError::NotFound(id));
            }
            account_where(c, "id = ?1", &id)?.ok_or(StoreError::NotFound(id))
        })
        .await
    }

    async fn keys_of_account(&self, id: &str) -> Result<Vec<KeyRecord>, StoreError> {
        let id = id.to_string();
        self.with_conn(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM api_keys WHERE account = ?1 ORDER BY created_at DESC, id"
                ))
                .map_err(unavailable)?;
            let rows = stmt.query_map([&id], decode).map_err(unavailable)?;
            rows.map(|r| r.map_err(unavailable)?).collect()
        })
        .await
    }

    async fn export_keys(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(KeyRecord, KeyHash)>, StoreError> {
        let after = after.map(str::to_string);
        self.with_conn(move |c| {
            // `decode` reads columns 0-19 (20 and on are find_by_hash's: NULL here).
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {COLUMNS}, NULL, NULL, NULL, NULL, key_hash FROM api_keys \
                     WHERE (?1 IS NULL OR id > ?1) ORDER BY id LIMIT ?2"
                ))
                .map_err(unavailable)?;
            let rows = stmt
                .query_map(params![after, limit as i64], |row| {
                    let hash: Vec<u8> = row.get(24)?;
                    Ok(decode(row)?.map(|r| (r, hash)))
                })
                .map_err(unavailable)?;
            rows.map(|r| {
                let (record, hash) = r.map_err(unavailable)??;
                let hash: [u8; 32] = hash.try_into().map_err(|_| StoreError::Corrupt {
                    id: record.id.clone(),
                    reason: "key_hash is not 32 bytes".into(),
                })?;
                Ok((record, KeyHash(hash)))
            })
            .collect()
        })
        .await
    }
}
