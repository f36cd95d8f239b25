//! How much memory keygate needs for `cache.capacity` keys in use: the figure the
//! shipped Kubernetes limit (`deploy/kubernetes/deployment.yaml`) is checked
//! against, so the sidecar's limit and its default cache can never disagree.

/// Resident memory of a keygate with nothing cached (runtimes, store connections
/// and their page caches, buffers), in MiB. `benches/scale.sh` measures 25 MB idle.
pub const BASE_MIB: u64 = 32;

/// Resident memory per cached key in use, in bytes: its cache entry (moka's own
/// bookkeeping, the key's checks and identity), its limiter counters and its usage
/// aggregate, allocator overhead included. `benches/scale.sh` measures (peak RSS
/// with 100k keys in use at full load − idle RSS) / 100k ≈ 1,460 bytes at peak and
/// 1,290 after its soak; `benches/key_memory.rs` counts the bytes requested per
/// component (853 in all, before the allocator's rounding) and fails above this.
pub const BYTES_PER_KEY: u64 = 1_400;

/// A limit should be this percentage of the expected need (125: a quarter more):
/// flushes, reloads and bursts of new connections borrow memory for a moment.
pub const HEADROOM_PERCENT: u64 = 125;

/// Resident memory (MiB) keygate needs with `capacity` keys cached and in use.
pub fn needed_mib(capacity: u64) -> u64 {
    BASE_MIB + (capacity.saturating_mul(BYTES_PER_KEY)).div_ceil(1024 * 1024)
}

/// The smallest container memory limit (MiB) to give keygate with `capacity`.
pub fn limit_mib(capacity: u64) -> u64 {
    needed_mib(capacity)
        .saturating_mul(HEADROOM_PERCENT)
        .div_ceil(100)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_yaml::Value;

    /// A Kubernetes quantity (`256Mi`, `1Gi`, `300M`) in MiB.
    fn mib(q: &str) -> u64 {
        let (n, unit) = q.split_at(q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len()));
        let n: u64 = n.parse().unwrap();
        match unit {
            "Mi" => n,
            "Gi" => n * 1024,
            "M" => n * 1_000_000 / (1024 * 1024),
            "G" => n * 1_000_000_000 / (1024 * 1024),
            "" => n / (1024 * 1024),
            other => panic!("unknown quantity unit {other}"),
        }
    }

    fn manifest(name: &str) -> Value {
        let path = format!("{}/deploy/kubernetes/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn the_shipped_sidecar_limit_holds_the_shipped_cache() {
        let config = manifest("configmap.yaml");
        let keygate: Value =
            serde_yaml::from_str(config["data"]["keygate.yaml"].as_str().unwrap()).unwrap();
        let capacity = keygate["cache"]["capacity"]
            .as_u64()
            .unwrap_or(crate::config::CacheConfig::default().capacity);
        let deployment = manifest("deployment.yaml");
        let containers = deployment["spec"]["template"]["spec"]["containers"]
            .as_sequence()
            .unwrap();
        let sidecar = containers
            .iter()
            .find(|c| c["name"] == "keygate")
            .expect("a container named keygate");
        let limit = mib(sidecar["resources"]["limits"]["memory"].as_str().unwrap());
        assert!(
            limit >= limit_mib(capacity),
            "deployment.yaml gives keygate {limit} MiB, but cache.capacity {capacity} needs \
             {} MiB, {} MiB with headroom (see config::memory)",
            needed_mib(capacity),
            limit_mib(capacity)
        );
    }

    #[test]
    fn quantities_and_needs_add_up() {
        assert_eq!(mib("256Mi"), 256);
        assert_eq!(mib("1Gi"), 1024);
        assert_eq!(needed_mib(0), BASE_MIB);
        assert!(needed_mib(1_000_000) > needed_mib(100_000));
        assert!(limit_mib(100_000) > needed_mib(100_000));
    }
}
