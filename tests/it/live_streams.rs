//! Requests that outlive their decision end when their credential does (attacked,
//! third round: an open WebSocket kept carrying messages after its key was revoked,
//! and a long gRPC stream did the same). Revoking a key, or its expiry passing,
//! closes its WebSockets (close frame 1008) and its gRPC streams
//! (`UNAUTHENTICATED`) within a second, on every replica, even when nothing moves
//! on them; each is counted in `keygate_streams_cut_total`.

use crate::common::services::PgDatabase;
use crate::common::{metric_sum, Keygate};
use crate::http2::{grpc_calls, GrpcService};
use futures::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

const POLICY: &str = r#"tiers:
  free: { per_minute: 1000 }
"#;

/// A WebSocket echo server; each connection's end is sent on the returned channel.
async fn websocket_upstream() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<Instant>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (ended, ends) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let ended = ended.clone();
            tokio::spawn(async move {
                if let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await {
                    while let Some(Ok(msg)) = ws.next().await {
                        if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                            break;
                        }
                    }
                }
                let _ = ended.send(Instant::now());
            });
        }
    });
    (addr, ends)
}

/// keygate in front of a WebSocket upstream, on SQLite or on PostgreSQL at `pg`. A
/// silent WebSocket is closed after `upstream.read_timeout` either way (as nginx's
/// `proxy_read_timeout` does): 30 s here, longer than any of these tests.
fn start(up: SocketAddr, pg: Option<&str>) -> Keygate {
    Keygate::launch_with_env(
        |listen, admin, dir| {
            let store = match pg {
                Some(url) => format!("store: {{ kind: postgres, url: \"{url}\" }}\n"),
                None => format!(
                    "store: {{ kind: sqlite, path: \"{}\" }}\n",
                    dir.join("k.db").display()
                ),
            };
            crate::common::config_yaml_with_store(
                &format!("http://{up}"),
                listen,
                admin,
                &store,
                POLICY,
            )
            .replace("read_timeout: 2s", "read_timeout: 30s")
        },
        &[],
    )
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a WebSocket through `kg` with `key`, and checks it echoes.
///
/// Pingora 0.9 sometimes tears an upgraded connection down the moment it is made,
/// when the upstream's `101` is read before the upgrade request's empty body
/// (cloudflare/pingora#946, open; about 1 handshake in 200 on a busy machine,
/// with or without keygate's changes): the client's first frame then meets an
/// end. Such a handshake is tried again, at most twice; nothing here depends on it.
async fn open(kg: &Keygate, key: &str) -> Socket {
    for _ in 0..3 {
        let url = kg.base.replace("http://", "ws://") + "/chat";
        let mut req = url.into_client_request().unwrap();
        req.headers_mut().insert("x-api-key", key.parse().unwrap());
        let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
        assert_eq!(resp.status(), 101);
        ws.send(Message::text("hello")).await.unwrap();
        match ws.next().await {
            Some(Ok(m)) if m == Message::text("hello") => return ws,
            torn_down @ (None | Some(Err(_))) => {
                eprintln!("handshake torn down at once (pingora#946): {torn_down:?}");
            }
            other => panic!("{other:?}"),
        }
    }
    panic!("three WebSocket handshakes in a row were torn down");
}

/// Waits (at most 3 s) for the socket's end; returns how it ended and when.
async fn closed(ws: &mut Socket) -> (Option<(CloseCode, String)>, Instant) {
    closed_within(ws, Duration::from_secs(3)).await
}

/// Waits (at most `wait`) for the socket's end; returns how it ended and when.
async fn closed_within(ws: &mut Socket, wait: Duration) -> (Option<(CloseCode, String)>, Instant) {
    let end = tokio::time::timeout(wait, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => {
                    return frame.map(|f| (f.code, f.reason.to_string()));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    eprintln!("the WebSocket ended without a close frame: {e}");
                    return None;
                }
                None => return None,
            }
        }
    })
    .await
    .expect("the WebSocket stayed open");
    (end, Instant::now())
}

