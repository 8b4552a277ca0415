//! Where people live: Redis (apelido reservations, the person cache, the pending set),
//! RabbitMQ (the durable queue new people travel through) and PostgreSQL (the table the
//! inserter fills and searches read). Every key, statement and message format is here.
//!
//! Redis keys, all under `p:` so `arena reset` can find them:
//! - `p:apelido:<apelido>` → id: the uniqueness check. Set with NX and a lease of
//!   [`RESERVATION_LEASE`], and made permanent ([`claim`]) once the person's publish is
//!   confirmed, before its 201 — or by the inserter as it writes the person. A replica killed
//!   between its reservation and its publish so leaves no apelido taken for good.
//! - `p:id:<uuid>` → the person's JSON, so a GET on any replica answers before the inserter ran.
//! - `p:pending:<queue>` → the ids reserved for that queue and not yet settled by its inserter
//!   (written to PostgreSQL, or dead-lettered), scored by reservation time (ms): the queue has
//!   drained when none younger than [`PENDING_HORIZON`] is left, which is what
//!   `/contagem-pessoas?wait=` waits for. A set of ids, not a pair of
//!   counters, so nothing can drift: a person published although its publish looked failed (and
//!   was released) is removed twice, harmlessly; a redelivered one likewise; a reset while
//!   messages are in flight leaves nothing behind. Per queue, so tests with their own queues
//!   neither see nor disturb the stack's. Redis keeps nothing on disk: a restart loses it, and
//!   a `wait` then no longer waits for the people queued before.
//! - `p:seeded:<queue>` → `1`, no TTL: the apelido keys cover every apelido in PostgreSQL (and
//!   those of the people queued to `<queue>`). [`reserve`] refuses to reserve without it, so a
//!   Redis that lost its data (a restart: nothing is on disk) answers 503 instead of handing
//!   out apelidos PostgreSQL already has. Set by `arena reset` after it empties the table and
//!   by the rebuild (`people::rebuild`), which copies the table's apelidos back first. Per
//!   queue, like the pending set, so a test can drop its own without stopping the stack's POSTs.
//! - `p:rebuild:<queue>` → the token of the replica rebuilding the apelido keys, with a lease of
//!   [`REBUILD_LOCK_LEASE`]: one rebuild per stack at a time.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use deadpool_redis::redis;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use tokio::sync::Mutex;
use uuid::Uuid;

use super::model::{Person, SearchTerm};
use super::PeopleError;
use crate::infra;
use crate::ops::metrics;

/// Prefix of every people key in Redis.
pub const KEY_PREFIX: &str = "p:";
const APELIDO_KEY: &str = "p:apelido:";
const ID_KEY: &str = "p:id:";
const PENDING_KEY: &str = "p:pending:";
const SEEDED_KEY: &str = "p:seeded:";
const REBUILD_LOCK_KEY: &str = "p:rebuild:";

/// How long a person stays in the Redis cache. The inserter writes it to PostgreSQL within a
/// flush (milliseconds) of its 201; an hour covers any backlog after a crash many times over
/// while keeping Redis from holding every person of a long run twice.
const CACHE_TTL_SECS: u32 = 3600;

/// How long a reservation holds its apelido until [`claim`] makes it permanent. Whoever
/// reserved and then vanished (a replica killed before its publish, or unable to undo a failed
/// one) frees the apelido after this. Far longer than a publish normally takes (two tries of
/// connect and confirm timeouts, 16 s); one that takes longer still is safe, as the claim then
/// takes the key again if it is free and answers 503 if another person has it.
pub const RESERVATION_LEASE: Duration = Duration::from_secs(60);

/// Reserves the apelido for the lease and caches the person in one atomic round trip; marks it
/// pending. Returns 1 when reserved, 0 when the apelido was taken, -1 when the apelido keys
/// may not cover PostgreSQL (no `p:seeded:<queue>`: Redis lost its data). Checked here rather
/// than by a command of its own: no extra round trip, and no wipe can fall between the check
/// and the reservation. Run by EVALSHA: the script's text crosses the wire once per
/// connection, not on every POST.
static RESERVE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('EXISTS', KEYS[4]) == 0 then
  return -1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[5]) then
  redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
  return 1
end
return 0",
    )
});

