//! Connections to the shared services: PostgreSQL, Redis and RabbitMQ. Pools are built per ntex
//! worker (each worker is its own single-threaded tokio runtime, and a connection's driver task
//! lives on the runtime that opened it).
pub mod amqp;
pub mod postgres;
pub mod redis;

use std::future::Future;

/// Runs a future on a fresh single-threaded tokio runtime (for the non-HTTP subcommands).
pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("BUG: a current-thread runtime can always be built")
        .block_on(future)
}
