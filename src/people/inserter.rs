//! `arena inserter`: drains the people queue into PostgreSQL. It consumes with a prefetch
//! window, collects people into a batch and flushes it when it holds `INSERTER_BATCH_SIZE`
//! people or its oldest has waited `INSERTER_FLUSH_MS`: one `INSERT … SELECT unnest(…) ON
//! CONFLICT DO NOTHING`, then one `ack` (multiple) for the whole batch. Nothing is acked before
//! its commit, so a crash redelivers the batch and the insert skips what is already there.
//!
//! An undecodable message is logged and rejected to `<queue>.dead` at once. A batch that
//! PostgreSQL refuses for its data (never expected: the API parsed every person) is retried row
//! by row and the refused rows rejected the same way. RabbitMQ or PostgreSQL going away makes it
//! reconnect, with nothing acked that was not committed. SIGTERM/SIGINT: stop consuming, flush
//! and ack the batch in hand, exit 0.
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicQosOptions, BasicRejectOptions};
use lapin::types::FieldTable;
use lapin::{message::Delivery, Acker};
use tokio::time::Instant;

use super::model::Person;
use super::store;
use crate::config::Config;
use crate::error::ErrorChain;
use crate::infra;
use crate::lifecycle::Shutdown;
use crate::ops::metrics;
use crate::BoxError;

/// Wait between reconnection attempts: RabbitMQ's `start_app` or a PostgreSQL restart takes a
/// few seconds, so half a second finds it back quickly without spinning.
const RETRY_DELAY: Duration = Duration::from_millis(500);

/// `arena inserter`: runs until SIGTERM/SIGINT.
pub fn run(config: Config) -> Result<(), BoxError> {
    if config.inserter_metrics_port != 0 {
        serve_metrics(&config)?;
    }
    infra::block_on(async move {
        let shutdown = Shutdown::default();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        tracing::info!(
            queue = %config.people_queue,
            batch = config.inserter_batch_size,
            flush_ms = config.inserter_flush_ms,
            "inserter started"
        );
        consume(&config, &shutdown).await;
        tracing::info!("inserter stopped");
        Ok(())
    })
}

/// Serves `GET /metrics` from a thread of its own, so a scrape never competes with the
/// consumer's runtime. It dies with the process: there is nothing of its own to flush.
fn serve_metrics(config: &Config) -> Result<(), BoxError> {
    use ntex::web::{self, App, HttpResponse, HttpServer};
    let listener =
        std::net::TcpListener::bind((config.host.as_str(), config.inserter_metrics_port)).map_err(
            |e| {
                format!(
                    "INSERTER_METRICS_PORT {}: {e}",
                    config.inserter_metrics_port
                )
            },
        )?;
    tracing::info!(addr = %listener.local_addr()?, "inserter metrics at /metrics");
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            let served = ntex::rt::System::new("inserter-metrics", ntex::rt::DefaultRuntime)
                .block_on(async move {
                    HttpServer::new(async || {
                        App::new()
                            .route(
                                "/metrics",
                                web::get().to(async || {
                                    HttpResponse::Ok()
                                        .content_type(metrics::CONTENT_TYPE)
                                        .body(metrics::render())
                                }),
                            )
                            .default_service(web::route().to(crate::error::not_found))
                    })
                    .workers(1)
                    .disable_signals()
                    .listen(listener)?
                    .run()
                    .await
                });
            if let Err(e) = served {
                tracing::error!(error = %e, "inserter metrics server stopped");
            }
        })?;
    Ok(())
}

async fn stop_on_signal(shutdown: Shutdown) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot listen for signals; stop the inserter with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("stopping: flushing the current batch");
    shutdown.signal();
}

/// Consumes until `shutdown` is signalled, reconnecting after any broker or database failure.
/// Tests run it on their own runtime with their own queue.
pub async fn consume(config: &Config, shutdown: &Shutdown) {
    let _guard = shutdown.guard();
    let mut db = Database::new(&config.database_url);
    let pending = Pending {
        queue: config.people_queue.clone(),
        redis: match infra::redis::pool(&config.redis_url, 1) {
            Ok(pool) => Some(pool),
            Err(e) => {
                tracing::error!(error = %ErrorChain(&*e), "bad REDIS_URL: /contagem-pessoas?wait= will not see inserts");
                None
            }
        },
    };
    while !shutdown.is_stopping() {
        match session(config, shutdown, &mut db, &pending).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %ErrorChain(&*e), "inserter lost a connection; retrying");
                tokio::select! {
                    _ = shutdown.stopped() => return,
                    _ = tokio::time::sleep(RETRY_DELAY) => {}
                }
            }
        }
    }
}

/// The Redis set of pending people that `/contagem-pessoas?wait=` waits to see empty.
struct Pending {
    queue: String,
    redis: Option<deadpool_redis::Pool>,
}

