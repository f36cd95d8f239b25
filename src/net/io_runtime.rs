//! The small Tokio runtime that owns the PostgreSQL connections, the change feed and
//! the Redis reconnect probe.
//!
//! Pingora runs each service on its own runtime, and a connection's socket belongs to
//! the runtime that opened it. Opening the store's connections here, on one runtime
//! that lives as long as the process, means they keep working whichever service
//! (proxy, admin, housekeeping, CLI) calls them, and at shutdown the final usage flush
//! still has its connections after the services' runtimes stop. Callers talk to the
//! connections through channels, so this runtime needs only one thread. (Redis, on
//! every request, keeps a connection per calling thread instead: see
//! `limit::redis`.)

use once_cell::sync::Lazy;
use std::future::Future;
use tokio::runtime::{Builder, Handle, Runtime};

// Without threads for it, keygate cannot run at all: the first use, at start, fails.
#[allow(clippy::expect_used)]
static IO: Lazy<Runtime> = Lazy::new(|| {
    Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("keygate-io")
        .enable_all()
        .build()
        .expect("cannot start the backend I/O runtime")
});

/// The backend runtime's handle.
pub fn handle() -> &'static Handle {
    IO.handle()
}

/// The backend task ended without an answer (it panicked, or the process is exiting).
#[derive(Debug, thiserror::Error)]
#[error("backend I/O task failed: {0}")]
pub struct TaskFailed(String);

/// Runs `fut` on the backend runtime and waits for it from async code.
pub async fn run<F>(fut: F) -> Result<F::Output, TaskFailed>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    IO.spawn(fut).await.map_err(|e| TaskFailed(e.to_string()))
}

/// Runs `fut` on the backend runtime and blocks the calling thread until it ends.
/// Safe from synchronous code and (briefly, at start-up) from inside another runtime.
pub fn block_on<F>(fut: F) -> Result<F::Output, TaskFailed>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    IO.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv()
        .map_err(|_| TaskFailed("the task ended without an answer".into()))
}
