//! [`UserStore`] for SQLite.

use super::{unavailable, SqliteStore};
use crate::domain::canonical_email;
use crate::domain::AuditEntry;
use crate::domain::{KeyHash, UserRecord};
use crate::store::users::{Rotation, UserStore};
use crate::store::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{params, OptionalExtension, Row};

const USER_COLUMNS: &str = "id, email, name, password_hash, is_admin, created_at, disabled";

fn decode_user(row: &Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        id: row.get(0)?,
        email: row.get(1)?,
        name: row.get(2)?,
        password_hash: row.get(3)?,
        is_admin: row.get::<_, i64>(4)? != 0,
        disabled: row.get::<_, i64>(6)? != 0,
        created_at: Utc
            .timestamp_opt(row.get(5)?, 0)
            .single()
            .unwrap_or_default(),
    })
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn create_user(&self, u: &UserRecord, audit: &AuditEntry) -> Result<(), StoreError> {
        let u = u.clone();
        self.with_audited(audit, move |c| {
            let result = c.execute(
                &format!("INSERT INTO users ({USER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
                params![
                    u.id,
                    canonical_email(&u.email),
                    u.name,
                    u.password_hash,
                    u.is_admin as i64,
                    u.created_at.timestamp(),
                    u.disabled as i64
                ],
            );
            match result {
                Ok(_) => Ok(()),
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    Err(StoreError::Conflict(
                        "a user with this email already exists".into(),
                    ))
                }
                Err(e) => Err(unavailable(e)),
            }
        })
        .await
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        let email = canonical_email(email);
        self.with_conn(move |c| {
            c.query_row(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE email = ?1 COLLATE BINARY"),
                [&email],
                decode_user,
            )
            .optional()
            .map_err(unavailable)
        })
        .await
    }

    async fn user_by_id(&self, id: &str) -> Result<Option<UserRecord>, StoreError> {
        let id = id.to_string();
        self.with_conn(move |c| {
            c.query_row(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"),
                [&id],
                decode_user,
            )
            .optional()
            .map_err(unavailable)
        })
        .await
    }

    async fn insert_refresh(
        &self,
        hash: &KeyHash,
        family: &str,
        user_id: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (hash, family, user_id) = (hash.0, family.to_string(), user_id.to_string());
        let now = self.clock.now_secs() as i64;
        self.with_writer(move |c| {
            c.execute(
                "INSERT INTO refresh_tokens (token_hash, family_id, user_id, created_at, expires_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![hash.as_slice(), family, user_id, now, expires_at.timestamp()],
            )
            .map(drop)
            .map_err(unavailable)
        })
        .await
    }

    async fn rotate_refresh(
        &self,
        old: &KeyHash,
        new: &KeyHash,
        new_expires_at: DateTime<Utc>,
        reuse: &AuditEntry,
    ) -> Result<Rotation, StoreError> {
        let (old, new) = (old.0, new.0);
        let now = self.clock.now_secs() as i64;
        let mut reuse = reuse.clone();
        self.with_writer(move |c| {
            // IMMEDIATE: the read and the spend happen under one write lock, so a
            // token can be spent once even by concurrent callers.
            let tx = rusqlite::Transaction::new_unchecked(c, rusqlite::TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            let row: Option<(String, String, i64, Option<i64>, i64)> = tx
                .query_row(
                    "SELECT family_id, user_id, expires_at, used_at, \
                     revoked + (SELECT disabled FROM users u WHERE u.id = refresh_tokens.user_id) \
                     FROM refresh_tokens WHERE token_hash = ?1",
                    [old.as_slice()],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )
                .optional()
                .map_err(unavailable)?;
            let outcome = match row {
                None => Rotation::Invalid,
                Some((_, _, _, _, revoked)) if revoked != 0 => Rotation::Invalid,
                Some((family, user_id, _, Some(_), _)) => {
                    tx.execute("UPDATE refresh_tokens SET revoked = 1 WHERE family_id = ?1", [&family])
                        .map_err(unavailable)?;
                    reuse.target = user_id.clone();
                    super::write_audit(&tx, &reuse)?;
                    Rotation::Reused { user_id }
                }
                Some((_, _, expires, None, _)) if expires <= now => Rotation::Expired,
                Some((family, user_id, _, None, _)) => {
                    tx.execute("UPDATE refresh_tokens SET used_at = ?2 WHERE token_hash = ?1", params![old.as_slice(), now])
                        .map_err(unavailable)?;
                    tx.execute(
                        "INSERT INTO refresh_tokens (token_hash, family_id, user_id, created_at, expires_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![new.as_slice(), family, user_id, now, new_expires_at.timestamp()],
                    )
                    .map_err(unavailable)?;
                    Rotation::Rotated { user_id }
                }
            };
            tx.commit().map_err(unavailable)?;
            Ok(outcome)
        })
        .await
    }

    async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let entry = entry.clone();
        self.with_writer(move |c| super::write_audit(c, &entry))
            .await
    }

    async fn create_session(
        &self,
        hash: &KeyHash,
        user_id: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (hash, user_id) = (hash.0, user_id.to_string());
        let now = self.clock.now_secs() as i64;
        self.with_writer(move |c| {
            c.execute(
                "DELETE FROM portal_sessions WHERE user_id = ?1 AND expires_at <= ?2",
                params![user_id, now],
            )
            .map_err(unavailable)?;
            c.execute(
                "INSERT INTO portal_sessions (token_hash, user_id, created_at, expires_at) \
                 VALUES (?1, ?2, ?3, ?4)",
                params![hash.as_slice(), user_id, now, expires_at.timestamp()],
            )
            .map(drop)
            .map_err(unavailable)
        })
        .await
    }

    async fn session_user(&self, hash: &KeyHash) -> Result<Option<UserRecord>, StoreError> {
        let hash = hash.0;
        let now = self.clock.now_secs() as i64;
        self.with_conn(move |c| {
            c.query_row(
                "SELECT u.id, u.email, u.name, u.password_hash, u.is_admin, u.created_at, \
                 u.disabled FROM portal_sessions s JOIN users u ON u.id = s.user_id \
                 WHERE s.token_hash = ?1 AND s.expires_at > ?2 AND u.disabled = 0",
                params![hash.as_slice(), now],
                decode_user,
            )
            .optional()
            .map_err(unavailable)
        })
        .await
    }

    async fn end_session(&self, hash: &KeyHash) -> Result<(), StoreError> {
        let hash = hash.0;
        self.with_writer(move |c| {
            c.execute(
                "DELETE FROM portal_sessions WHERE token_hash = ?1",
                [hash.as_slice()],
            )
            .map(drop)
            .map_err(unavailable)
        })
        .await
    }

    async fn shared_secret(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>, StoreError> {
        let (name, candidate) = (name.to_string(), candidate.to_vec());
        let now = self.clock.now_utc().timestamp();
        self.with_writer(move |c| {
            c.execute(
                "INSERT OR IGNORE INTO secrets (name, value, created_at) VALUES (?1, ?2, ?3)",
                params![name, candidate, now],
            )
            .and_then(|_| {
                c.query_row("SELECT value FROM secrets WHERE name = ?1", [&name], |r| {
                    r.get(0)
                })
            })
            .map_err(unavailable)
        })
        .await
    }

    async fn list_users(
        &self,
        email: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<UserRecord>, StoreError> {
        let (email, after) = (email.map(canonical_email), after.map(str::to_string));
        self.with_conn(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE (?1 IS NULL OR email = ?1 COLLATE BINARY) \
                     AND (?2 IS NULL OR id > ?2) ORDER BY id LIMIT ?3"
                ))
                .map_err(unavailable)?;
            let rows = stmt
                .query_map(params![email, after, limit as i64], decode_user)
                .map_err(unavailable)?;
            rows.map(|r| r.map_err(unavailable)).collect()
        })
        .await
    }

    async fn set_disabled(
        &self,
        id: &str,
        disabled: bool,
        audit: &AuditEntry,
    ) -> Result<UserRecord, StoreError> {
        let id = id.to_string();
        self.with_audited(audit, move |tx| {
            let n = tx
                .execute(
                    "UPDATE users SET disabled = ?2 WHERE id = ?1",
                    params![id, disabled as i64],
                )
                .map_err(unavailable)?;
            if n == 0 {
                return Err(StoreError::NotFound(id));
            }
            if disabled {
                end_everything(tx, &id, None)?;
            }
            tx.query_row(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"),
                [&id],
                decode_user,
            )
            .map_err(unavailable)
        })
        .await
    }

    async fn delete_user(&self, id: &str, audit: &AuditEntry) -> Result<(), StoreError> {
        let id = id.to_string();
        self.with_audited(audit, move |c| {
            // Sessions, refresh tokens and reset links go with the row (cascades).
            match c.execute("DELETE FROM users WHERE id = ?1", [&id]) {
                Ok(0) => Err(StoreError::NotFound(id)),
                Ok(_) => Ok(()),
                Err(e) => Err(unavailable(e)),
            }
        })
        .await
    }

    async fn set_password(
        &self,
        id: &str,
        password_hash: &str,
        keep: Option<&KeyHash>,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let (id, phc, keep) = (id.to_string(), password_hash.to_string(), keep.map(|k| k.0));
        self.with_audited(audit, move |tx| {
            let n = tx
                .execute(
                    "UPDATE users SET password_hash = ?2 WHERE id = ?1",
                    params![id, phc],
                )
                .map_err(unavailable)?;
            if n == 0 {
                return Err(StoreError::NotFound(id));
            }
            end_everything(tx, &id, keep.as_ref())
        })
        .await
    }

    async fn create_password_reset(
        &self,
        hash: &KeyHash,
        user_id: &str,
        expires_at: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let (hash, user_id) = (hash.0, user_id.to_string());
        let now = self.clock.now_secs() as i64;
        self.with_audited(audit, move |tx| {
            tx.execute("DELETE FROM password_resets WHERE user_id = ?1", [&user_id])
                .map_err(unavailable)?;
            tx.execute(
                "INSERT INTO password_resets (token_hash, user_id, created_at, expires_at) \
                 VALUES (?1, ?2, ?3, ?4)",
                params![hash.as_slice(), user_id, now, expires_at.timestamp()],
            )
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    StoreError::NotFound(user_id.clone())
                }
                e => unavailable(e),
            })
            .map(drop)
        })
        .await
    }

    async fn take_password_reset(&self, hash: &KeyHash) -> Result<Option<String>, StoreError> {
        let hash = hash.0;
        let now = self.clock.now_secs() as i64;
        self.with_writer(move |c| {
            c.query_row(
                "UPDATE password_resets SET used_at = ?2 \
                 WHERE token_hash = ?1 AND used_at IS NULL AND expires_at > ?2 RETURNING user_id",
                params![hash.as_slice(), now],
                |r| r.get(0),
            )
            .optional()
            .map_err(unavailable)
        })
        .await
    }

    async fn peek_password_reset(&self, hash: &KeyHash) -> Result<Option<String>, StoreError> {
        let hash = hash.0;
        let now = self.clock.now_secs() as i64;
        self.with_conn(move |c| {
            c.query_row(
                "SELECT user_id FROM password_resets \
                 WHERE token_hash = ?1 AND used_at IS NULL AND expires_at > ?2",
                params![hash.as_slice(), now],
                |r| r.get(0),
            )
            .optional()
            .map_err(unavailable)
        })
        .await
    }
}

/// Ends every portal session (but `keep`) and refresh-token family of `user_id`
/// (the caller holds the transaction).
fn end_everything(
    c: &rusqlite::Connection,
    user_id: &str,
    keep: Option<&[u8; 32]>,
) -> Result<(), StoreError> {
    c.execute(
        "DELETE FROM portal_sessions WHERE user_id = ?1 AND (?2 IS NULL OR token_hash != ?2)",
        params![user_id, keep.map(|k| k.as_slice())],
    )
    .map_err(unavailable)?;
    c.execute(
        "UPDATE refresh_tokens SET revoked = 1 WHERE user_id = ?1",
        [user_id],
    )
    .map(drop)
    .map_err(unavailable)
}
