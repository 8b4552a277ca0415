//! The replica's liveness: one switch per process, shared by all its workers. A `watch`
//! channel, so anything (health, the fallen-replica gate, a status long-poll) can read it
//! without locking and wait for its next change. Also the operations answers' shapes (their
//! OpenAPI schemas come from these types) and the admin bearer check of `/fall`, `/revive`.
use std::sync::Arc;

use ntex::http::StatusCode;
use serde::Serialize;
use tokio::sync::watch;
use utoipa::ToSchema;

use crate::error::ApiError;

/// `GET /`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Info<'a> {
    #[schema(example = "arena")]
    pub name: &'a str,
    #[schema(example = "0.1.0")]
    pub version: &'a str,
    #[schema(example = "api1")]
    pub instance: &'a str,
}

/// `GET /ping`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Pong<'a> {
    #[schema(example = "pong from api1")]
    pub message: &'a str,
    #[schema(example = "api1")]
    pub host: &'a str,
    #[schema(example = "api1")]
    pub instance: &'a str,
}

/// `GET /health`: `alive`/`true` with 200, `down`/`false` with 503.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health<'a> {
    #[schema(example = "alive")]
    pub status: &'a str,
    pub active: bool,
    #[schema(example = "api1")]
    pub instance: &'a str,
}

/// `POST /fall` and `POST /revive`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Switched {
    #[schema(example = "system down")]
    pub status: &'static str,
    pub active: bool,
}

/// What `/fall` and `/revive` answer.
pub const FELL: Switched = Switched {
    status: "system down",
    active: false,
};
pub const REVIVED: Switched = Switched {
    status: "system revived",
    active: true,
};

/// Why an admin request was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpsError {
    /// 401: no `Authorization: Bearer …`, or the wrong token.
    #[error("missing or wrong admin token")]
    Unauthorized,
    /// 403: this replica has no `ADMIN_TOKEN`, so nobody may use admin routes.
    #[error("admin routes are disabled: no ADMIN_TOKEN configured")]
    AdminDisabled,
}

/// Checks an `Authorization` header value against the configured admin token.
pub fn authorize(configured: Option<&str>, header: Option<&[u8]>) -> Result<(), OpsError> {
    let Some(expected) = configured.filter(|t| !t.is_empty()) else {
        return Err(OpsError::AdminDisabled);
    };
    let presented = header
        .and_then(|h| h.strip_prefix(b"Bearer "))
        .ok_or(OpsError::Unauthorized)?;
    if same_bytes(presented, expected.as_bytes()) {
        Ok(())
    } else {
        Err(OpsError::Unauthorized)
    }
}

/// Compares without stopping at the first difference, so response time does not reveal how
/// much of a guessed token was right.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Clone, Debug)]
pub struct Liveness(Arc<watch::Sender<bool>>);

impl Default for Liveness {
    fn default() -> Self {
        Self(Arc::new(watch::Sender::new(true)))
    }
}

impl Liveness {
    pub fn is_alive(&self) -> bool {
        *self.0.borrow()
    }

    /// Sets the state; returns whether it changed (waking watchers only then).
    pub fn set(&self, alive: bool) -> bool {
        self.0
            .send_if_modified(|current| std::mem::replace(current, alive) != alive)
    }

    /// A receiver that wakes on every later change.
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.0.subscribe()
    }
}

/// Each variant's answer, with the status SPEC names.
impl From<OpsError> for ApiError {
    fn from(e: OpsError) -> Self {
        match e {
            OpsError::Unauthorized => ApiError::from_static(
                StatusCode::UNAUTHORIZED,
                r#"{"error":"missing or wrong admin token"}"#,
            ),
            OpsError::AdminDisabled => ApiError::from_static(
                StatusCode::FORBIDDEN,
                r#"{"error":"admin routes are disabled: no ADMIN_TOKEN configured"}"#,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_routes_are_refused_when_no_token_is_configured() {
        assert_eq!(
            authorize(None, Some(b"Bearer x")),
            Err(OpsError::AdminDisabled)
        );
        assert_eq!(authorize(Some(""), None), Err(OpsError::AdminDisabled));
    }

    #[test]
    fn a_missing_or_wrong_bearer_is_unauthorized() {
        for header in [
            None,
            Some(&b"tok"[..]),
            Some(b"Bearer"),
            Some(b"Bearer tok2"),
            Some(b"Basic tok"),
        ] {
            assert_eq!(
                authorize(Some("tok"), header),
                Err(OpsError::Unauthorized),
                "{header:?}"
            );
        }
        assert_eq!(authorize(Some("tok"), Some(b"Bearer tok")), Ok(()));
    }

    #[test]
    fn a_new_replica_is_alive() {
        assert!(Liveness::default().is_alive());
    }

    #[test]
    fn setting_the_same_state_is_not_a_change() {
        let l = Liveness::default();
        assert!(!l.set(true));
        assert!(l.set(false));
        assert!(!l.is_alive());
        assert!(!l.set(false));
    }

    #[tokio::test]
    async fn watchers_wake_on_a_change() {
        let l = Liveness::default();
        let mut rx = l.watch();
        l.set(false);
        rx.changed().await.unwrap();
        assert!(!*rx.borrow());
    }
}
