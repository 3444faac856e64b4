//! Password hashing on a fixed pool of threads. argon2id needs 19 MiB per hash; running hashes
//! on a fixed set of long-lived threads caps both CPU (one hash per thread at a time) and memory
//! (the allocator keeps at most one hash's buffer per thread), however many sign-ins arrive.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;
use usher_core::Rng;
use zeroize::Zeroizing;

use crate::DirectoryError;

enum Job {
    Hash(
        Zeroizing<String>,
        oneshot::Sender<Result<String, usher_crypto::CryptoError>>,
    ),
    Verify(Zeroizing<String>, String, oneshot::Sender<bool>),
}

/// Hashes waiting or running at most; past that a sign-in is answered "busy, retry" at once
/// rather than queueing without bound.
const MAX_QUEUED: usize = 256;

/// The hashing pool.
#[derive(Clone)]
pub(crate) struct HashPool {
    tx: mpsc::Sender<Job>,
    slots: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for HashPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashPool")
    }
}

impl HashPool {
    /// Starts `threads` hashing threads.
    pub(crate) fn start(threads: usize, rng: Arc<dyn Rng>) -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let rng = rng.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("usher-hash-{i}"))
                .spawn(move || {
                    loop {
                        let job = match rx.lock() {
                            Ok(guard) => guard.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(Job::Hash(pw, reply)) => {
                                let _ = reply.send(usher_crypto::password::hash(&pw, rng.as_ref()));
                            }
                            Ok(Job::Verify(pw, phc, reply)) => {
                                let _ = reply.send(usher_crypto::password::verify(&pw, &phc));
                            }
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a password hashing thread");
            }
        }
        Self {
            tx,
            slots: Arc::new(tokio::sync::Semaphore::new(MAX_QUEUED)),
        }
    }

    /// Hashes a password.
    pub(crate) async fn hash(&self, password: &str) -> Result<String, DirectoryError> {
        let _slot = self.slots.try_acquire().map_err(|_| DirectoryError::Contended)?;
        let (reply, done) = oneshot::channel();
        self.tx
            .send(Job::Hash(Zeroizing::new(password.to_owned()), reply))
            .map_err(|_| DirectoryError::Invalid("password hashing is unavailable".into()))?;
        Ok(done
            .await
            .map_err(|_| DirectoryError::Invalid("password hashing failed".into()))??)
    }

    /// Verifies a password against a PHC string.
    pub(crate) async fn verify(&self, password: &str, phc: &str) -> Result<bool, DirectoryError> {
        let _slot = self.slots.try_acquire().map_err(|_| DirectoryError::Contended)?;
        let (reply, done) = oneshot::channel();
        self.tx
            .send(Job::Verify(
                Zeroizing::new(password.to_owned()),
                phc.to_owned(),
                reply,
            ))
            .map_err(|_| DirectoryError::Invalid("password hashing is unavailable".into()))?;
        done.await
            .map_err(|_| DirectoryError::Invalid("password hashing failed".into()))
    }
}