/// For each apelido key (KEYS) and id (ARGV), 1 when the apelido is now that id's for good:
/// it held the id (its lease is dropped) or nobody (the id takes it). 0 when another id holds
/// it.
static CLAIM: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local owned = {}
for i, key in ipairs(KEYS) do
  local owner = redis.call('GET', key)
  if owner == ARGV[i] then
    redis.call('PERSIST', key)
    owned[i] = 1
  elseif not owner then
    redis.call('SET', key, ARGV[i])
    owned[i] = 1
  else
    owned[i] = 0
  end
end
return owned",
    )
});

/// Undoes RESERVE for a person that could not be published — only while the key is still its
/// lease. A permanent key means the inserter has already written the person (a publish whose
/// confirm was lost reached the queue after all): undoing it then would free an apelido
/// PostgreSQL holds, and the next POST reusing it would get a 201 the table refuses.
static RELEASE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('PTTL', KEYS[1]) > 0 then
  redis.call('DEL', KEYS[1])
  redis.call('DEL', KEYS[2])
  redis.call('ZREM', KEYS[3], ARGV[1])
end
return 0",
    )
});

/// The Redis key holding `apelido`'s owner (tests read it too).
pub fn apelido_key(apelido: &str) -> String {
    format!("{APELIDO_KEY}{apelido}")
}

/// The Redis key caching person `id` (tests delete it to force a read from PostgreSQL).
pub fn id_key(id: &Uuid) -> String {
    format!("{ID_KEY}{id}")
}

/// The Redis set of `queue`'s pending people (tests delete it with their queue).
pub fn pending_key(queue: &str) -> String {
    format!("{PENDING_KEY}{queue}")
}

/// The Redis key whose presence says the apelido keys cover PostgreSQL, for `queue`'s replicas.
pub fn seeded_key(queue: &str) -> String {
    format!("{SEEDED_KEY}{queue}")
}

/// The Redis key of the lock one replica of `queue`'s stack holds while it rebuilds.
pub fn rebuild_lock_key(queue: &str) -> String {
    format!("{REBUILD_LOCK_KEY}{queue}")
}

/// What [`reserve`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// The apelido is this person's for the lease.
    Reserved,
    /// Another person holds the apelido.
    Taken,
    /// Redis lost its data: its apelido keys may miss apelidos PostgreSQL has, so nothing was
    /// reserved (see `people::rebuild`).
    IndexMissing,
}

/// Reserves `person`'s apelido and caches it.
pub async fn reserve(
    redis: &deadpool_redis::Pool,
    queue: &str,
    person: &Person,
) -> Result<Reservation, PeopleError> {
    let mut conn = infra::redis::checkout(redis).await?;
    let reserved: i64 = RESERVE
        .key(apelido_key(person.person.apelido.as_str()))
        .key(id_key(&person.id))
        .key(pending_key(queue))
        .key(seeded_key(queue))
        .arg(person.id.to_string())
        .arg(&person.json[..])
        .arg(CACHE_TTL_SECS)
        .arg(now_ms())
        .arg(RESERVATION_LEASE.as_millis() as u64)
        .invoke_async(&mut *conn)
        .await?;
    Ok(match reserved {
        1 => Reservation::Reserved,
        0 => Reservation::Taken,
        _ => Reservation::IndexMissing,
    })
}

/// Frees the apelido and drops the cached person (only if the reservation is still ours).
pub async fn release(
    redis: &deadpool_redis::Pool,
    queue: &str,
    person: &Person,
) -> Result<(), PeopleError> {
    let mut conn = infra::redis::checkout(redis).await?;
    let _: i64 = RELEASE
        .key(apelido_key(person.person.apelido.as_str()))
        .key(id_key(&person.id))
        .key(pending_key(queue))
        .arg(person.id.to_string())
        .invoke_async(&mut *conn)
        .await?;
    Ok(())
}

/// The cached JSON of person `id`, if Redis has it.
pub async fn cached(
    redis: &deadpool_redis::Pool,
    id: &Uuid,
) -> Result<Option<Vec<u8>>, PeopleError> {
    let mut conn = infra::redis::checkout(redis).await?;
    let json: Option<Vec<u8>> = redis::cmd("GET")
        .arg(id_key(id))
        .query_async(&mut *conn)
        .await?;
    Ok(json)
}

/// True once the inserter of `queue` has settled every person reserved for it.
pub async fn drained(redis: &deadpool_redis::Pool, queue: &str) -> Result<bool, PeopleError> {
    Ok(backlog(redis, queue).await? == 0)
}

