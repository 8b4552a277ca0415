//! The process-wide stop signal (mini-redis's shutdown broadcast plus completion count).
//! `serve` signals it on SIGTERM; every long-running task of ours (clock, consumers, sockets)
//! watches [`Shutdown::stopped`], finishes its work, and drops its [`TaskGuard`]; `serve` then
//! waits, bounded, for [`Shutdown::tasks_done`] before the process exits. Requests are counted
//! the same way ([`Shutdown::request`]), so `serve` can let those already inside finish before
//! it lets ntex close the connections.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

#[derive(Clone, Debug)]
pub struct Shutdown(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    stopping: watch::Sender<bool>,
    tasks: Arc<Count>,
    requests: Arc<Count>,
}

/// How many of something are running, and a wake-up for whoever waits for none.
#[derive(Debug, Default)]
struct Count {
    running: AtomicUsize,
    idle: Notify,
}

impl Count {
    fn enter(self: &Arc<Self>) -> TaskGuard {
        self.running.fetch_add(1, Ordering::SeqCst);
        TaskGuard(self.clone())
    }

    async fn none_within(&self, limit: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.idle.notified();
                if self.running.load(Ordering::SeqCst) == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Self(Arc::new(Inner {
            stopping: watch::Sender::new(false),
            tasks: Arc::default(),
            requests: Arc::default(),
        }))
    }
}

impl Shutdown {
    /// Asks every task to stop. Idempotent.
    pub fn signal(&self) {
        self.0.stopping.send_replace(true);
    }

    pub fn is_stopping(&self) -> bool {
        *self.0.stopping.borrow()
    }

    /// Resolves once [`signal`](Self::signal) has been called (at once if it already was).
    pub async fn stopped(&self) {
        let mut rx = self.0.stopping.subscribe();
        // The sender lives in `self`, so wait_for cannot fail while we hold it.
        let _ = rx.wait_for(|stopping| *stopping).await;
    }

    /// Registers a task that must finish before the process exits; dropping the guard reports
    /// it finished.
    pub fn guard(&self) -> TaskGuard {
        self.0.tasks.enter()
    }

    /// Waits until every guarded task has finished, or `limit` has passed; true if all did.
    pub async fn tasks_done(&self, limit: Duration) -> bool {
        self.0.tasks.none_within(limit).await
    }

    /// Registers an HTTP request being handled (the route middleware holds one per request).
    pub fn request(&self) -> TaskGuard {
        self.0.requests.enter()
    }

    /// Requests being handled now.
    pub fn requests_in_flight(&self) -> usize {
        self.0.requests.running.load(Ordering::SeqCst)
    }

    /// Waits until no request is being handled, or `limit` has passed; true if none is.
    pub async fn requests_done(&self, limit: Duration) -> bool {
        self.0.requests.none_within(limit).await
    }
}

/// Held by a running task or request; see [`Shutdown::guard`] and [`Shutdown::request`].
#[derive(Debug)]
pub struct TaskGuard(Arc<Count>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stopped_resolves_after_the_signal() {
        let s = Shutdown::default();
        assert!(!s.is_stopping());
        let waiter = tokio::spawn({
            let s = s.clone();
            async move { s.stopped().await }
        });
        s.signal();
        waiter.await.unwrap();
        assert!(s.is_stopping());
    }

    #[tokio::test]
    async fn tasks_done_waits_for_every_guard() {
        let s = Shutdown::default();
        let g = s.guard();
        assert!(!s.tasks_done(Duration::from_millis(20)).await);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            drop(g);
        });
        assert!(s.tasks_done(Duration::from_secs(2)).await);
    }
}
