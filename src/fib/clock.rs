//! One clock per ntex worker, started by the worker's first socket: every second it renders
//! `{"type":"time","now":…}` once and writes it to every open socket of the worker (one timer,
//! not one task per socket); every [`REFRESH_EVERY`] ticks it refreshes `last_seen` of all the
//! worker's rows in one upsert (writing back any that vanished), and once a minute deletes rows
//! dead for 10 minutes. When the
//! replica stops it closes every socket with 1001 and deletes the replica's rows, holding a
//! shutdown guard until that is done.
use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use ntex::util::ByteString;
use ntex::web::ws::CloseCode;
use tokio::time::MissedTickBehavior;

use super::sockets::Sockets;
use super::store;
use crate::error::ErrorChain;
use crate::ws::GOING_AWAY;

/// SPEC §6: a tick every second.
const TICK: Duration = Duration::from_secs(1);

/// Ticks between two `last_seen` refreshes: 10 s, so a row survives two failed refreshes
/// before readers hide it at 30 s, and a 10k-socket replica costs one upsert every 10 s.
pub const REFRESH_EVERY: u32 = 10;

/// Refreshes between two sweeps of long-dead rows (one a minute): any replica may sweep, the
/// statement is idempotent and cheap on the `last_seen` index.
const SWEEP_EVERY: u32 = 6;

/// How long the shutdown cleanup may wait for PostgreSQL before giving up (rows then vanish
/// from readers at 30 s, like a killed replica's).
const CLEANUP_LIMIT: Duration = Duration::from_secs(3);

/// The tick frame for `now`.
pub fn tick_frame(now: chrono::DateTime<Utc>) -> ByteString {
    let now = now.to_rfc3339_opts(SecondsFormat::Micros, true);
    ByteString::from(format!(r#"{{"type":"time","now":"{now}"}}"#))
}

/// The worker's clock; runs until the replica stops.
pub async fn run(sockets: Sockets) {
    let shutdown = sockets.shutdown().clone();
    let _guard = shutdown.guard();
    let mut ticks = tokio::time::interval(TICK);
    // A late tick (a busy event loop) is sent late rather than twice in a row.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let refreshing = Rc::new(Cell::new(false));
    let mut count: u32 = 0;
    let stopped = shutdown.stopped();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            _ = ticks.tick() => {
                sockets.broadcast(&tick_frame(Utc::now()));
                count = count.wrapping_add(1);
                if count.is_multiple_of(REFRESH_EVERY) && !refreshing.replace(true) {
                    // Off the tick path: a slow database must not delay the next tick.
                    let (sockets, refreshing) = (sockets.clone(), refreshing.clone());
                    let sweep = (count / REFRESH_EVERY).is_multiple_of(SWEEP_EVERY);
                    ntex::rt::spawn(async move {
                        refresh(&sockets, sweep).await;
                        refreshing.set(false);
                    })
                    .detach();
                }
            }
        }
    }
    sockets.close_all(CloseCode::Away, GOING_AWAY);
    let forget = store::forget_instance(sockets.pg(), sockets.instance());
    match tokio::time::timeout(CLEANUP_LIMIT, forget).await {
        Ok(Ok(rows)) => tracing::info!(rows, "closed every WebSocket and forgot its users"),
        Ok(Err(e)) => tracing::warn!(error = %ErrorChain(&e), "could not delete connected users"),
        Err(_) => tracing::warn!("deleting connected users took too long; they expire in 30 s"),
    }
}

async fn refresh(sockets: &Sockets, sweep: bool) {
    // The cleanup below must finish before the process exits.
    let _guard = sockets.shutdown().guard();
    let snapshot = sockets.snapshot();
    if !snapshot.rows.is_empty() {
        if let Err(e) = store::refresh(sockets.pg(), &snapshot.rows, sockets.instance()).await {
            tracing::warn!(error = %ErrorChain(&e), "could not refresh connected users");
        }
        // The upsert may have landed after the delete of a socket that closed meanwhile (or
        // after the shutdown's delete of every row): delete those again, or they would linger
        // as ghosts until they go stale.
        let gone = sockets.gone(&snapshot);
        if !gone.is_empty() {
            if let Err(e) = store::delete_many(sockets.pg(), &gone).await {
                tracing::warn!(error = %ErrorChain(&e), "could not delete closed sockets' rows");
            }
        }
    }
    if sweep {
        match store::sweep(sockets.pg()).await {
            Ok(0) => {}
            Ok(rows) => tracing::info!(rows, "swept connected users of long-dead replicas"),
            Err(e) => tracing::warn!(error = %ErrorChain(&e), "could not sweep connected users"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tick_names_the_time_in_rfc_3339_utc_with_microseconds() {
        let now = chrono::DateTime::parse_from_rfc3339("2025-01-02T03:04:05.678Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            &*tick_frame(now),
            r#"{"type":"time","now":"2025-01-02T03:04:05.678000Z"}"#
        );
    }
}