impl Pending {
    /// See [`store::claim`]. When Redis cannot tell, nobody is dropped: the table's unique
    /// apelido decides, as it would without this check.
    async fn claim(&self, people: &[Person]) -> Vec<bool> {
        let Some(redis) = &self.redis else {
            return vec![true; people.len()];
        };
        store::claim(redis, people).await.unwrap_or_else(|e| {
            tracing::warn!(error = %ErrorChain(&e), "could not claim the batch's apelidos; writing it as is");
            vec![true; people.len()]
        })
    }

    /// Best effort: a missed removal only makes a `wait` run to its limit; it loses nothing.
    async fn settle(&self, people: &[Person]) {
        let Some(redis) = &self.redis else { return };
        if let Err(e) = store::settle(redis, &self.queue, people).await {
            tracing::warn!(error = %ErrorChain(&e), people = people.len(), "could not mark people as settled");
        }
    }
}

/// The PostgreSQL connection and its prepared insert, reopened when broken.
struct Database {
    url: String,
    conn: Option<(tokio_postgres::Client, tokio_postgres::Statement)>,
}

impl Database {
    fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            conn: None,
        }
    }

    async fn insert(&mut self, people: &[Person]) -> Result<u64, InsertError> {
        if self.conn.as_ref().is_none_or(|(c, _)| c.is_closed()) {
            let client = infra::postgres::connect(&self.url)
                .await
                .map_err(InsertError::Unavailable)?;
            let stmt = store::prepare_insert(&client)
                .await
                .map_err(|e| InsertError::Unavailable(e.into()))?;
            self.conn = Some((client, stmt));
        }
        let (client, stmt) = self.conn.as_ref().expect("BUG: connected just above");
        store::insert_batch(client, stmt, people)
            .await
            .map_err(|e| {
                if is_data_error(&e) {
                    InsertError::Refused(e)
                } else {
                    self.conn = None;
                    InsertError::Unavailable(e.into())
                }
            })
    }
}

enum InsertError {
    /// PostgreSQL refused the rows themselves (SQLSTATE class 22 or 23): retrying cannot help.
    Refused(tokio_postgres::Error),
    /// Connection, restart, or anything else worth retrying.
    Unavailable(BoxError),
}

fn is_data_error(e: &tokio_postgres::Error) -> bool {
    e.code()
        .is_some_and(|c| c.code().starts_with("22") || c.code().starts_with("23"))
}

/// People received and not yet acked, with what is needed to ack or reject them.
#[derive(Default)]
struct Batch {
    people: Vec<Person>,
    ackers: Vec<Acker>,
    /// When the oldest person in the batch must be written by.
    deadline: Option<Instant>,
}

impl Batch {
    fn push(&mut self, person: Person, acker: Acker, flush_after: Duration) {
        if self.people.is_empty() {
            self.deadline = Some(Instant::now() + flush_after);
        }
        self.people.push(person);
        self.ackers.push(acker);
    }

    fn clear(&mut self) {
        self.people.clear();
        self.ackers.clear();
        self.deadline = None;
    }
}

/// One connection to RabbitMQ: consume until shutdown (Ok) or until something breaks (Err).
async fn session(
    config: &Config,
    shutdown: &Shutdown,
    db: &mut Database,
    pending: &Pending,
) -> Result<(), BoxError> {
    let name = format!("{}-inserter", config.instance_name);
    let connection = infra::amqp::connect(&config.amqp_url, &name).await?;
    let channel = connection.create_channel().await?;
    store::declare_queues(&channel, &config.people_queue).await?;
    let batch_size = config.inserter_batch_size.max(1);
    // Twice the batch: the next batch arrives while one is being written.
    let prefetch = u16::try_from(batch_size.saturating_mul(2)).unwrap_or(u16::MAX);
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let mut consumer = channel
        .basic_consume(
            config.people_queue.as_str().into(),
            "".into(),
            Default::default(),
            FieldTable::default(),
        )
        .await?;
    tracing::info!(queue = %config.people_queue, prefetch, "consuming");
    let flush_after = Duration::from_millis(config.inserter_flush_ms);
    let mut batch = Batch::default();
    loop {
        let deadline = batch.deadline;
        tokio::select! {
            biased;
            _ = shutdown.stopped() => {
                let _ = channel
                    .basic_cancel(consumer.tag(), BasicCancelOptions::default())
                    .await;
                let flushed = flush(&mut batch, db, pending, shutdown).await;
                let _ = connection.close(200, "inserter stopping".into()).await;
                return flushed;
            }
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                flush(&mut batch, db, pending, shutdown).await?;
            }
            next = consumer.next() => match next {
                Some(Ok(delivery)) => {
                    accept(delivery, &mut batch, flush_after).await?;
                    if batch.people.len() >= batch_size {
                        flush(&mut batch, db, pending, shutdown).await?;
                    }
                }
                Some(Err(e)) => return Err(e.into()),
                None => return Err("the broker cancelled the consumer".into()),
            },
        }
    }
}