async fn revoke(kg: &Keygate, admin: &str, id: &str) -> Instant {
    let resp = kg
        .send_key(reqwest::Method::DELETE, &format!("/v1/keys/{id}"), admin)
        .await;
    assert_eq!(resp.status(), 200);
    Instant::now()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoked_keys_idle_websocket_is_closed_with_1008_within_a_second() {
    let (up, mut upstream_ends) = websocket_upstream().await;
    let kg = start(up, None);
    let (_, admin) = kg.create_key(&["--scopes", "admin"]);
    let (id, key) = kg.create_key(&[]);
    let (_, other) = kg.create_key(&[]);
    let mut ws = open(&kg, &key).await;
    let mut untouched = open(&kg, &other).await;
    // Nothing moves on the socket from here on.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let revoked = revoke(&kg, &admin, &id).await;
    let (how, at) = closed(&mut ws).await;
    let took = at - revoked;
    eprintln!("closed {took:?} after the revocation returned: {how:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    let (code, reason) = how.expect("a close frame");
    assert_eq!(code, CloseCode::Policy, "1008");
    assert!(reason.contains("revoked"), "{reason}");
    let upstream_end = tokio::time::timeout(Duration::from_secs(1), upstream_ends.recv())
        .await
        .expect("the upstream's side is closed too")
        .unwrap();
    assert!(upstream_end - revoked < Duration::from_secs(1));
    // Another key's socket goes on.
    untouched.send(Message::text("still")).await.unwrap();
    assert_eq!(
        untouched.next().await.unwrap().unwrap(),
        Message::text("still")
    );
    let metrics = kg.metrics().await;
    assert_eq!(
        metric_sum(&metrics, "keygate_streams_cut_total{reason=\"revoked\"}"),
        1.0,
        "{metrics}"
    );
    assert!(
        kg.logs().contains("reason=\"cut_revoked\""),
        "{}",
        kg.logs()
    );
    // And the key opens nothing new.
    let mut req = (kg.base.replace("http://", "ws://") + "/chat")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("x-api-key", key.parse().unwrap());
    assert!(tokio_tungstenite::connect_async(req).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_revoked_on_one_replica_closes_its_websocket_on_another() {
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    let (up, _ends) = websocket_upstream().await;
    let a = start(up, Some(&db.url));
    let b = start(up, Some(&db.url));
    let (_, admin) = a.create_key(&["--scopes", "admin"]);
    let (id, key) = a.create_key(&[]);
    let mut ws = open(&b, &key).await;
    let revoked = revoke(&a, &admin, &id).await;
    let (how, at) = closed(&mut ws).await;
    eprintln!("B closed {:?} after A's revocation returned", at - revoked);
    assert!(at - revoked < Duration::from_secs(1));
    assert_eq!(how.map(|(c, _)| c), Some(CloseCode::Policy));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_websocket_ends_when_its_key_expires() {
    let (up, _ends) = websocket_upstream().await;
    let kg = start(up, None);
    let out = kg.cli(&[
        "keys",
        "create",
        "--json",
        "--name",
        "t",
        "--tier",
        "free",
        "--expires-in",
        "3s",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = created["key"].as_str().unwrap().to_string();
    // Measured from the key's own expiry (kept to the second), not from when the
    // CLI returned: starting a process can take a while on a loaded machine.
    let expires_at = chrono::DateTime::parse_from_rfc3339(created["expires_at"].as_str().unwrap())
        .unwrap()
        .timestamp_millis() as f64
        / 1000.0;
    let mut ws = open(&kg, &key).await;
    let (how, _) = closed_within(&mut ws, Duration::from_secs(8)).await;
    let late = unix_now() - expires_at;
    eprintln!("closed {late:.3} s after the key's expiry: {how:?}");
    assert!(late > -0.05, "closed {late} s before the key expired");
    assert!(late < 1.5, "closed {late} s after the key expired");
    let (code, reason) = how.expect("a close frame");
    assert_eq!(code, CloseCode::Policy);
    assert!(reason.contains("expired"), "{reason}");
}

/// Streams `Ticks` through keygate with `key` in the background.
fn ticks(
    target: String,
    key: String,
    interval_ms: u64,
) -> tokio::task::JoinHandle<serde_json::Value> {
    tokio::task::spawn_blocking(move || {
        let calls = serde_json::json!([{
            "method": "Ticks",
            "body": format!("{interval_ms},600"),
            "metadata": [["x-api-key", key]],
        }]);
        grpc_calls(&target, None, calls).remove(0)
    })
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoked_keys_grpc_streams_end_unauthenticated_within_a_second() {
    let svc = GrpcService::start(None);
    let kg = crate::http2::start_h2c(&format!("http://127.0.0.1:{}", svc.port), POLICY);
    let (_, admin) = kg.create_key(&["--scopes", "admin"]);
    let (id, key) = kg.create_key(&[]);
    let target = kg.base.trim_start_matches("http://").to_string();
    // One call with messages every 100 ms, one that stays silent.
    let busy = ticks(target.clone(), key.clone(), 100);
    let (id2, silent_key) = kg.create_key(&[]);
    let silent = ticks(target, silent_key, 60_000);
    // Long enough for the gRPC client to start (most of a second on a loaded
    // machine) and its ticks to flow; short of the silent call's idle timeout.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    revoke(&kg, &admin, &id).await;
    let revoked = unix_now();
    revoke(&kg, &admin, &id2).await;

    let busy = busy.await.unwrap();
    eprintln!("busy call: {} {}", busy["code"], busy["details"]);
    assert_eq!(busy["code"], "UNAUTHENTICATED", "{busy}");
    assert!(
        busy["details"].as_str().unwrap().contains("revoked"),
        "{busy}"
    );
    let times: Vec<f64> = busy["times"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_f64().unwrap())
        .collect();
    // The stream was flowing when its key was revoked.
    let before = times.iter().filter(|t| **t < revoked).count();
    assert!(
        before >= 3,
        "{before} ticks before the revocation at {revoked}: {busy}"
    );
    let late = times.iter().filter(|t| **t > revoked + 1.0).count();
    assert_eq!(late, 0, "messages after the revocation: {busy}");
    let ended = busy["ended"].as_f64().unwrap() - revoked;
    assert!(ended < 1.0, "ended {ended} s after the revocation");

    // Nothing moved on the silent call, so no trailers could end it: its
    // connection carries nothing else, and is closed (the client sees the stream
    // reset or the connection gone).
    let silent = silent.await.unwrap();
    let ended = silent["ended"].as_f64().unwrap() - revoked;
    eprintln!("silent call: {} after {ended:.2} s", silent["code"]);
    assert!(
        ["UNAUTHENTICATED", "UNAVAILABLE", "CANCELLED"].contains(&silent["code"].as_str().unwrap()),
        "{silent}"
    );
    assert_eq!(silent["response"], serde_json::json!(["tick 0"]));
    assert!(ended < 1.5, "ended {ended} s after the revocation");
    let metrics = kg.metrics().await;
    assert_eq!(
        metric_sum(&metrics, "keygate_streams_cut_total{reason=\"revoked\"}"),
        2.0
    );
}
