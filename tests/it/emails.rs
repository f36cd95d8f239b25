//! One account, one email: every spelling of an address (case, fullwidth letters,
//! ß and ss, combining marks) is one canonical form, computed by keygate and never
//! by a database's own `lower()`, and that form is what is stored, looked up and
//! throttled on SQLite and PostgreSQL alike. Stored emails migrate to it; two
//! accounts that would become one are named, never merged.

use crate::common::services::{PgDatabase, PG_UNDO_ACCOUNTS};
use crate::common::{client, json, start_upstream, Keygate};
use serde_json::json;
use std::net::IpAddr;

const POLICY: &str = "jwt:\n  issue: { kid: keygate, alg: HS256, \
    secret: \"an-issuing-secret-of-at-least-32-bytes!!\", access_ttl: 10m, refresh_ttl: 1d }\n\
management: { registration: open }\ntiers: { free: { per_minute: 1000 } }\n\
rate_limit: { ip: { failed_auth_per_minute: 1000 } }\n";

/// `POST /v1/auth/token` from the loopback address `from` (each sign-in throttle
/// also counts per client IP; the attacker of this finding had many).
async fn sign_in(kg: &Keygate, from: &str, email: &str, password: &str) -> u16 {
    let from: IpAddr = from.parse().unwrap();
    reqwest::Client::builder()
        .local_address(from)
        .build()
        .unwrap()
        .post(kg.url("/v1/auth/token"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn postgres(url: &str) -> String {
    format!("store: {{ kind: postgres, url: \"{url}\" }}\n")
}

/// Attacked (third round): ten wrong passwords locked `alice@example.com`, and
/// `alİce@example.com` (U+0130) then signed in as alice on PostgreSQL, whose
/// `lower()` folds İ to i while the throttle keyed on Rust's `to_lowercase`: every
/// `i` in an address doubled the guesses allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_spelling_of_an_email_is_one_account_with_one_throttle() {
    let up = start_upstream().await;
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    let sqlite = Keygate::start(up, POLICY);
    let pg = Keygate::start_with_store(&format!("http://{up}"), &postgres(&db.url), POLICY);
    for kg in [&pg, &sqlite] {
        // The lock lasts until the minute turns: the failures and the checks
        // below take a few seconds, which must fall in one minute.
        crate::common::early_in_a_minute().await;
        kg.create_user("alice@example.com", "alice-password", false);
        assert_eq!(
            sign_in(kg, "127.0.0.2", "ALICE@EXAMPLE.COM", "alice-password").await,
            200
        );
        for _ in 0..10 {
            assert_eq!(
                sign_in(kg, "127.0.0.3", "alice@example.com", "guess").await,
                401
            );
        }
        // Not alice: never signed in as her, whatever the store's case rules.
        for (from, other) in [
            ("127.0.0.8", "al\u{130}ce@example.com"),
            ("127.0.0.9", "al\u{131}ce@example.com"),
            ("127.0.0.10", "ali\u{307}ce@example.com"),
        ] {
            assert_eq!(
                sign_in(kg, from, other, "alice-password").await,
                401,
                "{other} signed in as alice"
            );
        }

        // Locked: every spelling of the address, from any other address.
        for (from, spelling) in [
            ("127.0.0.4", "alice@example.com"),
            ("127.0.0.5", "Alice@Example.com"),
            ("127.0.0.6", "\u{ff41}lice@example.com"),
            ("127.0.0.7", "\u{ff21}LICE@\u{ff45}xample.com"),
        ] {
            assert_eq!(
                sign_in(kg, from, spelling, "alice-password").await,
                429,
                "{spelling} is alice and alice is locked"
            );
        }
        // Sign-up: another spelling of a taken address is taken.
        kg.create_user("strasse@example.de", "strasse-password", false);
        for taken in [
            "Stra\u{df}e@example.de",
            "STRASSE@EXAMPLE.DE",
            "\u{ff53}trasse@example.de",
            "Alice@example.com",
            "ali\u{200b}ce@example.com",
            "\u{feff}alice@example.com",
        ] {
            let resp = client()
                .post(kg.url("/v1/auth/register"))
                .json(&json!({"email": taken, "password": "another-password", "name": "x"}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 409, "{taken}");
        }
        let resp = client()
            .post(kg.url("/v1/auth/register"))
            .json(
                &json!({"email": "Jos\u{e9}@Example.es", "password": "jose-password", "name": "J"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
        // é precomposed or as e and a combining accent: one account.
        assert_eq!(
            sign_in(kg, "127.0.0.11", "JOSE\u{301}@example.es", "jose-password").await,
            200
        );
    }
}

/// Stored emails from before this rule move to their canonical form when the store
/// opens; two accounts whose emails would become one stop the migration, which
/// names them and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stored_emails_migrate_and_collisions_are_named_never_merged() {
    // What the accounts, user-admin, key-cap and usage-detail migrations added,
    // taken away again with the audit log (they run after these); PostgreSQL's is the
    // common one.
    const SQLITE_UNDO_ACCOUNTS: &str = "DROP TABLE accounts; DROP INDEX api_keys_account; \
         DROP TRIGGER api_keys_changed; ALTER TABLE api_keys DROP COLUMN account; \
         DROP TABLE password_resets; ALTER TABLE users DROP COLUMN disabled; \
         ALTER TABLE api_keys DROP COLUMN cap; \
         ALTER TABLE usage DROP COLUMN total_us; ALTER TABLE usage DROP COLUMN rate_limited; \
         ALTER TABLE usage DROP COLUMN no_credits; ALTER TABLE usage DROP COLUMN refused; \
         ALTER TABLE usage DROP COLUMN api_error; DROP TABLE audit_log; \
         DROP TABLE events; DROP TABLE webhook_cursors; DROP TABLE webhook_deliveries; \
         DROP TABLE leases;";
    let up = start_upstream().await;
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    // SQLite: the database of a keygate before migration 8.
    let kg = Keygate::start(up, POLICY);
    let (alice, _) = kg.create_user("alice@example.com", "alice-password", false);
    let db_file = kg.dir.path().join("keys.db");
    let mut kg = kg;
    assert!(kg.terminate().success());
    let old = |sql: String| {
        let c = rusqlite::Connection::open(&db_file).unwrap();
        c.execute_batch(&sql).unwrap();
    };
    // Migrations 8 (canonical emails), 9 (secrets) and 10 (accounts) not yet run.
    old(format!(
        "UPDATE users SET email = 'ＡLICE@Example.COM' WHERE id = '{alice}';\
         DROP TABLE secrets; {SQLITE_UNDO_ACCOUNTS} PRAGMA user_version = 7;"
    ));
    let kg = kg.restart();
    assert_eq!(
        sign_in(&kg, "127.0.0.2", "alice@example.com", "alice-password").await,
        200,
        "migrated to the canonical form"
    );
    let mut kg = kg;
    assert!(kg.terminate().success());
    old(
        "INSERT INTO users (id, email, password_hash, is_admin, created_at) \
         VALUES ('usr_upper', 'STRASSE@x.de', 'x', 0, 0), ('usr_eszett', 'Straße@x.de', 'x', 0, 0);\
         DROP TABLE secrets; {SQLITE_UNDO_ACCOUNTS} PRAGMA user_version = 7;"
            .replace("{SQLITE_UNDO_ACCOUNTS}", SQLITE_UNDO_ACCOUNTS),
    );
    let out = kg.cli(&["keys", "list"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("usr_eszett")
            && stderr.contains("usr_upper")
            && stderr.contains("never merges"),
        "{stderr}"
    );

    // PostgreSQL: the same, and `lower()` no longer decides anything.
    let kg = Keygate::start_with_store(&format!("http://{up}"), &postgres(&db.url), POLICY);
    let (alice, _) = kg.create_user("alice@example.com", "alice-password", false);
    let mut kg = kg;
    assert!(kg.terminate().success());
    // Migrations 5 (canonical emails), 6 (secrets) and 7 (accounts) not yet run.
    db.execute(&format!(
        "UPDATE users SET email = 'ＡLICE@Example.COM' WHERE id = '{alice}';\
         DROP TABLE secrets; {PG_UNDO_ACCOUNTS} DELETE FROM keygate_migrations WHERE version >= 5;"
    ))
    .await;
    let kg = kg.restart();
    assert_eq!(
        sign_in(&kg, "127.0.0.2", "aLiCe@example.com", "alice-password").await,
        200
    );
    let body = json(
        client()
            .post(kg.url("/v1/auth/register"))
            .json(&json!({"email": "al\u{130}ce@example.com", "password": "other-password", "name": "x"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        body["email"], "ali\u{307}ce@example.com",
        "another account: {body}"
    );
    let mut kg = kg;
    assert!(kg.terminate().success());
    db.execute(
        &"INSERT INTO users (id, email, password_hash, is_admin, created_at) \
         VALUES ('usr_upper', 'STRASSE@x.de', 'x', false, now()), ('usr_eszett', 'Straße@x.de', 'x', false, now());\
         DROP TABLE secrets; {PG_UNDO_ACCOUNTS} DELETE FROM keygate_migrations WHERE version >= 5;"
            .replace("{PG_UNDO_ACCOUNTS}", PG_UNDO_ACCOUNTS),
    )
    .await;
    let out = kg.cli(&["keys", "list"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("usr_eszett") && stderr.contains("usr_upper"),
        "{stderr}"
    );
}
