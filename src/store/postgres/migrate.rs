//! PostgreSQL schema migrations: numbered SQL files and one step in Rust (stored
//! emails to their canonical form), each applied once in its own transaction,
//! recorded in `keygate_migrations`. An advisory lock makes replicas
//! that start together apply them one at a time.

use super::pool::db_error;
use crate::store::StoreError;
use tokio_postgres::Client;

/// Migrations in order; the version of each is its position, from 1.
const MIGRATIONS: &[Migration] = &[
    Migration::Sql(include_str!("../migrations/postgres/0001_schema.sql")),
    Migration::Sql(include_str!("../migrations/postgres/0002_notify.sql")),
    Migration::Sql(include_str!("../migrations/postgres/0003_sessions.sql")),
    Migration::Sql(include_str!("../migrations/postgres/0004_refill.sql")),
    Migration::CanonicalEmails,
    Migration::Sql(include_str!("../migrations/postgres/0006_secrets.sql")),
    Migration::Sql(include_str!("../migrations/postgres/0007_accounts.sql")),
    Migration::Sql(include_str!("../migrations/postgres/0008_user_admin.sql")),
    Migration::Sql(include_str!("../migrations/postgres/0009_key_cap.sql")),
    Migration::Sql(include_str!("../migrations/postgres/0010_usage_detail.sql")),
    Migration::Sql(include_str!("../migrations/postgres/0011_audit.sql")),
    Migration::Sql(include_str!("../migrations/postgres/0012_events.sql")),
];

/// One schema migration, applied once in its own transaction.
enum Migration {
    /// A SQL script.
    Sql(&'static str),
    /// Every stored email in its canonical form ([`canonical_emails`]).
    CanonicalEmails,
}

/// Migration 5: stored emails move to their canonical form, or the migration fails
/// naming the accounts it would have to merge; emails are then unique as stored,
/// not by PostgreSQL's `lower()`.
async fn canonical_emails(tx: &tokio_postgres::Transaction<'_>) -> Result<(), String> {
    let users = tx
        .query("SELECT id, email FROM users FOR UPDATE", &[])
        .await
        .map_err(|e| e.to_string())?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let updates = crate::store::users::canonical_email_updates(users)?;
    tx.batch_execute("DROP INDEX IF EXISTS users_email")
        .await
        .map_err(|e| e.to_string())?;
    for (id, email) in updates {
        tx.execute("UPDATE users SET email = $1 WHERE id = $2", &[&email, &id])
            .await
            .map_err(|e| e.to_string())?;
    }
    tx.batch_execute("CREATE UNIQUE INDEX users_email ON users (email)")
        .await
        .map_err(|e| e.to_string())
}

/// Any constant shared by every keygate: the advisory lock's key.
const LOCK_KEY: i64 = 0x006b_6579_6761_7465; // "keygate"

/// Applies every pending migration; returns how many ran.
pub async fn migrate(client: &mut Client) -> Result<usize, StoreError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS keygate_migrations (\
               version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await
        .map_err(db_error)?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await
        .map_err(db_error)?;
    let result = apply(client).await;
    let unlock = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await
        .map_err(db_error);
    let ran = result?;
    unlock?;
    Ok(ran)
}

async fn apply(client: &mut Client) -> Result<usize, StoreError> {
    let done: i32 = client
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM keygate_migrations",
            &[],
        )
        .await
        .map_err(db_error)?
        .get(0);
    let mut ran = 0;
    for (i, step) in MIGRATIONS.iter().enumerate().skip(done.max(0) as usize) {
        let version = i as i32 + 1;
        let tx = client.transaction().await.map_err(db_error)?;
        let failed = |e: String| {
            StoreError::Unavailable(format!("postgres migration {version} failed: {e}"))
        };
        match step {
            Migration::Sql(sql) => tx
                .batch_execute(sql)
                .await
                .map_err(|e| failed(e.to_string()))?,
            Migration::CanonicalEmails => canonical_emails(&tx).await.map_err(failed)?,
        }
        tx.execute(
            "INSERT INTO keygate_migrations (version) VALUES ($1)",
            &[&version],
        )
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        ran += 1;
    }
    Ok(ran)
}
