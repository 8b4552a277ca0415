//! Password hashing: Argon2id (RustCrypto's `argon2`), a random salt per password, stored as a
//! PHC string (`$argon2id$v=19$m=…,t=…,p=1$salt$hash`) that carries its own parameters, so they
//! can be raised later without invalidating stored hashes.
//!
//! A hash takes tens of milliseconds of CPU and a few MiB of memory by design, so it never runs
//! on an event loop: it goes to tokio's blocking pool, and at most [`CONCURRENT_HASHES`] run at
//! once per process (the rest wait their turn), which bounds both the CPU a burst of logins can
//! take from the request path and the memory it can take from a 50 MB replica.
use std::sync::{Arc, OnceLock};

use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use super::model::{Password, UsersError};

/// Argon2id with 7 MiB and 5 passes: one of OWASP's equivalent minimum settings
/// (m=7168 KiB, t=5, p=1), chosen over m=19 MiB, t=2 for its smaller memory per hash.
const MEMORY_KIB: u32 = 7 * 1024;
const PASSES: u32 = 5;

/// Hashes running at once per process: one per core of the contest machine. Two at 7 MiB each
/// is 14 MiB at worst, inside a replica's 50 MB.
pub const CONCURRENT_HASHES: usize = 2;

/// Longest a request waits for a hashing permit before it is answered 503: a login flood is
/// refused rather than queued without end (and held through a shutdown's drain).
const PERMIT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

fn argon2() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, PASSES, 1, None)
        .expect("BUG: the Argon2 parameters are constants within its limits");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The process's hasher: a permit count shared by every worker.
#[derive(Clone, Debug)]
pub struct Hasher {
    permits: Arc<Semaphore>,
}

impl Default for Hasher {
    fn default() -> Self {
        Self {
            permits: Arc::new(Semaphore::new(CONCURRENT_HASHES)),
        }
    }
}

impl Hasher {
    /// Runs `work` on the blocking pool once a permit is free, waiting at most
    /// [`PERMIT_WAIT`]. The permit travels with the work: a client that hangs up drops its
    /// request, not the hash already running, so the permit must stay taken until the hash
    /// ends, or a burst of abandoned logins would run any number of hashes at once.
    async fn off_loop<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, UsersError> {
        let permit = tokio::time::timeout(PERMIT_WAIT, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| UsersError::Busy)?
            .map_err(|e| UsersError::Unavailable(Box::new(e)))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(|e| UsersError::Unavailable(Box::new(e)))
    }

    /// The PHC string of `password` with a fresh random salt.
    pub async fn hash(&self, password: Password) -> Result<String, UsersError> {
        self.off_loop(move || {
            argon2()
                .hash_password(password.as_bytes())
                .map(|h| h.to_string())
        })
        .await?
        .map_err(|e| UsersError::Unavailable(e.to_string().into()))
    }

    /// Whether `password` matches `stored`. With no stored hash (no such user), or a password
    /// no user can have (`None`: empty, too long), a hash is still checked — of a password
    /// nobody has — so a wrong username or an impossible password takes as long as a wrong
    /// password and the answer time does not tell which usernames exist.
    pub async fn verify(
        &self,
        password: Option<Password>,
        stored: Option<String>,
    ) -> Result<bool, UsersError> {
        let possible = password.is_some() && stored.is_some();
        self.off_loop(move || {
            let password = password.unwrap_or_else(|| {
                Password::parse("-").expect("BUG: a one-character password is valid")
            });
            let matched = match &stored {
                Some(stored) => argon2().verify_password(password.as_bytes(), stored.as_str()),
                None => argon2().verify_password(password.as_bytes(), decoy()),
            };
            possible && matched.is_ok()
        })
        .await
    }
}

/// A hash of a random password, made once (on the blocking pool, by the first unknown
/// username), that unknown usernames are checked against.
fn decoy() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| {
        let secret = uuid::Uuid::new_v4().to_string();
        argon2()
            .hash_password(secret.as_bytes())
            .map(|h| h.to_string())
            .expect("BUG: hashing a short password with fixed parameters cannot fail")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn password(s: &str) -> Password {
        Password::parse(s).unwrap()
    }

    #[tokio::test]
    async fn a_hash_verifies_its_own_password_and_no_other() {
        let hasher = Hasher::default();
        let stored = hasher.hash(password("correct horse")).await.unwrap();
        assert!(
            stored.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"),
            "{stored}"
        );
        assert!(!stored.contains("correct horse"));
        assert!(hasher
            .verify(Some(password("correct horse")), Some(stored.clone()))
            .await
            .unwrap());
        assert!(!hasher
            .verify(Some(password("correct hors")), Some(stored))
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn two_hashes_of_one_password_differ_by_their_salt() {
        let hasher = Hasher::default();
        let a = hasher.hash(password("same")).await.unwrap();
        let b = hasher.hash(password("same")).await.unwrap();
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn an_unknown_user_never_verifies() {
        let hasher = Hasher::default();
        assert!(!hasher
            .verify(Some(password("anything")), None)
            .await
            .unwrap());
        assert!(!hasher.verify(None, None).await.unwrap());
        let stored = hasher.hash(password("x")).await.unwrap();
        assert!(!hasher.verify(None, Some(stored)).await.unwrap());
    }

    #[test]
    fn a_password_is_never_printed() {
        assert_eq!(format!("{:?}", password("hunter2")), "Password(…)");
    }
}
