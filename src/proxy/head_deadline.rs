//! Deadlines Pingora does not have: the whole request head within
//! `server.header_timeout`, and an idle keep-alive connection closed after
//! `server.idle_timeout`.
//!
//! Pingora 0.9 times each socket read (60 s) but not the head as a whole, and keeps
//! an idle HTTP/1.1 connection open forever. A client trickling its headers a
//! byte at a time (slowloris), or one that opens connections and never uses them,
//! would each hold a socket for as long as it likes. [`HeadDeadlineApp`] wraps the
//! proxy's connections in a [`DeadlineStream`]. The stream watches the bytes read
//! for the blank line that ends the head, and the bytes written for the response
//! (an informational `1xx` does not count): once a response has been written, a
//! read that has to wait starts the idle deadline, and the next byte starts the
//! next head's. A deadline that passes fails the read with `TimedOut`, and Pingora
//! closes the connection. Bodies, responses and HTTP/2 frames after the preface
//! are not timed here.

use crate::metrics;
use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::{GetProxyDigest, GetSocketDigest, GetTimingDigest};
use pingora::protocols::{Peek, Shutdown, Ssl, Stream, UniqueID, UniqueIDType};
use pingora::protocols::{SocketDigest, TimingDigest};
use pingora::server::ShutdownWatch;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{sleep, Sleep};

/// The two limits, from `server:`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadLimits {
    /// From a request's first byte (or the connection's start) to the end of its head.
    pub header: Duration,
    /// Between the end of one request and the first byte of the next.
    pub idle: Duration,
}

/// Where the stream is in the current request.
#[derive(Debug)]
enum Phase {
    /// Reading a head: the deadline runs; `newlines` tracks a possible blank line.
    Head {
        deadline: Pin<Box<Sleep>>,
        newlines: u8,
    },
    /// The head is complete: the body and the response are not timed here.
    /// `responded` once a (final) response has started.
    Body { responded: bool },
    /// Between requests on a kept-alive connection.
    Idle { deadline: Pin<Box<Sleep>> },
}

/// A connection whose request heads must arrive within their deadline.
#[derive(Debug)]
pub struct DeadlineStream {
    inner: Stream,
    limits: HeadLimits,
    phase: Phase,
}

impl DeadlineStream {
    /// Wraps a new connection; its first head is timed from now.
    pub fn new(inner: Stream, limits: HeadLimits) -> Self {
        DeadlineStream {
            inner,
            limits,
            phase: Phase::Head {
                deadline: Box::pin(sleep(limits.header)),
                newlines: 0,
            },
        }
    }

    /// Follows the bytes just read through the head, ending it at a blank line
    /// (`\n\n` or `\n\r\n`, as the HTTP/1 parser accepts both).
    fn saw(&mut self, bytes: &[u8]) {
        if let Phase::Idle { .. } | Phase::Body { responded: true } = self.phase {
            self.phase = Phase::Head {
                deadline: Box::pin(sleep(self.limits.header)),
                newlines: 0,
            };
        }
        let Phase::Head { newlines, .. } = &mut self.phase else {
            return;
        };
        let mut state = *newlines;
        for &b in bytes {
            state = match (state, b) {
                (1 | 2, b'\n') => {
                    self.phase = Phase::Body { responded: false };
                    return;
                }
                (_, b'\n') => 1,
                (1, b'\r') => 2,
                _ => 0,
            };
        }
        *newlines = state;
    }
}

impl DeadlineStream {
    /// Notes a write: a final response has started unless it is a `1xx`.
    fn wrote(&mut self, bytes: &[u8]) {
        if let Phase::Body { responded } = &mut self.phase {
            if !*responded && !bytes.is_empty() {
                let informational = bytes.len() >= 10
                    && bytes.starts_with(b"HTTP/1.")
                    && bytes[8] == b' '
                    && bytes[9] == b'1';
                *responded = !informational;
            }
        }
    }
}

