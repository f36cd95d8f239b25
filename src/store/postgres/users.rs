//! [`UserStore`] for PostgreSQL.

use super::pool::db_error;
use super::PostgresStore;
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
    })
}

#[async_trait]
impl UserStore for PostgresStore {
    async fn create_user(&self, u: &UserRecord) -> Result<(), StoreError> {
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
        match self.pool.execute(SQL, &params).await {
            Ok(_) => Ok(()),
            Err(StoreError::Conflict(_)) => Err(StoreError::Conflict(
                "a user with this email already exists".into(),
            )),
            Err(e) => Err(e),
        }
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        const SQL: &str = "SELECT id, email, name, password_hash, is_admin, created_at \
             FROM users WHERE email = $1";
        let email = canonical_email(email);
        self.pool
            .query_opt(SQL, &[&email])
            .await?
            .map(|r| decode_user(&r))
            .transpose()
    }

    async fn user_by_id(&self, id: &str) -> Result<Option<UserRecord>, StoreError> {
        const SQL: &str = "SELECT id, email, name, password_hash, is_admin, created_at \
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
    ) -> Result<Rotation, StoreError> {
        let (old, new) = (old.0.as_slice(), new.0.as_slice());
        let now = self.clock.now_utc();
        let work = async |client: &mut tokio_postgres::Client| {
            // The row lock makes a token spendable once even by concurrent callers on
            // different replicas: the second waits, then sees it spent.
            let tx = client.transaction().await?;
            let row = tx
                .query_opt(
                    "SELECT family_id, user_id, expires_at, used_at, revoked \
                     FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE",
                    &[&old],
                )
                .await?;
            let outcome = match row {
                None => Rotation::Invalid,
                Some(r) if r.get::<_, bool>(4) => Rotation::Invalid,
                Some(r) if r.get::<_, Option<DateTime<Utc>>>(3).is_some() => {
                    let family: String = r.get(0);
                    tx.execute(
                        "UPDATE refresh_tokens SET revoked = true WHERE family_id = $1",
                        &[&family],
                    )
                    .await?;
                    Rotation::Reused
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
            "SELECT u.id, u.email, u.name, u.password_hash, u.is_admin, u.created_at \
             FROM portal_sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2";
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
}