/// People answered 201 for `queue` and not yet in PostgreSQL (queued, or in the inserter's
/// batch), reserved within [`PENDING_HORIZON`].
pub async fn backlog(redis: &deadpool_redis::Pool, queue: &str) -> Result<u64, PeopleError> {
    let mut conn = infra::redis::checkout(redis).await?;
    let pending: u64 = redis::cmd("ZCOUNT")
        .arg(pending_key(queue))
        .arg(horizon_ms())
        .arg("+inf")
        .query_async(&mut *conn)
        .await?;
    Ok(pending)
}

/// How long a reserved person counts as pending. A replica killed between the reservation and
/// the publish leaves an id that nothing will ever settle; past this age it is taken for such
/// a ghost, so it holds no `wait` back (and the inserter's next settle removes it). Only an
/// inserter stopped for longer than this makes a `wait` return before its people are written.
pub const PENDING_HORIZON: Duration = Duration::from_secs(300);

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn horizon_ms() -> u64 {
    now_ms().saturating_sub(PENDING_HORIZON.as_millis() as u64)
}

/// Makes each of `people`'s apelido theirs for good, and says for which it worked: false
/// where Redis holds the apelido for *another* id. A replica claims its person once the
/// publish is confirmed, before answering 201; the inserter claims each person it is about to
/// write, which also covers a replica that failed between its confirm and its claim. A person
/// that loses its apelido to another id was answered 503 (its publish looked lost, so its
/// reservation was undone, and a retry took the apelido again): writing it would refuse the
/// person answered 201. A missing key (undone and not retaken, or Redis emptied) is taken
/// again, so Redis goes on refusing an apelido PostgreSQL has.
pub async fn claim(
    redis: &deadpool_redis::Pool,
    people: &[Person],
) -> Result<Vec<bool>, PeopleError> {
    if people.is_empty() {
        return Ok(Vec::new());
    }
    let mut conn = infra::redis::checkout(redis).await?;
    let mut claim = CLAIM.prepare_invoke();
    let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
    for person in people {
        claim
            .key(apelido_key(person.person.apelido.as_str()))
            .arg(&*person.id.hyphenated().encode_lower(&mut id));
    }
    let owned: Vec<i64> = claim.invoke_async(&mut *conn).await?;
    Ok(owned.into_iter().map(|o| o == 1).collect())
}

/// Marks people just committed (or dead-lettered) by the inserter of `queue` as settled.
pub async fn settle(
    redis: &deadpool_redis::Pool,
    queue: &str,
    people: &[Person],
) -> Result<(), PeopleError> {
    if people.is_empty() {
        return Ok(());
    }
    let mut conn = infra::redis::checkout(redis).await?;
    let key = pending_key(queue);
    let mut zrem = redis::cmd("ZREM");
    zrem.arg(&key);
    let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
    for person in people {
        zrem.arg(&*person.id.hyphenated().encode_lower(&mut id));
    }
    // One round trip: the settled ids, and the ghosts past the horizon.
    let _: (i64, i64) = redis::pipe()
        .add_command(zrem)
        .cmd("ZREMRANGEBYSCORE")
        .arg(&key)
        .arg("-inf")
        .arg(format!("({}", horizon_ms()))
        .query_async(&mut *conn)
        .await?;
    Ok(())
}

/// How long a rebuild holds its stack's lock: the wait for the queue to drain
/// (`people::rebuild::DRAIN_LIMIT`, 30 s) plus the copy, which takes seconds for a table of
/// a million people. The lock only spares the stack duplicate work — two rebuilds at once set
/// the same keys NX and the same sentinel — so a rebuild that outlives it is harmless, and a
/// replica killed mid-rebuild holds its stack's rebuild back for no longer than this.
pub const REBUILD_LOCK_LEASE: Duration = Duration::from_secs(60);

/// Deletes the rebuild lock only if `ARGV[1]` (the rebuilding replica's token) still holds it:
/// a rebuild that outlived its lease must not free a newer one's.
static UNLOCK: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0",
    )
});

