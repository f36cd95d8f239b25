//! Two limits Pingora does not have: the whole request head within
//! `server.header_timeout`, and at most `server.max_header_bytes` of it.
//!
//! Pingora accepts heads up to 1 MiB: 300 sockets each sending an unfinished 1 MiB
//! head held ~350 MB. [`DeadlineStream`] counts a head's bytes as they are read and,
//! past the limit, answers 431 itself and closes the connection, so no more than
//! the limit (and one read) is ever buffered for a head.
//!
//! Pingora 0.9 times each socket read (60 s) but not the head as a whole: a client
//! trickling its headers a byte at a time (slowloris) holds a socket for as long as
//! it likes. [`HeadDeadlineApp`] wraps the proxy's connections in a
//! [`DeadlineStream`], which watches the bytes read for the blank line that ends a
//! head and the bytes written for the response (an informational `1xx` does not
//! count). A head is timed from the connection's start (the first request) or from
//! its first byte (later ones on a kept-alive connection). The timer is only armed
//! when a read inside a head has to wait, so a head that arrives whole costs no
//! timer. When the deadline passes the read fails with `TimedOut` and Pingora
//! closes the connection. An HTTP/2 connection (by ALPN, or by its preface with
//! `server.h2c`) must send its preface within the same deadline; its frames after
//! that, bodies and responses are not timed or counted here. Idle kept-alive connections are closed by Pingora's own
//! keep-alive timeout, which the gate sets to `server.idle_timeout` on every
//! request (Pingora's default for HTTP/1.1 is to wait forever).
//!
//! The same wrapper holds the connection's [`CutSwitch`]: once a request arms it,
//! a cut (its key revoked) fails the next read, after a WebSocket close frame when
//! the connection was upgraded to one.

use super::cut::{self, Armed, CutSwitch, FrameTracker};
use crate::obs::metrics;
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
use tokio::time::{sleep_until, Instant, Sleep};

/// Where the stream is in the current request.
#[derive(Debug)]
enum Phase {
    /// Reading a head. `since` is the connection's start for its first head; a
    /// later head is timed from its first wait (within microseconds of its first
    /// byte), which spares a clock read per request. `newlines` carries a possible
    /// blank line across reads; `timer` is armed the first time a read has to wait.
    Head {
        since: Option<Instant>,
        newlines: u8,
        timer: Option<Pin<Box<Sleep>>>,
        bytes: usize,
    },
    /// The head is complete: the body and the response are not timed here.
    /// `responded` once a final response has started.
    Body { responded: bool },
    /// A head refused by keygate itself (past the size limit: 431; HTTP/2's
    /// cleartext preface without `server.h2c`: 400): `answer` is being written
    /// (from `written` on), then every read fails (`why`) and the connection closes.
    Refusing {
        answer: &'static [u8],
        written: usize,
        why: &'static str,
        /// Once the answer is out, how long what the client still sends is read
        /// and dropped before the connection closes (a client still writing when
        /// the socket closes gets a broken pipe instead of the answer).
        linger: Option<Lingering>,
    },
    /// An HTTP/2 connection whose client preface has `left` bytes to come, due
    /// `limit` after the connection's start (`since`), as a first head is.
    Preface {
        left: usize,
        since: Option<Instant>,
        timer: Option<Pin<Box<Sleep>>>,
    },
    /// An HTTP/2 connection past its preface: frames are neither timed nor counted
    /// here (Pingora's HTTP/2 idle timeout and the advertised settings bound it).
    Http2,
}

/// How long a refused HTTP/2-without-h2c client's frames are drained.
const LINGER: Duration = Duration::from_secs(1);

/// A lingering close: reading (and dropping) until the client stops or `until`.
#[derive(Debug)]
struct Lingering {
    until: Pin<Box<Sleep>>,
}

