use super::*;
use crate::auth::api_key::generate;
use crate::store::conformance::{self, record};

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
async fn concurrent_debits_never_overspend() {
    let (_dir, store) = open();
    conformance::concurrent_debits_never_overspend(store).await;
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
        .insert(&record("key_a", None), &key.hash)
        .await
        .unwrap();
    let again = SqliteStore::open(&path).unwrap();
    assert!(again.find_by_hash(&key.hash).await.unwrap().is_some());
}

#[tokio::test]
async fn usage_adds_up_and_last_used_only_moves_forward() {
    let (_dir, store) = open();
    conformance::usage_adds_up_and_last_used_only_moves_forward(store).await;
}
