//! The read-only file store (docs/operations.md, The file store): a YAML list of hashed
//! keys, kept in memory and re-read when the file changes.
//!
//! The file is validated like the config: every problem is reported with its path
//! (`keys[2].hash: ...`). It is polled every 500 ms (size, modification time, inode,
//! then content), which also sees Kubernetes ConfigMap updates (a symlink swap that
//! file-watch APIs often miss); a change is read once the file has been stable for
//! 200 ms. A broken file keeps the last good key set. Credits and usage need a
//! writable store, so with this one they are off.

use super::{ChangeHandler, Debit, DebitRequest, DebitResult, KeyStore, StoreChange, StoreError};
use crate::clock::{Clock, SystemClock};
use crate::config::Problem;
use crate::domain::{AuditEntry, Environment, KeyHash, KeyPatch, KeyRecord, KeyStatus, UsageRow};
use crate::obs::metrics;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// One entry of the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKey {
    id: String,
    #[serde(default)]
    name: Option<String>,
    hash: String,
    tier: String,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default = "live")]
    environment: Environment,
    #[serde(default)]
    org: Option<String>,
    #[serde(default)]
    owner: Option<String>,
    /// The account whose windows a `pool: account` tier counts against (the file
    /// store keeps no balances, so no pooled credits).
    #[serde(default)]
    account: Option<String>,
    #[serde(default = "active")]
    status: KeyStatus,
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    allowed_ips: Vec<String>,
}

fn live() -> Environment {
    Environment::Live
}

fn active() -> KeyStatus {
    KeyStatus::Active
}

/// The parsed file.
#[derive(Debug, Default)]
struct KeySet {
    by_hash: HashMap<KeyHash, Arc<KeyRecord>>,
    /// In file order.
    records: Vec<Arc<KeyRecord>>,
}

/// Why the file was refused: every problem, with its path.
#[derive(Debug, thiserror::Error)]
#[error("{} problem(s) in key file {path}:\n{}", .problems.len(), .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct KeyFileError {
    /// The file.
    pub path: String,
    /// What is wrong, by path.
    pub problems: Vec<Problem>,
}

/// Parses and validates key-file text; `tiers` are the configured tier names.
fn parse(
    text: &str,
    tiers: &HashSet<String>,
    loaded_at: DateTime<Utc>,
) -> Result<KeySet, Vec<Problem>> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        #[serde(default)]
        keys: Vec<serde_yaml::Value>,
    }
    let doc: Doc = serde_yaml::from_str(text)
        .map_err(|e| vec![Problem::new("", format!("not a key file: {e}"))])?;
    let mut problems = Vec::new();
    let mut set = KeySet::default();
    let mut ids = HashSet::new();
    for (i, entry) in doc.keys.into_iter().enumerate() {
        let at = format!("keys[{i}]");
        let key: FileKey = match serde_path_to_error::deserialize(entry) {
            Ok(k) => k,
            Err(e) => {
                let field = e.path().to_string();
                let path = if field == "." {
                    at
                } else {
                    format!("{at}.{field}")
                };
                problems.push(Problem::new(path, e.into_inner().to_string()));
                continue;
            }
        };
        let before = problems.len();
        if key.id.trim().is_empty() {
            problems.push(Problem::new(format!("{at}.id"), "must not be empty"));
        } else if !ids.insert(key.id.clone()) {
            problems.push(Problem::new(
                format!("{at}.id"),
                format!("duplicate id `{}`", key.id),
            ));
        }
        let hash = KeyHash::parse(&key.hash);
        match hash {
            None => problems.push(Problem::new(
                format!("{at}.hash"),
                "expected sha256:<64 hex digits> (keygate keys hash KEY prints it)",
            )),
            Some(h) if set.by_hash.contains_key(&h) => problems.push(Problem::new(
                format!("{at}.hash"),
                "the same key hash appears twice",
            )),
            Some(_) => {}
        }
        if !tiers.contains(&key.tier) {
            problems.push(Problem::new(
                format!("{at}.tier"),
                format!("`{}` is not a configured tier", key.tier),
            ));
        }
        let mut allowed_ips = Vec::new();
        for (j, ip) in key.allowed_ips.iter().enumerate() {
            match crate::domain::key::parse_network(ip) {
                Some(net) => allowed_ips.push(net),
                None => problems.push(Problem::new(
                    format!("{at}.allowed_ips[{j}]"),
                    format!("`{ip}` is not an IP address or CIDR network"),
                )),
            }
        }
        if problems.len() > before {
            continue;
        }
        let Some(hash) = hash else { continue };
        let record = Arc::new(KeyRecord {
            name: key.name.unwrap_or_else(|| key.id.clone()),
            id: key.id,
            prefix: String::new(),
            last4: String::new(),
            tier: key.tier,
            scopes: key.scopes,
            environment: key.environment,
            org: key.org,
            owner: key.owner,
            account: key.account,
            cap: None,
            status: key.status,
            credits: None,
            refill: None,
            refilled_at: None,
            allowed_ips,
            expires_at: key.expires_at,
            created_at: loaded_at,
            last_used_at: None,
            secret_valid_until: None,
            account_gate: None,
        });
        set.by_hash.insert(hash, record.clone());
        set.records.push(record);
    }
    if problems.is_empty() {
        Ok(set)
    } else {
        Err(problems)
    }
}

