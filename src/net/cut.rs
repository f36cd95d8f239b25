//! Ending a client connection from outside the request that holds it: a WebSocket
//! or an event stream whose key is revoked while nothing moves on it would
//! otherwise stay open for as long as the client likes.
//!
//! Every client connection gets a [`CutSwitch`] when it is accepted
//! ([`super::head_deadline::DeadlineStream`] holds it and polls it), found again by
//! the request through its socket digest ([`of_connection`]). A request that
//! outlives its decision arms the switch ([`CutSwitch::arm`]); cutting it wakes the
//! connection, whose next read fails, so Pingora ends the request and closes the
//! socket. On an upgraded WebSocket the connection first sends a close frame with
//! status 1008 (policy violation), if the server's last frame is complete
//! ([`FrameTracker`]); otherwise the socket just closes.

use dashmap::DashMap;
use once_cell::sync::Lazy;
use parking_lot::Mutex;
use pingora::protocols::SocketDigest;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Weak};
use std::task::Waker;

/// WebSocket close status 1008: the endpoint received a message that violates its
/// policy (RFC 6455 §7.4.1) — the credential is no longer good.
pub const POLICY_VIOLATION: u16 = 1008;

/// What arming a switch prepares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Armed {
    /// The connection carries one long-lived request (HTTP/1.1, HTTP/2).
    Plain = 1,
    /// An upgraded WebSocket: say goodbye with a close frame.
    WebSocket = 2,
}

/// A connection's off switch. Cheap to poll: an atomic load per read or write.
#[derive(Debug, Default)]
pub struct CutSwitch {
    /// 0 until armed, then [`Armed`].
    armed: AtomicU8,
    /// Set by a cut (read on every poll).
    cut: AtomicBool,
    /// The close frame's reason text once cut.
    reason: Mutex<&'static str>,
    /// The connection's reader, woken by a cut.
    reader: Mutex<Option<Waker>>,
    /// The connection closes after the request in flight, which was answered
    /// before its body was read: what the client still sends is that body.
    last_request: AtomicBool,
}

impl CutSwitch {
    /// Prepares the switch for a cut: the connection keeps its reader's waker from
    /// now on, and (for a WebSocket) follows the frames it writes.
    pub fn arm(&self, how: Armed) {
        self.armed.fetch_max(how as u8, Ordering::SeqCst);
    }

    /// How the switch is armed, if it is.
    pub fn armed(&self) -> Option<Armed> {
        match self.armed.load(Ordering::Relaxed) {
            0 => None,
            1 => Some(Armed::Plain),
            _ => Some(Armed::WebSocket),
        }
    }

    /// Ends the connection at its next poll; `why` is the close frame's reason.
    pub fn cut(&self, why: &'static str) {
        *self.reason.lock() = why;
        self.cut.store(true, Ordering::SeqCst);
        if let Some(w) = self.reader.lock().take() {
            w.wake();
        }
    }

    /// The reason, once cut.
    pub fn is_cut(&self) -> Option<&'static str> {
        if !self.cut.load(Ordering::Relaxed) {
            return None;
        }
        Some(*self.reason.lock())
    }

    /// Says that the request in flight is the connection's last and was answered
    /// before its body was read: what is read from now on is its body, never a
    /// next request's head.
    pub fn last_request(&self) {
        self.last_request.store(true, Ordering::SeqCst);
    }

    /// True once [`Self::last_request`] was said.
    pub fn is_last_request(&self) -> bool {
        self.last_request.load(Ordering::Relaxed)
    }

    /// Keeps the waker of a read that has to wait, so a cut wakes it.
    pub fn park(&self, waker: &Waker) {
        let mut slot = self.reader.lock();
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }
}

/// The switch of every open client connection, by its socket digest's address
/// (the digest lives as long as the connection; the request sees the same one).
static SWITCHES: Lazy<DashMap<usize, Weak<CutSwitch>>> = Lazy::new(DashMap::new);

fn key(digest: &Arc<SocketDigest>) -> usize {
    Arc::as_ptr(digest) as usize
}

/// A new switch for a connection being accepted with `digest`.
pub fn register(digest: &Arc<SocketDigest>) -> Arc<CutSwitch> {
    let switch = Arc::new(CutSwitch::default());
    SWITCHES.insert(key(digest), Arc::downgrade(&switch));
    switch
}

/// Forgets the switch of a closed connection.
pub fn unregister(digest: &Arc<SocketDigest>, switch: &Arc<CutSwitch>) {
    SWITCHES.remove_if(&key(digest), |_, w| w.as_ptr() == Arc::as_ptr(switch));
}

/// The switch of the connection with `digest`, while it is open.
pub fn of_connection(digest: &Arc<SocketDigest>) -> Option<Arc<CutSwitch>> {
    SWITCHES.get(&key(digest)).and_then(|w| w.upgrade())
}

/// Follows the WebSocket frames a server writes after its `101` head, to know
/// when a frame of keygate's own can go between two of them.
#[derive(Debug)]
pub enum FrameTracker {
    /// In the `101` head: how much of its final `\r\n\r\n` was seen.
    Head(u8),
    /// In a frame header: its bytes so far (at most 14).
    Header([u8; 14], usize),
    /// In a frame's payload: bytes left.
    Payload(u64),
}

