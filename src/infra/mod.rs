//! Connections to the shared services: PostgreSQL, Redis and RabbitMQ. Pools are built per ntex
//! worker (each worker is its own single-threaded tokio runtime, and a connection's driver task
//! lives on the runtime that opened it).
pub mod amqp;
pub mod postgres;
pub mod redis;

use std::future::Future;
use std::time::Duration;

/// Longest a request waits for a pooled connection, or for a new one to open, before it is
/// answered 503. A service that stops answering (rather than refusing) would otherwise hold
/// requests until nginx gives up at 75 s; two seconds is far beyond any healthy wait here.
pub const POOL_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs a future on a fresh single-threaded tokio runtime (for the non-HTTP subcommands).
pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("BUG: a current-thread runtime can always be built")
        .block_on(future)
}
