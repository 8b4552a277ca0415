//! Cross-replica delivery of chat events through RabbitMQ, one link per process.
//!
//! A thread of its own (a current-thread tokio runtime, like the workers') holds the broker
//! connection. It declares the durable topic exchange `CHAT_EXCHANGE` and, for this process, an
//! exclusive, auto-delete, server-named queue bound to every key (`#`), and consumes it without
//! acks: a chat event is a hint to live subscribers, PostgreSQL has the data. What arrives goes
//! to every ntex worker of the process through a broadcast channel; each worker's [`Hub`] hands
//! it to its own sockets and long-polls.
//!
//! Workers publish through the same thread ([`Fanout::publish`] queues the event on a bounded
//! channel after the write has committed). While the broker is unreachable, the thread
//! delivers what this process publishes to its own subscribers only, counts it in
//! `arena_chat_events_total{outcome="local_only"}`, logs the outage, and reconnects with
//! backoff, declaring everything again (the old queue died with its connection). Every step
//! with the broker is bounded in time, so a broker that stalls instead of refusing is treated
//! like one that is down.
//!
//! Events are hints, not the record: one lost with the broker (published while this queue was
//! gone) is found again by the hubs, which re-read PostgreSQL each time the link binds
//! ([`Fanout::links`]) and whenever an event shows they missed one (see `hub.rs`).
//!
//! On SIGTERM the link stays up until the requests already inside have finished (they may
//! still commit and publish), sends what they queued, and closes; the process waits for it.
//!
//! [`Hub`]: super::hub::Hub
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{Fuse, FutureExt as _};
use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, ExchangeKind};
use tokio::sync::{broadcast, mpsc, watch};

use super::model::Event;
use crate::error::ErrorChain;
use crate::infra;
use crate::lifecycle::Shutdown;
use crate::ops::metrics;

/// Events waiting for the broker thread. Far above a burst of posts (the thread publishes in
/// microseconds); when full, the event is delivered on this replica only rather than block a
/// request. 1024 events of at most ~12 KiB (2048 escaped characters) bound it to ~12 MiB.
const OUTGOING: usize = 1024;
/// Events a worker may fall behind by before it skips some (and counts them lost). A worker
/// that far behind is saturated; dropping hints beats growing without bound.
const INCOMING: usize = 4096;
/// Opening a connection and declaring the queue take milliseconds on a broker that is up; a
/// stopped one refuses at once.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Handing one event to the broker takes microseconds; one that blocks publishers is lost.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);
/// Reconnection backoff: first wait and cap.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The process's handle on the broker thread. Cheap to clone and `Send`: every worker holds one.
#[derive(Clone, Debug)]
pub struct Fanout {
    outgoing: mpsc::Sender<Event>,
    incoming: broadcast::Sender<Arc<Event>>,
    bound: watch::Receiver<bool>,
    links: watch::Receiver<u64>,
}

impl Fanout {
    /// Starts the broker thread for this process.
    /// `drain` is how long, once stopping, it keeps publishing for the requests still inside
    /// (`SHUTDOWN_TIMEOUT_SECS`).
    pub fn start(
        url: &str,
        instance: &str,
        exchange: &str,
        shutdown: Shutdown,
        drain: Duration,
    ) -> Self {
        let (outgoing, rx) = mpsc::channel(OUTGOING);
        let (incoming, _) = broadcast::channel(INCOMING);
        let (bound_tx, bound) = watch::channel(false);
        let (links_tx, links) = watch::channel(0);
        let link = Link {
            url: url.to_owned(),
            name: format!("{instance}-chat"),
            exchange: exchange.to_owned(),
            incoming: incoming.clone(),
            bound: bound_tx,
            links: links_tx,
        };
        std::thread::Builder::new()
            .name("arena-fanout".into())
            .spawn(move || infra::block_on(link.run(rx, shutdown, drain)))
            .expect("BUG: a thread can be started at process start");
        Self {
            outgoing,
            incoming,
            bound,
            links,
        }
    }

