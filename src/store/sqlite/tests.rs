use super::*;
use crate::auth::key_format::generate;
use crate::store::conformance::{self, record};
use crate::store::StoreChange;

fn open() -> (tempfile::TempDir, Arc<dyn KeyStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("sub/k.db")).unwrap());
    (dir, store)
}

#[tokio::test]
async fn keys_round_trip_by_hash_and_id() {
    let (_dir, store) = open();
    conformance::keys_round_trip_by_hash_and_id(store).await;
}

#[tokio::test]
async fn revoke_and_regenerate_change_what_the_hash_finds() {
    let (_dir, store) = open();
    conformance::revoke_and_regenerate_change_what_the_hash_finds(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_debit_batch_decides_in_order_and_commits_together() {
    let (_dir, store) = open();
    conformance::a_debit_batch_decides_in_order_and_commits_together(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refill_applies_once_per_period() {
    let (_dir, store) = open();
    conformance::a_refill_applies_once_per_period(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ledgers_spend_exactly_the_credits_there_are() {
    let (dir, store) = open();
    // A second process's store on the same file (the CLI beside `serve`).
    let other: Arc<dyn KeyStore> =
        Arc::new(SqliteStore::open(&dir.path().join("sub/k.db")).unwrap());
    conformance::ledgers_spend_exactly_the_credits_there_are(vec![store, other]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_debits_never_overspend() {
    let (_dir, store) = open();
    conformance::concurrent_debits_never_overspend(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_never_exceed_the_quota() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.db");
    // Two stores on one file: two keygate processes sharing it.
    let a: Arc<dyn KeyStore> = Arc::new(SqliteStore::open(&path).unwrap());
    let b: Arc<dyn KeyStore> = Arc::new(SqliteStore::open(&path).unwrap());
    conformance::concurrent_creates_never_exceed_the_quota(vec![a, b]).await;
}

#[tokio::test]
async fn a_regenerate_grace_period_keeps_the_old_secret_until_it_ends() {
    let (_dir, store) = open();
    conformance::a_regenerate_grace_period_keeps_the_old_secret_until_it_ends(store).await;
}

#[tokio::test]
async fn updates_owner_listing_and_counting() {
    let (_dir, store) = open();
    conformance::updates_owner_listing_and_counting(store).await;
}

#[tokio::test]
async fn reopening_keeps_data_and_does_not_rerun_migrations() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.db");
    let key = generate("kg", Environment::Test);
    SqliteStore::open(&path)
        .unwrap()
        .insert(
            &record("key_a", None),
            &key.hash,
            &crate::store::conformance::audited(),
        )
        .await
        .unwrap();
    let again = SqliteStore::open(&path).unwrap();
    assert!(again.find_by_hash(&key.hash).await.unwrap().is_some());
}

#[tokio::test]
async fn the_audit_log_is_written_with_each_change_and_only_then() {
    let (_dir, store) = open();
    conformance::the_audit_log_is_written_with_each_change_and_only_then(store).await;
}

#[tokio::test]
async fn security_events_imports_and_pruning_are_logged() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("k.db")).unwrap());
    conformance::security_events_imports_and_pruning_are_logged(store).await;
}

#[tokio::test]
async fn the_outbox_keeps_events_cursors_and_one_lease_holder() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("k.db")).unwrap());
    conformance::the_outbox_keeps_events_cursors_and_one_lease_holder(store).await;
}

#[tokio::test]
async fn usage_adds_up_and_last_used_only_moves_forward() {
    let (_dir, store) = open();
    conformance::usage_adds_up_and_last_used_only_moves_forward(store).await;
}

#[test]
fn changes_made_by_another_process_reach_the_watcher_within_a_poll() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.db");
    let serving = SqliteStore::open(&path).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    serving.watch(Arc::new(move |c| {
        let _ = tx.lock().unwrap().send(c);
    }));
    // The feed first finds where the log ends: it says it is not watching until then.
    let wait = std::time::Duration::from_secs(1);
    assert_eq!(rx.recv_timeout(wait).unwrap(), StoreChange::Unwatched);
    assert_eq!(rx.recv_timeout(wait).unwrap(), StoreChange::All);
    let cli = SqliteStore::open(&path).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(cli.insert(
        &record("key_a", Some(10)),
        &KeyHash::of("a"),
        &crate::store::conformance::audited(),
    ))
    .unwrap();
    rt.block_on(cli.debit_credits("key_a", 1)).unwrap();
    let started = std::time::Instant::now();
    rt.block_on(cli.revoke("key_a", &crate::store::conformance::audited()))
        .unwrap();
    let change = rx.recv_timeout(std::time::Duration::from_secs(1)).unwrap();
    assert!(
        matches!(&change, StoreChange::Key { id, .. } if id == "key_a"),
        "{change:?}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    assert!(
        rx.recv_timeout(feed::POLL_EVERY * 3).is_err(),
        "inserts and debits are not announced, the revoke once"
    );
}

#[tokio::test]
async fn sessions_last_until_expiry_or_sign_out() {
    let dir = tempfile::tempdir().unwrap();
    let clock = crate::clock::ManualClock::at(1_800_000_000_000);
    let store = SqliteStore::open(&dir.path().join("sub/k.db"))
        .unwrap()
        .with_clock(Arc::new(clock.clone()));
    conformance::sessions_last_until_expiry_or_sign_out(Arc::new(store), clock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_is_all_or_nothing_and_replaces_by_id_or_hash() {
    let (_dir, store) = open();
    conformance::an_import_is_all_or_nothing_and_replaces_by_id_or_hash(store).await;
}

fn open_with_accounts() -> (tempfile::TempDir, conformance::WithAccounts) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("k.db")).unwrap());
    (dir, (store.clone(), store))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn accounts_pool_credits_and_carry_their_plan() {
    let (_dir, store) = open_with_accounts();
    conformance::accounts_pool_credits_and_carry_their_plan(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn account_quotas_count_every_owner() {
    let (dir, a) = open_with_accounts();
    let other = Arc::new(SqliteStore::open(&dir.path().join("k.db")).unwrap());
    conformance::account_quotas_count_every_owner(vec![a, (other.clone(), other)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pooled_ledgers_spend_exactly_the_account_credits() {
    let (dir, a) = open_with_accounts();
    let other = Arc::new(SqliteStore::open(&dir.path().join("k.db")).unwrap());
    conformance::pooled_ledgers_spend_exactly_the_account_credits(vec![a, (other.clone(), other)])
        .await;
}

#[test]
fn the_accounts_migration_gives_every_key_an_account() {
    // A store as it was before accounts: keys of two owners (one with two tiers),
    // and a key of nobody's.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let conn = Connection::open(&path).unwrap();
        for (i, step) in MIGRATIONS.iter().enumerate().take(9) {
            match step {
                Migration::Sql(sql) => conn.execute_batch(sql).unwrap(),
                Migration::CanonicalEmails => {}
            }
            conn.pragma_update(None, "user_version", i as i64 + 1)
                .unwrap();
        }
        let insert = |id: &str, owner: Option<&str>, tier: &str, credits: Option<i64>| {
            conn.execute(
                "INSERT INTO api_keys (id, key_hash, name, prefix, last4, tier, environment, owner, \
                 credits, created_at) VALUES (?1, ?2, ?1, '', '', ?3, 'live', ?4, ?5, 1)",
                params![id, id.as_bytes(), tier, owner, credits],
            )
            .unwrap();
        };
        insert("key_a1", Some("usr_a"), "pro", Some(10));
        insert("key_a2", Some("usr_a"), "pro", Some(5));
        insert("key_b1", Some("usr_b"), "free", None);
        insert("key_b2", Some("usr_b"), "free", None);
        insert("key_b3", Some("usr_b"), "pro", None);
        insert("key_n", None, "free", Some(7));
    }
    let store = SqliteStore::open(&path).unwrap();
    let conn = store.conns[0].lock();
    let account_of = |owner: &str| -> (String, String, Option<i64>) {
        conn.query_row(
            "SELECT id, plan, credits FROM accounts WHERE owner = ?1",
            [owner],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap()
    };
    let (a, plan_a, credits_a) = account_of("usr_a");
    assert_eq!((plan_a.as_str(), credits_a), ("pro", Some(15)));
    let (b, plan_b, credits_b) = account_of("usr_b");
    assert_eq!(
        (plan_b.as_str(), credits_b),
        ("free", None),
        "most keys' tier"
    );
    let key_account = |id: &str| -> String {
        conn.query_row("SELECT account FROM api_keys WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .unwrap()
    };
    assert_eq!(key_account("key_a2"), a);
    assert_eq!(key_account("key_b3"), b);
    assert_eq!(key_account("key_n"), "acct_key_n");
    let (plan_n, credits_n): (String, Option<i64>) = conn
        .query_row(
            "SELECT plan, credits FROM accounts WHERE id = 'acct_key_n'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((plan_n.as_str(), credits_n), ("free", Some(7)));
}

#[tokio::test]
async fn keys_come_in_pages() {
    let (_dir, store) = open();
    conformance::keys_come_in_pages(store).await;
}

#[tokio::test]
async fn users_are_administered() {
    let dir = tempfile::tempdir().unwrap();
    let clock = crate::clock::ManualClock::at(1_800_000_000_000);
    let store = SqliteStore::open(&dir.path().join("k.db"))
        .unwrap()
        .with_clock(Arc::new(clock.clone()));
    conformance::users_are_administered(Arc::new(store), clock).await;
}

#[tokio::test]
async fn the_usage_detail_migration_keeps_old_rows_in_microseconds_without_reasons() {
    // A store as it was before usage kept microseconds and reasons.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let conn = Connection::open(&path).unwrap();
        for (i, step) in MIGRATIONS.iter().enumerate().take(12) {
            match step {
                Migration::Sql(sql) => conn.execute_batch(sql).unwrap(),
                Migration::CanonicalEmails => {}
            }
            conn.pragma_update(None, "user_version", i as i64 + 1)
                .unwrap();
        }
        conn.execute(
            "INSERT INTO usage (key_id, hour, endpoint, total, successful, failed, total_ms) \
             VALUES ('key_a', 1699999200, 'default', 5, 3, 2, 12)",
            [],
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let since = Utc.timestamp_opt(1_699_999_200, 0).unwrap();
    let rows = store.usage(Some("key_a"), since).await.unwrap();
    let t = rows[0].counts;
    assert_eq!((t.total, t.successful, t.failed), (5, 3, 2));
    assert_eq!(t.total_us, 12_000, "whole milliseconds, now in µs");
    assert_eq!(t.unclassified(), 2, "old failures have no reason");
    assert_eq!(t.average_ms(), 2.4);
}
