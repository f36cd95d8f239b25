//! [`UserStore`] for PostgreSQL.

use super::pool::db_error;
use super::PostgresStore;
use crate::domain::AuditEntry;
use crate::domain::{canonical_email, KeyHash, UserRecord};
use crate::store::users::{Rotation, UserStore};
use crate::store::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio_postgres::Row;

fn decode_user(row: &Row) -> Result<UserRecord, StoreError> {
    Ok(UserRecord {
        id: row.try_get(0).map_err(db_error)?,
        email: row.try_get(1).map_err(db_error)?,
        name: row.try_get(2).map_err(db_error)?,
        password_hash: row.try_get(3).map_err(db_error)?,
        is_admin: row.try_get(4).map_err(db_error)?,
        created_at: row.try_get(5).map_err(db_error)?,
        disabled: row.try_get(6).map_err(db_error)?,
    })
}

#[async_trait]
impl UserStore for PostgresStore {
    async fn create_user(&self, u: &UserRecord, audit: &AuditEntry) -> Result<(), StoreError> {
        const SQL: &str =
            "INSERT INTO users (id, email, name, password_hash, is_admin, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)";
        let email = canonical_email(&u.email);
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] = [
            &u.id,
            &email,
            &u.name,
            &u.password_hash,
            &u.is_admin,
            &u.created_at,
        ];
        let work = async |client: &mut tokio_postgres::Client| {
            let tx = client.transaction().await?;
            tx.execute(SQL, &params).await?;
            super::write_audit(&tx, audit).await?;
            tx.commit().await
        };
        match self.pool.write_transaction("user create", work).await {
            Ok(_) => Ok(()),
            Err(StoreError::Conflict(_)) => Err(StoreError::Conflict(
                "a user with this email already exists".into(),
            )),
            Err(e) => Err(e),
        }
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        const SQL: &str = "SELECT id, email, name, password_hash, is_admin, created_at, disabled \
             FROM users WHERE email = $1";
        let email = canonical_email(email);
        self.pool
            .query_opt(SQL, &[&email])
            .await?
            .map(|r| decode_user(&r))
            .transpose()
    }

    async fn user_by_id(&self, id: &str) -> Result<Option<UserRecord>, StoreError> {
        const SQL: &str = "SELECT id, email, name, password_hash, is_admin, created_at, disabled \
             FROM users WHERE id = $1";
        self.pool
            .query_opt(SQL, &[&id])
            .await?
            .map(|r| decode_user(&r))
            .transpose()
    }

    async fn insert_refresh(
        &self,
        hash: &KeyHash,
        family: &str,
        user_id: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        const SQL: &str =
            "INSERT INTO refresh_tokens (token_hash, family_id, user_id, created_at, expires_at) \
             VALUES ($1, $2, $3, now(), $4)";
        let hash = hash.0.as_slice();
        self.pool
            .execute(SQL, &[&hash, &family, &user_id, &expires_at])
            .await
            .map(drop)
    }

    async fn rotate_refresh(
        &self,
        old: &KeyHash,
        new: &KeyHash,
        new_expires_at: DateTime<Utc>,
        reuse: &AuditEntry,
    ) -> Result<Rotation, StoreError> {
        let (old, new) = (old.0.as_slice(), new.0.as_slice());
        let now = self.clock.now_utc();
        let work = async |client: &mut tokio_postgres::Client| {
            // The row lock makes a token spendable once even by concurrent callers on
            // different replicas: the second waits, then sees it spent.
            let tx = client.transaction().await?;
            let row = tx
                .query_opt(
                    "SELECT family_id, user_id, expires_at, used_at, \
                     revoked OR COALESCE((SELECT disabled FROM users u \
                                          WHERE u.id = refresh_tokens.user_id), false) \
                     FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE",
                    &[&old],
                )
                .await?;
            let outcome = match row {
                None => Rotation::Invalid,
                Some(r) if r.get::<_, bool>(4) => Rotation::Invalid,
                Some(r) if r.get::<_, Option<DateTime<Utc>>>(3).is_some() => {
                    let (family, user_id): (String, String) = (r.get(0), r.get(1));
                    tx.execute(
                        "UPDATE refresh_tokens SET revoked = true WHERE family_id = $1",
                        &[&family],
                    )
                    .await?;
                    let reuse = AuditEntry {
                        target: user_id.clone(),
                        ..reuse.clone()
                    };
                    super::write_audit(&tx, &reuse).await?;
                    Rotation::Reused { user_id }
                }
                Some(r) if r.get::<_, DateTime<Utc>>(2) <= now => Rotation::Expired,
                Some(r) => {
                    let (family, user_id): (String, String) = (r.get(0), r.get(1));
                    tx.execute(
                        "UPDATE refresh_tokens SET used_at = now() WHERE token_hash = $1",
                        &[&old],
                    )
                    .await?;
                    tx.execute(
                        "INSERT INTO refresh_tokens (token_hash, family_id, user_id, created_at, expires_at) \
                         VALUES ($1, $2, $3, now(), $4)",
                        &[&new, &family, &user_id, &new_expires_at],
                    )
                    .await?;
                    Rotation::Rotated { user_id }
                }
            };
            tx.commit().await?;
            Ok(outcome)
        };
        self.pool.write_transaction("refresh rotation", work).await
    }

    async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let work = async |client: &mut tokio_postgres::Client| {
            let tx = client.transaction().await?;
            super::write_audit(&tx, entry).await?;
            tx.commit().await
        };
        self.pool.write_transaction("audit", work).await
    }

    async fn create_session(
        &self,
        hash: &KeyHash,
        user_id: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let hash = hash.0.as_slice();
        let now = self.clock.now_utc();
        self.pool
            .execute(
                "DELETE FROM portal_sessions WHERE user_id = $1 AND expires_at <= $2",
                &[&user_id, &now],
            )
            .await?;
        self.pool
            .execute(
                "INSERT INTO portal_sessions (token_hash, user_id, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4)",
                &[&hash, &user_id, &now, &expires_at],
            )
            .await
            .map(drop)
    }

    async fn session_user(&self, hash: &KeyHash) -> Result<Option<UserRecord>, StoreError> {
        const SQL: &str =
            "SELECT u.id, u.email, u.name, u.password_hash, u.is_admin, u.created_at, u.disabled \
             FROM portal_sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2 AND NOT u.disabled";
        let hash = hash.0.as_slice();
        let now = self.clock.now_utc();
        self.pool
            .query_opt(SQL, &[&hash, &now])
            .await?
            .map(|r| decode_user(&r))
            .transpose()
    }

    async fn end_session(&self, hash: &KeyHash) -> Result<(), StoreError> {
        let hash = hash.0.as_slice();
        self.pool
            .execute(
                "DELETE FROM portal_sessions WHERE token_hash = $1",
                &[&hash],
            )
            .await
            .map(drop)
    }

    async fn shared_secret(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.pool
            .execute(
                "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &[&name, &candidate],
            )
            .await?;
        let row = self
            .pool
            .query_opt("SELECT value FROM secrets WHERE name = $1", &[&name])
            .await?;
        row.map(|r| r.get::<_, Vec<u8>>(0))
            .ok_or_else(|| StoreError::Unavailable(format!("secret {name} was not stored")))
    }

    async fn list_users(
        &self,
        email: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<UserRecord>, StoreError> {
        const SQL: &str = "SELECT id, email, name, password_hash, is_admin, created_at, disabled \
             FROM users WHERE ($1::text IS NULL OR email = $1) AND ($2::text IS NULL OR id > $2) \
             ORDER BY id LIMIT $3";
        let email = email.map(canonical_email);
        let limit = limit as i64;
        self.pool
            .query(SQL, &[&email, &after, &limit])
            .await?
            .iter()
            .map(decode_user)
            .collect()
    }

    async fn set_disabled(
        &self,
        id: &str,
        disabled: bool,
        audit: &AuditEntry,
    ) -> Result<UserRecord, StoreError> {
        let work = async |client: &mut tokio_postgres::Client| {
            let tx = client.transaction().await?;
            let n = tx
                .execute(
                    "UPDATE users SET disabled = $2 WHERE id = $1",
                    &[&id, &disabled],
                )
                .await?;
            if n == 0 {
                return Ok(false);
            }
            if disabled {
                end_everything(&tx, id, None).await?;
            }
            super::write_audit(&tx, audit).await?;
            tx.commit().await?;
            Ok(true)
        };
        if !self.pool.write_transaction("user disable", work).await? {
            return Err(StoreError::NotFound(id.to_string()));
        }
        self.user_by_id(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(id.to_string()))
    }

    async fn delete_user(&self, id: &str, audit: &AuditEntry) -> Result<(), StoreError> {
        // Sessions, refresh tokens and reset links go with the row (cascades).
        let work = async |client: &mut tokio_postgres::Client| {
            let tx = client.transaction().await?;
            if tx
                .execute("DELETE FROM users WHERE id = $1", &[&id])
                .await?
                == 0
            {
                return Ok(false);
            }
            super::write_audit(&tx, audit).await?;
            tx.commit().await.map(|_| true)
        };
        match self.pool.write_transaction("user delete", work).await? {
            false => Err(StoreError::NotFound(id.to_string())),
            true => Ok(()),
        }
    }

    async fn set_password(
        &self,
        id: &str,
        password_hash: &str,
        keep: Option<&KeyHash>,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let keep = keep.map(|k| k.0.to_vec());
        let work = async |client: &mut tokio_postgres::Client| {
            let tx = client.transaction().await?;
            let n = tx
                .execute(
                    "UPDATE users SET password_hash = $2 WHERE id = $1",
                    &[&id, &password_hash],
                )
                .await?;
            if n == 0 {
                return Ok(false);
            }
            end_everything(&tx, id, keep.as_deref()).await?;
            super::write_audit(&tx, audit).await?;
            tx.commit().await?;
            Ok(true)
        };
        match self.pool.write_transaction("password change", work).await? {
            true => Ok(()),
            false => Err(StoreError::NotFound(id.to_string())),
        }
    }

    async fn create_password_reset(
        &self,
        hash: &KeyHash,
        user_id: &str,
        expires_at: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let hash = hash.0.to_vec();
        let now = self.clock.now_utc();
        let work = async |client: &mut tokio_postgres::Client| {
            let tx = client.transaction().await?;
            tx.execute(
                "DELETE FROM password_resets WHERE user_id = $1",
                &[&user_id],
            )
            .await?;
            let n = tx
                .execute(
                    "INSERT INTO password_resets (token_hash, user_id, created_at, expires_at) \
                     SELECT $1, id, $3, $4 FROM users WHERE id = $2",
                    &[&hash, &user_id, &now, &expires_at],
                )
                .await?;
            if n == 0 {
                return Ok(0);
            }
            super::write_audit(&tx, audit).await?;
            tx.commit().await?;
            Ok(n)
        };
        match self.pool.write_transaction("password reset", work).await? {
            0 => Err(StoreError::NotFound(user_id.to_string())),
            _ => Ok(()),
        }
    }

    async fn take_password_reset(&self, hash: &KeyHash) -> Result<Option<String>, StoreError> {
        let hash = hash.0.as_slice();
        let now = self.clock.now_utc();
        let work = async |client: &mut tokio_postgres::Client| {
            client
                .query_opt(
                    "UPDATE password_resets SET used_at = $2 \
                     WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 \
                     RETURNING user_id",
                    &[&hash, &now],
                )
                .await
                .map(|r| r.map(|r| r.get::<_, String>(0)))
        };
        self.pool.write_transaction("password reset", work).await
    }

    async fn peek_password_reset(&self, hash: &KeyHash) -> Result<Option<String>, StoreError> {
        let hash = hash.0.as_slice();
        let now = self.clock.now_utc();
        Ok(self
            .pool
            .query_opt(
                "SELECT user_id FROM password_resets \
                 WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
                &[&hash, &now],
            )
            .await?
            .map(|r| r.get::<_, String>(0)))
    }
}

/// Ends every portal session (but `keep`) and refresh-token family of `user_id`.
async fn end_everything(
    tx: &tokio_postgres::Transaction<'_>,
    user_id: &str,
    keep: Option<&[u8]>,
) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        "DELETE FROM portal_sessions WHERE user_id = $1 \
         AND ($2::bytea IS NULL OR token_hash != $2)",
        &[&user_id, &keep],
    )
    .await?;
    tx.execute(
        "UPDATE refresh_tokens SET revoked = true WHERE user_id = $1",
        &[&user_id],
    )
    .await
    .map(drop)
}