/// Adds a delivery to the batch, or rejects it to the dead-letter queue if it is poison.
async fn accept(
    delivery: Delivery,
    batch: &mut Batch,
    flush_after: Duration,
) -> Result<(), BoxError> {
    match Person::from_message(&delivery.data) {
        Ok(person) => {
            batch.push(person, delivery.acker, flush_after);
            Ok(())
        }
        Err(invalid) => {
            tracing::warn!(
                field = invalid.field,
                reason = invalid.reason,
                bytes = delivery.data.len(),
                body = %String::from_utf8_lossy(&delivery.data[..delivery.data.len().min(200)]),
                "poison message rejected to the dead-letter queue"
            );
            delivery
                .acker
                .reject(BasicRejectOptions { requeue: false })
                .await?;
            Ok(())
        }
    }
}

/// Writes the batch and acks it. Retries while PostgreSQL is unavailable (nothing is consumed
/// meanwhile); gives up only when stopping, leaving the batch unacked for redelivery.
async fn flush(
    batch: &mut Batch,
    db: &mut Database,
    pending: &Pending,
    shutdown: &Shutdown,
) -> Result<(), BoxError> {
    if batch.people.is_empty() {
        return Ok(());
    }
    drop_disowned(batch, pending).await?;
    if batch.people.is_empty() {
        batch.clear();
        return Ok(());
    }
    let started = Instant::now();
    loop {
        match db.insert(&batch.people).await {
            Ok(inserted) => {
                // Recorded in this process's registry (see `ops::metrics` on who can scrape it),
                // and before the settle: whoever waited for the drain then sees the batch.
                metrics::inserter_batch(batch.people.len(), started.elapsed());
                // Settled before the ack: a crash in between redelivers rows that insert
                // nothing and settle again, harmlessly.
                pending.settle(&batch.people).await;
                let last = batch.ackers.last().expect("BUG: the batch is not empty");
                last.ack(BasicAckOptions { multiple: true }).await?;
                tracing::debug!(
                    size = batch.people.len(),
                    inserted,
                    ms = started.elapsed().as_millis() as u64,
                    "batch written"
                );
                if (inserted as usize) < batch.people.len() {
                    tracing::debug!(
                        skipped = batch.people.len() - inserted as usize,
                        "people already present (redelivered) or with a taken apelido skipped"
                    );
                }
                batch.clear();
                return Ok(());
            }
            Err(InsertError::Refused(e)) => {
                tracing::warn!(error = %ErrorChain(&e), "batch refused; writing it row by row");
                let result = flush_row_by_row(batch, db, pending).await;
                batch.clear();
                return result;
            }
            Err(InsertError::Unavailable(e)) => {
                tracing::warn!(error = %ErrorChain(&*e), "PostgreSQL unavailable; batch kept");
                if shutdown.is_stopping() {
                    return Err(e);
                }
                tokio::time::sleep(RETRY_DELAY).await;
            }
        }
    }
}

/// Claims the batch's apelidos, then acks, settles and removes from the batch every person
/// whose apelido went to someone else (see [`store::claim`]): that person was answered 503,
/// and is not written.
async fn drop_disowned(batch: &mut Batch, pending: &Pending) -> Result<(), BoxError> {
    let owned = pending.claim(&batch.people).await;
    // From the end, so the indices still to visit do not move.
    for i in (0..owned.len()).rev().filter(|&i| !owned[i]) {
        let person = batch.people.remove(i);
        let acker = batch.ackers.remove(i);
        tracing::info!(id = %person.id, apelido = person.person.apelido.as_str(),
            "dropped a person answered 503 whose apelido was taken again");
        // Acked alone: the batch's final multiple ack covers only what is still unacked.
        acker.ack(BasicAckOptions { multiple: false }).await?;
        pending.settle(std::slice::from_ref(&person)).await;
    }
    Ok(())
}

/// The fallback for a refused batch: each row on its own, refused rows to the dead-letter queue.
async fn flush_row_by_row(
    batch: &Batch,
    db: &mut Database,
    pending: &Pending,
) -> Result<(), BoxError> {
    for (person, acker) in batch.people.iter().zip(&batch.ackers) {
        match db.insert(std::slice::from_ref(person)).await {
            Ok(_) => {
                pending.settle(std::slice::from_ref(person)).await;
                acker.ack(BasicAckOptions { multiple: false }).await?;
            }
            Err(InsertError::Refused(e)) => {
                tracing::warn!(error = %ErrorChain(&e), id = %person.id,
                    "PostgreSQL refused a person; rejected to the dead-letter queue");
                acker.reject(BasicRejectOptions { requeue: false }).await?;
                // Dead-lettered is settled too: a wait must not hang on a person it refused.
                pending.settle(std::slice::from_ref(person)).await;
            }
            Err(InsertError::Unavailable(e)) => return Err(e),
        }
    }
    Ok(())
}
