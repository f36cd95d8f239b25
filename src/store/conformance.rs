//! Behaviour every [`KeyStore`] backend must share, run against each of them (SQLite
//! in `sqlite::tests`, PostgreSQL in `postgres::tests`).

use super::*;
use crate::auth::key_format::generate;
use crate::domain::{Environment, ImportedKey, KeyHash, KeyRecord, KeyStatus, Totals, UsageRow};
use chrono::{TimeZone, Utc};

pub(crate) fn record(id: &str, credits: Option<i64>) -> KeyRecord {
    KeyRecord {
        name: "test".into(),
        prefix: "kg_sk_live_".into(),
        last4: "abcd".into(),
        scopes: vec!["search".into()],
        org: Some("org_1".into()),
        owner: Some("user_1".into()),
        credits,
        allowed_ips: vec!["10.0.0.0/8".parse().unwrap()],
        expires_at: Some(Utc.timestamp_opt(4_000_000_000, 0).unwrap()),
        ..KeyRecord::active(id, "free", Utc.timestamp_opt(1_700_000_000, 0).unwrap())
    }
}

pub(crate) async fn keys_round_trip_by_hash_and_id(store: Arc<dyn KeyStore>) {
    let key = generate("kg", Environment::Live);
    let rec = record("key_a", None);
    store.insert(&rec, &key.hash, &audited()).await.unwrap();
    assert_eq!(
        store.find_by_hash(&key.hash).await.unwrap(),
        Some(rec.clone())
    );
    assert_eq!(store.get("key_a").await.unwrap(), Some(rec));
    assert_eq!(
        store.find_by_hash(&KeyHash::of("other")).await.unwrap(),
        None
    );
    assert_eq!(store.list().await.unwrap().len(), 1);
    store.ping().await.unwrap();
}

pub(crate) async fn revoke_and_regenerate_change_what_the_hash_finds(store: Arc<dyn KeyStore>) {
    let old = generate("kg", Environment::Live);
    store
        .insert(&record("key_a", None), &old.hash, &audited())
        .await
        .unwrap();
    let new = generate("kg", Environment::Live);
    store
        .replace_secret(
            "key_a",
            &crate::store::NewSecret {
                hash: &new.hash,
                prefix: &new.prefix,
                last4: &new.last4,
            },
            None,
            &audited(),
        )
        .await
        .unwrap();
    assert_eq!(store.find_by_hash(&old.hash).await.unwrap(), None);
    let found = store.find_by_hash(&new.hash).await.unwrap().unwrap();
    assert_eq!(found.last4, new.last4);
    store.revoke("key_a", &audited()).await.unwrap();
    assert_eq!(
        store.get("key_a").await.unwrap().unwrap().status,
        KeyStatus::Revoked
    );
    assert!(matches!(
        store.revoke("key_nope", &audited()).await,
        Err(StoreError::NotFound(_))
    ));
}

pub(crate) async fn concurrent_debits_never_overspend(store: Arc<dyn KeyStore>) {
    store
        .insert(&record("key_a", Some(25)), &KeyHash::of("a"), &audited())
        .await
        .unwrap();
    store
        .insert(&record("key_b", None), &KeyHash::of("b"), &audited())
        .await
        .unwrap();
    let tasks: Vec<_> = (0..60)
        .map(|_| {
            let s = store.clone();
            tokio::spawn(async move { s.debit_credits("key_a", 1).await.unwrap() })
        })
        .collect();
    let mut done = 0;
    for t in tasks {
        if matches!(t.await.unwrap(), Debit::Done { .. }) {
            done += 1;
        }
    }
    assert_eq!(done, 25);
    assert_eq!(
        store.debit_credits("key_a", 1).await.unwrap(),
        Debit::Insufficient { remaining: 0 }
    );
    assert_eq!(
        store.debit_credits("key_b", 5).await.unwrap(),
        Debit::Unmetered
    );
    assert!(matches!(
        store.debit_credits("key_x", 1).await,
        Err(StoreError::NotFound(_))
    ));
}

/// Many requests debiting through ledgers (one per replica, each group-committing)
/// spend exactly the credits there are, never more, and share transactions.
pub(crate) async fn ledgers_spend_exactly_the_credits_there_are(stores: Vec<Arc<dyn KeyStore>>) {
    stores[0]
        .insert(&record("key_a", Some(300)), &KeyHash::of("a"), &audited())
        .await
        .unwrap();
    let ledgers: Vec<_> = stores
        .iter()
        .map(|s| crate::ledger::credits::CreditLedger::new(s.clone()))
        .collect();
    let tasks: Vec<_> = (0..500)
        .map(|i| {
            let ledger = ledgers[i % ledgers.len()].clone();
            tokio::spawn(async move { ledger.debit(Holder::Key, "key_a", 1, None).await.unwrap() })
        })
        .collect();
    let mut done = 0;
    for t in tasks {
        match t.await.unwrap() {
            Debit::Done { .. } => done += 1,
            Debit::Insufficient { remaining } => assert_eq!(remaining, 0),
            Debit::Unmetered => panic!("key_a is metered"),
        }
    }
    assert_eq!(done, 300);
    assert_eq!(
        stores[0].get("key_a").await.unwrap().unwrap().credits,
        Some(0)
    );
    let commits: u64 = ledgers.iter().map(|l| l.commits()).sum();
    assert!(
        commits < 500,
        "{commits} transactions for 500 debits: nothing was grouped"
    );
}

/// A batch decides its debits in order, as if one after another, and commits the
/// ones that fit; unknown and unmetered keys change nothing.
pub(crate) async fn a_debit_batch_decides_in_order_and_commits_together(store: Arc<dyn KeyStore>) {
    store
        .insert(&record("key_a", Some(5)), &KeyHash::of("a"), &audited())
        .await
        .unwrap();
    store
        .insert(&record("key_b", None), &KeyHash::of("b"), &audited())
        .await
        .unwrap();
    store
        .insert(&record("key_c", Some(1)), &KeyHash::of("c"), &audited())
        .await
        .unwrap();
    let batch: Vec<DebitRequest> = [
        ("key_a", 2),
        ("key_x", 1),
        ("key_a", 4),
        ("key_b", 9),
        ("key_a", 3),
        ("key_c", 2),
        ("key_a", 1),
    ]
    .iter()
    .map(|(id, cost)| DebitRequest::new(*id, *cost))
    .collect();
    let answers = store.debit_batch(&batch).await.unwrap();
    let shown: Vec<String> = answers
        .iter()
        .map(|a| match a {
            Ok(d) => format!("{d:?}"),
            Err(StoreError::NotFound(id)) => format!("NotFound({id})"),
            Err(e) => format!("error {e}"),
        })
        .collect();
    assert_eq!(
        shown,
        [
            "Done { remaining: 3 }",
            "NotFound(key_x)",
            "Insufficient { remaining: 3 }",
            "Unmetered",
            "Done { remaining: 0 }",
            "Insufficient { remaining: 1 }",
            "Insufficient { remaining: 0 }",
        ]
    );
    let credits = |id: &'static str| {
        let store = store.clone();
        async move { store.get(id).await.unwrap().unwrap().credits }
    };
    assert_eq!(credits("key_a").await, Some(0));
    assert_eq!(credits("key_b").await, None);
    assert_eq!(credits("key_c").await, Some(1));
    assert!(store.debit_batch(&[]).await.unwrap().is_empty());
}

