//! Credit debits by group commit: the one way the request path spends credits.
//!
//! Each metered request queues its debit and waits. The first request to queue one
//! while no commit is running starts a committer task on its own thread's runtime;
//! that task first yields, so that every request already runnable there queues its
//! debit too, then hands everything queued to [`KeyStore::debit_batch`], which
//! decides the debits in order and commits them in one transaction. It repeats
//! while debits keep arriving and ends when the queue is empty. A request is
//! answered (and forwarded) only once the transaction holding its debit has
//! committed, so a credit is spent exactly once and durably, whatever crashes
//! afterwards. Under load one transaction (and one blocking-pool hop) carries many
//! debits instead of one each; at low load a lone debit commits at once, never
//! waiting for a timer.

use crate::domain::RefillDue;
use crate::obs::metrics::CREDIT_DEBITS_PER_COMMIT;
use crate::store::{DebitRequest, DebitResult, Holder, KeyStore, StoreError};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::oneshot;

/// Most debits one transaction carries; more go in the next.
const MAX_BATCH: usize = 1024;

struct Pending {
    request: DebitRequest,
    answer: oneshot::Sender<DebitResult>,
}

#[derive(Default)]
struct Queue {
    pending: Vec<Pending>,
    /// A committer task is running: it will take what is queued.
    committing: bool,
}

struct Inner {
    store: Arc<dyn KeyStore>,
    queue: Mutex<Queue>,
    commits: AtomicU64,
}

/// Spends credits in group-committed store transactions. Cheap to clone.
#[derive(Clone)]
pub struct CreditLedger {
    inner: Arc<Inner>,
}

impl CreditLedger {
    /// A ledger committing to `store`.
    pub fn new(store: Arc<dyn KeyStore>) -> Self {
        CreditLedger {
            inner: Arc::new(Inner {
                store,
                queue: Mutex::new(Queue::default()),
                commits: AtomicU64::new(0),
            }),
        }
    }

    /// Store transactions this ledger has run (each carrying one or more debits).
    pub fn commits(&self) -> u64 {
        self.inner.commits.load(Ordering::Relaxed)
    }

    /// Debits `cost` credits from the balance of key or account `id` (`holder`),
    /// after applying `refill` if it is due:
    /// answered once the debit is durable (`Done`), or refused with nothing spent
    /// (`Insufficient`, `Unmetered`, an error). Must be called inside a Tokio runtime.
    pub async fn debit(
        &self,
        holder: Holder,
        id: &str,
        cost: u64,
        refill: Option<RefillDue>,
    ) -> DebitResult {
        let (answer, answered) = oneshot::channel();
        let pending = Pending {
            request: DebitRequest {
                id: id.to_string(),
                holder,
                cost,
                refill,
            },
            answer,
        };
        let lead = {
            let mut q = self.inner.queue.lock();
            q.pending.push(pending);
            !std::mem::replace(&mut q.committing, true)
        };
        if lead {
            tokio::spawn(self.inner.clone().commit_while_queued());
        }
        answered.await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "the credit commit was abandoned".into(),
            ))
        })
    }
}

impl CreditLedger {
    /// Gives back what was debited at `debited_at` (Unix seconds) for a request the
    /// upstream never answered (keygate's own 502/504), counted in
    /// `keygate_credit_refunds_total`. The caller holds the debit and hands it over
    /// once, so a refund happens at most once.
    pub async fn refund(&self, holder: Holder, id: &str, cost: u64, debited_at: i64) {
        let result = self
            .inner
            .store
            .refund_credits(holder, id, cost, debited_at)
            .await;
        if let Err(e) = &result {
            tracing::warn!(key_id = id, cost, error = %e, "credit refund failed");
        }
        crate::obs::metrics::CREDIT_REFUNDS
            .with_label_values(&[if result.is_ok() { "ok" } else { "error" }])
            .inc();
    }
}

impl Inner {
    /// Commits what is queued, batch after batch, until the queue is empty.
    async fn commit_while_queued(self: Arc<Self>) {
        let mut running = Running {
            inner: &self,
            finished: false,
        };
        let mut debits: Vec<DebitRequest> = Vec::new();
        loop {
            // Requests already runnable on this thread queue their debits first.
            tokio::task::yield_now().await;
            let mut batch = {
                let mut q = self.queue.lock();
                if q.pending.is_empty() {
                    q.committing = false;
                    running.finished = true;
                    return;
                }
                if q.pending.len() <= MAX_BATCH {
                    std::mem::take(&mut q.pending)
                } else {
                    q.pending.drain(..MAX_BATCH).collect()
                }
            };
            debits.clear();
            debits.extend(
                batch
                    .iter_mut()
                    .map(|p| std::mem::replace(&mut p.request, DebitRequest::new("", 0))),
            );
            let answers = self.store.debit_batch(&debits).await;
            self.commits.fetch_add(1, Ordering::Relaxed);
            CREDIT_DEBITS_PER_COMMIT.observe(batch.len() as f64);
            match answers {
                Ok(answers) if answers.len() == batch.len() => {
                    for (p, a) in batch.drain(..).zip(answers) {
                        let _ = p.answer.send(a);
                    }
                }
                Ok(_) => fail_all(batch, "the store answered a different number of debits"),
                Err(e) => fail_all(batch, &e.to_string()),
            }
        }
    }
}

/// Held by the committer task. Should the task be dropped before it finished (its
/// runtime shut down), the next debit starts a new one, and what it left queued is
/// refused rather than left waiting.
struct Running<'a> {
    inner: &'a Inner,
    /// Set, under the queue's lock, when the task saw the queue empty.
    finished: bool,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let left = {
            let mut q = self.inner.queue.lock();
            q.committing = false;
            std::mem::take(&mut q.pending)
        };
        fail_all(left, "the credit committer stopped");
    }
}

/// Answers every debit of a batch that did not commit: nothing was spent.
fn fail_all(batch: Vec<Pending>, why: &str) {
    for p in batch {
        let _ = p.answer.send(Err(StoreError::Unavailable(why.to_string())));
    }
}