/// Said once per process: a client spoke HTTP/2 without TLS to a listener
/// without `server.h2c` (then only counted).
static H2C_SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The answer to HTTP/2 with prior knowledge on a listener without `server.h2c`:
/// HTTP/1.1 400 with the contract's JSON error naming the setting (a client that
/// speaks only HTTP/2 shows "malformed response", and a person reading the bytes
/// sees why).
const H2C_OFF: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n\
Content-Length: 185\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n\
{\"error\":\"invalid_request\",\"message\":\"This listener speaks HTTP/1.1: HTTP/2 without TLS \
(h2c, prior knowledge) is off. Set server.h2c: true to accept it, or use HTTP/1.1.\",\"details\":{}}";

/// A connection whose request heads must arrive within `limit` and hold at most
/// `max_head` bytes.
#[derive(Debug)]
pub struct DeadlineStream {
    inner: Stream,
    limit: Duration,
    max_head: usize,
    phase: Phase,
    /// The connection's off switch, and the digest it is registered under.
    cut: Option<(Arc<CutSwitch>, Arc<SocketDigest>)>,
    /// An armed WebSocket's frames, as written.
    frames: Option<FrameTracker>,
    /// The close frame being written after a cut, and how much of it is out.
    goodbye: Option<(Vec<u8>, usize)>,
    /// The whole 431 response written when a head is too large.
    too_large: &'static [u8],
}

impl DeadlineStream {
    /// Wraps a new connection; its first head is timed from now.
    /// A connection that chose HTTP/2 by ALPN starts at its preface.
    pub fn new(inner: Stream, limit: Duration, max_head: usize, too_large: &'static [u8]) -> Self {
        let since = Some(Instant::now());
        let phase = if inner.selected_alpn_proto() == Some(pingora::protocols::ALPN::H2) {
            Phase::Preface {
                left: H2_PREFACE.len(),
                since,
                timer: None,
            }
        } else {
            Phase::Head {
                since,
                newlines: 0,
                timer: None,
                bytes: 0,
            }
        };
        let cut = inner
            .get_socket_digest()
            .map(|digest| (cut::register(&digest), digest));
        DeadlineStream {
            inner,
            limit,
            max_head,
            phase,
            cut,
            frames: None,
            goodbye: None,
            too_large,
        }
    }

    /// The reason, once the connection's switch was cut.
    fn cut_reason(&self) -> Option<&'static str> {
        self.cut.as_ref().and_then(|(s, _)| s.is_cut())
    }

    /// Notes `n` bytes written from `bufs`: an armed WebSocket follows its frames.
    fn wrote_out<'b>(&mut self, bufs: impl Iterator<Item = &'b [u8]>, mut n: usize) {
        let Some((switch, _)) = &self.cut else { return };
        if switch.armed() != Some(Armed::WebSocket) {
            return;
        }
        let frames = self.frames.get_or_insert_with(FrameTracker::default);
        for b in bufs {
            if n == 0 {
                break;
            }
            let take = n.min(b.len());
            frames.wrote(&b[..take]);
            n -= take;
        }
    }

    /// The read result of a cut connection: a WebSocket between two frames gets a
    /// close frame first (pending until it is out); then an error that makes
    /// Pingora end the request and close the socket.
    fn end_cut(&mut self, cx: &mut Context<'_>, why: &'static str) -> Poll<io::Result<()>> {
        let can_say_goodbye = self
            .frames
            .as_ref()
            .is_some_and(FrameTracker::between_frames);
        if can_say_goodbye && self.goodbye.is_none() {
            self.goodbye = Some((cut::close_frame(cut::POLICY_VIOLATION, why), 0));
        }
        if let Some((frame, written)) = &mut self.goodbye {
            while *written < frame.len() {
                match Pin::new(&mut self.inner).poll_write(cx, &frame[*written..]) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => break,
                    Poll::Ready(Ok(n)) => *written += n,
                    Poll::Pending => return Poll::Pending,
                }
            }
            if Pin::new(&mut self.inner).poll_flush(cx).is_pending() {
                return Poll::Pending;
            }
            // Said once: the frame tracker no longer matters.
            self.frames = None;
        }
        Poll::Ready(Err(cut_error(why)))
    }

    /// Takes the connection as HTTP/2 with prior knowledge when `peeked` (what
    /// Pingora peeked before its first read, with `server.h2c`) is the preface.
    fn peeked(&mut self, peeked: &[u8]) {
        if let Phase::Head {
            since: Some(since),
            bytes: 0,
            ..
        } = self.phase
        {
            if peeked == H2_PREFACE {
                self.phase = Phase::Preface {
                    left: H2_PREFACE.len(),
                    since: Some(since),
                    timer: None,
                };
            }
        }
    }

    /// Follows the bytes just read through the head, ending it at a blank line
    /// (`\n\n` or `\n\r\n`, as the HTTP/1 parser accepts both). The first byte after
    /// a response starts the next head. Returns false when the head has grown past
    /// `max_head` bytes.
    fn saw(&mut self, bytes: &[u8]) -> bool {
        let before = match self.phase {
            Phase::Head { bytes, .. } => bytes,
            _ => 0,
        };
        let total = before + self.head_bytes(bytes);
        if let Phase::Head { bytes, .. } = &mut self.phase {
            *bytes = total;
        }
        total <= self.max_head
    }

    /// Moves the phase through `bytes`; returns how many of them belong to a head.
    fn head_bytes(&mut self, bytes: &[u8]) -> usize {
        match &mut self.phase {
            Phase::Http2 => return 0,
            Phase::Preface { left, .. } => {
                *left = left.saturating_sub(bytes.len());
                if *left == 0 {
                    self.phase = Phase::Http2;
                }
                return 0;
            }
            _ => {}
        }
        if let Phase::Body { responded: true } = self.phase {
            if self.cut.as_ref().is_some_and(|(s, _)| s.is_last_request()) {
                // The rest of a body answered early; no head follows it.
                return 0;
            }
            self.phase = Phase::Head {
                since: None,
                newlines: 0,
                timer: None,
                bytes: 0,
            };
        }
        let Phase::Head { newlines, .. } = &mut self.phase else {
            return 0;
        };
        // Where the current line starts, if a line starts in this chunk; a blank
        // line is a `\n` right there or after a lone `\r`. Only newlines are
        // visited (memchr), not every byte.
        let mut line_start = match *newlines {
            1 => Some(0),
            2 if bytes.first() == Some(&b'\n') => {
                self.phase = Phase::Body { responded: false };
                return 1;
            }
            _ => None,
        };
        for at in memchr::memchr_iter(b'\n', bytes) {
            if let Some(start) = line_start {
                if at == start || (at == start + 1 && bytes[start] == b'\r') {
                    self.phase = Phase::Body { responded: false };
                    return at + 1;
                }
            }
            line_start = Some(at + 1);
        }
        *newlines = match line_start {
            Some(start) if start == bytes.len() => 1,
            Some(start) if start + 1 == bytes.len() && bytes[start] == b'\r' => 2,
            _ if *newlines == 2 && bytes.is_empty() => 2,
            _ => 0,
        };
        bytes.len()
    }

    /// Writes what is left of the refusal; `Ready(())` once it is all out (or the
    /// client is gone).
    fn poll_refusal(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Phase::Refusing {
            answer, written, ..
        } = &mut self.phase
        else {
            return Poll::Ready(());
        };
        while *written < answer.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &answer[*written..]) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Pending => return Poll::Pending,
            }
        }
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(_) => Poll::Ready(()),
        }
    }

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

    /// For a read that has to wait: true once the head's deadline has passed
    /// (arming the timer, which wakes the reader then, on the first wait).
    fn head_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let limit = self.limit;
        let (since, timer) = match &mut self.phase {
            Phase::Head { since, timer, .. } | Phase::Preface { since, timer, .. } => {
                (since, timer)
            }
            _ => return false,
        };
        let timer = timer.get_or_insert_with(|| {
            let start = *since.get_or_insert_with(Instant::now);
            Box::pin(sleep_until(start + limit))
        });
        timer.as_mut().poll(cx).is_ready()
    }
}

