//! The `connected_users` table (sql/V4): one row per open socket, written by the replica that
//! holds the socket. Rows are inserted before the upgrade, deleted on close, written again in
//! one upsert per worker every [`super::clock::REFRESH_EVERY`] ticks (which also puts back a row
//! that vanished while its socket stayed open), and read back only while fresh, so the rows of
//! a replica that died without cleaning up fall out of `GET /connected-users` on their own.
//! Statements are prepared once per pooled connection (`prepare_cached`).
use chrono::{DateTime, Utc};
use deadpool_postgres::{Pool, PoolError};
use uuid::Uuid;

use crate::infra::postgres::checkout;

use super::model::{ConnectedUser, Username};

/// Rows not refreshed for this long belong to a dead replica and are hidden (SPEC §6: 30 s).
pub const STALE_AFTER_SECS: i32 = 30;

/// What `arena reset` runs for this domain: only rows no live replica refreshes any more, so a
/// reset while sockets are open keeps their presence.
pub const RESET: &str =
    "DELETE FROM connected_users WHERE last_seen < now() - interval '30 seconds'";

// connected_at comes from the replica's clock, so the start-up cleanup can tell this run's rows
// from an earlier run's by comparing with the replica's own start time.
const INSERT: &str = "INSERT INTO connected_users (id, username, instance, connected_at) \
     VALUES ($1, $2, $3, $4)";
const DELETE: &str = "DELETE FROM connected_users WHERE id = $1";
const DELETE_MANY: &str = "DELETE FROM connected_users WHERE id = ANY($1)";
const DELETE_INSTANCE: &str = "DELETE FROM connected_users WHERE instance = $1";
const DELETE_EARLIER_RUN: &str =
    "DELETE FROM connected_users WHERE instance = $1 AND connected_at < $2";
const SWEEP: &str = "DELETE FROM connected_users WHERE last_seen < now() - interval '10 minutes'";
// An upsert, not an UPDATE: the table is UNLOGGED (emptied by a PostgreSQL crash), and a row
// can be deleted under a live socket (another process's start-up cleanup under the same
// instance name); the live sockets are what rebuilds presence, so a missing row is written
// again, with the connected_at it had.
const REFRESH: &str = "INSERT INTO connected_users (id, username, instance, connected_at) \
     SELECT id, username, $4, connected_at \
     FROM unnest($1::uuid[], $2::text[], $3::timestamptz[]) AS s (id, username, connected_at) \
     ON CONFLICT (id) DO UPDATE SET last_seen = now()";
const LIST_FRESH: &str = "SELECT username, instance, connected_at FROM connected_users \
     WHERE last_seen > now() - make_interval(secs => $1) ORDER BY connected_at, id";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no PostgreSQL connection")]
    Pool(#[from] PoolError),
    #[error("PostgreSQL query failed")]
    Query(#[from] tokio_postgres::Error),
}

/// One socket's row as its worker keeps it: everything the refresh needs to write the row
/// again if it has gone (the instance is the worker's).
#[derive(Debug, Clone)]
pub struct Row {
    pub id: Uuid,
    pub username: Username,
    pub connected_at: DateTime<Utc>,
}

impl Row {
    /// A new connection of `username`, opening now.
    pub fn new(username: Username) -> Self {
        Self {
            id: Uuid::new_v4(),
            username,
            connected_at: Utc::now(),
        }
    }
}

/// Records a socket about to open.
pub async fn insert(pg: &Pool, row: &Row, instance: &str) -> Result<(), StoreError> {
    let client = checkout(pg).await?;
    let stmt = client.prepare_cached(INSERT).await?;
    client
        .execute(
            &stmt,
            &[
                &row.id,
                &row.username.as_str(),
                &instance,
                &row.connected_at,
            ],
        )
        .await?;
    Ok(())
}

/// Forgets a closed socket.
pub async fn delete(pg: &Pool, id: Uuid) -> Result<(), StoreError> {
    let client = checkout(pg).await?;
    let stmt = client.prepare_cached(DELETE).await?;
    client.execute(&stmt, &[&id]).await?;
    Ok(())
}

/// Forgets several closed sockets in one statement.
pub async fn delete_many(pg: &Pool, ids: &[Uuid]) -> Result<u64, StoreError> {
    let client = checkout(pg).await?;
    let stmt = client.prepare_cached(DELETE_MANY).await?;
    Ok(client.execute(&stmt, &[&ids]).await?)
}

/// Marks every socket in `rows` as still open, writing back any row that has gone, in one
/// statement.
pub async fn refresh(pg: &Pool, rows: &[Row], instance: &str) -> Result<u64, StoreError> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let usernames: Vec<&str> = rows.iter().map(|r| r.username.as_str()).collect();
    let connected_ats: Vec<DateTime<Utc>> = rows.iter().map(|r| r.connected_at).collect();
    let client = checkout(pg).await?;
    let stmt = client.prepare_cached(REFRESH).await?;
    Ok(client
        .execute(&stmt, &[&ids, &usernames, &connected_ats, &instance])
        .await?)
}

/// Deletes rows nobody has refreshed for 10 minutes: replicas that died and never came back
/// under the same name (their rows are already hidden; this only keeps the table small).
pub async fn sweep(pg: &Pool) -> Result<u64, StoreError> {
    let client = checkout(pg).await?;
    let stmt = client.prepare_cached(SWEEP).await?;
    Ok(client.execute(&stmt, &[]).await?)
}

/// Deletes every row of `instance`, at shutdown (its sockets are closing).
pub async fn forget_instance(pg: &Pool, instance: &str) -> Result<u64, StoreError> {
    let client = checkout(pg).await?;
    let stmt = client.prepare_cached(DELETE_INSTANCE).await?;
    Ok(client.execute(&stmt, &[&instance]).await?)
}

/// Deletes the rows an earlier run of `instance` left (it was killed before it could), keeping
/// those this run opened since `started`.
pub async fn forget_earlier_run(
    pg: &Pool,
    instance: &str,
    started: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let client = checkout(pg).await?;
    let stmt = client.prepare_cached(DELETE_EARLIER_RUN).await?;
    Ok(client.execute(&stmt, &[&instance, &started]).await?)
}

/// Every connection some live replica still refreshes, oldest first.
pub async fn list_fresh(pg: &Pool) -> Result<Vec<ConnectedUser>, StoreError> {
    let client = checkout(pg).await?;
    let stmt = client.prepare_cached(LIST_FRESH).await?;
    let rows = client.query(&stmt, &[&f64::from(STALE_AFTER_SECS)]).await?;
    rows.iter()
        .map(|row| {
            Ok(ConnectedUser {
                username: row.try_get(0)?,
                instance: row.try_get(1)?,
                connected_at: row.try_get(2)?,
            })
        })
        .collect()
}
