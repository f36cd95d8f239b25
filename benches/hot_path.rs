//! Criterion micro-benchmarks of the request path's own work (ns/op):
//! API-key verification on a cache hit and on a miss (SQLite), JWT verification per
//! algorithm uncached and cached, a limiter decision, and the refusal path in the
//! contract's shape and in a dialect's.
//! Run: `cargo bench --bench hot_path`.
#![allow(missing_docs)]
// criterion_group! generates undocumented items
// A benchmark reads the real time and unwraps its set-up.
#![allow(clippy::disallowed_methods, clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use keygate::auth::cache::KeyCache;
use keygate::auth::key_format::{generate, KeyFormat};
use keygate::auth::verify::KeyVerifier;
use keygate::config::{CacheConfig, TierConfig};
use keygate::domain::duration::Dur;
use keygate::domain::{Environment, KeyHash, KeyRecord};
use keygate::limit::memory::MemoryLimiter;
use keygate::limit::TierLimits;
use keygate::store::sqlite::SqliteStore;
use keygate::store::KeyStore;
use std::sync::Arc;

fn record(id: &str) -> KeyRecord {
    KeyRecord {
        scopes: vec!["search".into()],
        ..KeyRecord::active(id, "free", chrono::Utc::now())
    }
}

/// A runtime of one worker, and a directory for a SQLite store.
fn one_worker() -> (tokio::runtime::Runtime, tempfile::TempDir) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    (rt, tempfile::tempdir().unwrap())
}

fn benches(c: &mut Criterion) {
    let (rt, dir) = one_worker();
    let store = Arc::new(SqliteStore::open(&dir.path().join("bench.db")).unwrap());
    let key = generate("kg", Environment::Live);
    rt.block_on(store.insert(
        &record("key_bench"),
        &key.hash,
        &keygate::domain::AuditEntry::cli("test", "k", chrono::Utc::now()),
    ))
    .unwrap();
    let format = KeyFormat::default();

    let cached = KeyVerifier::new(
        store.clone(),
        KeyCache::new(
            &CacheConfig::default(),
            std::sync::Arc::new(keygate::clock::SystemClock),
        ),
    );
    rt.block_on(cached.lookup(&key.plaintext, &format)).unwrap();
    c.bench_function("verify_key_cache_hit", |b| {
        b.to_async(&rt)
            .iter(|| async { cached.lookup(&key.plaintext, &format).await.unwrap() })
    });

    let tiny_ttl = CacheConfig {
        capacity: 1,
        ttl: Dur(std::time::Duration::from_nanos(1)),
        negative_ttl: Dur::secs(0),
        stale_if_error: Dur::secs(0),
    };
    let uncached = KeyVerifier::new(
        store.clone(),
        KeyCache::new(&tiny_ttl, std::sync::Arc::new(keygate::clock::SystemClock)),
    );
    c.bench_function("verify_key_cache_miss_sqlite", |b| {
        b.to_async(&rt).iter(|| async {
            uncached.cache().invalidate(&KeyHash::of(&key.plaintext));
            uncached.lookup(&key.plaintext, &format).await.unwrap()
        })
    });

    c.bench_function("sha256_of_key", |b| b.iter(|| KeyHash::of(&key.plaintext)));

    // The format check every presented key goes through before any lookup: the
    // default format, a seed's own format, and a key with a wrong checksum.
    c.bench_function("key_format_check_default", |b| {
        b.iter(|| format.classify(std::hint::black_box(&key.plaintext)))
    });
    let seed = KeyFormat::parse("ak_{env}_{random:26}{checksum}", "kg", &[]).unwrap();
    let seed_key = seed.generate(Environment::Live).into_plaintext();
    c.bench_function("key_format_check_seed", |b| {
        b.iter(|| seed.classify(std::hint::black_box(&seed_key)))
    });
    let mut wrong = key.plaintext.clone().into_bytes();
    let last = wrong.len() - 1;
    wrong[last] = if wrong[last] == b'0' { b'1' } else { b'0' };
    let wrong = String::from_utf8(wrong).unwrap();
    c.bench_function("key_format_check_wrong_checksum", |b| {
        b.iter(|| format.classify(std::hint::black_box(&wrong)))
    });

    let limiter = MemoryLimiter::new();
    let tier = TierLimits::from_config(
        "free",
        &TierConfig {
            per_second: Some(u64::MAX),
            per_minute: Some(u64::MAX),
            per_day: Some(u64::MAX),
            ..Default::default()
        },
    );
    let mut now = 1_700_000_000_000u64;
    c.bench_function("limiter_decision_3_windows", |b| {
        b.iter(|| {
            now += 1;
            limiter.check("key:key_bench", &tier, now)
        })
    });
    // The same three windows counted sliding (a 21-bucket ring each); the clock
    // moves 1 ms a decision, so rings advance a bucket every 50 decisions.
    let sliding = MemoryLimiter::new();
    let sliding_tier = TierLimits::from_config(
        "free",
        &TierConfig {
            per_second: Some(u32::MAX.into()),
            per_minute: Some(u32::MAX.into()),
            per_day: Some(u32::MAX.into()),
            algorithm: keygate::domain::Algorithm::Sliding,
            ..Default::default()
        },
    );
    let mut now = 1_700_000_000_000u64;
    c.bench_function("limiter_decision_3_windows_sliding", |b| {
        b.iter(|| {
            now += 1;
            sliding.check("key:key_bench", &sliding_tier, now)
        })
    });
}