impl Default for FrameTracker {
    fn default() -> Self {
        FrameTracker::Head(0)
    }
}

impl FrameTracker {
    /// Follows `bytes`, written in order.
    pub fn wrote(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match self {
                FrameTracker::Head(seen) => {
                    let b = bytes[0];
                    bytes = &bytes[1..];
                    let want = b"\r\n\r\n"[usize::from(*seen)];
                    *seen = match (b == want, b == b'\r') {
                        (true, _) => *seen + 1,
                        (false, true) => 1,
                        (false, false) => 0,
                    };
                    if *seen == 4 {
                        *self = FrameTracker::Header([0; 14], 0);
                    }
                }
                FrameTracker::Header(buf, have) => {
                    buf[*have] = bytes[0];
                    *have += 1;
                    bytes = &bytes[1..];
                    if *have < 2 {
                        continue;
                    }
                    let len7 = buf[1] & 0x7f;
                    let extended = match len7 {
                        126 => 2,
                        127 => 8,
                        _ => 0,
                    };
                    let mask = if buf[1] & 0x80 != 0 { 4 } else { 0 };
                    if *have < 2 + extended + mask {
                        continue;
                    }
                    let len = match extended {
                        2 => u64::from(u16::from_be_bytes([buf[2], buf[3]])),
                        8 => u64::from_be_bytes([
                            buf[2], buf[3], buf[4], buf[5], buf[6], buf[7], buf[8], buf[9],
                        ]),
                        _ => u64::from(len7),
                    };
                    *self = if len == 0 {
                        FrameTracker::Header([0; 14], 0)
                    } else {
                        FrameTracker::Payload(len)
                    };
                }
                FrameTracker::Payload(left) => {
                    let n = (*left).min(bytes.len() as u64);
                    *left -= n;
                    bytes = &bytes[n as usize..];
                    if *left == 0 {
                        *self = FrameTracker::Header([0; 14], 0);
                    }
                }
            }
        }
    }

    /// True between two frames (after the head), where a frame may be inserted.
    pub fn between_frames(&self) -> bool {
        matches!(self, FrameTracker::Header(_, 0))
    }
}

/// A server's close frame: `code` and `reason` (at most 123 bytes of it).
pub fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let reason = &reason.as_bytes()[..reason.len().min(123)];
    let mut frame = vec![0x88, (2 + reason.len()) as u8];
    frame.extend_from_slice(&code.to_be_bytes());
    frame.extend_from_slice(reason);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x81];
        match payload.len() {
            n if n < 126 => f.push(n as u8),
            n if n <= 0xffff => {
                f.push(126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn frame_boundaries_are_found_however_the_bytes_are_split() {
        let mut wire = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n".to_vec();
        let head = wire.len();
        let mut ends = vec![head];
        for payload in [&b"hi"[..], &[7u8; 300], &[], &[1u8; 70_000]] {
            wire.extend(frame(payload));
            ends.push(wire.len());
        }
        for step in [1, 2, 3, 7, 64, 1000, wire.len()] {
            let mut t = FrameTracker::default();
            let mut at = 0;
            while at < wire.len() {
                let n = step.min(wire.len() - at);
                t.wrote(&wire[at..at + n]);
                at += n;
                assert_eq!(
                    t.between_frames(),
                    ends.contains(&at),
                    "step {step}, at {at}"
                );
            }
        }
    }

    #[test]
    fn a_masked_header_counts_its_key() {
        let mut t = FrameTracker::Header([0; 14], 0);
        t.wrote(&[0x82, 0x83, 1, 2, 3, 4, 9, 9]);
        assert!(!t.between_frames());
        t.wrote(&[9]);
        assert!(t.between_frames());
    }

    /// A waker that records being woken.
    fn futures_test_waker() -> (Waker, Arc<AtomicBool>) {
        struct Flag(Arc<AtomicBool>);
        impl std::task::Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let woken = Arc::new(AtomicBool::new(false));
        (Waker::from(Arc::new(Flag(woken.clone()))), woken)
    }

    #[test]
    fn close_frames_carry_the_code_and_a_short_reason() {
        let f = close_frame(POLICY_VIOLATION, "API key revoked");
        assert_eq!(&f[..4], &[0x88, 17, 0x03, 0xF0]);
        assert_eq!(&f[4..], b"API key revoked");
        assert_eq!(close_frame(1008, &"x".repeat(300)).len(), 2 + 125);
    }

    #[test]
    fn a_cut_wakes_the_reader_and_arming_never_downgrades() {
        let s = CutSwitch::default();
        assert_eq!(s.armed(), None);
        s.arm(Armed::Plain);
        let (waker, woken) = futures_test_waker();
        s.park(&waker);
        assert_eq!(s.is_cut(), None);
        s.cut("revoked");
        assert_eq!(s.is_cut(), Some("revoked"));
        assert!(woken.load(Ordering::SeqCst), "the parked reader was woken");
        s.arm(Armed::WebSocket);
        assert_eq!(s.armed(), Some(Armed::WebSocket));
        s.arm(Armed::Plain);
        assert_eq!(s.armed(), Some(Armed::WebSocket), "never downgraded");
    }
}