/// True when `queue`'s sentinel says the apelido keys cover PostgreSQL.
pub async fn is_seeded(redis: &deadpool_redis::Pool, queue: &str) -> Result<bool, PeopleError> {
    let mut conn = infra::redis::checkout(redis).await?;
    let n: i64 = redis::cmd("EXISTS")
        .arg(seeded_key(queue))
        .query_async(&mut *conn)
        .await?;
    Ok(n == 1)
}

/// Sets `queue`'s sentinel, without a TTL (`volatile-lru` never evicts it): call it only once
/// every apelido in PostgreSQL has its key.
pub async fn mark_seeded(redis: &deadpool_redis::Pool, queue: &str) -> Result<(), PeopleError> {
    let mut conn = infra::redis::checkout(redis).await?;
    let () = redis::cmd("SET")
        .arg(seeded_key(queue))
        .arg(1)
        .query_async(&mut *conn)
        .await?;
    Ok(())
}

/// Takes `queue`'s rebuild lock for `token` (SET NX PX [`REBUILD_LOCK_LEASE`]); false when
/// another replica holds it.
pub async fn lock_rebuild(
    redis: &deadpool_redis::Pool,
    queue: &str,
    token: &str,
) -> Result<bool, PeopleError> {
    let mut conn = infra::redis::checkout(redis).await?;
    let taken: Option<String> = redis::cmd("SET")
        .arg(rebuild_lock_key(queue))
        .arg(token)
        .arg("NX")
        .arg("PX")
        .arg(REBUILD_LOCK_LEASE.as_millis() as u64)
        .query_async(&mut *conn)
        .await?;
    Ok(taken.is_some())
}

/// Releases `queue`'s rebuild lock if `token` still holds it.
pub async fn unlock_rebuild(
    redis: &deadpool_redis::Pool,
    queue: &str,
    token: &str,
) -> Result<(), PeopleError> {
    let mut conn = infra::redis::checkout(redis).await?;
    let _: i64 = UNLOCK
        .key(rebuild_lock_key(queue))
        .arg(token)
        .invoke_async(&mut *conn)
        .await?;
    Ok(())
}

/// Copies every apelido in PostgreSQL back into Redis, `p:apelido:<apelido>` → id with SET NX
/// (a key already there stays: the inserter's claim of the same person, written meanwhile),
/// `chunk` SETs to a pipeline. The rows are streamed (the driver reads ahead one message at a
/// time), so a replica holds one chunk, never the table. Returns the rows read and the keys
/// that were missing and are now set.
pub async fn restore_apelidos(
    pg: &tokio_postgres::Client,
    redis: &deadpool_redis::Pool,
    chunk: usize,
) -> Result<(u64, u64), PeopleError> {
    use futures_util::TryStreamExt;
    let none: [&(dyn tokio_postgres::types::ToSql + Sync); 0] = [];
    let rows = pg.query_raw(APELIDOS_SQL, none).await?;
    futures_util::pin_mut!(rows);
    let mut conn = infra::redis::checkout(redis).await?;
    let (mut read, mut restored) = (0u64, 0u64);
    let mut pipe = redis::pipe();
    let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let mut queued = 0;
    loop {
        let row = rows.try_next().await?;
        if let Some(row) = &row {
            let (apelido, person): (&str, Uuid) = (row.get(0), row.get(1));
            pipe.cmd("SET")
                .arg(apelido_key(apelido))
                .arg(&*person.hyphenated().encode_lower(&mut id))
                .arg("NX");
            queued += 1;
            read += 1;
        }
        if queued > 0 && (queued >= chunk || row.is_none()) {
            let set: Vec<redis::Value> = pipe.query_async(&mut *conn).await?;
            restored += set
                .iter()
                .filter(|v| !matches!(v, redis::Value::Nil))
                .count() as u64;
            pipe.clear();
            queued = 0;
        }
        if row.is_none() {
            return Ok((read, restored));
        }
    }
}

/// Deletes every people key (SCAN + DEL, never KEYS, so a big keyspace does not block Redis),
/// then sets `queue`'s sentinel: `arena reset` calls it after emptying the table, so the
/// (no) apelido keys cover the (empty) table and POSTs need no rebuild.
pub async fn reset_redis(url: &str, queue: &str) -> Result<u64, crate::BoxError> {
    let pool = infra::redis::pool(url, 1)?;
    let deleted = delete_people_keys(&pool).await?;
    mark_seeded(&pool, queue).await?;
    Ok(deleted)
}

