//! Whether the store is taking writes, as the writes keygate makes say (credit
//! debits, usage, sessions, key changes): a full disk or a read-only database fails
//! them while lookups go on working. `/ready` shows it (`store_writes`) without
//! taking the replica out of rotation, because requests that write nothing are still
//! served; `keygate_store_writes_failing` and `keygate_store_write_errors_total` say
//! it to monitoring.
//!
//! Only a failure of the store itself counts (it could not write): a refused write
//! (a conflict, a quota, a missing key) is the store working.

use super::StoreError;
use crate::obs::metrics;
use parking_lot::Mutex;

/// How the last write went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteStatus {
    /// No write was attempted since start.
    Unknown,
    /// The last write succeeded.
    Ok,
    /// The last write failed because the store could not take it.
    Failing {
        /// The store's error.
        error: String,
    },
}

impl WriteStatus {
    /// The word `/ready` shows: `unknown`, `ok` or `failing`.
    pub fn as_str(&self) -> &'static str {
        match self {
            WriteStatus::Unknown => "unknown",
            WriteStatus::Ok => "ok",
            WriteStatus::Failing { .. } => "failing",
        }
    }
}

/// The outcome of a store's writes, updated by each one.
#[derive(Debug)]
pub struct WriteHealth {
    status: Mutex<WriteStatus>,
}

impl Default for WriteHealth {
    fn default() -> Self {
        WriteHealth {
            status: Mutex::new(WriteStatus::Unknown),
        }
    }
}

impl WriteHealth {
    /// Records a write's outcome and hands it back.
    pub fn record<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        let next = match &result {
            Err(StoreError::Unavailable(e)) => {
                metrics::STORE_WRITE_ERRORS.inc();
                WriteStatus::Failing { error: e.clone() }
            }
            _ => WriteStatus::Ok,
        };
        let mut status = self.status.lock();
        if *status != next {
            metrics::STORE_WRITES_FAILING
                .set(i64::from(matches!(next, WriteStatus::Failing { .. })));
            match &next {
                WriteStatus::Failing { error } => {
                    tracing::error!(%error, "the store is not taking writes");
                }
                _ if matches!(*status, WriteStatus::Failing { .. }) => {
                    tracing::info!("the store is taking writes again");
                }
                _ => {}
            }
            *status = next;
        }
        result
    }

    /// How the last write went.
    pub fn status(&self) -> WriteStatus {
        self.status.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_write_tells_and_refusals_are_not_failures() {
        let h = WriteHealth::default();
        assert_eq!(h.status(), WriteStatus::Unknown);
        let _ = h.record::<()>(Err(StoreError::Unavailable("disk full".into())));
        assert_eq!(
            h.status(),
            WriteStatus::Failing {
                error: "disk full".into()
            }
        );
        let _ = h.record::<()>(Err(StoreError::NotFound("key_x".into())));
        assert_eq!(h.status(), WriteStatus::Ok, "the store answered");
        let _ = h.record(Ok(()));
        assert_eq!(h.status().as_str(), "ok");
    }
}
