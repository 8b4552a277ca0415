//! Redis: the per-worker pool.
use deadpool_redis::{Config, Pool, Runtime};

use crate::BoxError;

/// A pool of at most `size` connections; like PostgreSQL's, it connects on first use.
pub fn pool(url: &str, size: usize) -> Result<Pool, BoxError> {
    Ok(Config::from_url(url)
        .builder()?
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .build()?)
}