impl DeadlineStream {
    /// The read result while refusing a head: pending until the answer is
    /// written, then an error that makes Pingora close the connection.
    fn refuse(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let why = match self.phase {
            Phase::Refusing { why, .. } => why,
            _ => "refused",
        };
        if self.poll_refusal(cx).is_pending() {
            return Poll::Pending;
        }
        if self.poll_linger(cx).is_pending() {
            return Poll::Pending;
        }
        Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, why)))
    }

    /// After a refusal that lingers: reads and drops what the client still sends
    /// until it stops sending (end of stream, an error) or the linger ends.
    fn poll_linger(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Phase::Refusing {
            linger: Some(linger),
            ..
        } = &mut self.phase
        else {
            return Poll::Ready(());
        };
        let mut scratch = [0u8; 4096];
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.inner).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => continue,
                Poll::Ready(_) => return Poll::Ready(()),
                Poll::Pending => {
                    return if linger.until.as_mut().poll(cx).is_ready() {
                        Poll::Ready(())
                    } else {
                        Poll::Pending
                    };
                }
            }
        }
    }

    /// True when `read` opens the connection with HTTP/2's cleartext preface while
    /// this listener speaks HTTP/1.1 only (with `server.h2c`, Pingora peeks the
    /// preface first and [`Self::peeked`] has moved on to it).
    fn h2c_without_h2c(&self, read: &[u8]) -> bool {
        matches!(
            self.phase,
            Phase::Head {
                since: Some(_),
                bytes: 0,
                ..
            }
        ) && read.len() >= 14
            && H2_PREFACE.starts_with(&read[..read.len().min(H2_PREFACE.len())])
    }
}

