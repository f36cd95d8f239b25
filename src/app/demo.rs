//! A tiny echo server, used as the quickstart's demo upstream and as the real
//! upstream of the black-box tests. It answers every request with a JSON echo of
//! what it received (method, path, query, headers, body size) and its own address;
//! `/status/{code}` answers with that status, `/delay/{ms}` waits first, and
//! `/static/...` answers a fixed two-byte body (for load benchmarks, so every caller
//! gets the same response). It speaks HTTP/1.1 and cleartext HTTP/2 (prior
//! knowledge) on the same port, so it can stand behind `upstream.protocol: h2c`.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;
use tokio::net::TcpListener;

async fn echo(req: Request<Incoming>, me: String) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path().starts_with("/static/") {
        return Ok(Response::new(Full::new(Bytes::from_static(b"ok"))));
    }
    let (parts, body) = req.into_parts();
    let body_len = body
        .collect()
        .await
        .map(|b| b.to_bytes().len())
        .unwrap_or(0);
    let path = parts.uri.path().to_string();
    let mut status = 200u16;
    if let Some(code) = path
        .strip_prefix("/status/")
        .and_then(|c| c.parse::<u16>().ok())
    {
        status = code;
    }
    if let Some(ms) = path
        .strip_prefix("/delay/")
        .and_then(|c| c.parse::<u64>().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms.min(120_000))).await;
    }
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &parts.headers {
        headers
            .entry(name.as_str().to_string())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let body = serde_json::json!({
        "method": parts.method.as_str(),
        "path": path,
        "query": parts.uri.query(),
        "headers": headers,
        "body_bytes": body_len,
        "version": format!("{:?}", parts.version),
        "upstream": me,
    });
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let resp = Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .body(Full::new(Bytes::from(bytes)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())));
    Ok(resp)
}

/// Serves the echo on `listener` until the task is dropped.
pub async fn serve_echo(listener: TcpListener) {
    let me = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let me = me.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| echo(req, me.clone()));
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "echo connection ended");
            }
        });
    }
}

/// Binds `addr` and serves the echo forever (for `keygate demo-upstream`).
#[allow(clippy::print_stderr)] // `keygate demo-upstream` tells where it listens
pub fn run_echo(addr: &str) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = TcpListener::bind(addr).await?;
        eprintln!(
            "demo upstream listening on http://{}",
            listener.local_addr()?
        );
        serve_echo(listener).await;
        Ok(())
    })
}
