//! Fibonacci over WebSocket (SPEC §6): `GET /ws/fibonacci/{username}` answers fib(n) for the
//! numbers a client sends and ticks the time every second; `GET /connected-users` lists the
//! open sockets of every replica from PostgreSQL.
//!
//! Flow: `routes` parses the username and records the row (`store`), the socket becomes a
//! `session` registered in its worker's `sockets`; the worker's `clock` ticks every registered
//! socket and refreshes the rows; large n go to the process-wide `pool`, which runs `compute`.
mod clock;
mod compute;
mod model;
mod ntt;
mod pool;
mod routes;
mod session;
mod sockets;
mod store;

use std::time::Instant;

pub use crate::ws::{GOING_AWAY, TOO_SLOW};
pub use compute::{fib, reply};
pub use model::FibError;
pub use pool::ComputePool;
pub use routes::{configure, Api};
pub use store::RESET as RESET_SQL;

use crate::error::ErrorChain;
use crate::lifecycle::Shutdown;

/// What one ntex worker needs for the Fibonacci service.
#[derive(Clone)]
pub struct WorkerFib {
    sockets: sockets::Sockets,
    pool: ComputePool,
}

impl WorkerFib {
    pub fn new(
        pg: deadpool_postgres::Pool,
        instance: &str,
        max_pending: usize,
        pool: ComputePool,
        shutdown: Shutdown,
    ) -> Self {
        Self {
            sockets: sockets::Sockets::new(pg, instance, max_pending, shutdown),
            pool,
        }
    }

    /// Open sockets on this worker.
    pub fn open_sockets(&self) -> usize {
        self.sockets.len()
    }
}

/// Deletes the rows an earlier run of this replica left behind (it was killed before it could),
/// so they do not linger for up to 30 s after a restart; rows of sockets this run opened since
/// `started` stay. Failure is logged, not fatal: readers hide those rows at 30 s anyway.
pub async fn forget_previous_run(
    pg: deadpool_postgres::Pool,
    instance: String,
    started: chrono::DateTime<chrono::Utc>,
) {
    match store::forget_earlier_run(&pg, &instance, started).await {
        Ok(0) => {}
        Ok(rows) => tracing::info!(rows, "forgot connected users of a previous run"),
        Err(e) => {
            tracing::warn!(error = %ErrorChain(&e), "could not forget previous connected users")
        }
    }
}

/// `arena fib-bench N`: times fib(N) and its decimal rendering, best of `rounds`.
pub fn bench(n: u64, rounds: u32) -> (std::time::Duration, std::time::Duration, usize) {
    let mut best = (std::time::Duration::MAX, std::time::Duration::MAX, 0);
    for _ in 0..rounds.max(1) {
        let start = Instant::now();
        let value = compute::fib(n);
        let computed = start.elapsed();
        let start = Instant::now();
        let digits = compute::decimal(&value).len();
        let rendered = start.elapsed();
        if computed + rendered < best.0.saturating_add(best.1) {
            best = (computed, rendered, digits);
        }
    }
    best
}
