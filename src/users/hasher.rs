//! bcrypt, off the async workers, on a bounded pool.
//!
//! At most `workers` hashes run at once (on actix's blocking threads); at most
//! `queue` more wait for a turn. Past that, new requests are shed at once with
//! `503` + `Retry-After`, so a login flood never stalls the rest of the server.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Semaphore;

use super::credentials::{NewPassword, PASSWORD_MAX_BYTES};

/// Why a hash was not computed.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// The queue is full: the request is shed (try again shortly).
    #[error("the hashing queue is full")]
    Busy,
    /// The blocking thread pool is shutting down.
    #[error("the hashing pool is gone")]
    Gone,
    #[error("bcrypt failed: {0}")]
    Failed(#[from] bcrypt::BcryptError),
}

/// Hashes a password that passed the rules for new passwords, here and now (the
/// command line; the server goes through [`PasswordHasher::hash`]).
pub fn hash(password: &NewPassword, cost: u32) -> Result<String, HashError> {
    Ok(bcrypt::hash(password.expose(), cost)?)
}

#[derive(Clone)]
pub struct PasswordHasher {
    inner: Arc<Inner>,
}

struct Inner {
    cost: u32,
    permits: Semaphore,
    waiting: AtomicUsize,
    max_waiting: usize,
    /// Verified against when the user does not exist, so that costs the same.
    dummy_hash: String,
    computed: AtomicU64,
    shed: AtomicU64,
}

/// What the hasher has done since start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HasherStats {
    /// bcrypt computations run (hashes and verifications).
    pub computed: u64,
    /// Requests refused because the queue was full.
    pub shed: u64,
    /// Requests waiting for a slot now.
    pub waiting: usize,
}

impl PasswordHasher {
    /// Computes the dummy hash once, at the configured cost.
    pub fn new(cost: u32, workers: usize, queue: usize) -> anyhow::Result<Self> {
        let dummy_hash = bcrypt::hash(crate::config::SecretKey::generate().as_bytes(), cost)?;
        Ok(Self {
            inner: Arc::new(Inner {
                cost,
                permits: Semaphore::new(workers.max(1)),
                waiting: AtomicUsize::new(0),
                max_waiting: queue,
                dummy_hash,
                computed: AtomicU64::new(0),
                shed: AtomicU64::new(0),
            }),
        })
    }

    pub fn stats(&self) -> HasherStats {
        HasherStats {
            computed: self.inner.computed.load(Ordering::Relaxed),
            shed: self.inner.shed.load(Ordering::Relaxed),
            waiting: self.inner.waiting.load(Ordering::Relaxed),
        }
    }

    /// Hashes a password that passed the rules for new passwords.
    pub async fn hash(&self, password: NewPassword) -> Result<String, HashError> {
        let cost = self.inner.cost;
        self.run(move || hash(&password, cost)).await
    }

    /// Hashes again, at the configured cost, a password that has just matched a
    /// hash of another cost (it may predate today's rules for new passwords).
    pub async fn rehash(&self, password: String) -> Result<String, HashError> {
        let cost = self.inner.cost;
        self.run(move || Ok(bcrypt::hash(password, cost)?)).await
    }

    /// Checks `password` against `hash`, or against the dummy hash when there is no user,
    /// so that an unknown user and a wrong password cost the same. A failure against a
    /// hash cheaper than the configured cost (or a malformed one) is padded with a check
    /// of the dummy hash: a failure never answers faster than one hash at the configured
    /// cost. A password longer than bcrypt reads never matches (it is still checked,
    /// for the same timing).
    pub async fn verify(&self, password: String, hash: Option<String>) -> Result<bool, HashError> {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.inner.dummy_hash.clone());
        let too_long = password.len() > PASSWORD_MAX_BYTES;
        let cheap = self
            .cost_of(&hash)
            .is_none_or(|cost| cost < self.inner.cost);
        let inner = self.inner.clone();
        let matched = self
            .run(move || {
                let bytes = &password.as_bytes()[..password.len().min(PASSWORD_MAX_BYTES)];
                // A malformed stored hash never matches; it is not the client's fault.
                let matched = bcrypt::verify(bytes, &hash).unwrap_or(false);
                if !matched && cheap {
                    inner.computed.fetch_add(1, Ordering::Relaxed);
                    let _ = bcrypt::verify(bytes, &inner.dummy_hash);
                }
                Ok(matched)
            })
            .await?;
        Ok(known && matched && !too_long)
    }

    fn cost_of(&self, hash: &str) -> Option<u32> {
        hash.parse::<bcrypt::HashParts>()
            .ok()
            .map(|parts| parts.get_cost())
    }

    /// Whether a stored hash was made at another cost than the configured one.
    pub fn needs_rehash(&self, hash: &str) -> bool {
        self.cost_of(hash) != Some(self.inner.cost)
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> Result<T, HashError> + Send + 'static,
    ) -> Result<T, HashError> {
        let inner = &self.inner;
        let permit = match inner.permits.try_acquire() {
            Ok(permit) => permit,
            Err(_) => {
                let waiting = Waiting::enter(&inner.waiting);
                if waiting.ahead >= inner.max_waiting {
                    inner.shed.fetch_add(1, Ordering::Relaxed);
                    return Err(HashError::Busy);
                }
                let permit = inner.permits.acquire().await.map_err(|_| HashError::Gone)?;
                drop(waiting);
                permit
            }
        };
        inner.computed.fetch_add(1, Ordering::Relaxed);
        let result = actix_web::web::block(job)
            .await
            .map_err(|_| HashError::Gone)?;
        drop(permit);
        result
    }
}