pub(crate) async fn a_regenerate_grace_period_keeps_the_old_secret_until_it_ends(
    store: Arc<dyn KeyStore>,
) {
    let old = generate("kg", Environment::Live);
    store
        .insert(&record("key_a", None), &old.hash, &audited())
        .await
        .unwrap();
    let new = generate("kg", Environment::Live);
    let until = Utc::now() + chrono::Duration::seconds(60);
    store
        .replace_secret(
            "key_a",
            &crate::store::NewSecret {
                hash: &new.hash,
                prefix: &new.prefix,
                last4: &new.last4,
            },
            Some(until),
            &audited(),
        )
        .await
        .unwrap();
    let via_old = store.find_by_hash(&old.hash).await.unwrap().unwrap();
    assert_eq!(
        via_old.secret_valid_until.map(|t| t.timestamp()),
        Some(until.timestamp())
    );
    let via_new = store.find_by_hash(&new.hash).await.unwrap().unwrap();
    assert_eq!(via_new.secret_valid_until, None);
    // A grace period that has ended: the old secret no longer matches.
    let newer = generate("kg", Environment::Live);
    let past = Utc::now() - chrono::Duration::seconds(1);
    store
        .replace_secret(
            "key_a",
            &crate::store::NewSecret {
                hash: &newer.hash,
                prefix: &newer.prefix,
                last4: &newer.last4,
            },
            Some(past),
            &audited(),
        )
        .await
        .unwrap();
    assert!(store.find_by_hash(&new.hash).await.unwrap().is_none());
    assert!(
        store.find_by_hash(&old.hash).await.unwrap().is_none(),
        "only one previous secret is kept"
    );
    // No grace: only the newest works.
    let last = generate("kg", Environment::Live);
    store
        .replace_secret(
            "key_a",
            &crate::store::NewSecret {
                hash: &last.hash,
                prefix: &last.prefix,
                last4: &last.last4,
            },
            None,
            &audited(),
        )
        .await
        .unwrap();
    assert!(store.find_by_hash(&newer.hash).await.unwrap().is_none());
    assert!(store.find_by_hash(&last.hash).await.unwrap().is_some());
}

pub(crate) async fn updates_owner_listing_and_counting(store: Arc<dyn KeyStore>) {
    store
        .insert(&record("key_a", None), &KeyHash::of("a"), &audited())
        .await
        .unwrap();
    let mut b = record("key_b", None);
    b.owner = Some("user_2".into());
    store
        .insert(&b, &KeyHash::of("b"), &audited())
        .await
        .unwrap();
    assert_eq!(store.list_by_owner("user_1").await.unwrap().len(), 1);
    assert_eq!(store.count_active("user_1", "free").await.unwrap(), 1);
    let patch = KeyPatch {
        name: Some("renamed".into()),
        tier: Some("pro".into()),
        scopes: Some(vec!["x".into()]),
        credits: Some(Some(5)),
        refill: None,
        allowed_ips: Some(vec![]),
        expires_at: Some(None),
        cap: None,
    };
    let updated = store.update("key_a", &patch, &audited()).await.unwrap();
    assert_eq!(
        (
            updated.name.as_str(),
            updated.tier.as_str(),
            updated.credits
        ),
        ("renamed", "pro", Some(5))
    );
    assert_eq!(updated.scopes, vec!["x"]);
    assert!(updated.allowed_ips.is_empty() && updated.expires_at.is_none());
    assert_eq!(store.count_active("user_1", "free").await.unwrap(), 0);
    store.revoke("key_b", &audited()).await.unwrap();
    assert_eq!(store.count_active("user_2", "free").await.unwrap(), 0);
    assert!(matches!(
        store
            .update("key_nope", &KeyPatch::default(), &audited())
            .await,
        Err(StoreError::NotFound(_))
    ));
}

pub(crate) async fn usage_adds_up_and_last_used_only_moves_forward(store: Arc<dyn KeyStore>) {
    store
        .insert(&record("key_a", None), &KeyHash::of("a"), &audited())
        .await
        .unwrap();
    let hour = Utc.timestamp_opt(1_699_999_200, 0).unwrap();
    let row = UsageRow {
        key_id: "key_a".into(),
        hour,
        endpoint: "/search".into(),
        counts: Totals {
            total: 4,
            successful: 1,
            failed: 3,
            rate_limited: 1,
            no_credits: 1,
            refused: 0,
            api_error: 1,
            total_us: 3_250,
        },
    };
    store
        .record_usage(
            std::slice::from_ref(&row),
            &[("key_a".into(), 1_700_000_100)],
        )
        .await
        .unwrap();
    store
        .record_usage(
            std::slice::from_ref(&row),
            &[("key_a".into(), 1_700_000_050)],
        )
        .await
        .unwrap();
    let rows = store.usage(Some("key_a"), hour).await.unwrap();
    assert_eq!(
        rows,
        vec![UsageRow {
            counts: Totals {
                total: 8,
                successful: 2,
                failed: 6,
                rate_limited: 2,
                no_credits: 2,
                refused: 0,
                api_error: 2,
                total_us: 6_500,
            },
            ..row
        }],
        "every count column adds, none is lost"
    );
    let used = store.get("key_a").await.unwrap().unwrap().last_used_at;
    assert_eq!(used.map(|t| t.timestamp()), Some(1_700_000_100));
    // Every key's usage, for the portal's overview.
    store
        .insert(&record("key_b", None), &KeyHash::of("b"), &audited())
        .await
        .unwrap();
    let other = UsageRow {
        key_id: "key_b".into(),
        hour,
        endpoint: "/search".into(),
        counts: Totals::one(crate::domain::UsageClass::Successful, 5),
    };
    store.record_usage(&[other], &[]).await.unwrap();
    let all = store.usage(None, hour).await.unwrap();
    let keys: Vec<&str> = all.iter().map(|r| r.key_id.as_str()).collect();
    assert_eq!(keys, ["key_a", "key_b"]);
    assert_eq!(store.usage(Some("key_b"), hour).await.unwrap().len(), 1);
}

