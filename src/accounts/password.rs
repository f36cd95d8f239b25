//! Password hashing with argon2id (PHC strings), on a small pool of threads of its
//! own with a bounded queue.
//!
//! Each argon2 hash works through 19 MiB. Run on demand for every login or sign-up,
//! 200 concurrent requests took the process past 1 GB. The [`PasswordPool`] runs at
//! most `workers` hashes at once, each worker reusing one working buffer while it is
//! busy (and freeing it when idle), so memory is at most `workers` × 19 MiB whatever
//! the load; at most `queue` more wait, and beyond that a request is refused at once
//! ([`PoolBusy`], a 503 with `Retry-After`) instead of piling up.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, PasswordHasher, Version};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// A hash verified for unknown emails, so that a login for a missing user costs the
/// same time as one with a wrong password (the result is ignored: an unknown user
/// never logs in). It has the parameters [`hash`] uses; fixed, so it costs nothing
/// to make.
const DUMMY: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$jVLcxK7cH8zOQqC8iNPh3g$c7FhUxO61QwT3sFc13d3bJbtoJzQI/Cwbwx7Jpo/bjQ";

/// Largest argon2 memory cost (KiB) a stored hash may ask for; the defaults use 19 MiB.
const MAX_M_COST: u32 = 64 * 1024;

/// The argon2id PHC string of `password` (random salt, the crate's defaults:
/// m=19 MiB, t=2, p=1). Allocates its own working memory: for the CLI; the server
/// hashes on the [`PasswordPool`].
pub fn hash(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// The pool is full: retry shortly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("password hashing is at capacity")]
pub struct PoolBusy;

enum Job {
    Hash {
        password: String,
        reply: oneshot::Sender<Result<String, String>>,
    },
    Verify {
        password: String,
        phc: String,
        reply: oneshot::Sender<bool>,
    },
}

/// A bounded pool of password-hashing threads.
pub struct PasswordPool {
    jobs: SyncSender<Job>,
}

impl PasswordPool {
    /// Starts `workers` threads (at least 1) taking jobs from a queue of `queue`.
    pub fn new(workers: usize, queue: usize) -> Self {
        let (jobs, rx) = sync_channel(queue);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..workers.max(1) {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("keygate-password-{i}"))
                .spawn(move || work(&rx));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password-hashing thread");
            }
        }
        PasswordPool { jobs }
    }

    fn submit(&self, job: Job) -> Result<(), PoolBusy> {
        match self.jobs.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                crate::obs::metrics::PASSWORD_POOL_REJECTED.inc();
                Err(PoolBusy)
            }
            Err(TrySendError::Disconnected(_)) => Err(PoolBusy),
        }
    }

    /// The argon2id PHC string of `password`.
    pub async fn hash(&self, password: String) -> Result<Result<String, String>, PoolBusy> {
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Hash { password, reply })?;
        Ok(answer
            .await
            .unwrap_or_else(|_| Err("password worker stopped".into())))
    }

    /// True when `password` matches `phc`. With no stored hash, verifies against a
    /// dummy so timing does not reveal whether the user exists; always false then.
    pub async fn verify(&self, password: String, phc: Option<String>) -> Result<bool, PoolBusy> {
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| DUMMY.to_string());
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Verify {
            password,
            phc,
            reply,
        })?;
        Ok(answer.await.unwrap_or(false) && known)
    }
}

/// How long an idle worker keeps its working buffer before giving it back.
const KEEP_BUFFER: Duration = Duration::from_secs(1);

/// One worker: takes jobs until the pool is dropped, reusing one working buffer
/// while busy and freeing it once idle for [`KEEP_BUFFER`].
fn work(rx: &Mutex<Receiver<Job>>) {
    let mut memory: Vec<Block> = Vec::new();
    loop {
        let job = match rx.lock() {
            Ok(rx) => rx.recv_timeout(KEEP_BUFFER),
            Err(_) => return,
        };
        let job = match job {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => {
                memory = Vec::new();
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        match job {
            Job::Hash { password, reply } => {
                let _ = reply.send(hash_with(&mut memory, &password));
            }
            Job::Verify {
                password,
                phc,
                reply,
            } => {
                let _ = reply.send(verify_with(&mut memory, &password, &phc));
            }
        }
        // The buffer holds state derived from the password: clear it.
        memory.fill(Block::default());
    }
}

/// `memory` with room for `params`' blocks.
fn blocks<'m>(memory: &'m mut Vec<Block>, params: &Params) -> &'m mut [Block] {
    let n = params.block_count();
    if memory.len() < n {
        memory.resize(n, Block::default());
    }
    &mut memory[..n]
}