/// Counts a request waiting for a hashing slot, until it gets one or is dropped
/// (a client that goes away must not keep its place in the count).
struct Waiting<'a> {
    count: &'a AtomicUsize,
    ahead: usize,
}

impl<'a> Waiting<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        let ahead = count.fetch_add(1, Ordering::AcqRel);
        Self { count, ahead }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("cost", &self.inner.cost)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_web::test]
    async fn unknown_users_and_wrong_passwords_cost_one_verify_at_the_configured_cost() {
        let hasher = PasswordHasher::new(5, 1, 4).unwrap();
        let stored = bcrypt::hash("right password", 5).unwrap();
        assert!(hasher.inner.dummy_hash.starts_with("$2b$05$"));

        let unknown = hasher.verify("guess".into(), None).await.unwrap();
        let after_unknown = hasher.stats().computed;
        let wrong = hasher
            .verify("guess".into(), Some(stored.clone()))
            .await
            .unwrap();
        let after_wrong = hasher.stats().computed;
        let right = hasher
            .verify("right password".into(), Some(stored))
            .await
            .unwrap();

        assert!(!unknown && !wrong && right);
        assert_eq!((after_unknown, after_wrong), (1, 2));
    }

    #[actix_web::test]
    async fn a_password_beyond_72_bytes_never_matches_even_its_own_prefix() {
        let hasher = PasswordHasher::new(4, 1, 4).unwrap();
        let prefix = "k".repeat(72);
        let stored = bcrypt::hash(&prefix, 4).unwrap();

        assert!(hasher
            .verify(prefix.clone(), Some(stored.clone()))
            .await
            .unwrap());
        assert!(!hasher
            .verify(format!("{prefix}!"), Some(stored))
            .await
            .unwrap());
    }

    #[actix_web::test]
    async fn a_failure_against_a_cheaper_hash_also_costs_one_hash_at_the_configured_cost() {
        let hasher = PasswordHasher::new(6, 1, 4).unwrap();
        let cheap = bcrypt::hash("right password", 4).unwrap();
        let dearer = bcrypt::hash("right password", 7).unwrap();

        let wrong_cheap = hasher
            .verify("guess".into(), Some(cheap.clone()))
            .await
            .unwrap();
        let after_cheap = hasher.stats().computed;
        let wrong_malformed = hasher
            .verify("guess".into(), Some("$2b$xx".into()))
            .await
            .unwrap();
        let after_malformed = hasher.stats().computed;
        let wrong_dearer = hasher.verify("guess".into(), Some(dearer)).await.unwrap();
        let after_dearer = hasher.stats().computed;
        let right_cheap = hasher
            .verify("right password".into(), Some(cheap))
            .await
            .unwrap();

        assert!(!wrong_cheap && !wrong_malformed && !wrong_dearer && right_cheap);
        // Padded with the dummy (at cost 6) when cheaper or malformed; not when dearer.
        assert_eq!((after_cheap, after_malformed, after_dearer), (2, 4, 5));
        assert_eq!(hasher.stats().computed, 6, "a success is never padded");
    }

    #[test]
    fn hashes_of_another_cost_need_a_rehash() {
        let hasher = PasswordHasher::new(4, 1, 1).unwrap();
        assert!(!hasher.needs_rehash(&bcrypt::hash("x", 4).unwrap()));
        assert!(hasher.needs_rehash(&bcrypt::hash("x", 5).unwrap()));
        assert!(hasher.needs_rehash("not a hash"));
    }
}
