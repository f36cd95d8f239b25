//! Where log lines go: stderr, written by a thread of its own, never by the thread
//! serving a request.
//!
//! Each log event (an access line per request, at the default filter) is formatted
//! on the request's thread, as before, and handed to a bounded queue; a writer
//! thread takes the lines off it into an 64 KiB buffer and writes that to stderr
//! in one `write(2)` whenever the buffer fills or the queue runs dry — so under load
//! many lines share one system call, and when idle a line is written at once. If
//! stderr stalls (a full pipe nobody reads), the queue fills and further lines are
//! dropped, never waited for; each dropped line is counted
//! (`keygate_log_lines_dropped_total`). [`finish`] writes what is queued before the
//! process exits.

use once_cell::sync::Lazy;
use parking_lot::Mutex;
use std::io::{BufWriter, Stderr};
use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};

/// Lines that may wait for the writer (about 2 MiB of access lines at most).
pub const QUEUE_LINES: usize = 16_384;
/// Bytes the writer gathers before a write to stderr.
const BUFFER_BYTES: usize = 64 * 1024;

/// The writer thread's guard (dropping it drains the queue) and its drop counter.
static WRITER: Lazy<Mutex<Option<(WorkerGuard, ErrorCounter)>>> = Lazy::new(|| Mutex::new(None));

/// The non-blocking stderr writer for the log subscriber; starts the writer thread.
/// Call once, before serving.
pub fn stderr() -> NonBlocking {
    let sink: BufWriter<Stderr> = BufWriter::with_capacity(BUFFER_BYTES, std::io::stderr());
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(QUEUE_LINES)
        .thread_name("keygate-log")
        .finish(sink);
    *WRITER.lock() = Some((guard, writer.error_counter()));
    writer
}

/// Lines dropped so far because the writer could not keep up.
pub fn dropped_lines() -> u64 {
    WRITER
        .lock()
        .as_ref()
        .map_or(0, |(_, c)| c.dropped_lines() as u64)
}

/// Writes every queued line and stops the writer thread (waiting at most about a
/// second for a stalled stderr). Lines logged afterwards are dropped.
pub fn finish() {
    let writer = WRITER.lock().take();
    drop(writer);
}
