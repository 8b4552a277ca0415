//! The replica's liveness: one switch per process, shared by all its workers. A `watch`
//! channel, so anything (health, the fallen-replica gate, a status long-poll) can read it
//! without locking and wait for its next change.
use std::sync::Arc;

use tokio::sync::watch;

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

#[cfg(test)]
mod tests {
    use super::*;

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