fn hash_with(memory: &mut Vec<Block>, password: &str) -> Result<String, String> {
    let argon = Argon2::default();
    let salt = SaltString::generate(&mut OsRng);
    let mut raw_salt = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut raw_salt).map_err(|e| e.to_string())?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon
        .hash_password_into_with_memory(
            password.as_bytes(),
            salt_bytes,
            &mut out,
            blocks(memory, argon.params()),
        )
        .map_err(|e| e.to_string())?;
    let output = Output::new(&out).map_err(|e| e.to_string())?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::default().into()),
        params: argon2::password_hash::ParamsString::try_from(argon.params())
            .map_err(|e| e.to_string())?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

/// Verifies `password` against the PHC string `phc` with the parameters it names,
/// comparing in constant time.
fn verify_with(memory: &mut Vec<Block>, password: &str, phc: &str) -> bool {
    let Ok(stored) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(expected), Some(salt)) = (stored.hash, stored.salt) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(stored.algorithm) else {
        return false;
    };
    let version = match stored.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let Ok(params) = Params::try_from(&stored) else {
        return false;
    };
    if params.m_cost() > MAX_M_COST {
        tracing::warn!(
            m_cost = params.m_cost(),
            "stored password hash asks for too much memory"
        );
        return false;
    }
    let mut raw_salt = [0u8; 64];
    let Ok(salt_bytes) = salt.decode_b64(&mut raw_salt) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(algorithm, version, params.clone());
    if argon
        .hash_password_into_with_memory(
            password.as_bytes(),
            salt_bytes,
            &mut out,
            blocks(memory, &params),
        )
        .is_err()
    {
        return false;
    }
    Output::new(&out).is_ok_and(|computed| computed == expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_only_their_password_with_or_without_the_pool_buffer() {
        let mut memory = Vec::new();
        let h = hash_with(&mut memory, "correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify_with(&mut memory, "correct horse", &h));
        assert!(!verify_with(&mut memory, "correct horsE", &h));
        assert!(!verify_with(
            &mut memory,
            "correct horse",
            "not a phc string"
        ));
        assert_ne!(
            hash_with(&mut memory, "correct horse").unwrap(),
            h,
            "salted"
        );
        // The CLI's hash (the crate's own allocation) and the pool's agree.
        let cli = hash("battery staple").unwrap();
        assert!(verify_with(&mut memory, "battery staple", &cli));
        assert!(PasswordHash::new(&h).is_ok_and(|p| {
            use argon2::PasswordVerifier;
            Argon2::default()
                .verify_password(b"correct horse", &p)
                .is_ok()
        }));
    }

    #[test]
    fn the_dummy_hash_costs_what_a_real_one_does() {
        let mut memory = Vec::new();
        assert!(verify_with(&mut memory, "keygate-timing-equaliser", DUMMY));
        let real = hash("x").unwrap();
        let params = |phc: &str| phc.split('$').nth(3).map(str::to_owned);
        assert_eq!(params(DUMMY), params(&real));
    }

    #[tokio::test]
    async fn unknown_users_never_verify() {
        let pool = PasswordPool::new(1, 4);
        assert_eq!(
            pool.verify("keygate-timing-equaliser".into(), None).await,
            Ok(false)
        );
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once() {
        let pool = PasswordPool::new(1, 1);
        let calls: Vec<_> = (0..6)
            .map(|_| pool.verify("x".into(), Some(DUMMY.to_string())))
            .collect();
        let results = futures::future::join_all(calls).await;
        let busy = results.iter().filter(|r| **r == Err(PoolBusy)).count();
        assert!(
            busy >= 3,
            "one running, one queued, the rest refused: {results:?}"
        );
    }
}