    /// Sends `event` to every replica's subscribers (this one's included, by way of the
    /// broker). Never waits: a full queue delivers it here only.
    pub fn publish(&self, event: Event) {
        match self.outgoing.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(event)) => {
                tracing::warn!("chat fan-out queue full: event delivered on this replica only");
                deliver_locally(&self.incoming, event);
            }
            Err(mpsc::error::TrySendError::Closed(event)) => {
                tracing::warn!("chat fan-out stopped: event delivered on this replica only");
                deliver_locally(&self.incoming, event);
            }
        }
    }

    /// Changes every time the link (re)binds this process's queue: what was published while it
    /// was down never reached the queue, and the hubs re-read their rooms from PostgreSQL.
    pub fn links(&self) -> watch::Receiver<u64> {
        self.links.clone()
    }

    /// A receiver of every event that reaches this process.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.incoming.subscribe()
    }

    /// Waits, at most `limit`, until this process's queue is bound, so a subscriber that
    /// registers after it hears every event published from then on. A broker that is down
    /// does not hold the subscriber: it waits `limit` and goes on.
    pub async fn bound(&self, limit: Duration) {
        let mut bound = self.bound.clone();
        let _ = tokio::time::timeout(limit, bound.wait_for(|b| *b)).await;
    }
}

fn deliver_locally(incoming: &broadcast::Sender<Arc<Event>>, event: Event) {
    metrics::chat_event("local_only");
    // No receiver means no subscriber on this process: nothing to deliver to.
    let _ = incoming.send(Arc::new(event));
}

struct Link {
    url: String,
    name: String,
    exchange: String,
    incoming: broadcast::Sender<Arc<Event>>,
    bound: watch::Sender<bool>,
    links: watch::Sender<u64>,
}

/// Resolves once the replica is stopping and the requests that were inside have finished (or
/// the drain's limit passed): from then on nothing more will be published.
type Finished = Pin<Box<Fuse<Pin<Box<dyn Future<Output = ()> + Send>>>>>;

/// How a session with the broker ended.
enum Ended {
    /// The replica stopped and everything queued was sent (or delivered here): the thread ends.
    Finished,
    /// The link broke (or never came up): reconnect after a backoff.
    Lost(lapin::Error),
    /// The link broke after it had been bound: reconnect at once.
    LostAfterBinding(lapin::Error),
}

fn timed_out() -> lapin::Error {
    lapin::Error::from(std::io::Error::from(std::io::ErrorKind::TimedOut))
}

