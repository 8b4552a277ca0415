//! PostgreSQL: the per-worker pool and the migrations in `sql/`.
use std::str::FromStr;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

use crate::BoxError;

mod embedded {
    refinery::embed_migrations!("sql");
}

/// Arbitrary constant shared by every replica: whoever holds this advisory lock migrates, the
/// others wait and then find nothing left to apply.
const MIGRATION_LOCK: i64 = 0x0041_5245_4e41; // "ARENA"

/// A pool of at most `size` connections. Nothing connects until the first query, so a replica
/// starts even while PostgreSQL is still coming up.
pub fn pool(url: &str, size: usize) -> Result<Pool, BoxError> {
    let mut pg = tokio_postgres::Config::from_str(url)?;
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(super::POOL_TIMEOUT);
    }
    // Fast recycling: a broken connection is found by its failed query and dropped, which
    // costs one error instead of one extra round trip on every checkout.
    let manager = Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Ok(Pool::builder(manager)
        .max_size(size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(super::POOL_TIMEOUT))
        .create_timeout(Some(super::POOL_TIMEOUT))
        .build()?)
}

/// A connection from `pool`, its wait recorded in `arena_pool_wait_seconds{pool="postgres"}`
/// (two clock reads per checkout).
pub async fn checkout(
    pool: &Pool,
) -> Result<deadpool_postgres::Object, deadpool_postgres::PoolError> {
    let started = std::time::Instant::now();
    let conn = pool.get().await;
    crate::ops::metrics::pool_wait(crate::ops::metrics::Pool::Postgres, started.elapsed());
    conn
}

/// Opens up to `n` of `pool`'s connections at once and prepares `statements` on each, then
/// returns them to the pool. The pool connects lazily, so without this the first burst pays
/// for PostgreSQL forking a backend per connection, plus a prepare per statement: the
/// accounts profile opens with 25 simultaneous debits, and under the compose caps those took
/// 80–240 ms (the slowest 0.1 % of the whole run) against ~1 ms once connected. Best effort: a
/// connection that fails is left for the pool to open when a request needs it.
pub async fn warm(pool: Pool, n: usize, statements: &[&[&str]]) {
    let n = n.min(pool.status().max_size);
    if n == 0 {
        return;
    }
    let started = std::time::Instant::now();
    let conns = futures_util::future::join_all((0..n).map(|_| pool.get())).await;
    let prepared = futures_util::future::join_all(conns.iter().flatten().map(|c| async move {
        for sql in statements.iter().copied().flatten() {
            c.prepare_cached(sql).await?;
        }
        Ok::<_, tokio_postgres::Error>(())
    }))
    .await;
    let ready = prepared.iter().filter(|r| r.is_ok()).count();
    // A connection that failed to open, or one whose prepare failed (it stays in the pool).
    let error = conns
        .iter()
        .find_map(|c| c.as_ref().err().map(ToString::to_string))
        .or_else(|| {
            prepared
                .iter()
                .find_map(|r| r.as_ref().err().map(ToString::to_string))
        });
    match error {
        None => tracing::debug!(ready, elapsed = ?started.elapsed(), "postgres connections warmed"),
        Some(error) => {
            tracing::warn!(ready, of = n, %error, "postgres connections not all warmed; the rest open on demand")
        }
    }
}

/// Whether a failed query is worth a retry (a 503): the connection was lost or PostgreSQL never
/// answered, as opposed to PostgreSQL refusing the statement (which a retry would not change).
pub fn is_transient(e: &tokio_postgres::Error) -> bool {
    e.is_closed() || e.code().is_none()
}

/// Opens one plain connection, driving it on the current runtime.
pub async fn connect(url: &str) -> Result<tokio_postgres::Client, BoxError> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "postgres connection closed");
        }
    });
    Ok(client)
}

/// Creates the database named in `url` when it does not exist yet (connecting to `postgres`).
pub async fn ensure_database(url: &str) -> Result<(), BoxError> {
    let cfg = tokio_postgres::Config::from_str(url)?;
    let Some(name) = cfg.get_dbname().map(str::to_owned) else {
        return Ok(());
    };
    let mut admin = cfg.clone();
    admin.dbname("postgres");
    let (client, connection) = admin.connect(NoTls).await?;
    tokio::spawn(connection);
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?;
    if exists.is_none() {
        let quoted = name.replace('"', "\"\"");
        // Two replicas may race here: the loser's "already exists" is success.
        if let Err(e) = client
            .batch_execute(&format!("CREATE DATABASE \"{quoted}\""))
            .await
        {
            if e.code() != Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) {
                return Err(e.into());
            }
        }
    }
    Ok(())
}

/// Applies every migration in `sql/` not applied yet. Safe to run from every replica at once:
/// the first takes an advisory lock, the others wait for it and then find nothing to do.
pub async fn migrate(url: &str) -> Result<(), BoxError> {
    ensure_database(url).await?;
    let mut client = connect(url).await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let report = embedded::migrations::runner().run_async(&mut client).await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await?;
    let report = report?;
    for m in report.applied_migrations() {
        tracing::info!(migration = %m, "applied");
    }
    Ok(())
}

/// Runs each domain's reset statements in one transaction: tables emptied, seeds restored.
pub async fn reset(url: &str, statements: &[&str]) -> Result<(), BoxError> {
    let mut client = connect(url).await?;
    let tx = client.transaction().await?;
    for sql in statements {
        tx.batch_execute(sql).await?;
    }
    tx.commit().await?;
    Ok(())
}