fn expired(phase: &mut Phase, cx: &mut Context<'_>) -> Option<&'static str> {
    match phase {
        Phase::Head { deadline, .. } => deadline
            .as_mut()
            .poll(cx)
            .is_ready()
            .then_some("request head not complete within server.header_timeout"),
        Phase::Idle { deadline } => deadline
            .as_mut()
            .poll(cx)
            .is_ready()
            .then_some("keep-alive connection idle for server.idle_timeout"),
        Phase::Body { .. } => None,
    }
}

impl AsyncRead for DeadlineStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        match polled {
            Poll::Ready(Ok(())) => {
                let filled = buf.filled();
                if filled.len() > before {
                    this.saw(&filled[before..]);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                if let Phase::Body { responded: true } = this.phase {
                    this.phase = Phase::Idle {
                        deadline: Box::pin(sleep(this.limits.idle)),
                    };
                }
                match expired(&mut this.phase, cx) {
                    Some(why) => {
                        if matches!(this.phase, Phase::Head { .. }) {
                            metrics::HEAD_TIMEOUTS.with_label_values(&["header"]).inc();
                        } else {
                            metrics::HEAD_TIMEOUTS.with_label_values(&["idle"]).inc();
                        }
                        Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, why)))
                    }
                    None => Poll::Pending,
                }
            }
            ready => ready,
        }
    }
}

impl AsyncWrite for DeadlineStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.wrote(buf);
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            this.wrote(first);
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for DeadlineStream {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for DeadlineStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for DeadlineStream {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<pingora::protocols::ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for DeadlineStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for DeadlineStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for DeadlineStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for DeadlineStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

/// A [`ServerApp`] that gives every connection of `inner` a [`DeadlineStream`].
pub struct HeadDeadlineApp<A> {
    inner: Arc<A>,
    limits: HeadLimits,
}

impl<A> HeadDeadlineApp<A> {
    /// Wraps `inner` (the proxy) with `limits`.
    pub fn new(inner: A, limits: HeadLimits) -> Self {
        HeadDeadlineApp {
            inner: Arc::new(inner),
            limits,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for HeadDeadlineApp<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        // Pingora serves a kept-alive connection's requests in this one call.
        let stream: Stream = Box::new(DeadlineStream::new(stream, self.limits));
        self.inner.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream() -> DeadlineStream {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = tcp.local_addr().unwrap();
        let std_stream = std::net::TcpStream::connect(addr).unwrap();
        std_stream.set_nonblocking(true).unwrap();
        let s = pingora::protocols::l4::stream::Stream::from(
            tokio::net::TcpStream::from_std(std_stream).unwrap(),
        );
        DeadlineStream::new(
            Box::new(s),
            HeadLimits {
                header: Duration::from_secs(10),
                idle: Duration::from_secs(60),
            },
        )
    }

    #[tokio::test]
    async fn the_head_ends_at_the_first_blank_line_split_anywhere() {
        for split in 0..=22 {
            let text = b"GET / HTTP/1.1\r\nA: b\r\n\r\nbody";
            let mut s = stream();
            let (x, y) = text.split_at(split.min(text.len()));
            s.saw(x);
            s.saw(y);
            assert!(matches!(s.phase, Phase::Body { .. }), "split at {split}");
        }
        let mut s = stream();
        s.saw(b"GET / HTTP/1.1\nA: b\n\n");
        assert!(matches!(s.phase, Phase::Body { .. }), "bare LF");
        let mut s = stream();
        s.saw(b"GET / HTTP/1.1\r\nA: b\r\n");
        assert!(matches!(s.phase, Phase::Head { .. }), "not yet");
    }

    #[tokio::test]
    async fn the_next_head_starts_after_a_final_response() {
        let mut s = stream();
        s.saw(b"POST / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n");
        s.wrote(b"HTTP/1.1 100 Continue\r\n\r\n");
        s.saw(b"body bytes\r\n\r\n");
        assert!(
            matches!(s.phase, Phase::Body { responded: false }),
            "a 100 Continue is not the response: the body is not a head"
        );
        s.wrote(b"HTTP/1.1 200 OK\r\n");
        assert!(matches!(s.phase, Phase::Body { responded: true }));
        s.saw(b"G");
        assert!(matches!(s.phase, Phase::Head { newlines: 0, .. }));
    }
}
