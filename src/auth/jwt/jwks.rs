//! Keys fetched from `jwks_url`: fetched at start, refreshed in the background and
//! (at most once per `jwks_min_refresh`) when a token names an unknown `kid`. A
//! failed refresh keeps the last good set (stale-on-error); the last good document
//! is kept on disk so a restart during an identity-provider outage still works.

use super::keys::{parse_jwks, VerifyKey};
use crate::obs::metrics;
use arc_swap::ArcSwap;
use jsonwebtoken::Algorithm;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A remote JWKS and its last good key set.
pub struct RemoteJwks {
    url: String,
    cache_file: PathBuf,
    min_interval: Duration,
    allowed: Vec<Algorithm>,
    client: reqwest::Client,
    keys: ArcSwap<Vec<VerifyKey>>,
    /// Serialises fetches and remembers when the last one started.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

impl RemoteJwks {
    /// A source for `url`; call [`Self::load_initial`] before serving.
    pub fn new(
        url: String,
        cache_file: PathBuf,
        min_interval: Duration,
        allowed: Vec<Algorithm>,
    ) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(0)
            .build()
            .unwrap_or_default();
        RemoteJwks {
            url,
            cache_file,
            min_interval,
            allowed,
            client,
            keys: ArcSwap::from_pointee(Vec::new()),
            last_fetch: tokio::sync::Mutex::new(None),
        }
    }

    /// The current key set.
    pub fn keys(&self) -> Arc<Vec<VerifyKey>> {
        self.keys.load_full()
    }

    /// Fetches the document, or falls back to the copy on disk.
    pub async fn load_initial(&self) {
        if self.fetch_now().await.is_ok() {
            return;
        }
        match std::fs::read_to_string(&self.cache_file) {
            Ok(text) => match parse_jwks(&text, &self.allowed) {
                Ok(keys) => {
                    tracing::warn!(url = %self.url, file = %self.cache_file.display(), keys = keys.len(),
                        "JWKS unreachable at start; serving the last good copy from disk");
                    metrics::JWKS_STALE.set(1);
                    metrics::JWKS_KEYS.set(keys.len() as i64);
                    self.keys.store(Arc::new(keys));
                }
                Err(e) => tracing::error!(error = %e, "JWKS disk copy unusable"),
            },
            Err(_) => {
                tracing::error!(url = %self.url, "JWKS unreachable at start and no disk copy; JWTs fail until it is reachable")
            }
        }
    }

    /// Background refresh (ignores the unknown-kid rate limit, not the lock).
    pub async fn refresh(&self) {
        let _ = self.fetch_now().await;
    }

    /// Refetches because a token named an unknown `kid`, unless a fetch started less
    /// than `min_interval` ago. Concurrent callers wait for the fetch in flight (and
    /// then find it too recent), so a flood of unknown kids costs one fetch.
    pub async fn refresh_for_unknown_kid(&self) {
        let _ = self.fetch(Some(self.min_interval)).await;
    }

    async fn fetch_now(&self) -> Result<(), String> {
        self.fetch(None).await
    }

    /// Fetches while holding the lock, unless `min_interval` is given and the last
    /// fetch started more recently than that.
    async fn fetch(&self, min_interval: Option<Duration>) -> Result<(), String> {
        let mut last = self.last_fetch.lock().await;
        if let Some(min) = min_interval {
            if last.is_some_and(|t| t.elapsed() < min) {
                metrics::JWKS_REFRESHES
                    .with_label_values(&["rate_limited"])
                    .inc();
                return Err("rate limited".into());
            }
        }
        *last = Some(Instant::now());
        let result = self.fetch_text().await.and_then(|text| {
            let keys = parse_jwks(&text, &self.allowed).map_err(|e| e.to_string())?;
            Ok((text, keys))
        });
        match result {
            Ok((text, keys)) => {
                metrics::JWKS_REFRESHES.with_label_values(&["ok"]).inc();
                metrics::JWKS_STALE.set(0);
                metrics::JWKS_KEYS.set(keys.len() as i64);
                self.keys.store(Arc::new(keys));
                self.save(&text);
                Ok(())
            }
            Err(e) => {
                metrics::JWKS_REFRESHES.with_label_values(&["error"]).inc();
                metrics::JWKS_STALE.set(1);
                tracing::warn!(url = %self.url, error = %e, "JWKS refresh failed; keeping the last good key set");
                Err(e)
            }
        }
    }

    async fn fetch_text(&self) -> Result<String, String> {
        let resp = self
            .client
            .get(&self.url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status()));
        }
        let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
        if bytes.len() > 1024 * 1024 {
            return Err("JWKS document larger than 1 MiB".into());
        }
        String::from_utf8(bytes.to_vec()).map_err(|e| e.to_string())
    }

    fn save(&self, text: &str) {
        let tmp = self.cache_file.with_extension("tmp");
        if let Some(dir) = self
            .cache_file
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Err(e) =
            std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, &self.cache_file))
        {
            tracing::warn!(file = %self.cache_file.display(), error = %e, "could not keep JWKS copy on disk");
        }
    }
}
