//! JWT test support: keys and tokens made by an independent implementation
//! (PyJWT + cryptography, `tests/jwt/mint.py`), and a JWKS server whose document
//! and status the test controls.

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Response;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The Python with PyJWT and cryptography: `KEYGATE_TEST_PYTHON`, else the venv that
/// `scripts/test.sh` makes. Panics with the fix when neither works.
pub fn python() -> PathBuf {
    let candidate = std::env::var_os("KEYGATE_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv-test/bin/python"));
    let ok = Command::new(&candidate)
        .args(["-c", "import jwt, cryptography"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "JWT tests need PyJWT and cryptography: run `bash scripts/test.sh` (it creates .venv-test) \
         or set KEYGATE_TEST_PYTHON to a Python that has them"
    );
    candidate
}

/// A directory of freshly generated keys, and a way to mint tokens with them.
pub struct JwtKit {
    pub dir: tempfile::TempDir,
    python: PathBuf,
}

impl JwtKit {
    /// Generates RSA, P-256, P-384, Ed25519 keys, an HMAC secret and a JWKS.
    pub fn new() -> Self {
        let python = python();
        let dir = tempfile::tempdir().unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/jwt/mint.py");
        let status = Command::new(&python)
            .arg(script)
            .arg("keys")
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "mint.py keys failed");
        JwtKit { dir, python }
    }

    /// Path of a generated file, for the config.
    pub fn path(&self, file: &str) -> String {
        self.dir.path().join(file).display().to_string()
    }

    /// The HMAC secret.
    pub fn secret(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("hs.secret")).unwrap()
    }

    /// Mints tokens for `specs` (see mint.py) and returns them by name.
    pub fn mint(&self, specs: serde_json::Value) -> HashMap<String, String> {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/jwt/mint.py");
        let mut cmd = Command::new(&self.python);
        cmd.arg(script).arg("mint").arg(self.dir.path());
        serde_json::from_value(super::json_through(&mut cmd, &specs)).unwrap()
    }
}

/// An HTTP server answering every request with the current status and body.
pub struct JwksServer {
    pub url: String,
    state: Arc<Mutex<(u16, String)>>,
    hits: Arc<AtomicUsize>,
}

impl JwksServer {
    /// Starts serving `body` with status 200.
    pub async fn start(body: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        let state = Arc::new(Mutex::new((200u16, body)));
        let hits = Arc::new(AtomicUsize::new(0));
        let (s, h) = (state.clone(), hits.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (s, h) = (s.clone(), h.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |_req| {
                        h.fetch_add(1, Ordering::SeqCst);
                        let (status, body) = s.lock().unwrap().clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(
                                Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::from(body)))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        JwksServer { url, state, hits }
    }

    /// Changes what is served.
    pub fn set(&self, status: u16, body: String) {
        *self.state.lock().unwrap() = (status, body);
    }

    /// Requests served so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}