/// What identifies one version of the file without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        len: m.len(),
        modified: m.modified().ok(),
        inode: m.ino(),
    })
}

/// Keys from a YAML file.
pub struct FileStore {
    path: PathBuf,
    tiers: HashSet<String>,
    keys: Arc<ArcSwap<KeySet>>,
    text: Arc<parking_lot::Mutex<String>>,
    stop: tokio::sync::watch::Sender<()>,
}

impl FileStore {
    /// Reads and validates `path`; `tiers` are the configured tier names.
    pub fn open(path: &Path, tiers: HashSet<String>) -> Result<Self, KeyFileError> {
        let fail = |problems| KeyFileError {
            path: path.display().to_string(),
            problems,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| fail(vec![Problem::new("", format!("cannot read it: {e}"))]))?;
        let set = parse(&text, &tiers, SystemClock.now_utc()).map_err(fail)?;
        metrics::FILE_STORE_KEYS.set(set.records.len() as i64);
        let (stop, _) = tokio::sync::watch::channel(());
        Ok(FileStore {
            path: path.to_path_buf(),
            tiers,
            keys: Arc::new(ArcSwap::from_pointee(set)),
            text: Arc::new(parking_lot::Mutex::new(text)),
            stop,
        })
    }

    fn read_only(&self) -> StoreError {
        StoreError::ReadOnly(format!(
            "the file store is read-only: edit {} (keygate keys hash KEY prints a key's hash)",
            self.path.display()
        ))
    }
}

/// Re-reads the file when it changes; returns true when the key set was replaced.
fn refresh(
    path: &Path,
    tiers: &HashSet<String>,
    keys: &ArcSwap<KeySet>,
    current: &parking_lot::Mutex<String>,
) -> bool {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            metrics::FILE_STORE_RELOADS
                .with_label_values(&["error"])
                .inc();
            tracing::error!(path = %path.display(), error = %e, "key file unreadable; keeping the last good keys");
            return false;
        }
    };
    if *current.lock() == text {
        return false;
    }
    match parse(&text, tiers, SystemClock.now_utc()) {
        Ok(set) => {
            let n = set.records.len();
            keys.store(Arc::new(set));
            *current.lock() = text;
            metrics::FILE_STORE_KEYS.set(n as i64);
            metrics::FILE_STORE_RELOADS.with_label_values(&["ok"]).inc();
            tracing::info!(path = %path.display(), keys = n, "key file reloaded");
            true
        }
        Err(problems) => {
            // Remember the broken text, so it is reported once, not every poll.
            *current.lock() = text;
            metrics::FILE_STORE_RELOADS
                .with_label_values(&["error"])
                .inc();
            for p in &problems {
                tracing::error!(path = %path.display(), problem = %p, "key file refused");
            }
            tracing::error!(path = %path.display(), problems = problems.len(), "key file refused; keeping the last good keys");
            false
        }
    }
}

#[async_trait]
impl KeyStore for FileStore {
    async fn find_by_hash(&self, hash: &KeyHash) -> Result<Option<KeyRecord>, StoreError> {
        Ok(self.keys.load().by_hash.get(hash).map(|r| (**r).clone()))
    }

    async fn get(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        let keys = self.keys.load();
        Ok(keys
            .records
            .iter()
            .find(|r| r.id == id)
            .map(|r| (**r).clone()))
    }

    async fn list(&self) -> Result<Vec<KeyRecord>, StoreError> {
        Ok(self
            .keys
            .load()
            .records
            .iter()
            .map(|r| (**r).clone())
            .collect())
    }

    async fn list_by_owner(&self, owner: &str) -> Result<Vec<KeyRecord>, StoreError> {
        let keys = self.keys.load();
        Ok(keys
            .records
            .iter()
            .filter(|r| r.owner.as_deref() == Some(owner))
            .map(|r| (**r).clone())
            .collect())
    }

    async fn count_active(&self, owner: &str, tier: &str) -> Result<u64, StoreError> {
        let keys = self.keys.load();
        Ok(keys
            .records
            .iter()
            .filter(|r| {
                r.owner.as_deref() == Some(owner) && r.tier == tier && r.status == KeyStatus::Active
            })
            .count() as u64)
    }

    async fn update(
        &self,
        _id: &str,
        _patch: &KeyPatch,
        _audit: &AuditEntry,
    ) -> Result<KeyRecord, StoreError> {
        Err(self.read_only())
    }

