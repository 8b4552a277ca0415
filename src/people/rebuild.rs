//! Rebuilding Redis's apelido keys from PostgreSQL after Redis lost its data. Redis keeps
//! nothing on disk, so a restart empties it: every `p:apelido:*` key is gone, and without this
//! a POST reusing an apelido PostgreSQL already has would be answered 201 and then refused by
//! the table (dead-lettered) — an acknowledged write lost.
//!
//! The sentinel `p:seeded:<queue>` (see `store`) says the keys are complete. A reservation
//! without it is refused (503), and the replica starts [`rebuild`] on a thread of its own
//! ([`start_in_background`]: one per process and queue, and a lock in Redis makes it one per
//! stack). The rebuild first waits for the people queue to drain, so that every person
//! answered 201 before the loss is written — the inserter claims each apelido as it writes,
//! which puts those keys back itself; a POST let through before that could take one of them
//! and have the inserter drop the person answered 201 first. Then it streams `SELECT apelido,
//! id FROM pessoas` into SET NX, sets the sentinel, and POSTs flow again. A replica runs the
//! same check before it serves ([`ensure_at_start`]): one `EXISTS` when the sentinel is there.
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::store;
use crate::config::Config;
use crate::error::ErrorChain;
use crate::infra;
use crate::ops::metrics;
use crate::BoxError;

/// Longest a rebuild waits for the people queue to drain before it gives up (and releases its
/// lock: the next POST starts another). The inserter drains thousands of people a second, so
/// a queue still full after this has no inserter running; waiting longer would only hold the
/// lock, and every POST answers 503 either way until it drains.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(30);
/// How often the queue's depth is read while waiting: a few looks per flush interval.
const DRAIN_POLL: Duration = Duration::from_millis(100);
/// Waited beyond one flush interval (`INSERTER_FLUSH_MS`) once the queue shows no message: the
/// depth leaves out what the inserter holds unacked, its batch, which it claims at its next
/// flush. The margin covers the flush of a full batch ahead of the last one (its claim and
/// write take tens of milliseconds).
const SETTLE_MARGIN: Duration = Duration::from_millis(500);
/// SET NX commands per pipeline: one round trip per thousand apelidos (~60 KB), a table of a
/// million people in about a thousand round trips.
const CHUNK: usize = 1000;
/// How long a starting replica waits for another replica's rebuild before it serves anyway
/// (its POSTs then answer 503 until the sentinel is there): the other's longest drain wait,
/// and a copy's worth more.
const START_WAIT: Duration = Duration::from_secs(45);
/// How often a starting replica looks whether another replica's rebuild has finished.
const START_POLL: Duration = Duration::from_millis(250);

/// What a call to [`rebuild`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to do: the sentinel was there.
    Seeded,
    /// The keys were copied back and the sentinel set.
    Rebuilt {
        /// Rows read from PostgreSQL.
        rows: u64,
        /// Apelido keys that were missing and are set again.
        restored: u64,
        took: Duration,
    },
    /// Another replica of the stack holds the rebuild lock.
    Busy,
    /// The people queue still held this many messages after [`DRAIN_LIMIT`]; nothing copied.
    GaveUp { waiting: u32 },
}

/// Rebuilds the apelido keys of `config`'s stack unless the sentinel says they are complete or
/// another replica is at it. Logs and counts (`arena_apelido_rebuilds_total`) its start and end.
pub async fn rebuild(config: &Config) -> Result<Outcome, BoxError> {
    let redis = infra::redis::pool(&config.redis_url, 1)?;
    let queue = config.people_queue.as_str();
    if store::is_seeded(&redis, queue).await? {
        return Ok(Outcome::Seeded);
    }
    let token = format!("{}-{}", config.instance_name, Uuid::new_v4().simple());
    if !store::lock_rebuild(&redis, queue, &token).await? {
        return Ok(Outcome::Busy);
    }
    let outcome = rebuild_locked(config, &redis).await;
    if let Err(e) = store::unlock_rebuild(&redis, queue, &token).await {
        // It frees itself at the end of its lease.
        tracing::warn!(error = %ErrorChain(&e), "could not release the apelido rebuild lock");
    }
    outcome
}

