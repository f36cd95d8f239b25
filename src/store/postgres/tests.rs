use super::*;
use crate::store::conformance::{self, record};
use crate::store::users::{Rotation, UserStore};
use crate::store::StoreChange;
use std::sync::Arc;
use tokio_postgres::NoTls;

/// A database of its own for one test, dropped afterwards.
pub(crate) struct TestDb {
    pub url: String,
    name: String,
    admin: String,
}

impl TestDb {
    /// Creates the database; `None` (the test is skipped, loudly) when PostgreSQL is
    /// not running, except under `CI=true`, where that is a failure.
    pub(crate) fn create() -> Option<TestDb> {
        let admin = std::env::var("KEYGATE_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let name = format!("kg_unit_{:016x}", rand::random::<u64>());
        let (a, n) = (admin.clone(), name.clone());
        let made = crate::net::io_runtime::block_on(async move {
            let (client, conn) = tokio_postgres::connect(&a, NoTls).await?;
            tokio::spawn(conn);
            client.batch_execute(&format!("CREATE DATABASE {n}")).await
        })
        .unwrap();
        if let Err(e) = made {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("PostgreSQL is required in CI ({admin}): {e}");
            }
            eprintln!("SKIPPED: PostgreSQL not reachable at {admin}: {e}");
            return None;
        }
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        Some(TestDb {
            url: format!("{base}/{name}"),
            name,
            admin,
        })
    }

    fn open(&self) -> Arc<PostgresStore> {
        Arc::new(PostgresStore::open(&self.url, 4, Duration::from_secs(5)).unwrap())
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (a, n) = (self.admin.clone(), self.name.clone());
        let _ = crate::net::io_runtime::block_on(async move {
            if let Ok((client, conn)) = tokio_postgres::connect(&a, NoTls).await {
                tokio::spawn(conn);
                let _ = client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {n} WITH (FORCE)"))
                    .await;
            }
        });
    }
}

