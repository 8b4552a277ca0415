//! Password hashing: Argon2id (RustCrypto's `argon2`), a random salt per password, stored as a
//! PHC string (`$argon2id$v=19$m=…,t=…,p=1$salt$hash`) that carries its own parameters, so they
//! can be raised later without invalidating stored hashes.
//!
//! A hash takes tens of milliseconds of CPU and a few MiB of memory by design, so it never runs
//! on an event loop: it goes to tokio's blocking pool, and at most [`CONCURRENT_HASHES`] run at
//! once per process (the rest wait their turn), which bounds both the CPU a burst of logins can
//! take from the request path and the memory it can take from a 60 MB replica.
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
/// is 14 MiB at worst, inside a replica's 60 MB.
pub const CONCURRENT_HASHES: usize = 2;

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
    /// Runs `work` on the blocking pool once a permit is free.
    async fn off_loop<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, UsersError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| UsersError::Unavailable(Box::new(e)))?;
        tokio::task::spawn_blocking(work)
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

    /// Whether `password` matches `stored`. With no stored hash (no such user) a hash is still
    /// checked — of a password nobody has — so a wrong username takes as long as a wrong
    /// password and the answer time does not tell which usernames exist.
    pub async fn verify(
        &self,
        password: Password,
        stored: Option<String>,
    ) -> Result<bool, UsersError> {
        let known = stored.is_some();
        let stored = match stored {
            Some(stored) => stored,
            None => decoy().to_owned(),
        };
        let matched = self
            .off_loop(move || {
                argon2()
                    .verify_password(password.as_bytes(), stored.as_str())
                    .is_ok()
            })
            .await?;
        Ok(known && matched)
    }
}

/// A hash of a random password, made once, that unknown usernames are checked against.
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
            .verify(password("correct horse"), Some(stored.clone()))
            .await
            .unwrap());
        assert!(!hasher
            .verify(password("correct hors"), Some(stored))
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
        assert!(!hasher.verify(password("anything"), None).await.unwrap());
    }

    #[test]
    fn a_password_is_never_printed() {
        assert_eq!(format!("{:?}", password("hunter2")), "Password(…)");
    }
}