async fn rebuild_locked(
    config: &Config,
    redis: &deadpool_redis::Pool,
) -> Result<Outcome, BoxError> {
    let queue = config.people_queue.as_str();
    let started = Instant::now();
    metrics::apelido_rebuild("started");
    tracing::warn!(queue, "the apelido keys are missing from Redis (it lost its data): rebuilding them from PostgreSQL; POST /pessoas answers 503 until done");
    let copied = async {
        if let Some(waiting) = wait_for_drain(config).await? {
            return Ok(Outcome::GaveUp { waiting });
        }
        let pg = infra::postgres::connect(&config.database_url).await?;
        let (rows, restored) = store::restore_apelidos(&pg, redis, CHUNK).await?;
        metrics::apelido_keys_restored(restored);
        store::mark_seeded(redis, queue).await?;
        Ok::<_, BoxError>(Outcome::Rebuilt {
            rows,
            restored,
            took: started.elapsed(),
        })
    }
    .await;
    let ms = started.elapsed().as_millis() as u64;
    match &copied {
        Ok(Outcome::Rebuilt { rows, restored, .. }) => {
            metrics::apelido_rebuild("completed");
            tracing::info!(
                queue,
                rows,
                restored,
                ms,
                "apelido keys rebuilt from PostgreSQL; POSTs flow again"
            );
        }
        Ok(Outcome::GaveUp { waiting }) => {
            metrics::apelido_rebuild("gave_up");
            tracing::warn!(queue, waiting, ms, "the people queue did not drain (is the inserter running?): apelido rebuild abandoned; the next POST tries again");
        }
        Ok(_) => {}
        Err(e) => {
            metrics::apelido_rebuild("failed");
            tracing::warn!(queue, ms, error = %ErrorChain(&**e), "apelido rebuild failed; the next POST tries again");
        }
    }
    copied
}

/// Waits until the people queue holds no message, then one flush more: `None` once the people
/// published before the loss are written (or about to be, their apelidos claimed), the depth
/// still seen when [`DRAIN_LIMIT`] ran out otherwise.
async fn wait_for_drain(config: &Config) -> Result<Option<u32>, BoxError> {
    let deadline = tokio::time::Instant::now() + DRAIN_LIMIT;
    let name = format!("{}-rebuild", config.instance_name);
    let connection =
        tokio::time::timeout_at(deadline, infra::amqp::connect(&config.amqp_url, &name))
            .await
            .map_err(|_| "connecting to RabbitMQ timed out")??;
    let waiting = loop {
        let depth = tokio::time::timeout_at(
            deadline,
            store::queue_depth(&connection, &config.people_queue),
        )
        .await;
        match depth {
            Ok(Ok(0)) => break None,
            Ok(Ok(n)) if tokio::time::Instant::now() >= deadline => break Some(n),
            Ok(Ok(_)) => tokio::time::sleep(DRAIN_POLL).await,
            Ok(Err(e)) => {
                let _ = connection.close(200, "rebuild failed".into()).await;
                return Err(e.into());
            }
            Err(_) => {
                let _ = connection.close(200, "rebuild failed".into()).await;
                return Err("RabbitMQ did not report the people queue's depth in time".into());
            }
        }
    };
    let _ = connection.close(200, "drained".into()).await;
    if waiting.is_none() {
        tokio::time::sleep(Duration::from_millis(config.inserter_flush_ms) + SETTLE_MARGIN).await;
    }
    Ok(waiting)
}

/// Starts [`rebuild`] on a thread of its own (its own runtime: the copy never competes with a
/// worker's requests, and no request waits for it), unless this process already runs one for
/// the same queue. A POST that finds the sentinel missing calls it and answers 503 at once.
pub fn start_in_background(config: Arc<Config>) {
    /// Queues this process is rebuilding. Per queue, not one flag: the integration tests run
    /// several stacks (their own queues) in one process.
    static RUNNING: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    struct Running(String);
    impl Drop for Running {
        fn drop(&mut self) {
            RUNNING
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&self.0);
        }
    }
    let queue = config.people_queue.clone();
    if !RUNNING
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(queue.clone())
    {
        return;
    }
    let running = Running(queue);
    let spawned = std::thread::Builder::new()
        .name("apelido-rebuild".into())
        .spawn(move || {
            let _running = running;
            // Logged and counted inside; only the Busy case is left to say.
            if let Ok(Outcome::Busy) = infra::block_on(rebuild(&config)) {
                tracing::debug!("another replica is rebuilding the apelido keys");
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the apelido rebuild thread");
    }
}

/// Run by a replica before it serves: rebuilds the apelido keys if the sentinel is missing (one
/// `EXISTS` when it is there), or waits up to [`START_WAIT`] for the replica that is. Never
/// stops the start: if it cannot finish, the replica serves, its POSTs answer 503, and the
/// first of them tries again.
pub async fn ensure_at_start(config: &Config) {
    let started = Instant::now();
    loop {
        match rebuild(config).await {
            Ok(Outcome::Busy) if started.elapsed() < START_WAIT => {
                tokio::time::sleep(START_POLL).await;
            }
            Ok(Outcome::Busy) => {
                tracing::warn!(waited = ?START_WAIT, "another replica is still rebuilding the apelido keys; serving, POST /pessoas answers 503 until it finishes");
                return;
            }
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %ErrorChain(&*e), "could not check the apelido keys at start; serving, the first POST checks again");
                return;
            }
        }
    }
}
