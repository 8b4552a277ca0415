//! Pieces several integration-test binaries share (each `mod common;`s it in).

use std::time::{Duration, Instant};

/// Waits until some other session is blocked on a lock `tx` holds, so a test knows the request
/// it started has reached the database and queued there; panics after 10 s naming `what`.
/// `pg_locks`, not `pg_stat_activity`: the latter is a snapshot per transaction.
pub async fn until_blocked_by(tx: &tokio_postgres::Transaction<'_>, what: &str) {
    let me: i32 = tx
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = tx
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE NOT granted \
                 AND $1 = ANY(pg_blocking_pids(pid))",
                &[&me],
            )
            .await
            .unwrap()
            .get(0);
        if waiting > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{what} never queued");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