/// Concurrent creates through `stores` (one per replica, or the same one twice)
/// never leave an owner above the quota, and a revoked key frees its place; the
/// same for a first key, counted over every tier.
pub(crate) async fn concurrent_creates_never_exceed_the_quota(stores: Vec<Arc<dyn KeyStore>>) {
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let store = stores[i % stores.len()].clone();
            tokio::spawn(async move {
                let mut r = record(&format!("key_q{i}"), None);
                r.owner = Some("quota_owner".into());
                store
                    .insert_within_quota(
                        &r,
                        &KeyHash::of(&format!("q{i}")),
                        3,
                        QuotaScope::Owner,
                        &audited(),
                    )
                    .await
            })
        })
        .collect();
    let (mut stored, mut refused) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => stored += 1,
            Err(StoreError::QuotaExceeded { max: 3 }) => refused += 1,
            Err(e) => panic!("unexpected: {e}"),
        }
    }
    assert_eq!((stored, refused), (3, 37));
    let store = &stores[0];
    assert_eq!(store.count_active("quota_owner", "free").await.unwrap(), 3);
    let mut other_tier = record("key_other_tier", None);
    other_tier.owner = Some("quota_owner".into());
    other_tier.tier = "pro".into();
    store
        .insert_within_quota(
            &other_tier,
            &KeyHash::of("pro"),
            3,
            QuotaScope::Owner,
            &audited(),
        )
        .await
        .unwrap();
    let held = store.list_by_owner("quota_owner").await.unwrap();
    let first_free = held.iter().find(|k| k.tier == "free").unwrap();
    store.revoke(&first_free.id, &audited()).await.unwrap();
    let mut again = record("key_again", None);
    again.owner = Some("quota_owner".into());
    store
        .insert_within_quota(
            &again,
            &KeyHash::of("again"),
            3,
            QuotaScope::Owner,
            &audited(),
        )
        .await
        .unwrap();

    // A first key: one of 20 concurrent attempts, in two tiers, across replicas.
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = stores[i % stores.len()].clone();
            tokio::spawn(async move {
                let mut r = record(&format!("key_f{i}"), None);
                r.owner = Some("first_owner".into());
                r.tier = if i % 2 == 0 { "free" } else { "pro" }.into();
                store
                    .insert_within_quota(
                        &r,
                        &KeyHash::of(&format!("f{i}")),
                        1,
                        QuotaScope::OwnerAnyTier,
                        &audited(),
                    )
                    .await
            })
        })
        .collect();
    let mut firsts = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => firsts += 1,
            Err(StoreError::QuotaExceeded { max: 1 }) => {}
            Err(e) => panic!("unexpected: {e}"),
        }
    }
    assert_eq!(firsts, 1, "one first key, whatever the tier");
    // An owner with a key in any tier has had their first; revoked keys do not count.
    let mut late = record("key_late", None);
    late.owner = Some("quota_owner".into());
    assert!(matches!(
        store
            .insert_within_quota(
                &late,
                &KeyHash::of("late"),
                1,
                QuotaScope::OwnerAnyTier,
                &audited()
            )
            .await,
        Err(StoreError::QuotaExceeded { .. })
    ));
    let only = store.list_by_owner("first_owner").await.unwrap();
    store.revoke(&only[0].id, &audited()).await.unwrap();
    let mut after = record("key_after", None);
    after.owner = Some("first_owner".into());
    store
        .insert_within_quota(
            &after,
            &KeyHash::of("after"),
            1,
            QuotaScope::OwnerAnyTier,
            &audited(),
        )
        .await
        .unwrap();
}

/// A user for the session tests.
pub(crate) fn user(id: &str) -> crate::domain::UserRecord {
    crate::domain::UserRecord {
        id: id.into(),
        email: format!("{id}@example.com"),
        name: Some("Ann".into()),
        password_hash: "$argon2id$x".into(),
        is_admin: false,
        disabled: false,
        created_at: Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
    }
}

/// Portal sessions: found by their hash until they expire on the store's clock
/// (`clock`) or are ended; one user's sessions are independent of each other.
pub(crate) async fn sessions_last_until_expiry_or_sign_out(
    store: Arc<dyn super::users::UserStore>,
    clock: crate::clock::ManualClock,
) {
    use crate::clock::Clock;
    store.create_user(&user("usr_s"), &audited()).await.unwrap();
    let now = clock.now_utc();
    let (a, b) = (KeyHash::of("session-a"), KeyHash::of("session-b"));
    store
        .create_session(&a, "usr_s", now + chrono::Duration::hours(1))
        .await
        .unwrap();
    store
        .create_session(&b, "usr_s", now + chrono::Duration::hours(3))
        .await
        .unwrap();
    let found = store.session_user(&a).await.unwrap().map(|u| u.id);
    assert_eq!(found.as_deref(), Some("usr_s"));
    assert_eq!(
        store.session_user(&KeyHash::of("other")).await.unwrap(),
        None
    );
    clock.advance_ms(2 * 3_600_000);
    assert_eq!(store.session_user(&a).await.unwrap(), None, "expired");
    assert!(store.session_user(&b).await.unwrap().is_some());
    store.end_session(&b).await.unwrap();
    assert_eq!(store.session_user(&b).await.unwrap(), None, "signed out");
    store.end_session(&b).await.unwrap();
}

fn imported(line: u64, id: &str, secret: &str, id_given: bool) -> ImportedKey {
    ImportedKey {
        line,
        record: record(id, Some(5)),
        id_given,
        hash: KeyHash::of(secret),
        given: crate::domain::ImportFields::ALL,
        account_setting: None,
    }
}

/// The end of an import, with its audit entry.
fn commit() -> ImportMsg {
    ImportMsg::Commit(crate::domain::AuditEntry::cli(
        "keys.imported",
        "",
        Utc.timestamp_opt(1_800_000_000, 0).unwrap(),
    ))
}

async fn feed(store: &Arc<dyn KeyStore>, msgs: Vec<ImportMsg>) -> Result<u64, StoreError> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let writer = {
        let store = store.clone();
        tokio::spawn(async move { store.import(rx).await })
    };
    for m in msgs {
        if tx.send(m).await.is_err() {
            break;
        }
    }
    drop(tx);
    writer.await.unwrap()
}