async fn delete_people_keys(pool: &deadpool_redis::Pool) -> Result<u64, crate::BoxError> {
    let mut conn = pool.get().await?;
    let mut cursor: u64 = 0;
    let mut deleted = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{KEY_PREFIX}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut *conn)
            .await?;
        if !keys.is_empty() {
            deleted += redis::cmd("DEL")
                .arg(&keys)
                .query_async::<u64>(&mut *conn)
                .await?;
        }
        if next == 0 {
            return Ok(deleted);
        }
        cursor = next;
    }
}

// --- PostgreSQL -----------------------------------------------------------------------------

const FIND_SQL: &str = "SELECT json FROM pessoas WHERE id = $1";
/// A term with a probe: the index finds candidates by the probe (sql/V6__people_search.sql).
const SEARCH_PROBE_SQL: &str = "SELECT people_search($1, $2)";
/// A term without trigrams (`ab`, `C# e Go`): the index cannot narrow it, a scan stops at the
/// 50th match. `busca || ''` so a generic plan never picks the index, which it would read whole.
const SEARCH_SCAN_SQL: &str = "SELECT json FROM pessoas WHERE (busca || '') LIKE $1 LIMIT 50";
const COUNT_SQL: &str = "SELECT count(*) FROM pessoas";
/// Prepared on every connection a worker opens at start (`infra::postgres::warm`).
pub const PREPARED: &[&str] = &[FIND_SQL, SEARCH_PROBE_SQL, SEARCH_SCAN_SQL, COUNT_SQL];
/// What [`restore_apelidos`] copies back into Redis after Redis lost its data.
const APELIDOS_SQL: &str = "SELECT apelido, id FROM pessoas";
/// One statement per batch; `ON CONFLICT (id) DO NOTHING` makes a redelivered batch a no-op.
/// Only the id: a different person with a taken apelido (possible only if Redis lost its
/// reservations) must fail loudly and reach the dead-letter queue, not vanish.
const INSERT_SQL: &str = "INSERT INTO pessoas (id, apelido, nome, nascimento, busca, json) \
     SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::date[], $5::text[], $6::text[]) \
     ON CONFLICT (id) DO NOTHING";

/// `TRUNCATE` for `arena reset`.
pub const RESET_SQL: &str = "TRUNCATE pessoas";

/// Person `id`'s JSON from PostgreSQL.
pub async fn find(pg: &deadpool_postgres::Pool, id: &Uuid) -> Result<Option<String>, PeopleError> {
    let client = infra::postgres::checkout(pg).await?;
    let stmt = client.prepare_cached(FIND_SQL).await?;
    let row = client.query_opt(&stmt, &[id]).await?;
    Ok(row.map(|r| r.get(0)))
}

/// The JSON array of at most 50 people matching `term`, concatenated from the stored JSON.
pub async fn search(
    pg: &deadpool_postgres::Pool,
    term: &SearchTerm,
) -> Result<Vec<u8>, PeopleError> {
    let client = infra::postgres::checkout(pg).await?;
    let rows = match term.probe() {
        Some(probe) => {
            let stmt = client.prepare_cached(SEARCH_PROBE_SQL).await?;
            client.query(&stmt, &[&probe, &term.like_pattern()]).await?
        }
        None => {
            let stmt = client.prepare_cached(SEARCH_SCAN_SQL).await?;
            client.query(&stmt, &[&term.like_pattern()]).await?
        }
    };
    let mut body = Vec::with_capacity(2 + rows.len() * 160);
    body.push(b'[');
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(row.get::<_, &str>(0).as_bytes());
    }
    body.push(b']');
    Ok(body)
}

/// People in PostgreSQL.
pub async fn count(pg: &deadpool_postgres::Pool) -> Result<i64, PeopleError> {
    let client = infra::postgres::checkout(pg).await?;
    let stmt = client.prepare_cached(COUNT_SQL).await?;
    Ok(client.query_one(&stmt, &[]).await?.get(0))
}

/// The batch insert, prepared once per inserter connection.
pub async fn prepare_insert(
    client: &tokio_postgres::Client,
) -> Result<tokio_postgres::Statement, tokio_postgres::Error> {
    client.prepare(INSERT_SQL).await
}