impl AsyncRead for DeadlineStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Phase::Refusing { .. } = this.phase {
            return this.refuse(cx);
        }
        if let Some(why) = this.cut_reason() {
            return this.end_cut(cx, why);
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let filled = buf.filled();
                if filled.len() > before && this.h2c_without_h2c(&filled[before..]) {
                    // Pingora would answer nothing at all: say what to turn on.
                    buf.set_filled(before);
                    metrics::H2C_REFUSED.inc();
                    if !H2C_SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
                        tracing::warn!(
                            "a client spoke HTTP/2 without TLS (h2c, prior knowledge) but server.h2c \
                             is off: answered 400 (said once; counted in keygate_h2c_refused_total)"
                        );
                    }
                    this.phase = Phase::Refusing {
                        answer: H2C_OFF,
                        written: 0,
                        why: "HTTP/2 cleartext preface without server.h2c; answered 400",
                        linger: Some(Lingering {
                            until: Box::pin(sleep_until(Instant::now() + LINGER)),
                        }),
                    };
                    return this.refuse(cx);
                }
                if filled.len() > before && !this.saw(&filled[before..]) {
                    // Pingora never sees this head: the 431 answers it.
                    buf.set_filled(before);
                    metrics::HEADERS_TOO_LARGE.inc();
                    this.phase = Phase::Refusing {
                        answer: this.too_large,
                        written: 0,
                        why: "request head larger than server.max_header_bytes; answered 431",
                        linger: None,
                    };
                    return this.refuse(cx);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if this.head_expired(cx) => {
                metrics::HEAD_TIMEOUTS.inc();
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "request head not complete within server.header_timeout",
                )))
            }
            Poll::Pending => {
                // An armed connection waits for its data or its cut, whichever
                // comes first.
                if let Some((switch, _)) = &this.cut {
                    if switch.armed().is_some() {
                        switch.park(cx.waker());
                        if let Some(why) = switch.is_cut() {
                            return this.end_cut(cx, why);
                        }
                    }
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

impl Drop for DeadlineStream {
    fn drop(&mut self) {
        if let Some((switch, digest)) = &self.cut {
            cut::unregister(digest, switch);
        }
    }
}

fn cut_error(why: &'static str) -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        format!("connection closed by keygate: {why}"),
    )
}

impl AsyncWrite for DeadlineStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(why) = this.cut_reason() {
            return Poll::Ready(Err(cut_error(why)));
        }
        this.wrote(buf);
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            this.wrote_out(std::iter::once(buf), n);
        }
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(why) = this.cut_reason() {
            return Poll::Ready(Err(cut_error(why)));
        }
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            this.wrote(first);
        }
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = written {
            this.wrote_out(bufs.iter().map(|b| &**b), n);
        }
        written
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
        let peeked = self.inner.try_peek(buf).await?;
        if peeked {
            self.peeked(buf);
        }
        Ok(peeked)
    }
}