/// One API-key request's authentication and limiter decision, cache hit, on a
/// per-key tier and on a `pool: account` tier, side by side in one run: what an
/// account costs the request path.
fn pooled_benches(c: &mut Criterion) {
    use keygate::auth::authenticator::{AuthSettings, Authenticator};
    use keygate::domain::{AccountRecord, Pool};
    use keygate::limit::Tiers;
    use keygate::store::accounts::AccountStore;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("pooled.db")).unwrap());
    let windows = TierConfig {
        per_second: Some(u64::MAX),
        per_minute: Some(u64::MAX),
        per_day: Some(u64::MAX),
        ..Default::default()
    };
    let tiers: std::collections::BTreeMap<String, TierConfig> = [
        ("free".to_string(), windows.clone()),
        (
            "team".to_string(),
            TierConfig {
                pool: Pool::Account,
                ..windows
            },
        ),
    ]
    .into_iter()
    .collect();
    let tiers = Tiers::from_config(&tiers, "free");
    rt.block_on(store.ensure_account(&AccountRecord::new(
        "acct_bench",
        "team",
        chrono::Utc::now(),
    )))
    .unwrap();
    let (own, pooled) = (
        generate("kg", Environment::Live),
        generate("kg", Environment::Live),
    );
    let with_account = |id: &str, tier: &str| KeyRecord {
        account: Some("acct_bench".into()),
        ..KeyRecord::active(id, tier, chrono::Utc::now())
    };
    rt.block_on(store.insert(
        &with_account("key_own", "free"),
        &own.hash,
        &keygate::domain::AuditEntry::cli("test", "k", chrono::Utc::now()),
    ))
    .unwrap();
    rt.block_on(store.insert(
        &with_account("key_pooled", "team"),
        &pooled.hash,
        &keygate::domain::AuditEntry::cli("test", "k", chrono::Utc::now()),
    ))
    .unwrap();
    let clock: Arc<dyn keygate::clock::Clock> = Arc::new(keygate::clock::SystemClock);
    let auth = Authenticator::new(
        KeyVerifier::new(
            store.clone(),
            KeyCache::new(&CacheConfig::default(), clock.clone()),
        ),
        None,
        clock,
    );
    let format = KeyFormat::default();
    let settings = AuthSettings {
        sources: &[],
        key_format: &format,
        tiers: &tiers,
    };
    let limiter = MemoryLimiter::new();
    for (name, key) in [("per_key_tier", &own), ("pool_account_tier", &pooled)] {
        rt.block_on(auth.authenticate(&settings, &key.plaintext, None))
            .unwrap();
        let mut now = 1_700_000_000_000u64;
        c.bench_function(&format!("authenticate_and_limit_{name}"), |b| {
            b.to_async(&rt).iter(|| {
                now += 1;
                let at = now;
                let (auth, settings, limiter, key) = (&auth, &settings, &limiter, &key.plaintext);
                async move {
                    let p = auth.authenticate(settings, key, None).await.unwrap();
                    limiter.check(p.identity.limit_key_on(&p.tier), &p.tier, at)
                }
            })
        });
    }
}

