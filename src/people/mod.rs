//! People (Rinha 2023, SPEC §2). A POST is parsed into a [`model::NewPerson`], given an id and
//! serialised once; its apelido is reserved and the person cached in Redis in one atomic step,
//! then it is published to a durable RabbitMQ queue with a publisher confirm, and only then
//! answered 201. `arena inserter` ([`inserter`]) drains the queue into PostgreSQL in batches.
//! Reads by id hit Redis first and PostgreSQL on a miss; search and count read PostgreSQL.
//! When Redis has lost its data, POSTs answer 503 while [`rebuild`] copies the apelidos
//! PostgreSQL holds back into Redis.
pub mod inserter;
pub mod model;
pub mod rebuild;
mod routes;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use ntex::http::StatusCode;
use uuid::Uuid;

pub use routes::{configure, Api};
pub use store::Publisher;

use crate::config::Config;
use crate::error::ApiError;
use crate::server::AppState;
use model::{Invalid, InvalidKind, NewPerson, Person};
use store::Reservation;

/// Longest a `/metrics` scrape waits for Redis to report the backlog: the scrape must answer
/// even when Redis does not (the gauge then keeps its last value).
const BACKLOG_READ_LIMIT: Duration = Duration::from_millis(250);

/// Longest `/contagem-pessoas?wait=` honoured: below nginx's 75 s read timeout.
pub const MAX_DRAIN_WAIT: Duration = Duration::from_secs(60);
/// How often a waiting count looks again: a flush takes ~100 ms, so a few looks per flush.
const DRAIN_POLL: Duration = Duration::from_millis(50);