/// Writes `people` in one statement; returns the rows actually inserted (redeliveries and
/// duplicate apelidos are skipped).
pub async fn insert_batch(
    client: &tokio_postgres::Client,
    stmt: &tokio_postgres::Statement,
    people: &[Person],
) -> Result<u64, tokio_postgres::Error> {
    let mut ids = Vec::with_capacity(people.len());
    let mut apelidos = Vec::with_capacity(people.len());
    let mut nomes = Vec::with_capacity(people.len());
    let mut nascimentos = Vec::with_capacity(people.len());
    let mut buscas = Vec::with_capacity(people.len());
    let mut jsons = Vec::with_capacity(people.len());
    for p in people {
        ids.push(p.id);
        apelidos.push(p.person.apelido.as_str());
        nomes.push(p.person.nome.as_str());
        nascimentos.push(p.person.nascimento.date());
        buscas.push(p.person.search_text());
        // from_message and with_id only ever hold JSON that was valid UTF-8 text.
        jsons.push(std::str::from_utf8(&p.json).unwrap_or_default());
    }
    client
        .execute(
            stmt,
            &[&ids, &apelidos, &nomes, &nascimentos, &buscas, &jsons],
        )
        .await
}

// --- RabbitMQ -------------------------------------------------------------------------------

/// A publish that has not been confirmed after this long is answered 503: the client retries
/// rather than waiting on a broker that is restarting.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
/// Opening a connection to a broker that is up takes milliseconds; a stopped one refuses at once.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// After a failed connect, publishes within this long fail at once with the same error rather
/// than each trying again: every POST of an outage would otherwise open a connection attempt
/// (and lapin keeps a little of each one that fails; see `infra::amqp::connect`). Short enough
/// that a broker back up is used within a fifth of a second.
const RECONNECT_PAUSE: Duration = Duration::from_millis(200);

/// Name of the dead-letter queue of `queue`.
pub fn dead_letter_queue(queue: &str) -> String {
    format!("{queue}.dead")
}

/// Declares the durable people queue and its dead-letter queue. Publisher and inserter both
/// call it with the same arguments (RabbitMQ refuses a redeclaration that differs).
pub async fn declare_queues(channel: &Channel, queue: &str) -> lapin::Result<()> {
    let dead = dead_letter_queue(queue);
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(dead.as_str().into(), durable, FieldTable::default())
        .await?;
    let mut args = FieldTable::default();
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString("".into()),
    );
    args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(dead.into()),
    );
    channel.queue_declare(queue.into(), durable, args).await?;
    Ok(())
}

/// Messages in `queue` waiting for a consumer (those delivered to the inserter and not yet
/// acked are not counted). A passive declare, on a channel of its own: it creates nothing, and
/// the broker closes the channel when the queue does not exist — a queue nothing was ever
/// published to, so it holds none.
pub async fn queue_depth(connection: &Connection, queue: &str) -> lapin::Result<u32> {
    let channel = connection.create_channel().await?;
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    match channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
    {
        Ok(q) => {
            let _ = channel.close(200, "counted".into()).await;
            Ok(q.message_count())
        }
        // 404 NOT_FOUND.
        Err(e) if matches!(e.kind(), lapin::ErrorKind::ProtocolError(amqp) if amqp.get_id() == 404) => {
            Ok(0)
        }
        Err(e) => Err(e),
    }
}

/// One broker connection and confirm-mode channel per worker, opened on first use and reopened
/// after the broker or the connection goes away (the next publish after a restart reconnects).
pub struct Publisher {
    url: String,
    name: String,
    queue: ShortString,
    /// The queue as the `queue` label of `arena_publish_total`.
    label: &'static str,
    slot: Mutex<Slot>,
    /// Numbers each link opened, so a publish that failed drops its own link and never a
    /// fresh one that concurrent publishes just opened and are waiting on.
    generations: AtomicU64,
}

/// The current link, and the last failed attempt to open one.
#[derive(Default)]
struct Slot {
    current: Option<Link>,
    /// When the last connect failed, and why: repeated to publishes for `RECONNECT_PAUSE`.
    failed: Option<(Instant, lapin::Error)>,
}

struct Link {
    connection: Connection,
    channel: Channel,
    generation: u64,
}

impl Link {
    fn usable(&self) -> bool {
        self.connection.status().connected() && self.channel.status().connected()
    }
}

impl Publisher {
    pub fn new(url: &str, name: &str, queue: &str) -> Self {
        Self {
            url: url.to_owned(),
            name: name.to_owned(),
            queue: queue.into(),
            label: metrics::intern(queue),
            slot: Mutex::new(Slot::default()),
            generations: AtomicU64::new(0),
        }
    }