pub(crate) async fn an_import_is_all_or_nothing_and_replaces_by_id_or_hash(
    store: Arc<dyn KeyStore>,
) {
    // Abandoned before Commit: nothing written.
    let abandoned = feed(
        &store,
        vec![ImportMsg::Keys(vec![imported(1, "cust_1", "s1", true)])],
    )
    .await;
    assert!(abandoned.is_err());
    assert!(
        store.list().await.unwrap().is_empty(),
        "nothing of it stays"
    );

    // Two batches, one commit.
    let n = feed(
        &store,
        vec![
            ImportMsg::Keys(vec![imported(1, "cust_1", "s1", true)]),
            ImportMsg::Keys(vec![imported(2, "key_x", "s2", false)]),
            commit(),
        ],
    )
    .await
    .unwrap();
    assert_eq!(n, 2);
    assert_eq!(
        store
            .find_by_hash(&KeyHash::of("s1"))
            .await
            .unwrap()
            .unwrap()
            .id,
        "cust_1"
    );
    assert_eq!(store.list().await.unwrap().len(), 2);

    // Again: by id the record (and its secret) is replaced; by hash, the record
    // stored under the hash keeps its id.
    let mut again = imported(1, "cust_1", "s1-new", true);
    again.record.tier = "pro".into();
    let mut by_hash = imported(2, "key_other", "s2", false);
    by_hash.record.name = "renamed".into();
    feed(
        &store,
        vec![ImportMsg::Keys(vec![again, by_hash]), commit()],
    )
    .await
    .unwrap();
    assert_eq!(store.list().await.unwrap().len(), 2, "updated, not added");
    assert_eq!(store.find_by_hash(&KeyHash::of("s1")).await.unwrap(), None);
    let c = store
        .find_by_hash(&KeyHash::of("s1-new"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((c.id.as_str(), c.tier.as_str()), ("cust_1", "pro"));
    let x = store
        .find_by_hash(&KeyHash::of("s2"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((x.id.as_str(), x.name.as_str()), ("key_x", "renamed"));

    // A secret already held by another id fails the whole import, at its line.
    let err = feed(
        &store,
        vec![
            ImportMsg::Keys(vec![
                imported(1, "cust_9", "s9", true),
                imported(2, "cust_10", "s2", true),
            ]),
            commit(),
        ],
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, StoreError::ImportConflict { line: 2, .. }),
        "{err:?}"
    );
    assert_eq!(
        store.get("cust_9").await.unwrap(),
        None,
        "line 1 was rolled back"
    );
    assert_eq!(store.list().await.unwrap().len(), 2);

    // A line that matches a stored key changes only the fields it carried.
    let mut partial = imported(1, "key_fresh", "s2", false);
    partial.record.name = "named again".into();
    partial.record.credits = None;
    partial.record.tier = "default".into();
    partial.given = crate::domain::ImportFields::NAME;
    let n = feed(&store, vec![ImportMsg::Keys(vec![partial]), commit()])
        .await
        .unwrap();
    assert_eq!(n, 1);
    let x = store.get("key_x").await.unwrap().unwrap();
    assert_eq!(x.name, "named again");
    assert_eq!(
        (x.credits, x.tier.as_str()),
        (Some(5), "free"),
        "what the line did not say keeps its value"
    );

    // The same key on two lines (by hash, and by id then by hash) is one key.
    let n = feed(
        &store,
        vec![
            ImportMsg::Keys(vec![
                imported(1, "key_a1", "s3", false),
                imported(2, "key_a2", "s3", false),
                imported(3, "cust_1", "s1-new", true),
                imported(4, "key_b", "s1-new", false),
            ]),
            commit(),
        ],
    )
    .await
    .unwrap();
    assert_eq!(n, 2, "two keys, four lines");
    assert_eq!(store.list().await.unwrap().len(), 3);
}

/// A key's own refill and `refilled_at` round trip; a due refill is applied once per
/// period however many debits race for it, then debited; an unmetered key is never
/// refilled; a patch sets and clears the key's own refill.
pub(crate) async fn a_refill_applies_once_per_period(store: Arc<dyn KeyStore>) {
    use crate::domain::{Refill, RefillDue, RefillEvery};
    let day = 86_400;
    let mut r = record("key_r", Some(2));
    r.refill = Some(Refill {
        amount: 5,
        every: RefillEvery::Day,
    });
    r.refilled_at = Some(Utc.timestamp_opt(10 * day, 0).unwrap());
    store
        .insert(&r, &KeyHash::of("r"), &audited())
        .await
        .unwrap();
    let got = store.get("key_r").await.unwrap().unwrap();
    assert_eq!((got.refill, got.refilled_at), (r.refill, r.refilled_at));

    let due = RefillDue {
        amount: 5,
        period: 11 * day,
    };
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .debit_batch(&[DebitRequest {
                        holder: Holder::Key,
                        id: "key_r".into(),
                        cost: 1,
                        refill: Some(due),
                    }])
                    .await
                    .unwrap()
                    .pop()
                    .unwrap()
                    .unwrap()
            })
        })
        .collect();
    let mut done = 0;
    for t in racers {
        if matches!(t.await.unwrap(), Debit::Done { .. }) {
            done += 1;
        }
    }
    assert_eq!(done, 5, "one refill of 5 for the period, not one per debit");
    let got = store.get("key_r").await.unwrap().unwrap();
    assert_eq!(got.credits, Some(0));
    assert_eq!(got.refilled_at.map(|t| t.timestamp()), Some(11 * day));
    let again = store
        .debit_batch(&[DebitRequest {
            holder: Holder::Key,
            id: "key_r".into(),
            cost: 1,
            refill: Some(due),
        }])
        .await
        .unwrap();
    assert!(matches!(again[0], Ok(Debit::Insufficient { remaining: 0 })));
    // A refund of a debit made before the refill gives nothing back (the refill
    // already reset that balance); one made in this period does.
    store
        .refund_credits(Holder::Key, "key_r", 1, 10 * day + 5)
        .await
        .unwrap();
    assert_eq!(store.get("key_r").await.unwrap().unwrap().credits, Some(0));
    store
        .refund_credits(Holder::Key, "key_r", 1, 11 * day + 5)
        .await
        .unwrap();
    assert_eq!(store.get("key_r").await.unwrap().unwrap().credits, Some(1));
    store
        .debit_batch(&[DebitRequest::new("key_r", 1)])
        .await
        .unwrap();

    store
        .insert(&record("key_u", None), &KeyHash::of("u"), &audited())
        .await
        .unwrap();
    let unmetered = store
        .debit_batch(&[DebitRequest {
            holder: Holder::Key,
            id: "key_u".into(),
            cost: 1,
            refill: Some(due),
        }])
        .await
        .unwrap();
    assert!(matches!(unmetered[0], Ok(Debit::Unmetered)));
    assert_eq!(store.get("key_u").await.unwrap().unwrap().credits, None);

    let cleared = store
        .update(
            "key_r",
            &KeyPatch {
                refill: Some(None),
                ..Default::default()
            },
            &audited(),
        )
        .await
        .unwrap();
    assert_eq!(cleared.refill, None);
    let monthly = Some(Refill {
        amount: 9,
        every: RefillEvery::parse("7d").unwrap(),
    });
    let set = store
        .update(
            "key_r",
            &KeyPatch {
                refill: Some(monthly),
                ..Default::default()
            },
            &audited(),
        )
        .await
        .unwrap();
    assert_eq!(set.refill, monthly);
}

/// A store that keeps accounts, as both of its traits.
pub(crate) type WithAccounts = (
    Arc<dyn KeyStore>,
    Arc<dyn crate::store::accounts::AccountStore>,
);