/// Everything that can go wrong with people; the `From<PeopleError> for ApiError` below maps each to its answer.
#[derive(Debug, thiserror::Error)]
pub enum PeopleError {
    /// 400: the body is not JSON, or a field has the wrong JSON type.
    #[error("malformed request: {} {}", .0.field, .0.reason)]
    Malformed(Invalid),
    /// 422: a required field is null or missing, too long, or an impossible date.
    #[error("unprocessable person: {} {}", .0.field, .0.reason)]
    Unprocessable(Invalid),
    /// 422: another person has this apelido.
    #[error("apelido already taken")]
    DuplicateApelido,
    /// 503: Redis lost its data and the apelido keys are being rebuilt from PostgreSQL; until
    /// they are, a reservation could hand out an apelido the table already has.
    #[error("the apelido keys are being rebuilt")]
    Rebuilding,
    /// 404: no such person (or not a UUID).
    #[error("person not found")]
    NotFound,
    /// 400: search without `t`.
    #[error("missing search term")]
    MissingTerm,
    /// 400: a query string that does not decode.
    #[error("malformed query string")]
    BadQuery,
    /// 503: Redis failed.
    #[error("redis")]
    Redis(#[from] deadpool_redis::redis::RedisError),
    /// 503: no Redis connection.
    #[error("redis pool")]
    RedisPool(#[from] deadpool_redis::PoolError),
    /// 503: PostgreSQL failed.
    #[error("postgres")]
    Postgres(#[from] tokio_postgres::Error),
    /// 503: no PostgreSQL connection.
    #[error("postgres pool")]
    PostgresPool(#[from] deadpool_postgres::PoolError),
    /// 503: RabbitMQ failed.
    #[error("rabbitmq")]
    Broker(#[from] lapin::Error),
    /// 503: RabbitMQ refused the message (nack, or returned unroutable): nothing was queued.
    #[error("RabbitMQ refused the message")]
    Refused,
    /// 503: RabbitMQ did not confirm the message (timeout, broken link).
    #[error("{0}")]
    NotConfirmed(&'static str),
}

impl From<Invalid> for PeopleError {
    fn from(invalid: Invalid) -> Self {
        match invalid.kind {
            InvalidKind::Malformed => Self::Malformed(invalid),
            InvalidKind::Unprocessable => Self::Unprocessable(invalid),
        }
    }
}

/// Creates a person: reserve + cache, publish with confirm, claim the apelido for good — or
/// undo and fail. A 201 is only answered for a person the broker has taken responsibility for,
/// whose apelido nobody else can take.
///
/// The steps run in a task of their own: when the client (or nginx) hangs up mid-way, ntex
/// drops the handler, and a handler dropped between the reservation and the publish would
/// leave the apelido reserved for a person nobody published. The task always finishes: the
/// person is published, or the reservation undone.
pub async fn create(state: &AppState, person: NewPerson) -> Result<Person, PeopleError> {
    let redis = state.redis.clone();
    let publisher = state.people.clone();
    let config = state.config.clone();
    ntex::rt::spawn(async move { create_to_the_end(&redis, &publisher, &config, person).await })
        .await
        .map_err(|_| PeopleError::NotConfirmed("the creation task was lost"))?
}

async fn create_to_the_end(
    redis: &deadpool_redis::Pool,
    publisher: &Publisher,
    config: &Arc<Config>,
    person: NewPerson,
) -> Result<Person, PeopleError> {
    let queue = config.people_queue.as_str();
    let person = person.with_id(Uuid::new_v4());
    match store::reserve(redis, queue, &person).await? {
        Reservation::Reserved => {}
        Reservation::Taken => return Err(PeopleError::DuplicateApelido),
        Reservation::IndexMissing => {
            rebuild::start_in_background(config.clone());
            return Err(PeopleError::Rebuilding);
        }
    }
    if let Err(e) = publisher.publish(&person.json).await {
        if let Err(undo) = store::release(redis, queue, &person).await {
            // The apelido stays reserved until its lease ends; the person was never
            // published, so nothing else is wrong.
            tracing::error!(error = %crate::error::ErrorChain(&undo), apelido = person.person.apelido.as_str(),
                "could not release the apelido of an unpublished person");
        }
        return Err(e);
    }
    // The broker has the person: its apelido stops being a lease. Past this point nothing is
    // undone — the message is queued and will be written — so a failure is a 503 for a person
    // who will exist anyway, like a lost confirm.
    if store::claim(redis, std::slice::from_ref(&person)).await? != [true] {
        return Err(PeopleError::NotConfirmed(
            "the apelido's reservation lapsed before the publish was confirmed",
        ));
    }
    Ok(person)
}

/// Person `id`'s JSON: Redis first (people not inserted yet are there), then PostgreSQL.
pub async fn find(state: &AppState, id: &Uuid) -> Result<Vec<u8>, PeopleError> {
    match store::cached(&state.redis, id).await {
        Ok(Some(json)) => return Ok(json),
        Ok(None) => {}
        // Redis down must not hide people PostgreSQL has.
        Err(e) => tracing::warn!(error = %crate::error::ErrorChain(&e), "person cache unavailable"),
    }
    store::find(&state.pg, id)
        .await?
        .map(String::into_bytes)
        .ok_or(PeopleError::NotFound)
}

/// People in PostgreSQL; with `wait`, first waits (bounded) until every person answered 201 has
/// been settled by the inserter (the queue's pending set in Redis is empty).
pub async fn count(state: &AppState, wait: Option<Duration>) -> Result<i64, PeopleError> {
    let Some(wait) = wait else {
        return store::count(&state.pg).await;
    };
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let drained = store::drained(&state.redis, &state.config.people_queue).await?;
        if drained || tokio::time::Instant::now() >= deadline {
            return store::count(&state.pg).await;
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
}

/// Sets `arena_inserter_queue_depth` to the people answered 201 and not yet in PostgreSQL.
/// `/metrics` calls it at every scrape: the inserter cannot see what was published and not yet
/// delivered to it, so the backlog is read here, from the size of the queue's pending set.
pub async fn observe_backlog(state: &AppState) {
    let read = store::backlog(&state.redis, &state.config.people_queue);
    match tokio::time::timeout(BACKLOG_READ_LIMIT, read).await {
        Ok(Ok(n)) => {
            crate::ops::metrics::inserter_queue_depth(usize::try_from(n).unwrap_or(usize::MAX))
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %crate::error::ErrorChain(&e), "people backlog unreadable")
        }
        Err(_) => tracing::warn!(limit = ?BACKLOG_READ_LIMIT, "people backlog read timed out"),
    }
}

/// Each variant's answer, with the status SPEC names.
impl From<PeopleError> for ApiError {
    fn from(e: PeopleError) -> Self {
        use PeopleError as P;
        let invalid = |status, i: Invalid| {
            if i.field == "body" {
                ApiError::new(status, i.reason)
            } else {
                ApiError::field(status, i.field, format!("{} {}", i.field, i.reason))
            }
        };
        match e {
            P::Malformed(i) => invalid(StatusCode::BAD_REQUEST, i),
            P::Unprocessable(i) => invalid(StatusCode::UNPROCESSABLE_ENTITY, i),
            P::DuplicateApelido => ApiError::from_static(
                StatusCode::UNPROCESSABLE_ENTITY,
                r#"{"error":"apelido already taken","field":"apelido"}"#,
            ),
            // Not logged per request: the rebuild logs its start and end.
            P::Rebuilding => ApiError::from_static(
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"error":"the apelido index is being rebuilt after Redis lost its data; retry in a few seconds"}"#,
            ),
            P::NotFound => ApiError::not_found(),
            P::MissingTerm => ApiError::from_static(
                StatusCode::BAD_REQUEST,
                r#"{"error":"query parameter t is required","field":"t"}"#,
            ),
            P::BadQuery => ApiError::from_static(
                StatusCode::BAD_REQUEST,
                r#"{"error":"malformed query string"}"#,
            ),
            P::Redis(_)
            | P::RedisPool(_)
            | P::Postgres(_)
            | P::PostgresPool(_)
            | P::Broker(_)
            | P::Refused
            | P::NotConfirmed(_) => ApiError::unavailable("people storage", &e),
        }
    }
}