impl Link {
    async fn run(self, mut outgoing: mpsc::Receiver<Event>, shutdown: Shutdown, drain: Duration) {
        // The process waits (bounded) for this thread before it exits, so what the last
        // requests published still goes out.
        let _guard = shutdown.guard();
        let stopping = shutdown.clone();
        let finished: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(async move {
            stopping.stopped().await;
            stopping.requests_done(drain).await;
        });
        let mut finished: Finished = Box::pin(finished.fuse());
        let mut backoff = BACKOFF_MIN;
        loop {
            let ended = self.session(&mut outgoing, &mut finished).await;
            self.bound.send_replace(false);
            metrics::chat_broker_connected(false);
            match ended {
                Ended::Finished => return,
                Ended::LostAfterBinding(e) => {
                    tracing::warn!(error = %ErrorChain(&e), "chat fan-out: RabbitMQ link lost; reconnecting");
                    backoff = BACKOFF_MIN;
                    continue;
                }
                Ended::Lost(e) => {
                    tracing::warn!(error = %ErrorChain(&e), retry_in = ?backoff, "chat fan-out: RabbitMQ link down")
                }
            }
            // While waiting to reconnect, what this process publishes still reaches its own
            // subscribers.
            let wait = tokio::time::sleep(backoff);
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    _ = &mut finished => return self.deliver_all_locally(&mut outgoing),
                    _ = &mut wait => break,
                    Some(event) = outgoing.recv() => deliver_locally(&self.incoming, event),
                }
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    fn deliver_all_locally(&self, outgoing: &mut mpsc::Receiver<Event>) {
        while let Ok(event) = outgoing.try_recv() {
            deliver_locally(&self.incoming, event);
        }
    }

    /// Connects, declares the exchange, this process's queue and its binding, and starts
    /// consuming — all within [`CONNECT_TIMEOUT`], since a broker that accepts the connection
    /// and then stalls must not hold the link forever.
    async fn open(
        &self,
    ) -> Result<(lapin::Connection, lapin::Channel, lapin::Consumer), lapin::Error> {
        let connection = infra::amqp::connect(&self.url, &self.name).await?;
        let channel = connection.create_channel().await?;
        channel
            .exchange_declare(
                self.exchange.as_str().into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        let queue = channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_bind(
                queue.name().clone(),
                self.exchange.as_str().into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let consumer = channel
            .basic_consume(
                queue.name().clone(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        tracing::info!(queue = %queue.name(), exchange = %self.exchange, "chat fan-out bound");
        Ok((connection, channel, consumer))
    }

    /// Publishes one event, within [`PUBLISH_TIMEOUT`]: a broker that blocks publishers (a
    /// memory alarm) must not stall the consumer beside it.
    async fn publish(&self, channel: &lapin::Channel, event: &Event) -> Result<(), lapin::Error> {
        let publish = channel.basic_publish(
            self.exchange.as_str().into(),
            event.routing_key().into(),
            BasicPublishOptions::default(),
            event.frame.as_bytes(),
            BasicProperties::default().with_content_type("application/json".into()),
        );
        match tokio::time::timeout(PUBLISH_TIMEOUT, publish).await {
            Ok(Ok(_)) => {
                metrics::chat_event("published");
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(timed_out()),
        }
    }

    /// One connection's life: open it, then consume and publish until it breaks or the replica
    /// has finished. Until it is bound, what this process publishes is delivered here only.
    async fn session(
        &self,
        outgoing: &mut mpsc::Receiver<Event>,
        finished: &mut Finished,
    ) -> Ended {
        let open = tokio::time::timeout(CONNECT_TIMEOUT, self.open());
        tokio::pin!(open);
        let opened = loop {
            tokio::select! {
                opened = &mut open => break opened.unwrap_or_else(|_| Err(timed_out())),
                Some(event) = outgoing.recv() => deliver_locally(&self.incoming, event),
                _ = &mut *finished => {
                    self.deliver_all_locally(outgoing);
                    return Ended::Finished;
                }
            }
        };
        let (connection, channel, mut consumer) = match opened {
            Ok(opened) => opened,
            Err(e) => return Ended::Lost(e),
        };
        self.bound.send_replace(true);
        self.links.send_modify(|n| *n += 1);
        metrics::chat_broker_connected(true);
        let broke = loop {
            tokio::select! {
                delivery = consumer.next() => match delivery {
                    Some(Ok(delivery)) => {
                        match Event::received(delivery.routing_key.as_str(), delivery.data) {
                            Some(event) => {
                                metrics::chat_event("received");
                                let _ = self.incoming.send(Arc::new(event));
                            }
                            None => tracing::warn!(key = %delivery.routing_key, "chat fan-out: unknown event dropped"),
                        }
                    }
                    Some(Err(e)) => break e,
                    None => break lapin::Error::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
                },
                Some(event) = outgoing.recv() => {
                    if let Err(e) = self.publish(&channel, &event).await {
                        deliver_locally(&self.incoming, event);
                        break e;
                    }
                }
                _ = &mut *finished => {
                    // The last requests are done: send what they queued, then close (which
                    // flushes lapin's buffer).
                    while let Ok(event) = outgoing.try_recv() {
                        if self.publish(&channel, &event).await.is_err() {
                            deliver_locally(&self.incoming, event);
                        }
                    }
                    let close = connection.close(200, "replica stopping".into());
                    let _ = tokio::time::timeout(PUBLISH_TIMEOUT, close).await;
                    return Ended::Finished;
                }
            }
        };
        let _ = tokio::time::timeout(
            PUBLISH_TIMEOUT,
            connection.close(200, "reconnecting".into()),
        )
        .await;
        Ended::LostAfterBinding(broke)
    }
}
