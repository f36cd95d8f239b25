//! Bytes of memory each cached key holds, by component: the key cache entry (moka's
//! own bookkeeping, the checks and the identity), the limiter's counters and the
//! usage aggregate between flushes. Counted exactly by dhat's allocator (live bytes
//! requested, before the allocator's own rounding), for KEYS keys built the way the
//! request path builds them.
//! Run: `cargo bench --bench key_memory` (KEYS=100000 by default).
#![allow(missing_docs)]
// A benchmark reads the real time and unwraps its set-up.
#![allow(clippy::disallowed_methods, clippy::unwrap_used, clippy::expect_used)]
// It prints its table.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use keygate::auth::cache::{KeyCache, KnownKey};
use keygate::config::{CacheConfig, TierConfig};
use keygate::domain::{KeyHash, KeyRecord};
use keygate::ledger::usage::UsageRecorder;
use keygate::limit::memory::MemoryLimiter;
use keygate::limit::TierLimits;
use std::sync::Arc;

#[global_allocator]
static GLOBAL: dhat::Alloc = dhat::Alloc;

/// Bytes live now, as dhat counts them.
fn live() -> isize {
    dhat::HeapStats::get().curr_bytes as isize
}

/// A key as `benches/scale.sh` stores it (and as most keys look): no owner, no org,
/// no scopes, no IP list.
fn record(i: usize) -> KeyRecord {
    KeyRecord {
        name: "k".into(),
        prefix: "kg_sk_live_".into(),
        last4: "abcd".into(),
        ..KeyRecord::active(&format!("key_s{i:08}"), "bench", chrono::Utc::now())
    }
}

fn main() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let n: usize = std::env::var("KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let cache = KeyCache::new(
        &CacheConfig {
            capacity: n as u64 * 2,
            ..Default::default()
        },
        Arc::new(keygate::clock::SystemClock),
    );
    let limiter = MemoryLimiter::new();
    let usage = UsageRecorder::new();
    let tier = TierLimits::from_config(
        "bench",
        &TierConfig {
            per_second: Some(u64::MAX),
            per_minute: Some(u64::MAX),
            per_day: Some(u64::MAX),
            ..Default::default()
        },
    );
    let now = chrono::Utc::now();
    let now_ms = now.timestamp_millis() as u64;
    let keys: Vec<Arc<KnownKey>> = Vec::with_capacity(n);
    let mut keys = keys;
    let hashes: Vec<KeyHash> = (0..n)
        .map(|i| KeyHash::of(&format!("secret {i}")))
        .collect();

    let before = live();
    for (i, hash) in hashes.iter().enumerate() {
        let known = Arc::new(KnownKey::new(record(i), now_ms));
        cache.insert_known(*hash, known.clone(), cache.changes_seen());
        keys.push(known);
    }
    let _ = cache.len(); // moka's pending work done
                         // The entries' own bytes (checks + identity), counted apart from moka's by
                         // dropping the bench's handles after the cache holds them.
    let with_handles = live();
    let handles = keys.capacity() * std::mem::size_of::<Arc<KnownKey>>();
    let cache_bytes = with_handles - before - handles as isize;
    let limiter_before = live();
    for k in &keys {
        limiter.check(k.identity.limit_key(), &tier, now_ms);
    }
    let limiter_bytes = live() - limiter_before;
    // The same windows counted sliding (one 21-bucket ring each), in a limiter of
    // their own: reported beside the fixed figure, not added to the total (a tier
    // counts one way).
    let sliding_tier = TierLimits::from_config(
        "bench-sliding",
        &TierConfig {
            per_second: Some(u32::MAX.into()),
            per_minute: Some(u32::MAX.into()),
            per_day: Some(u32::MAX.into()),
            algorithm: keygate::domain::Algorithm::Sliding,
            ..Default::default()
        },
    );
    let sliding = MemoryLimiter::new();
    let sliding_before = live();
    for k in &keys {
        sliding.check(k.identity.limit_key(), &sliding_tier, now_ms);
    }
    let sliding_bytes = live() - sliding_before;
    let usage_before = live();
    for k in &keys {
        usage.record(
            k.id(),
            "/v1/search",
            keygate::domain::UsageClass::Successful,
            1_000,
            now,
        );
    }
    let usage_bytes = live() - usage_before;
    drop(keys);
    let per = |b: isize| b as f64 / n as f64;
    println!("keys: {n}");
    println!("{:<44} {:>12}", "component", "bytes/key");
    println!(
        "{:<44} {:>12.0}",
        "key cache (moka entry, checks, identity)",
        per(cache_bytes)
    );
    println!(
        "{:<44} {:>12.0}",
        "limiter counters (memory backend)",
        per(limiter_bytes)
    );
    println!(
        "{:<44} {:>12.0}",
        "  same 3 windows sliding (instead, not added)",
        per(sliding_bytes)
    );
    println!(
        "{:<44} {:>12.0}",
        "usage aggregate (until the next flush)",
        per(usage_bytes)
    );
    let total = per(cache_bytes + limiter_bytes + usage_bytes);
    println!("{:<44} {:>12.0}", "total", total);
    let budget = keygate::config::memory::BYTES_PER_KEY;
    println!(
        "{:<44} {:>12}",
        "budget (config::memory::BYTES_PER_KEY, RSS)", budget
    );
    if total > budget as f64 {
        eprintln!("over budget: the deployment limit test no longer holds");
        std::process::exit(1);
    }
}