/// A [`ServerApp`] that gives every connection of `inner` a [`DeadlineStream`].
pub struct HeadDeadlineApp<A> {
    inner: Arc<A>,
    limit: Duration,
    max_head: usize,
    too_large: &'static [u8],
}

impl<A> HeadDeadlineApp<A> {
    /// Wraps `inner` (the proxy): request heads must arrive within `limit` and hold
    /// at most `max_head` bytes; a larger one is answered `too_large` (a whole
    /// response) and the connection closed.
    pub fn new(inner: A, limit: Duration, max_head: usize, too_large: &'static [u8]) -> Self {
        HeadDeadlineApp {
            inner: Arc::new(inner),
            limit,
            max_head,
            too_large,
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
        // Pingora serves all of a kept-alive connection's requests in this one call,
        // from the accept (before its first head is read) to the close. The drain
        // counts it for as long (at shutdown Pingora closes idle ones at once).
        let _open = super::drain::CONNECTIONS.enter();
        let stream: Stream = Box::new(DeadlineStream::new(
            stream,
            self.limit,
            self.max_head,
            self.too_large,
        ));
        self.inner.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

/// The keep-alive timeout, in whole seconds as Pingora takes it, for `idle`.
pub fn keepalive_secs(idle: Duration) -> u64 {
    idle.as_millis().div_ceil(1000).max(1) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 431 as the server writes one.
    const TOO_LARGE: &[u8] =
        b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n\r\n";

    #[test]
    fn the_h2c_answer_is_whole_json_and_names_the_setting() {
        let text = std::str::from_utf8(H2C_OFF).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(length, body.len());
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"], "invalid_request");
        assert!(v["message"].as_str().unwrap().contains("server.h2c: true"));
    }

    fn stream() -> DeadlineStream {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = tcp.local_addr().unwrap();
        let std_stream = std::net::TcpStream::connect(addr).unwrap();
        std_stream.set_nonblocking(true).unwrap();
        let s = pingora::protocols::l4::stream::Stream::from(
            tokio::net::TcpStream::from_std(std_stream).unwrap(),
        );
        DeadlineStream::new(Box::new(s), Duration::from_secs(10), 64, TOO_LARGE)
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
        for text in [
            &b"GET / HTTP/1.1\r\nA: b\r\n\r\n"[..],
            b"GET / HTTP/1.1\nA: b\n\n",
            b"GET / HTTP/1.1\nA: b\n\r\n",
        ] {
            let mut s = stream();
            for (i, b) in text.iter().enumerate() {
                assert!(matches!(s.phase, Phase::Head { .. }), "ended early at {i}");
                s.saw(std::slice::from_ref(b));
            }
            assert!(matches!(s.phase, Phase::Body { .. }), "byte by byte");
        }
        let mut s = stream();
        s.saw(b"GET / HTTP/1.1\r\nA: \r\r\nB: \n \n");
        assert!(matches!(s.phase, Phase::Head { .. }), "no blank line yet");
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
        assert!(s.saw(b"POST / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n"));
        s.wrote(b"HTTP/1.1 100 Continue\r\n\r\n");
        s.saw(b"body bytes\r\n\r\n");
        assert!(
            matches!(s.phase, Phase::Body { responded: false }),
            "a 100 Continue is not the response: the body is not a head"
        );
        s.wrote(b"HTTP/1.1 200 OK\r\n");
        assert!(matches!(s.phase, Phase::Body { responded: true }));
        s.saw(b"G");
        assert!(matches!(
            s.phase,
            Phase::Head {
                newlines: 0,
                timer: None,
                ..
            }
        ));
    }

    #[tokio::test]
    async fn the_body_of_a_last_request_answered_early_is_never_a_head() {
        let mut s = stream(); // at most 64 bytes of head
        assert!(s.saw(b"POST /v1/keys/import HTTP/1.1\r\nContent-Length: 9999\r\n\r\n"));
        s.wrote(b"HTTP/1.1 413 Payload Too Large\r\n");
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let digest = Arc::new(SocketDigest::from_raw_fd(std::os::fd::AsRawFd::as_raw_fd(
            &socket,
        )));
        let switch = cut::register(&digest);
        s.cut = Some((switch.clone(), digest));
        switch.last_request();
        assert!(s.saw(&[b'x'; 1000]), "the refused body, read and dropped");
        assert!(matches!(s.phase, Phase::Body { responded: true }));
    }

    #[tokio::test]
    async fn a_head_is_measured_up_to_its_blank_line_and_refused_past_the_limit() {
        let mut s = stream(); // at most 64 bytes of head
        let head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut chunk = head.to_vec();
        chunk.extend_from_slice(&[b'x'; 200]); // a body: not counted
        assert!(s.saw(&chunk));
        assert!(matches!(s.phase, Phase::Body { .. }));
        s.wrote(b"HTTP/1.1 200 OK\r\n");
        assert!(s.saw(b"GET / HTTP/1.1\r\n"), "a new head starts from zero");
        assert!(s.saw(&[b'a'; 40]), "56 bytes so far");
        assert!(s.saw(&[b'a'; 8]), "64: the limit itself is allowed");
        assert!(!s.saw(&[b'a'; 1]), "65 > 64");
        let mut whole = stream();
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.extend_from_slice(&[b'a'; 60]);
        big.extend_from_slice(b"\r\n\r\n");
        assert!(
            !whole.saw(&big),
            "a head over the limit that ends in the same read"
        );
    }

    #[tokio::test]
    async fn an_h2c_connection_is_past_head_tracking_once_its_preface_is_read() {
        let mut s = stream(); // at most 64 bytes of head
        s.peeked(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r");
        assert!(matches!(s.phase, Phase::Head { .. }), "not the preface");
        s.peeked(H2_PREFACE);
        assert!(matches!(s.phase, Phase::Preface { left: 24, .. }));
        assert!(s.saw(&H2_PREFACE[..10]));
        assert!(matches!(s.phase, Phase::Preface { left: 14, .. }));
        // The rest of the preface and frames: never a head, never too large,
        // and a response (a SETTINGS frame) does not start one.
        let mut frames = H2_PREFACE[10..].to_vec();
        frames.extend_from_slice(&[0u8; 100_000]);
        assert!(s.saw(&frames));
        assert!(matches!(s.phase, Phase::Http2));
        s.wrote(b"\0\0\0\x04\0\0\0\0\0");
        assert!(s.saw(&[b'\n'; 1000]));
        assert!(matches!(s.phase, Phase::Http2));
    }

    #[tokio::test]
    async fn a_preface_peeked_after_a_first_head_changes_nothing() {
        let mut s = stream();
        s.saw(b"GET / HTTP/1.1\r\n\r\n");
        s.wrote(b"HTTP/1.1 200 OK\r\n");
        s.saw(b"G");
        s.peeked(H2_PREFACE);
        assert!(matches!(s.phase, Phase::Head { .. }));
    }

    #[tokio::test]
    async fn a_preface_that_never_comes_times_out_like_a_head() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (_silent_peer, _) = listener.accept().await.unwrap();
        let inner = pingora::protocols::l4::stream::Stream::from(client);
        let mut s = DeadlineStream::new(Box::new(inner), Duration::from_millis(50), 64, TOO_LARGE);
        s.peeked(H2_PREFACE);
        let mut buf = [0u8; 16];
        let err = tokio::io::AsyncReadExt::read(&mut s, &mut buf)
            .await
            .expect_err("nothing was sent");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[test]
    fn keepalive_rounds_up_to_whole_seconds() {
        assert_eq!(keepalive_secs(Duration::from_millis(1)), 1);
        assert_eq!(keepalive_secs(Duration::from_millis(1500)), 2);
        assert_eq!(keepalive_secs(Duration::from_secs(60)), 60);
    }
}
