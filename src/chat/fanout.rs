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
//! backoff, declaring everything again (the old queue died with its connection).
//!
//! [`Hub`]: super::hub::Hub
use std::sync::Arc;
use std::time::Duration;

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
/// request.
const OUTGOING: usize = 4096;
/// Events a worker may fall behind by before it skips some (and counts them lost). A worker
/// that far behind is saturated; dropping hints beats growing without bound.
const INCOMING: usize = 4096;
/// Opening a connection to a broker that is up takes milliseconds; a stopped one refuses at once.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Reconnection backoff: first wait and cap.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The process's handle on the broker thread. Cheap to clone and `Send`: every worker holds one.
#[derive(Clone, Debug)]
pub struct Fanout {
    outgoing: mpsc::Sender<Event>,
    incoming: broadcast::Sender<Arc<Event>>,
    bound: watch::Receiver<bool>,
}

impl Fanout {
    /// Starts the broker thread for this process.
    pub fn start(url: &str, instance: &str, exchange: &str, shutdown: Shutdown) -> Self {
        let (outgoing, rx) = mpsc::channel(OUTGOING);
        let (incoming, _) = broadcast::channel(INCOMING);
        let (bound_tx, bound) = watch::channel(false);
        let link = Link {
            url: url.to_owned(),
            name: format!("{instance}-chat"),
            exchange: exchange.to_owned(),
            incoming: incoming.clone(),
            bound: bound_tx,
        };
        std::thread::Builder::new()
            .name("arena-fanout".into())
            .spawn(move || infra::block_on(link.run(rx, shutdown)))
            .expect("BUG: a thread can be started at process start");
        Self {
            outgoing,
            incoming,
            bound,
        }
    }

    /// Sends `event` to every replica's subscribers (this one's included, by way of the
    /// broker). Never waits: a full queue delivers it here only.
    pub fn publish(&self, event: Event) {
        if let Err(e) = self.outgoing.try_send(event) {
            let event = match e {
                mpsc::error::TrySendError::Full(event)
                | mpsc::error::TrySendError::Closed(event) => event,
            };
            tracing::warn!("chat fan-out queue full: event delivered on this replica only");
            deliver_locally(&self.incoming, event);
        }
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
}

impl Link {
    async fn run(self, mut outgoing: mpsc::Receiver<Event>, shutdown: Shutdown) {
        let mut backoff = BACKOFF_MIN;
        loop {
            let outcome = tokio::select! {
                _ = shutdown.stopped() => return,
                outcome = self.session(&mut outgoing) => outcome,
            };
            self.bound.send_replace(false);
            metrics::chat_broker_connected(false);
            match outcome {
                // The session was bound before it failed: the broker was fine a moment ago.
                Ok(()) => backoff = BACKOFF_MIN,
                Err(ref e) => {
                    tracing::warn!(error = %ErrorChain(e), retry_in = ?backoff, "chat fan-out: RabbitMQ link down")
                }
            }
            // While waiting to reconnect, what this process publishes still reaches its own
            // subscribers.
            let wait = tokio::time::sleep(backoff);
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    _ = shutdown.stopped() => return,
                    _ = &mut wait => break,
                    Some(event) = outgoing.recv() => deliver_locally(&self.incoming, event),
                }
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// One connection's life: declare, bind, then consume and publish until it breaks.
    /// `Ok(())` when it broke after binding (reconnect at once), `Err` when it never bound.
    async fn session(&self, outgoing: &mut mpsc::Receiver<Event>) -> Result<(), lapin::Error> {
        let connection =
            tokio::time::timeout(CONNECT_TIMEOUT, infra::amqp::connect(&self.url, &self.name))
                .await
                .map_err(|_| {
                    lapin::Error::from(std::io::Error::from(std::io::ErrorKind::TimedOut))
                })??;
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
        let mut consumer = channel
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
        self.bound.send_replace(true);
        metrics::chat_broker_connected(true);
        tracing::info!(queue = %queue.name(), exchange = %self.exchange, "chat fan-out bound");
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
                    let published = channel
                        .basic_publish(
                            self.exchange.as_str().into(),
                            event.routing_key().into(),
                            BasicPublishOptions::default(),
                            event.frame.as_bytes(),
                            BasicProperties::default().with_content_type("application/json".into()),
                        )
                        .await;
                    match published {
                        Ok(_) => metrics::chat_event("published"),
                        Err(e) => {
                            deliver_locally(&self.incoming, event);
                            break e;
                        }
                    }
                }
            }
        };
        tracing::warn!(error = %ErrorChain(&broke), "chat fan-out: RabbitMQ link lost; reconnecting");
        let _ = connection.close(200, "reconnecting".into()).await;
        Ok(())
    }
}