/// JWT verification, uncached and cached, for RS256, ES256, EdDSA and HS256, with
/// the test-only keys in `benches/jwt-keys/`.
fn jwt_benches(c: &mut Criterion) {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    use keygate::auth::jwt::JwtVerifier;
    use keygate::config::{JwtConfig, JwtKeyConfig};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/jwt-keys");
    let read = |f: &str| std::fs::read(format!("{dir}/{f}")).unwrap();
    let secret = String::from_utf8(read("hs.secret")).unwrap();
    let cases: [(&str, Algorithm, EncodingKey, JwtKeyConfig); 4] = [
        (
            "RS256",
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(&read("rsa.key.pem")).unwrap(),
            key_config("RS256", Some("rsa.pub.pem"), None),
        ),
        (
            "ES256",
            Algorithm::ES256,
            EncodingKey::from_ec_pem(&read("ec256.key.pem")).unwrap(),
            key_config("ES256", Some("ec256.pub.pem"), None),
        ),
        (
            "EdDSA",
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(&read("ed.key.pem")).unwrap(),
            key_config("EdDSA", Some("ed.pub.pem"), None),
        ),
        (
            "HS256",
            Algorithm::HS256,
            EncodingKey::from_secret(secret.as_bytes()),
            key_config("HS256", None, Some(secret.clone())),
        ),
    ];
    for (name, alg, encoding, key) in cases {
        let config = JwtConfig {
            enabled: true,
            algorithms: vec![name.into()],
            keys: vec![key],
            ..Default::default()
        };
        let verifier = JwtVerifier::new(
            &config,
            1000,
            None,
            std::sync::Arc::new(keygate::clock::SystemClock),
        )
        .unwrap();
        let mut header = Header::new(alg);
        header.kid = Some(name.into());
        let claims =
            serde_json::json!({"sub": "bench", "exp": 4_102_444_800u64, "scope": "read search"});
        let token = encode(&header, &claims, &encoding).unwrap();
        rt.block_on(verifier.verify(&token)).unwrap();
        c.bench_function(&format!("jwt_{name}_uncached"), |b| {
            b.iter(|| {
                verifier.forget(&token);
                rt.block_on(verifier.verify(&token)).unwrap()
            })
        });
        c.bench_function(&format!("jwt_{name}_cached"), |b| {
            b.iter(|| rt.block_on(verifier.verify(&token)).unwrap())
        });
    }
}

/// The refusal path: an unknown (well-formed) key found in the negative cache and
/// its 401 body, in the contract's shape, in AlfaOne's and in Altus 4's (the
/// shipped templates of `conf/examples/seeds/`); and a 429's body alone, each way.
fn refusal_benches(c: &mut Criterion) {
    use keygate::dialect::Dialect;
    use keygate::error::GateError;
    let (rt, dir) = one_worker();
    let store = Arc::new(SqliteStore::open(&dir.path().join("bench.db")).unwrap());
    let verifier = KeyVerifier::new(
        store,
        KeyCache::new(
            &CacheConfig::default(),
            std::sync::Arc::new(keygate::clock::SystemClock),
        ),
    );
    let format = KeyFormat::default();
    let unknown = generate("kg", Environment::Live).into_plaintext();
    assert!(rt.block_on(verifier.lookup(&unknown, &format)).is_err());
    let shipped = |api: &str| {
        let path = format!(
            "{}/conf/examples/seeds/{api}.yaml",
            env!("CARGO_MANIFEST_DIR")
        );
        let doc: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        Dialect::compile(&serde_yaml::from_value(doc["dialect"].clone()).unwrap()).unwrap()
    };
    // AlfaOne's template reads the refusal only: each body is rendered once.
    // Altus 4's reads the time and the request id: rendered for every refusal.
    let (alfaone, altus4) = (shipped("alfaone"), shipped("altus4"));
    let contract = Dialect::default();
    let dialects = [
        ("contract", &contract),
        ("template", &alfaone),
        ("template_timed", &altus4),
    ];
    for (name, dialect) in dialects {
        c.bench_function(&format!("refuse_unknown_key_{name}"), |b| {
            b.to_async(&rt).iter(|| async {
                let err: GateError = verifier.lookup(&unknown, &format).await.unwrap_err().into();
                dialect.refusal(&err, None, "req_0123456789", chrono::Utc::now())
            })
        });
    }
    let limited = GateError::RateLimited { retry_after: 45 };
    for (name, dialect) in dialects {
        c.bench_function(&format!("refusal_body_429_{name}"), |b| {
            b.iter(|| dialect.refusal(&limited, None, "req_0123456789", chrono::Utc::now()))
        });
    }
}

fn key_config(
    alg: &str,
    pem: Option<&str>,
    secret: Option<String>,
) -> keygate::config::JwtKeyConfig {
    keygate::config::JwtKeyConfig {
        kid: Some(alg.into()),
        alg: alg.into(),
        pem_file: pem.map(|f| {
            std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/jwt-keys"))
                .join(f)
        }),
        secret: secret.map(keygate::config::Secret::new),
        jwk: None,
    }
}

criterion_group!(
    hot_path,
    benches,
    pooled_benches,
    jwt_benches,
    refusal_benches
);
criterion_main!(hot_path);
