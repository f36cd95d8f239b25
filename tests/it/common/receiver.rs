//! A real HTTP receiver for the tests (of webhooks, and of traces over OTLP/HTTP): an HTTP/1.1 server (hyper) on a port
//! of its own that keeps every request it gets and answers the status it is told,
//! and that can stop listening and listen again on the same port.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request the receiver got, and the status it answered.
#[derive(Clone, Debug)]
pub struct Received {
    /// Its headers, names lowercase.
    pub headers: Vec<(String, String)>,
    /// Its body, as text.
    pub body: String,
    /// Its body, as sent.
    pub raw: Vec<u8>,
    /// What the receiver answered.
    pub answered: u16,
}

impl Received {
    /// The value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

/// The receiver.
pub struct Receiver {
    /// Where it listens (and listens again after [`Self::stop`]).
    pub addr: SocketAddr,
    got: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// Its open connections (a client keeps them alive): closed by [`Self::stop`].
    conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Receiver {
    /// Starts listening on a free loopback port, answering 200.
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut r = Receiver {
            addr,
            got: Arc::default(),
            status: Arc::new(AtomicU16::new(200)),
            task: None,
            conns: Arc::default(),
        };
        r.serve(listener);
        r
    }

    /// Its URL at `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers `status` from now on.
    pub fn answer(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// Stops listening (connections are refused) until [`Self::listen_again`].
    pub fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn listen_again(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("cannot listen on {} again: {e}", self.addr),
            }
        };
        self.serve(listener);
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let (got, status, conns) = (self.got.clone(), self.status.clone(), self.conns.clone());
        self.task = Some(tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (got, status) = (got.clone(), status.clone());
                let conn = tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let (got, status) = (got.clone(), status.clone());
                            async move {
                                let headers = req
                                    .headers()
                                    .iter()
                                    .map(|(n, v)| {
                                        (
                                            n.as_str().to_string(),
                                            v.to_str().unwrap_or("").to_string(),
                                        )
                                    })
                                    .collect();
                                let body = req
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                let answered = status.load(Ordering::SeqCst);
                                got.lock().unwrap().push(Received {
                                    headers,
                                    body: String::from_utf8_lossy(&body).into_owned(),
                                    raw: body.to_vec(),
                                    answered,
                                });
                                let mut resp =
                                    hyper::Response::new(Full::new(Bytes::from_static(b"ok")));
                                *resp.status_mut() = hyper::StatusCode::from_u16(answered).unwrap();
                                Ok::<_, std::convert::Infallible>(resp)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
                conns.lock().unwrap().push(conn);
            }
        }));
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits (at most `within`) until `done` holds of what was received; returns it.
    pub async fn wait_until(
        &self,
        within: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.received();
            if done(&got) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "the receiver never got what was awaited; it got: {:#?}",
                got.iter().map(|r| &r.body).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// [`Self::wait_until`], then a second more for anything that should not come
    /// (a duplicate, an event not wanted): everything received by then.
    pub async fn settle(
        &self,
        within: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        self.wait_until(within, done).await;
        tokio::time::sleep(Duration::from_millis(1200)).await;
        self.received()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The event types of what was received and answered 2xx, in order.
pub fn delivered_types(got: &[Received]) -> Vec<String> {
    got.iter()
        .filter(|r| (200..300).contains(&r.answered))
        .map(|r| r.json()["type"].as_str().unwrap().to_string())
        .collect()
}