/// Accounts hold a pooled balance that every key of theirs spends and gets back,
/// keys follow their account's plan unless they have a tier of their own, and the
/// request path reads the account with the key.
pub(crate) async fn accounts_pool_credits_and_carry_their_plan((keys, accounts): WithAccounts) {
    use crate::domain::{AccountFilter, AccountPatch, AccountRecord, AccountStatus, CreditChange};
    let at = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
    let acct = AccountRecord {
        credits: Some(10),
        ..AccountRecord::new("acct_a", "free", at)
    };
    assert_eq!(accounts.ensure_account(&acct).await.unwrap(), acct);
    // A second ensure of the same id keeps what is stored.
    let again = AccountRecord {
        plan: "pro".into(),
        ..acct.clone()
    };
    assert_eq!(accounts.ensure_account(&again).await.unwrap().plan, "free");
    let key = |id: &str, tier: &str| KeyRecord {
        account: Some("acct_a".into()),
        ..KeyRecord::active(id, tier, at)
    };
    let secret = generate("kg", Environment::Live);
    keys.insert(&key("key_1", "free"), &secret.hash, &audited())
        .await
        .unwrap();
    keys.insert(&key("key_2", "free"), &KeyHash::of("two"), &audited())
        .await
        .unwrap();
    keys.insert(&key("key_3", "own"), &KeyHash::of("three"), &audited())
        .await
        .unwrap();
    let found = keys.find_by_hash(&secret.hash).await.unwrap().unwrap();
    let gate = found
        .account_gate
        .expect("the key's account is read with it");
    assert_eq!(
        (gate.id.as_str(), gate.status, gate.credits),
        ("acct_a", AccountStatus::Active, Some(10))
    );
    // Every key of the account spends the one balance, in order.
    let debit = |id: &str| DebitRequest {
        holder: Holder::Account,
        ..DebitRequest::new(id, 3)
    };
    let answers = keys
        .debit_batch(&[
            debit("acct_a"),
            debit("acct_a"),
            debit("acct_a"),
            debit("acct_a"),
        ])
        .await
        .unwrap();
    assert_eq!(
        answers.into_iter().map(Result::unwrap).collect::<Vec<_>>(),
        [
            Debit::Done { remaining: 7 },
            Debit::Done { remaining: 4 },
            Debit::Done { remaining: 1 },
            Debit::Insufficient { remaining: 1 },
        ]
    );
    // The keys' own balances are untouched; a refund goes back to the account.
    assert_eq!(keys.get("key_1").await.unwrap().unwrap().credits, None);
    keys.refund_credits(Holder::Account, "acct_a", 3, 1_700_000_000)
        .await
        .unwrap();
    assert_eq!(
        accounts.account("acct_a").await.unwrap().unwrap().credits,
        Some(4)
    );
    // A plan change moves the keys on the old plan; a key's own tier stays.
    let moved = accounts
        .update_account(
            "acct_a",
            &AccountPatch {
                plan: Some("pro".into()),
                status: Some(AccountStatus::Suspended),
                ..Default::default()
            },
            &audited(),
        )
        .await
        .unwrap();
    assert_eq!(moved.keys_moved, 2);
    assert_eq!(moved.account.plan, "pro");
    let tiers: Vec<String> = accounts
        .keys_of_account("acct_a")
        .await
        .unwrap()
        .into_iter()
        .map(|k| format!("{}:{}", k.id, k.tier))
        .collect();
    assert_eq!(tiers, ["key_1:pro", "key_2:pro", "key_3:own"]);
    let found = keys.find_by_hash(&secret.hash).await.unwrap().unwrap();
    assert_eq!(found.account_gate.unwrap().status, AccountStatus::Suspended);
    // Credits: an increment never goes below zero; `set` may unmeter.
    let audit = audited();
    let add = |n| accounts.change_account_credits("acct_a", CreditChange::Add(n), &audit);
    assert_eq!(add(5).await.unwrap().credits, Some(9));
    assert_eq!(add(-100).await.unwrap().credits, Some(0));
    let unmetered = accounts
        .change_account_credits("acct_a", CreditChange::Set(None), &audited())
        .await
        .unwrap();
    assert_eq!(unmetered.credits, None);
    assert!(matches!(
        accounts
            .change_account_credits("acct_none", CreditChange::Add(1), &audited())
            .await,
        Err(StoreError::NotFound(_))
    ));
    // Each account change wrote its audit entry with it; the failed one none.
    let logged = keys.audit_log(None, 1000).await.unwrap();
    assert_eq!(
        logged.len(),
        7,
        "three keys, one account update, three credit changes: {logged:?}"
    );
    assert!(accounts
        .update_account("acct_none", &AccountPatch::default(), &audited())
        .await
        .is_err());
    assert_eq!(keys.audit_log(None, 1000).await.unwrap().len(), 7);
    // A user's own account is one, however often it is asked for.
    let own = |id: &str| AccountRecord {
        owner: Some("usr_1".into()),
        ..AccountRecord::new(id, "free", at)
    };
    let first = accounts.ensure_account(&own("acct_u1")).await.unwrap();
    let second = accounts.ensure_account(&own("acct_u2")).await.unwrap();
    assert_eq!(first.id, "acct_u1");
    assert_eq!(second.id, "acct_u1", "a user has one own account");
    assert_eq!(
        accounts
            .account_of_owner("usr_1")
            .await
            .unwrap()
            .unwrap()
            .id,
        "acct_u1"
    );
    // Listing: filters, id order, a cursor.
    let page = |after: Option<&str>, plan: Option<&str>| AccountFilter {
        after: after.map(String::from),
        plan: plan.map(String::from),
        limit: 1,
        ..Default::default()
    };
    let ids = |v: Vec<AccountRecord>| v.into_iter().map(|a| a.id).collect::<Vec<_>>();
    assert_eq!(
        ids(accounts.list_accounts(&page(None, None)).await.unwrap()),
        ["acct_a"]
    );
    assert_eq!(
        ids(accounts
            .list_accounts(&page(Some("acct_a"), None))
            .await
            .unwrap()),
        ["acct_u1"]
    );
    assert_eq!(
        ids(accounts
            .list_accounts(&page(None, Some("free")))
            .await
            .unwrap()),
        ["acct_u1"]
    );
    keys.insert(
        &KeyRecord {
            org: Some("org_z".into()),
            account: Some("acct_u1".into()),
            ..KeyRecord::active("key_org", "free", at)
        },
        &KeyHash::of("org"),
        &audited(),
    )
    .await
    .unwrap();
    let by_org = AccountFilter {
        org: Some("org_z".into()),
        limit: 10,
        ..Default::default()
    };
    assert_eq!(
        ids(accounts.list_accounts(&by_org).await.unwrap()),
        ["acct_u1"]
    );
}

/// `max_keys` counted per account counts the account's active keys whoever owns
/// them, exactly under concurrent creates on every replica.
pub(crate) async fn account_quotas_count_every_owner(stores: Vec<WithAccounts>) {
    use crate::domain::AccountRecord;
    let at = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
    stores[0]
        .1
        .ensure_account(&AccountRecord::new("acct_q", "free", at))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let store = stores[i % stores.len()].0.clone();
            tokio::spawn(async move {
                let r = KeyRecord {
                    account: Some("acct_q".into()),
                    owner: Some(format!("usr_{i}")),
                    ..KeyRecord::active(&format!("key_q{i}"), "free", at)
                };
                store
                    .insert_within_quota(
                        &r,
                        &KeyHash::of(&format!("q{i}")),
                        3,
                        QuotaScope::Account,
                        &audited(),
                    )
                    .await
            })
        })
        .collect();
    let mut stored = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            Ok(()) => stored.push(format!("key_q{i}")),
            Err(StoreError::QuotaExceeded { max: 3 }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(stored.len(), 3, "{stored:?}");
    // A revoked key frees its place; its consumption stays the account's.
    stores[0].0.revoke(&stored[0], &audited()).await.unwrap();
    let r = KeyRecord {
        account: Some("acct_q".into()),
        ..KeyRecord::active("key_q_new", "free", at)
    };
    stores[1 % stores.len()]
        .0
        .insert_within_quota(
            &r,
            &KeyHash::of("q_new"),
            3,
            QuotaScope::Account,
            &audited(),
        )
        .await
        .unwrap();
}

