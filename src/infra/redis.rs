//! Redis: the per-worker pool.
use deadpool_redis::{Config, Pool, Runtime};

use crate::BoxError;

/// A pool of at most `size` connections; like PostgreSQL's, it connects on first use.
pub fn pool(url: &str, size: usize) -> Result<Pool, BoxError> {
    Ok(Config::from_url(url)
        .builder()?
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(super::POOL_TIMEOUT))
        .create_timeout(Some(super::POOL_TIMEOUT))
        .build()?)
}

/// A connection from `pool`, its wait recorded in `arena_pool_wait_seconds{pool="redis"}`.
pub async fn checkout(
    pool: &Pool,
) -> Result<deadpool_redis::Connection, deadpool_redis::PoolError> {
    let started = std::time::Instant::now();
    let conn = pool.get().await;
    crate::ops::metrics::pool_wait(crate::ops::metrics::Pool::Redis, started.elapsed());
    conn
}
