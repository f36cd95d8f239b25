//! The admin listener: `/health`, `/ready`, `/metrics`. Never on the data plane,
//! never proxied, no credentials.

use crate::auth::cache::KeyCache;
use crate::metrics;
use crate::store::KeyStore;
use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::sync::Arc;
use std::time::Duration;

/// The admin HTTP application.
pub struct AdminApp {
    store: Arc<dyn KeyStore>,
    cache: KeyCache,
}

impl AdminApp {
    /// An admin app reporting on `store` and `cache`.
    pub fn new(store: Arc<dyn KeyStore>, cache: KeyCache) -> Self {
        AdminApp { store, cache }
    }
}

fn json(status: u16, body: serde_json::Value) -> Response<Vec<u8>> {
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .header("Content-Length", bytes.len())
        .header("Cache-Control", "no-store")
        .body(bytes)
        .unwrap_or_default()
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        match path.as_str() {
            "/health" => json(200, serde_json::json!({"status": "ok"})),
            "/ready" => {
                let ping = tokio::time::timeout(Duration::from_secs(2), self.store.ping()).await;
                match ping {
                    Ok(Ok(())) => json(200, serde_json::json!({"status": "ready", "store": "ok"})),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "readiness: store unreachable");
                        json(
                            503,
                            serde_json::json!({"status": "not_ready", "store": "unavailable"}),
                        )
                    }
                    Err(_) => json(
                        503,
                        serde_json::json!({"status": "not_ready", "store": "timeout"}),
                    ),
                }
            }
            "/metrics" => {
                metrics::KEY_CACHE_SIZE.set(self.cache.len() as i64);
                pingora_prometheus::PrometheusHttpApp
                    .response(session)
                    .await
            }
            _ => json(
                404,
                serde_json::json!({"error": "not_found", "message": "Not found", "details": {}}),
            ),
        }
    }
}