    async fn insert(
        &self,
        _record: &KeyRecord,
        _hash: &KeyHash,
        _audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        Err(self.read_only())
    }

    async fn insert_within_quota(
        &self,
        _record: &KeyRecord,
        _hash: &KeyHash,
        _max_active: u64,
        _scope: crate::store::QuotaScope,
        _audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        Err(self.read_only())
    }

    async fn revoke(&self, _id: &str, _audit: &AuditEntry) -> Result<(), StoreError> {
        Err(self.read_only())
    }

    async fn replace_secret(
        &self,
        _id: &str,
        _secret: &crate::store::NewSecret<'_>,
        _old_valid_until: Option<DateTime<Utc>>,
        _audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        Err(self.read_only())
    }

    async fn debit_batch(&self, debits: &[DebitRequest]) -> Result<Vec<DebitResult>, StoreError> {
        Ok(debits.iter().map(|_| Ok(Debit::Unmetered)).collect())
    }

    async fn refund_credits(
        &self,
        _holder: crate::store::Holder,
        _id: &str,
        _cost: u64,
        _debited_at: i64,
    ) -> Result<(), StoreError> {
        Ok(())
    }

    async fn record_usage(
        &self,
        _rows: &[UsageRow],
        _last_used: &[(String, i64)],
    ) -> Result<(), StoreError> {
        Ok(())
    }

    async fn usage(
        &self,
        _key_id: Option<&str>,
        _since: DateTime<Utc>,
    ) -> Result<Vec<UsageRow>, StoreError> {
        Ok(Vec::new())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn watch(&self, handler: ChangeHandler) {
        let (path, tiers, keys, text) = (
            self.path.clone(),
            self.tiers.clone(),
            self.keys.clone(),
            self.text.clone(),
        );
        let mut stop = self.stop.subscribe();
        crate::net::io_runtime::handle().spawn(async move {
            let mut last = stamp(&path);
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tick.tick() => {}
                }
                let now = stamp(&path);
                if now == last {
                    continue;
                }
                // Debounce: read once the file has stopped changing.
                tokio::time::sleep(Duration::from_millis(200)).await;
                let settled = stamp(&path);
                if settled != now {
                    continue;
                }
                last = settled;
                let (p, t, k, x) = (path.clone(), tiers.clone(), keys.clone(), text.clone());
                let changed = tokio::task::spawn_blocking(move || refresh(&p, &t, &k, &x))
                    .await
                    .unwrap_or(false);
                if changed {
                    handler(StoreChange::All);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiers() -> HashSet<String> {
        ["free".to_string(), "pro".to_string()]
            .into_iter()
            .collect()
    }

    const HASH: &str = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn the_contract_example_parses() {
        let text = format!(
            "keys:\n  - id: key_ci\n    name: CI pipeline\n    hash: \"{HASH}\"\n    tier: pro\n    scopes: [search, analytics]\n    environment: live\n    org: org_acme\n    status: active\n    expires_at: 2027-01-01T00:00:00Z\n    allowed_ips: [10.0.0.0/8]\n"
        );
        let set = parse(&text, &tiers(), Utc::now()).unwrap();
        let r = &set.records[0];
        assert_eq!((r.id.as_str(), r.tier.as_str()), ("key_ci", "pro"));
        assert_eq!(r.allowed_ips.len(), 1);
        assert_eq!(r.expires_at.map(|t| t.timestamp()), Some(1_798_761_600));
        assert!(set.by_hash.contains_key(&KeyHash::parse(HASH).unwrap()));
    }

    #[test]
    fn every_problem_is_listed_with_its_path() {
        let text = format!(
            "keys:\n  - {{ id: a, hash: nope, tier: gold }}\n  - {{ id: a, hash: \"{HASH}\", tier: free, colour: red }}\n  - {{ id: b, hash: \"{HASH}\", tier: free, status: lost }}\n  - {{ id: c, hash: \"{HASH}\", tier: free, allowed_ips: [\"10.0.0.0/33\"] }}\n"
        );
        let problems = parse(&text, &tiers(), Utc::now()).unwrap_err();
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        for expected in [
            "keys[0].hash:",
            "keys[0].tier:",
            "keys[1]",
            "keys[2].status:",
            "keys[3].allowed_ips[0]:",
        ] {
            assert!(
                text.iter().any(|l| l.starts_with(expected)),
                "missing {expected} in {text:#?}"
            );
        }
    }

    #[test]
    fn duplicates_are_refused() {
        let text = format!(
            "keys:\n  - {{ id: a, hash: \"{HASH}\", tier: free }}\n  - {{ id: a, hash: \"{HASH}\", tier: free }}\n"
        );
        let problems = parse(&text, &tiers(), Utc::now()).unwrap_err();
        assert!(problems
            .iter()
            .any(|p| p.to_string().contains("duplicate id")));
        assert!(problems
            .iter()
            .any(|p| p.to_string().contains("appears twice")));
    }
}