    /// The current channel and its link's generation, opening a link if there is no usable one.
    async fn channel(&self) -> Result<(Channel, u64), PeopleError> {
        let mut slot = self.slot.lock().await;
        if let Some(l) = slot.current.as_ref().filter(|l| l.usable()) {
            return Ok((l.channel.clone(), l.generation));
        }
        if let Some(old) = slot.current.take() {
            close_quietly(old);
        }
        if let Some((at, e)) = &slot.failed {
            if at.elapsed() < RECONNECT_PAUSE {
                return Err(PeopleError::Broker(e.clone()));
            }
        }
        let connect = async {
            let connection = infra::amqp::connect(&self.url, &self.name).await?;
            let channel = connection.create_channel().await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            declare_queues(&channel, self.queue.as_str()).await?;
            lapin::Result::Ok(Link {
                connection,
                channel,
                generation: self.generations.fetch_add(1, Ordering::Relaxed),
            })
        };
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .unwrap_or_else(|_| {
                Err(lapin::Error::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connecting to RabbitMQ timed out",
                )))
            });
        let fresh = match connected {
            Ok(fresh) => fresh,
            Err(e) => {
                slot.failed = Some((Instant::now(), e.clone()));
                return Err(e.into());
            }
        };
        let opened = (fresh.channel.clone(), fresh.generation);
        *slot = Slot {
            current: Some(fresh),
            failed: None,
        };
        Ok(opened)
    }

    /// Publishes `body` as a persistent message and waits for the broker's confirm; counts
    /// the outcome in `arena_publish_total` (a broker that cannot be reached is a failure).
    ///
    /// A broken link or a missing confirm leaves the outcome unknown: the message may be queued
    /// all the same. Freeing the apelido then could let a retry take it while the first person
    /// still arrives, so the same body (same id) is published once more on a fresh link; the
    /// inserter's insert is idempotent by id, so a duplicate costs nothing. Only a definite
    /// answer (refused, or still unknown after the second try) is a failure. (Should the first
    /// copy arrive after all, the inserter drops it if the apelido went to someone else.)
    pub async fn publish(&self, body: &[u8]) -> Result<(), PeopleError> {
        let mut outcome = self.publish_confirmed(body).await;
        if matches!(outcome, Err(ref e) if !matches!(e, PeopleError::Refused)) {
            outcome = self.publish_confirmed(body).await;
        }
        match outcome {
            Ok(()) => metrics::publish_confirmed(self.label),
            Err(_) => metrics::publish_failed(self.label),
        }
        outcome
    }

    /// One attempt. An unknown outcome drops the link it used (a link that lost a confirm is not
    /// trusted again), so the next attempt opens a fresh one.
    async fn publish_confirmed(&self, body: &[u8]) -> Result<(), PeopleError> {
        let (channel, generation) = self.channel().await?;
        let publish = async {
            let confirm = channel
                .basic_publish(
                    "".into(),
                    self.queue.clone(),
                    // mandatory: a message no queue takes comes back instead of vanishing.
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    body,
                    BasicProperties::default()
                        .with_delivery_mode(2)
                        .with_content_type("application/json".into()),
                )
                .await?;
            confirm.await
        };
        match tokio::time::timeout(PUBLISH_TIMEOUT, publish).await {
            Ok(Ok(Confirmation::Ack(None))) => Ok(()),
            Ok(Ok(_)) => Err(PeopleError::Refused),
            Ok(Err(e)) => {
                self.forget(generation).await;
                Err(e.into())
            }
            Err(_) => {
                self.forget(generation).await;
                Err(PeopleError::NotConfirmed(
                    "RabbitMQ did not confirm in time",
                ))
            }
        }
    }

    /// Drops link `generation` if it is still the current one; a newer link stays.
    async fn forget(&self, generation: u64) {
        let mut slot = self.slot.lock().await;
        if slot
            .current
            .as_ref()
            .is_some_and(|l| l.generation == generation)
        {
            if let Some(old) = slot.current.take() {
                close_quietly(old);
            }
        }
    }
}

fn close_quietly(link: Link) {
    tokio::spawn(async move {
        let _ = link.connection.close(200, "reconnecting".into()).await;
    });
}
