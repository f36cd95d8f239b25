//! Where log lines go: stderr, written by a thread of its own, never by the thread
//! serving a request.
//!
//! Every thread appends its lines to a buffer of its own (a lock only it and the
//! writer ever take, so it is never contended for more than a swap). The writer
//! thread (`keygate-log`) takes every buffer's lines and writes them to stderr in
//! one `write(2)`, then pauses [`BATCH_PAUSE`] while more gather — so under load a
//! write carries every line of the last 10 ms, the way nginx's
//! `access_log … buffer=` and HAProxy's log ring batch theirs — and when there is
//! nothing to write it sleeps until the next line arrives, which it then writes at
//! once (a quiet keygate's lines appear as they happen). If stderr stalls (a full pipe nobody reads), a thread's
//! buffer stops at [`MAX_PER_THREAD`] bytes and further lines are dropped, never
//! waited for; each is counted (`keygate_log_lines_dropped_total`). [`finish`]
//! writes every buffer before the process exits. Until [`start`] runs (the CLI's
//! commands) and after [`finish`], lines are written to stderr directly.

use once_cell::sync::Lazy;
use parking_lot::{Condvar, Mutex};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long the writer lets lines gather after a write.
pub const BATCH_PAUSE: Duration = Duration::from_millis(10);
/// How long the idle writer sleeps when no line wakes it.
const IDLE_WAIT: Duration = Duration::from_secs(1);
/// A thread's buffer never grows past this; further lines are dropped (counted).
pub const MAX_PER_THREAD: usize = 1024 * 1024;
/// How long [`finish`] waits for a stalled stderr.
const FINISH_WAIT: Duration = Duration::from_secs(2);

type Buffer = Arc<Mutex<Vec<u8>>>;

/// The writer's state, shared with every thread that logs.
struct Sink {
    /// Every thread's buffer; a buffer whose thread has ended is dropped once empty.
    buffers: Mutex<Vec<Buffer>>,
    /// True while the writer thread runs (lines are buffered).
    running: AtomicBool,
    /// True while the writer sleeps with nothing to write: the next line wakes it.
    idle: AtomicBool,
    /// Set to wake the writer early; `stop` asks it to write everything and end.
    signal: Mutex<Signal>,
    wake: Condvar,
    /// Lines dropped because a buffer was full.
    dropped: AtomicU64,
}

#[derive(Default)]
struct Signal {
    woken: bool,
    stop: bool,
    stopped: bool,
}

static SINK: Lazy<Sink> = Lazy::new(|| Sink {
    buffers: Mutex::new(Vec::new()),
    running: AtomicBool::new(false),
    idle: AtomicBool::new(false),
    signal: Mutex::new(Signal::default()),
    wake: Condvar::new(),
    dropped: AtomicU64::new(0),
});

thread_local! {
    static LOCAL: Buffer = {
        let b: Buffer = Arc::new(Mutex::new(Vec::new()));
        SINK.buffers.lock().push(b.clone());
        b
    };
}

/// Starts the writer thread: from now on lines are buffered. Call once, before
/// serving.
pub fn start() {
    if SINK.running.swap(true, Ordering::SeqCst) {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("keygate-log".into())
        .spawn(writer_loop);
    if spawned.is_err() {
        SINK.running.store(false, Ordering::SeqCst);
    }
}

/// Appends whole lines (ending in `\n`) to this thread's buffer; writes them at once
/// when the writer is not running.
pub fn append(lines: &[u8]) {
    if !SINK.running.load(Ordering::Relaxed) {
        let _ = std::io::stderr().write_all(lines);
        return;
    }
    let kept = LOCAL.with(|b| {
        let mut b = b.lock();
        if b.len() + lines.len() > MAX_PER_THREAD {
            return false;
        }
        b.extend_from_slice(lines);
        true
    });
    if !kept {
        SINK.dropped.fetch_add(1, Ordering::Relaxed);
    } else if SINK.idle.load(Ordering::Relaxed) && SINK.idle.swap(false, Ordering::AcqRel) {
        wake(false);
    }
}

fn wake(stop: bool) {
    let mut s = SINK.signal.lock();
    s.woken = true;
    s.stop |= stop;
    SINK.wake.notify_all();
}

/// Lines dropped so far because stderr could not keep up.
pub fn dropped_lines() -> u64 {
    SINK.dropped.load(Ordering::Relaxed)
}

/// Writes every buffered line and stops the writer thread (waiting at most
/// [`FINISH_WAIT`] for a stalled stderr). Later lines are written directly.
pub fn finish() {
    if !SINK.running.load(Ordering::SeqCst) {
        return;
    }
    wake(true);
    let deadline = std::time::Instant::now() + FINISH_WAIT;
    let mut s = SINK.signal.lock();
    while !s.stopped {
        if SINK.wake.wait_until(&mut s, deadline).timed_out() {
            break;
        }
    }
}

/// Takes every buffer's lines, in thread order, and forgets buffers of threads that
/// have ended.
fn take_all(out: &mut Vec<u8>) {
    let buffers: Vec<Buffer> = SINK.buffers.lock().clone();
    for b in &buffers {
        let mut b = b.lock();
        if out.is_empty() {
            std::mem::swap(out, &mut b);
        } else {
            out.extend_from_slice(&b);
            b.clear();
        }
    }
    drop(buffers);
    // Two owners: the list and the thread's own handle; one means the thread ended.
    SINK.buffers
        .lock()
        .retain(|b| Arc::strong_count(b) > 1 || !b.lock().is_empty());
}

fn writer_loop() {
    let mut stderr = std::io::stderr();
    let mut batch = Vec::with_capacity(64 * 1024);
    loop {
        take_all(&mut batch);
        if batch.is_empty() {
            // Nothing to write: sleep until a line arrives. A line appended after
            // the take above and before `idle` was set is caught by the second take.
            SINK.idle.store(true, Ordering::Release);
            take_all(&mut batch);
        }
        if !batch.is_empty() {
            SINK.idle.store(false, Ordering::Release);
            // A failed write (stderr closed) loses these lines; there is nowhere
            // else to say so.
            let _ = stderr.write_all(&batch);
            batch.clear();
        }
        let stop = {
            let mut s = SINK.signal.lock();
            if !s.woken && !s.stop {
                if SINK.idle.load(Ordering::Acquire) {
                    let _ = SINK.wake.wait_for(&mut s, IDLE_WAIT);
                } else {
                    drop(s);
                    std::thread::sleep(BATCH_PAUSE);
                    s = SINK.signal.lock();
                }
            }
            s.woken = false;
            s.stop
        };
        if stop {
            SINK.running.store(false, Ordering::SeqCst);
            // Lines appended between the last take and `running` turning false.
            take_all(&mut batch);
            let _ = stderr.write_all(&batch);
            let _ = stderr.flush();
            let mut s = SINK.signal.lock();
            s.stopped = true;
            SINK.wake.notify_all();
            return;
        }
    }
}

/// The `tracing` writer: each event's formatted line goes to this thread's buffer.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogSink;

/// A handle on the current thread's buffer, for one event.
#[derive(Debug)]
pub struct LineWriter;

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        append(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogSink {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter
    }
}