macro_rules! conformance_tests {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            let Some(db) = TestDb::create() else { return };
            conformance::$name(db.open()).await;
        }
    )*};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ledgers_spend_exactly_the_credits_there_are() {
    let Some(db) = TestDb::create() else { return };
    // Three pools: three replicas, each with its own group committer.
    let stores: Vec<Arc<dyn KeyStore>> = vec![db.open(), db.open(), db.open()];
    conformance::ledgers_spend_exactly_the_credits_there_are(stores).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_never_exceed_the_quota() {
    let Some(db) = TestDb::create() else { return };
    // Two pools: two replicas creating for the same owner at once.
    let (a, b): (Arc<dyn KeyStore>, Arc<dyn KeyStore>) = (db.open(), db.open());
    conformance::concurrent_creates_never_exceed_the_quota(vec![a, b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn accounts_pool_credits_and_carry_their_plan() {
    let Some(db) = TestDb::create() else { return };
    let s = db.open();
    conformance::accounts_pool_credits_and_carry_their_plan((s.clone(), s)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn account_quotas_count_every_owner() {
    let Some(db) = TestDb::create() else { return };
    let (a, b) = (db.open(), db.open());
    conformance::account_quotas_count_every_owner(vec![(a.clone(), a), (b.clone(), b)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pooled_ledgers_spend_exactly_the_account_credits() {
    let Some(db) = TestDb::create() else { return };
    // Three pools: three replicas.
    let (a, b, c) = (db.open(), db.open(), db.open());
    conformance::pooled_ledgers_spend_exactly_the_account_credits(vec![
        (a.clone(), a),
        (b.clone(), b),
        (c.clone(), c),
    ])
    .await;
}

conformance_tests!(
    keys_come_in_pages,
    keys_round_trip_by_hash_and_id,
    revoke_and_regenerate_change_what_the_hash_finds,
    concurrent_debits_never_overspend,
    a_debit_batch_decides_in_order_and_commits_together,
    a_regenerate_grace_period_keeps_the_old_secret_until_it_ends,
    updates_owner_listing_and_counting,
    usage_adds_up_and_last_used_only_moves_forward,
    an_import_is_all_or_nothing_and_replaces_by_id_or_hash,
    a_refill_applies_once_per_period,
    the_audit_log_is_written_with_each_change_and_only_then,
    security_events_imports_and_pruning_are_logged,
    the_outbox_keeps_events_cursors_and_one_lease_holder,
);

#[tokio::test]
async fn reopening_runs_no_migration_twice_and_keeps_data() {
    let Some(db) = TestDb::create() else { return };
    db.open()
        .insert(
            &record("key_a", None),
            &KeyHash::of("a"),
            &crate::store::conformance::audited(),
        )
        .await
        .unwrap();
    // Two replicas starting together: the advisory lock serialises the migrations.
    let (u1, u2) = (db.url.clone(), db.url.clone());
    let a =
        std::thread::spawn(move || PostgresStore::open(&u1, 1, Duration::from_secs(5)).map(drop));
    let b =
        std::thread::spawn(move || PostgresStore::open(&u2, 1, Duration::from_secs(5)).map(drop));
    a.join().unwrap().unwrap();
    b.join().unwrap().unwrap();
    assert!(db.open().get("key_a").await.unwrap().is_some());
}

#[tokio::test]
async fn an_unreachable_database_is_reported_not_hung_on() {
    let started = std::time::Instant::now();
    let err = PostgresStore::open(
        "postgres://postgres@127.0.0.1:1/test",
        1,
        Duration::from_secs(2),
    )
    .err()
    .expect("no database listens on port 1");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(
        err.to_string().contains("cannot open the PostgreSQL store"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_by_one_replica_are_announced_to_the_others() {
    let Some(db) = TestDb::create() else { return };
    let (writer, reader) = (db.open(), db.open());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    reader.watch(Arc::new(move |c| {
        let _ = tx.send(c);
    }));
    let mut metered = record("key_a", Some(10));
    metered.id = "key_a".into();
    writer
        .insert(
            &metered,
            &KeyHash::of("a"),
            &crate::store::conformance::audited(),
        )
        .await
        .unwrap();
    // The feed says it is not watching until it listens; once listening, it first
    // drops everything (keys may have been cached before it watched them).
    let first = rx.recv().await.unwrap();
    assert_eq!(first, StoreChange::Unwatched);
    let listening = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("the feed listens within 10 s")
        .unwrap();
    assert!(matches!(listening, StoreChange::All), "{listening:?}");
    let rename = KeyPatch {
        name: Some("renamed".into()),
        ..Default::default()
    };
    writer
        .update("key_a", &rename, &crate::store::conformance::audited())
        .await
        .unwrap();
    let change = tokio::time::timeout(Duration::from_secs(1), rx.recv())
        .await
        .expect("a change announced within 1 s")
        .unwrap();
    assert!(
        matches!(change, StoreChange::Key { ref id, changed_at_ms: Some(_) } if id == "key_a"),
        "{change:?}"
    );
    while tokio::time::timeout(Duration::from_millis(300), rx.recv())
        .await
        .is_ok()
    {}
    // Debits and last-used updates are not announced...
    writer.debit_credits("key_a", 1).await.unwrap();
    writer
        .record_usage(&[], &[("key_a".into(), Utc::now().timestamp())])
        .await
        .unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(500), rx.recv())
        .await
        .is_err());
    // ...revocation is, within a second.
    let at = std::time::Instant::now();
    writer
        .revoke("key_a", &crate::store::conformance::audited())
        .await
        .unwrap();
    let change = tokio::time::timeout(Duration::from_secs(1), rx.recv())
        .await
        .expect("revocation announced within 1 s")
        .unwrap();
    assert!(matches!(change, StoreChange::Key { ref id, .. } if id == "key_a"));
    assert!(at.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn users_and_refresh_rotation_work_like_sqlite() {
    let Some(db) = TestDb::create() else { return };
    let store = db.open();
    let user = crate::domain::UserRecord {
        id: "usr_1".into(),
        email: "Ann@Example.com".into(),
        name: Some("Ann".into()),
        password_hash: "$argon2id$x".into(),
        is_admin: false,
        disabled: false,
        created_at: Utc::now(),
    };
    store
        .create_user(&user, &crate::store::conformance::audited())
        .await
        .unwrap();
    let mut dup = user.clone();
    dup.id = "usr_2".into();
    dup.email = "ann@example.com".into();
    assert!(matches!(
        store
            .create_user(&dup, &crate::store::conformance::audited())
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store
            .user_by_email("ANN@example.com")
            .await
            .unwrap()
            .map(|u| u.id),
        Some("usr_1".into())
    );
    let later = Utc::now() + chrono::Duration::days(1);
    let (t1, t2, t3) = (KeyHash::of("t1"), KeyHash::of("t2"), KeyHash::of("t3"));
    store
        .insert_refresh(&t1, "fam", "usr_1", later)
        .await
        .unwrap();
    assert_eq!(
        store
            .rotate_refresh(&t1, &t2, later, &crate::store::conformance::audited())
            .await
            .unwrap(),
        Rotation::Rotated {
            user_id: "usr_1".into()
        }
    );
    assert_eq!(
        store
            .rotate_refresh(&t1, &t3, later, &crate::store::conformance::audited())
            .await
            .unwrap(),
        Rotation::Reused {
            user_id: "usr_1".into()
        }
    );
    assert_eq!(
        store
            .rotate_refresh(&t2, &t3, later, &crate::store::conformance::audited())
            .await
            .unwrap(),
        Rotation::Invalid,
        "reuse revoked the whole family"
    );
}

/// Runs one query on the admin database and returns the first column of each row.
fn admin_query(db: &TestDb, sql: &str, param: &str) -> Vec<String> {
    let (a, sql, param) = (db.admin.clone(), sql.to_string(), param.to_string());
    crate::net::io_runtime::block_on(async move {
        let (client, conn) = tokio_postgres::connect(&a, NoTls).await.unwrap();
        tokio::spawn(conn);
        let rows = if param.is_empty() {
            client.query(sql.as_str(), &[]).await.unwrap()
        } else {
            client.query(sql.as_str(), &[&param]).await.unwrap()
        };
        rows.iter().map(|r| r.get::<_, String>(0)).collect()
    })
    .unwrap()
}

/// The server's own certificate file (it signs itself: Debian's snakeoil, for
/// `localhost`), or `None` when the server has TLS off (a failure under CI).
fn server_certificate(db: &TestDb) -> Option<String> {
    if admin_query(db, "SHOW ssl", "") != ["on"] {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "PostgreSQL on 127.0.0.1:5432 has ssl=off; the TLS tests need it on"
        );
        eprintln!("SKIPPED: PostgreSQL has ssl=off");
        return None;
    }
    let file = admin_query(db, "SHOW ssl_cert_file", "").remove(0);
    if file.starts_with('/') {
        return Some(file);
    }
    let dir = admin_query(db, "SHOW data_directory", "").remove(0);
    Some(format!("{dir}/{file}"))
}

/// Opens the store on `db` with `params` added to its URL (and `host` in place of
/// 127.0.0.1), runs a query and starts the change feed; returns whether each of its
/// connections uses TLS, or the error that stopped it.
fn connections_with(db: &TestDb, host: &str, params: &str) -> Result<Vec<bool>, String> {
    let url = format!("{}?{params}", db.url.replacen("127.0.0.1", host, 1));
    let store = PostgresStore::open(&url, 2, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    let store = Arc::new(store);
    let s = store.clone();
    crate::net::io_runtime::block_on(async move { s.ping().await.unwrap() }).unwrap();
    store.watch(Arc::new(|_| {}));
    let sql = "SELECT s.ssl::text FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
               WHERE a.datname = $1 ORDER BY a.application_name";
    let name = db.url.rsplit('/').next().unwrap().to_string();
    for _ in 0..100 {
        // The pool's connection plus the change feed's.
        let ssl = admin_query(db, sql, &name);
        if ssl.len() >= 2 {
            drop(store);
            return Ok(ssl.iter().map(|s| s == "true").collect());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the change feed never connected to {name}");
}

#[test]
fn sslmode_follows_libpq_and_every_connection_uses_it() {
    let Some(db) = TestDb::create() else { return };
    let Some(server_cert) = server_certificate(&db) else {
        return;
    };
    assert_eq!(
        connections_with(&db, "127.0.0.1", "sslmode=disable"),
        Ok(vec![false, false])
    );
    // The default is libpq's `prefer`: TLS when the server offers it.
    assert_eq!(connections_with(&db, "127.0.0.1", ""), Ok(vec![true, true]));
    assert_eq!(
        connections_with(&db, "127.0.0.1", "sslmode=require"),
        Ok(vec![true, true])
    );
    let root = format!("sslrootcert={server_cert}");
    // The certificate names `localhost`: full verification passes there only.
    assert_eq!(
        connections_with(&db, "localhost", &format!("sslmode=verify-full&{root}")),
        Ok(vec![true, true])
    );
    let wrong_name =
        connections_with(&db, "127.0.0.1", &format!("sslmode=verify-full&{root}")).unwrap_err();
    assert!(wrong_name.contains("not valid for name"), "{wrong_name}");
    // verify-ca checks the chain only.
    assert_eq!(
        connections_with(&db, "127.0.0.1", &format!("sslmode=verify-ca&{root}")),
        Ok(vec![true, true])
    );
    // A root that did not sign the server's certificate is refused in every checking mode.
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other-ca.pem");
    let ca = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(&other, ca.cert.pem()).unwrap();
    for mode in ["verify-full", "verify-ca", "require"] {
        let host = if mode == "verify-full" {
            "localhost"
        } else {
            "127.0.0.1"
        };
        let params = format!("sslmode={mode}&sslrootcert={}", other.display());
        let refused = connections_with(&db, host, &params).unwrap_err();
        assert!(refused.contains("UnknownIssuer"), "{mode}: {refused}");
    }
}

#[tokio::test]
async fn sessions_last_until_expiry_or_sign_out() {
    let Some(db) = TestDb::create() else { return };
    let clock = crate::clock::ManualClock::at(1_800_000_000_000);
    let store = PostgresStore::open(&db.url, 4, Duration::from_secs(5))
        .unwrap()
        .with_clock(Arc::new(clock.clone()));
    crate::store::conformance::sessions_last_until_expiry_or_sign_out(Arc::new(store), clock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_changes_are_announced_to_every_replica() {
    use crate::domain::{AccountPatch, AccountRecord, AccountStatus, CreditChange};
    use crate::store::accounts::AccountStore;
    let Some(db) = TestDb::create() else { return };
    let (writer, reader) = (db.open(), db.open());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    reader.watch(Arc::new(move |c| {
        let _ = tx.send(c);
    }));
    writer
        .ensure_account(&AccountRecord::new("acct_w", "free", Utc::now()))
        .await
        .unwrap();
    loop {
        let c = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("the feed listens within 10 s")
            .unwrap();
        if c == StoreChange::All {
            break;
        }
    }
    // A debit of the pooled balance is not announced; a suspension is, at once.
    writer
        .change_account_credits(
            "acct_w",
            CreditChange::Set(Some(5)),
            &crate::store::conformance::audited(),
        )
        .await
        .unwrap();
    let metered = tokio::time::timeout(Duration::from_secs(1), rx.recv())
        .await
        .expect("becoming metered is announced")
        .unwrap();
    assert!(matches!(metered, StoreChange::Account { ref id, .. } if id == "acct_w"));
    writer
        .debit_batch(&[crate::store::DebitRequest {
            holder: crate::store::Holder::Account,
            ..crate::store::DebitRequest::new("acct_w", 1)
        }])
        .await
        .unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(500), rx.recv())
        .await
        .is_err());
    let at = std::time::Instant::now();
    writer
        .update_account(
            "acct_w",
            &AccountPatch {
                status: Some(AccountStatus::Suspended),
                ..Default::default()
            },
            &crate::store::conformance::audited(),
        )
        .await
        .unwrap();
    let change = tokio::time::timeout(Duration::from_secs(1), rx.recv())
        .await
        .expect("a suspension announced within 1 s")
        .unwrap();
    assert!(
        matches!(change, StoreChange::Account { ref id, changed_at_ms: Some(_) } if id == "acct_w"),
        "{change:?}"
    );
    assert!(at.elapsed() < Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_administered() {
    let Some(db) = TestDb::create() else { return };
    let clock = crate::clock::ManualClock::at(1_800_000_000_000);
    let store = PostgresStore::open(&db.url, 4, Duration::from_secs(5))
        .unwrap()
        .with_clock(Arc::new(clock.clone()));
    crate::store::conformance::users_are_administered(Arc::new(store), clock).await;
}