/// Pooled debits through ledgers on every replica spend exactly the account's
/// credits, whichever of its keys asks.
pub(crate) async fn pooled_ledgers_spend_exactly_the_account_credits(stores: Vec<WithAccounts>) {
    use crate::domain::AccountRecord;
    let at = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
    stores[0]
        .1
        .ensure_account(&AccountRecord {
            credits: Some(100),
            ..AccountRecord::new("acct_p", "free", at)
        })
        .await
        .unwrap();
    let ledgers: Vec<_> = stores
        .iter()
        .map(|s| crate::ledger::credits::CreditLedger::new(s.0.clone()))
        .collect();
    let tasks: Vec<_> = (0..240)
        .map(|i| {
            let ledger = ledgers[i % ledgers.len()].clone();
            tokio::spawn(async move {
                ledger
                    .debit(Holder::Account, "acct_p", 1, None)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut done = 0;
    for t in tasks {
        if let Debit::Done { .. } = t.await.unwrap() {
            done += 1;
        }
    }
    assert_eq!(done, 100);
    assert_eq!(
        stores[0]
            .1
            .account("acct_p")
            .await
            .unwrap()
            .unwrap()
            .credits,
        Some(0)
    );
}

/// Pages of keys, newest first, follow one another from a cursor, for all keys or
/// one owner's; a cursor naming no key (or another owner's) gives an empty page.
pub(crate) async fn keys_come_in_pages(store: Arc<dyn KeyStore>) {
    for i in 0..7 {
        let r = KeyRecord {
            owner: Some(if i % 2 == 0 { "even" } else { "odd" }.into()),
            // Two keys share each second: the id breaks the tie.
            ..KeyRecord::active(
                &format!("key_{i}"),
                "free",
                Utc.timestamp_opt(1_700_000_000 + i / 2, 0).unwrap(),
            )
        };
        store
            .insert(&r, &KeyHash::of(&format!("p{i}")), &audited())
            .await
            .unwrap();
    }
    let all: Vec<String> = store
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.list_page(None, after.as_deref(), 3).await.unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|r| r.id.clone());
        paged.extend(page.into_iter().map(|r| r.id));
    }
    assert_eq!(paged, all, "pages in list order, nothing lost or repeated");
    let evens: Vec<String> = store
        .list_page(Some("even"), Some("key_4"), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(evens, ["key_2", "key_0"]);
    assert!(store
        .list_page(Some("even"), Some("key_3"), 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .list_page(None, Some("key_none"), 10)
        .await
        .unwrap()
        .is_empty());
}

/// Admins' user changes: listing by email and cursor; disabling ends every session
/// and refresh family; a password change keeps only the session that made it; a
/// reset link works once and not after its expiry; deleting takes everything.
pub(crate) async fn users_are_administered<S>(store: Arc<S>, clock: crate::clock::ManualClock)
where
    S: super::users::UserStore + KeyStore + 'static,
{
    use crate::clock::Clock;
    use crate::store::users::Rotation;
    for id in ["usr_a", "usr_b", "usr_c"] {
        store.create_user(&user(id), &audited()).await.unwrap();
    }
    let ids = |v: Vec<crate::domain::UserRecord>| v.into_iter().map(|u| u.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.list_users(None, None, 2).await.unwrap()),
        ["usr_a", "usr_b"]
    );
    assert_eq!(
        ids(store.list_users(None, Some("usr_b"), 2).await.unwrap()),
        ["usr_c"]
    );
    assert_eq!(
        ids(store
            .list_users(Some("USR_B@example.com"), None, 9)
            .await
            .unwrap()),
        ["usr_b"]
    );
    let now = clock.now_utc();
    let later = now + chrono::Duration::hours(1);
    let (s1, s2) = (KeyHash::of("s1"), KeyHash::of("s2"));
    store.create_session(&s1, "usr_a", later).await.unwrap();
    store.create_session(&s2, "usr_a", later).await.unwrap();
    store
        .insert_refresh(&KeyHash::of("r1"), "fam_a", "usr_a", later)
        .await
        .unwrap();
    // A password change keeps the session that made it, and ends the rest.
    store
        .set_password("usr_a", "$argon2id$new", Some(&s1), &audited())
        .await
        .unwrap();
    assert!(store.session_user(&s1).await.unwrap().is_some());
    assert!(store.session_user(&s2).await.unwrap().is_none());
    assert_eq!(
        store
            .rotate_refresh(&KeyHash::of("r1"), &KeyHash::of("r2"), later, &audited())
            .await
            .unwrap(),
        Rotation::Invalid
    );
    // Disabled: no session works, no refresh rotates, until enabled.
    store
        .insert_refresh(&KeyHash::of("r3"), "fam_b", "usr_a", later)
        .await
        .unwrap();
    let disabled = store.set_disabled("usr_a", true, &audited()).await.unwrap();
    assert!(disabled.disabled);
    assert!(store.session_user(&s1).await.unwrap().is_none());
    assert_eq!(
        store
            .rotate_refresh(&KeyHash::of("r3"), &KeyHash::of("r4"), later, &audited())
            .await
            .unwrap(),
        Rotation::Invalid
    );
    let s3 = KeyHash::of("s3");
    store.create_session(&s3, "usr_a", later).await.unwrap();
    assert!(
        store.session_user(&s3).await.unwrap().is_none(),
        "a disabled user's session is no session"
    );
    assert!(
        !store
            .set_disabled("usr_a", false, &audited())
            .await
            .unwrap()
            .disabled
    );
    assert!(store.session_user(&s3).await.unwrap().is_some());
    assert!(matches!(
        store.set_disabled("usr_none", true, &audited()).await,
        Err(StoreError::NotFound(_))
    ));
    // A reset link: once, before its expiry; a newer one replaces it.
    let (l1, l2) = (KeyHash::of("link1"), KeyHash::of("link2"));
    store
        .create_password_reset(&l1, "usr_b", later, &audited())
        .await
        .unwrap();
    store
        .create_password_reset(&l2, "usr_b", later, &audited())
        .await
        .unwrap();
    assert_eq!(
        store.take_password_reset(&l1).await.unwrap(),
        None,
        "replaced"
    );
    assert_eq!(
        store.peek_password_reset(&l2).await.unwrap().as_deref(),
        Some("usr_b")
    );
    assert_eq!(
        store.take_password_reset(&l2).await.unwrap().as_deref(),
        Some("usr_b")
    );
    assert_eq!(
        store.take_password_reset(&l2).await.unwrap(),
        None,
        "used once"
    );
    let l3 = KeyHash::of("link3");
    store
        .create_password_reset(&l3, "usr_b", later, &audited())
        .await
        .unwrap();
    clock.advance_ms(2 * 3_600_000);
    assert_eq!(
        store.peek_password_reset(&l3).await.unwrap(),
        None,
        "expired"
    );
    assert_eq!(
        store.take_password_reset(&l3).await.unwrap(),
        None,
        "expired"
    );
    assert!(matches!(
        store
            .create_password_reset(&KeyHash::of("x"), "usr_none", later, &audited())
            .await,
        Err(StoreError::NotFound(_))
    ));
    // Deleted: gone, with its sessions.
    store.delete_user("usr_a", &audited()).await.unwrap();
    assert!(store.user_by_id("usr_a").await.unwrap().is_none());
    assert!(store.session_user(&s3).await.unwrap().is_none());
    assert!(matches!(
        store.delete_user("usr_a", &audited()).await,
        Err(StoreError::NotFound(_))
    ));
    // Each change wrote its audit entry in its transaction; a refused one none.
    let logged = || async { store.audit_log(None, 1000).await.unwrap().len() };
    let before = logged().await;
    assert!(store
        .set_disabled("usr_none", true, &audited())
        .await
        .is_err());
    assert!(store
        .set_password("usr_none", "phc", None, &audited())
        .await
        .is_err());
    assert!(store.delete_user("usr_none", &audited()).await.is_err());
    assert!(
        store.create_user(&user("usr_b"), &audited()).await.is_err(),
        "taken"
    );
    assert_eq!(logged().await, before, "refused changes write nothing");
    store
        .set_disabled("usr_b", false, &audited())
        .await
        .unwrap();
    assert_eq!(logged().await, before + 1);
}

/// Every audited change writes its entry in its own transaction: a change that
/// fails (no such key, a quota reached, a secret already held) leaves none, and the
/// log reads newest first, in pages.
pub(crate) async fn the_audit_log_is_written_with_each_change_and_only_then(
    store: Arc<dyn KeyStore>,
) {
    use crate::domain::{AuditEntry, AuditOrigin};
    let at = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
    let origin = AuditOrigin {
        actor: "key_admin".into(),
        client_ip: Some("203.0.113.9".into()),
        request_id: Some("req-1".into()),
    };
    let audit = |action: &'static str, target: &str, fields: &[&str]| {
        AuditEntry::new(
            &origin,
            action,
            target,
            fields.iter().map(|f| f.to_string()).collect(),
            at,
        )
    };
    let key = record("key_a", None);
    store
        .insert(
            &key,
            &KeyHash::of("a"),
            &audit("key.created", "key_a", &["name"]),
        )
        .await
        .unwrap();
    let patch = KeyPatch {
        name: Some("renamed".into()),
        ..KeyPatch::default()
    };
    store
        .update("key_a", &patch, &audit("key.updated", "key_a", &["name"]))
        .await
        .unwrap();
    // Failures write nothing.
    assert!(store
        .update(
            "key_nope",
            &patch,
            &audit("key.updated", "key_nope", &["name"])
        )
        .await
        .is_err());
    assert!(store
        .revoke("key_nope", &audit("key.revoked", "key_nope", &[]))
        .await
        .is_err());
    let again = record("key_b", None);
    assert!(
        store
            .insert(
                &again,
                &KeyHash::of("a"),
                &audit("key.created", "key_b", &[])
            )
            .await
            .is_err(),
        "the secret is held by key_a"
    );
    let over = KeyRecord {
        owner: Some("usr_q".into()),
        ..record("key_q", None)
    };
    store
        .insert_within_quota(
            &over,
            &KeyHash::of("q"),
            1,
            QuotaScope::Owner,
            &audit("key.created", "key_q", &[]),
        )
        .await
        .unwrap();
    let beyond = KeyRecord {
        owner: Some("usr_q".into()),
        ..record("key_r", None)
    };
    assert!(matches!(
        store
            .insert_within_quota(
                &beyond,
                &KeyHash::of("r"),
                1,
                QuotaScope::Owner,
                &audit("key.created", "key_r", &[]),
            )
            .await,
        Err(StoreError::QuotaExceeded { .. })
    ));
    let new = KeyHash::of("a2");
    store
        .replace_secret(
            "key_a",
            &crate::store::NewSecret {
                hash: &new,
                prefix: "kg_",
                last4: "a2a2",
            },
            None,
            &audit("key.regenerated", "key_a", &["key"]),
        )
        .await
        .unwrap();
    store
        .revoke("key_a", &audit("key.revoked", "key_a", &["status"]))
        .await
        .unwrap();

    let log = store.audit_log(None, 100).await.unwrap();
    let seen: Vec<(&str, &str)> = log
        .iter()
        .map(|e| (e.action.as_str(), e.target.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("key.revoked", "key_a"),
            ("key.regenerated", "key_a"),
            ("key.created", "key_q"),
            ("key.updated", "key_a"),
            ("key.created", "key_a"),
        ],
        "newest first, and nothing of what failed"
    );
    let first = &log[4];
    assert_eq!(first.origin, origin);
    assert_eq!(
        (first.at, first.fields.clone()),
        (at, vec!["name".to_string()])
    );
    assert!(log.windows(2).all(|w| w[0].id > w[1].id));
    // Pages: older than an entry.
    let page = store.audit_log(Some(log[1].id), 2).await.unwrap();
    let ids: Vec<i64> = page.iter().map(|e| e.id).collect();
    assert_eq!(ids, [log[2].id, log[3].id]);
}

/// An audit entry for a test's change (the CLI's, now).
pub(crate) fn audited() -> crate::domain::AuditEntry {
    crate::domain::AuditEntry::cli("test", "k", Utc::now())
}

/// What is logged besides a key's changes: a standalone entry (a failed sign-in), a
/// reused refresh token (in the transaction that revokes its family, naming its
/// user), an import (one entry, with how many keys it wrote; none for an import
/// that failed); and old entries pruned in batches, oldest first.
pub(crate) async fn security_events_imports_and_pruning_are_logged<S>(store: Arc<S>)
where
    S: KeyStore + crate::store::users::UserStore + 'static,
{
    use crate::domain::{AuditEntry, AuditOrigin};
    let day = chrono::Duration::days(1);
    let now = Utc::now();
    let anonymous = AuditOrigin {
        actor: AuditOrigin::ANONYMOUS.into(),
        client_ip: Some("198.51.100.7".into()),
        request_id: None,
    };
    let failed = AuditEntry::new(
        &anonymous,
        "auth.sign_in_failed",
        "",
        vec!["password".into()],
        now - day * 40,
    );
    store.append_audit(&failed).await.unwrap();

    let later = now + day;
    let user = crate::domain::UserRecord {
        id: "usr_z".into(),
        email: "zed@example.com".into(),
        name: None,
        password_hash: "$argon2id$x".into(),
        is_admin: false,
        disabled: false,
        created_at: now,
    };
    store.create_user(&user, &audited()).await.unwrap();
    store
        .insert_refresh(&KeyHash::of("t1"), "fam_z", "usr_z", later)
        .await
        .unwrap();
    let reuse = AuditEntry::new(&anonymous, "auth.refresh_reuse", "", Vec::new(), now);
    let rotated = store
        .rotate_refresh(&KeyHash::of("t1"), &KeyHash::of("t2"), later, &reuse)
        .await
        .unwrap();
    assert_eq!(
        rotated,
        crate::store::users::Rotation::Rotated {
            user_id: "usr_z".into()
        }
    );
    assert_eq!(
        store
            .rotate_refresh(&KeyHash::of("t1"), &KeyHash::of("t3"), later, &reuse)
            .await
            .unwrap(),
        crate::store::users::Rotation::Reused {
            user_id: "usr_z".into()
        }
    );

    let keys: Arc<dyn KeyStore> = store.clone();
    let key = |i: u64| imported(i, &format!("key_i{i}"), &format!("import-{i}"), true);
    assert!(feed(&keys, vec![ImportMsg::Keys(vec![key(1), key(2)])])
        .await
        .is_err());
    let n = feed(&keys, vec![ImportMsg::Keys(vec![key(1), key(2)]), commit()])
        .await
        .unwrap();
    assert_eq!(n, 2);

    let log = store.audit_log(None, 10).await.unwrap();
    // (The user's creation, a fixture, is logged too.)
    let log: Vec<_> = log.into_iter().filter(|e| e.action != "test").collect();
    let seen: Vec<(&str, &str, &str)> = log
        .iter()
        .map(|e| {
            (
                e.action.as_str(),
                e.target.as_str(),
                e.origin.actor.as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("keys.imported", "2 keys", "cli"),
            ("auth.refresh_reuse", "usr_z", "anonymous"),
            ("auth.sign_in_failed", "", "anonymous"),
        ],
        "one entry per import that committed; reuse names the family's user"
    );
    assert_eq!(log[2].origin, anonymous);

    // Pruning: entries before the cut go, in batches, oldest first.
    for d in 1..=4 {
        let old = AuditEntry::new(
            &anonymous,
            "auth.sign_in_failed",
            "",
            Vec::new(),
            now - day * (30 + d),
        );
        store.append_audit(&old).await.unwrap();
    }
    let cut = now - day * 30;
    assert_eq!(store.prune_audit(cut, 3).await.unwrap(), 3);
    assert_eq!(store.prune_audit(cut, 3).await.unwrap(), 2);
    assert_eq!(store.prune_audit(cut, 3).await.unwrap(), 0);
    let log = store.audit_log(None, 10).await.unwrap();
    assert!(log.iter().all(|e| e.at >= cut), "{log:?}");
    assert_eq!(
        log.len(),
        3,
        "the import's, the reuse's and the fixture's are kept"
    );
}

/// The webhook outbox: events in order, kept once per id; a cursor and its delivery
/// saved together; one lease holder at a time until the lease lapses; old events
/// and deliveries pruned.
pub(crate) async fn the_outbox_keeps_events_cursors_and_one_lease_holder<S>(store: Arc<S>)
where
    S: super::events::EventStore + KeyStore + 'static,
{
    use super::events::{Cursor, Delivery, Outcome};
    use crate::domain::event::Event;
    let now = Utc::now();
    let a = Event::new(
        "key.created",
        now,
        serde_json::json!({"key": {"id": "key_1"}}),
    );
    let b = Event::new(
        "key.revoked",
        now,
        serde_json::json!({"key": {"id": "key_1"}}),
    );
    store.append_events(&[a.clone(), b.clone()]).await.unwrap();
    store.append_events(std::slice::from_ref(&a)).await.unwrap();
    let all = store.events_after(0, 10).await.unwrap();
    let kinds: Vec<&str> = all.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["key.created", "key.revoked"],
        "one row per id, in order"
    );
    assert_eq!(all[0].id, a.id);
    assert_eq!(all[0].data, a.data);
    assert_eq!(store.last_event_seq().await.unwrap(), all[1].seq);
    assert_eq!(store.events_after(all[0].seq, 10).await.unwrap().len(), 1);

    assert_eq!(store.cursor("https://r.example/in").await.unwrap(), None);
    let cursor = Cursor {
        seq: all[0].seq,
        attempts: 0,
        next_attempt_at: DateTime::<Utc>::UNIX_EPOCH,
    };
    let delivery = Delivery {
        // Kept to the millisecond.
        at: Utc.timestamp_millis_opt(now.timestamp_millis()).unwrap(),
        receiver: "https://r.example/in".into(),
        event_id: a.id.clone(),
        kind: a.kind.clone(),
        attempt: 1,
        outcome: Outcome::Delivered,
        status: Some(204),
        error: None,
    };
    store
        .save_cursor("https://r.example/in", &cursor, Some(&delivery))
        .await
        .unwrap();
    let failing = Cursor {
        attempts: 3,
        next_attempt_at: now + chrono::Duration::seconds(4),
        ..cursor.clone()
    };
    store
        .save_cursor("https://r.example/in", &failing, None)
        .await
        .unwrap();
    let back = store.cursor("https://r.example/in").await.unwrap().unwrap();
    assert_eq!((back.seq, back.attempts), (failing.seq, 3));
    assert_eq!(
        back.next_attempt_at.timestamp_millis(),
        failing.next_attempt_at.timestamp_millis()
    );
    assert_eq!(store.recent_deliveries(5).await.unwrap(), [delivery]);

    let later = now + chrono::Duration::seconds(10);
    assert!(store
        .take_lease("webhooks", "p1", now, later)
        .await
        .unwrap());
    assert!(
        store
            .take_lease("webhooks", "p1", now, later)
            .await
            .unwrap(),
        "renewed"
    );
    assert!(
        !store
            .take_lease("webhooks", "p2", now, later)
            .await
            .unwrap(),
        "held"
    );
    assert!(
        store
            .take_lease(
                "webhooks",
                "p2",
                later,
                later + chrono::Duration::seconds(10)
            )
            .await
            .unwrap(),
        "lapsed: taken over"
    );
    assert!(!store
        .take_lease("webhooks", "p1", later, later)
        .await
        .unwrap());

    // Keys about to expire: active ones, within the window, soonest first.
    for (id, days, status) in [
        ("key_e30", 30, KeyStatus::Active),
        ("key_e3", 3, KeyStatus::Active),
        ("key_e2", 2, KeyStatus::Revoked),
        ("key_e1", 1, KeyStatus::Active),
    ] {
        let k = KeyRecord {
            status,
            expires_at: Some(now + chrono::Duration::days(days)),
            ..record(id, None)
        };
        store
            .insert(&k, &KeyHash::of(id), &audited())
            .await
            .unwrap();
    }
    let expiring = store
        .keys_expiring(now, now + chrono::Duration::days(7), 10)
        .await
        .unwrap();
    let ids: Vec<&str> = expiring.iter().map(|k| k.id.as_str()).collect();
    assert_eq!(ids, ["key_e1", "key_e3"]);

    assert_eq!(
        store
            .prune_events(now - chrono::Duration::seconds(1), 10)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store.prune_events(later, 10).await.unwrap(),
        3,
        "two events, one delivery"
    );
    assert!(store.events_after(0, 10).await.unwrap().is_empty());
}
