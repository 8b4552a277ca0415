//! People in-process against the real Redis, RabbitMQ and PostgreSQL. Each test has its own
//! queue (`PEOPLE_QUEUE`) — and so its own pending set, apelido sentinel and rebuild lock in
//! Redis — its own inserter on its own runtime, and unique apelidos, so they run in parallel
//! with each other and with a running stack.
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use arena::config::Config;
use arena::infra;
use arena::lifecycle::Shutdown;
use arena::people::rebuild::{self, Outcome};
use arena::people::store::{self, Reservation};
use arena::people::{model::NewPerson, model::Person};
use arena::server::TestServer;
use deadpool_redis::redis;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::BasicProperties;
use uuid::Uuid;

fn config(test: &str) -> Config {
    static MIGRATED: OnceLock<()> = OnceLock::new();
    let mut config = Config::from_env();
    MIGRATED.get_or_init(|| {
        infra::block_on(infra::postgres::migrate(&config.database_url)).expect("migrate")
    });
    config.people_queue = format!("test.people.{test}.{}", &Uuid::new_v4().to_string()[..8]);
    // A new queue on a Redis whose apelido keys are whole (the tests' apelidos are their own):
    // no rebuild for every test. The tests of the rebuild drop this sentinel themselves.
    let redis = infra::redis::pool(&config.redis_url, 1).unwrap();
    infra::block_on(store::mark_seeded(&redis, &config.people_queue)).unwrap();
    config
}

/// A unique apelido (≤ 32 characters).
fn apelido() -> String {
    Uuid::new_v4().simple().to_string()[..24].to_owned()
}

fn person_body(apelido: &str) -> String {
    format!(
        r#"{{"apelido":"{apelido}","nome":"Teste da Silva","nascimento":"1990-05-17","stack":["Rust","PostgreSQL"]}}"#
    )
}

/// A person with `apelido` and a new id, as a replica publishes it.
fn person(apelido: &str) -> Person {
    NewPerson::parse(&mut person_body(apelido).into_bytes())
        .unwrap()
        .with_id(Uuid::new_v4())
}

/// A POST answered 503 because its confirm was lost twice: its reservation was undone, yet its
/// message reached the queue all the same.
fn answered_503_but_queued(config: &Config, apelido: &str) -> Person {
    let person = person(apelido);
    let redis = infra::redis::pool(&config.redis_url, 1).unwrap();
    infra::block_on(async {
        assert_eq!(
            store::reserve(&redis, &config.people_queue, &person)
                .await
                .unwrap(),
            Reservation::Reserved
        );
        store::release(&redis, &config.people_queue, &person)
            .await
            .unwrap();
    });
    publish_raw(config, &[&person.json]);
    person
}

struct Resp {
    status: u16,
    body: String,
    location: Option<String>,
    content_type: Option<String>,
}

fn send(method: &str, url: &str, body: Option<&str>) -> Resp {
    let req = ureq::request(method, url);
    let result = match body {
        Some(b) => req.set("content-type", "application/json").send_string(b),
        None => req.call(),
    };
    let r = match result {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{url}: {e}"),
    };
    Resp {
        status: r.status(),
        location: r.header("location").map(str::to_owned),
        content_type: r.header("content-type").map(str::to_owned),
        body: r.into_string().unwrap(),
    }
}

fn create(app: &TestServer, apelido: &str) -> Uuid {
    let r = send("POST", &app.url("/pessoas"), Some(&person_body(apelido)));
    assert_eq!(r.status, 201, "{}", r.body);
    let location = r.location.expect("a 201 has a Location");
    Uuid::parse_str(location.strip_prefix("/pessoas/").unwrap()).unwrap()
}

/// An inserter on its own thread and runtime; stopped (flush + ack) when dropped.
struct Inserter {
    shutdown: Shutdown,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Inserter {
    fn start(config: &Config) -> Self {
        let shutdown = Shutdown::default();
        let (config, s) = (config.clone(), shutdown.clone());
        let thread = std::thread::spawn(move || {
            infra::block_on(arena::people::inserter::consume(&config, &s))
        });
        Self {
            shutdown,
            thread: Some(thread),
        }
    }

    fn stop(&mut self) {
        self.shutdown.signal();
        if let Some(t) = self.thread.take() {
            t.join().expect("the inserter thread does not panic");
        }
    }
}

impl Drop for Inserter {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How many of `ids` PostgreSQL holds.
fn in_postgres(config: &Config, ids: &[Uuid]) -> i64 {
    infra::block_on(async {
        let client = infra::postgres::connect(&config.database_url)
            .await
            .unwrap();
        client
            .query_one("SELECT count(*) FROM pessoas WHERE id = ANY($1)", &[&ids])
            .await
            .unwrap()
            .get(0)
    })
}

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}

/// Publishes raw bytes to the test's queue, as a replica would.
fn publish_raw(config: &Config, bodies: &[&[u8]]) {
    infra::block_on(async {
        let conn = infra::amqp::connect(&config.amqp_url, "people-test")
            .await
            .unwrap();
        let ch = conn.create_channel().await.unwrap();
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        store::declare_queues(&ch, &config.people_queue)
            .await
            .unwrap();
        for body in bodies {
            let confirm = ch
                .basic_publish(
                    "".into(),
                    config.people_queue.as_str().into(),
                    BasicPublishOptions::default(),
                    body,
                    BasicProperties::default().with_delivery_mode(2),
                )
                .await
                .unwrap();
            assert!(confirm.await.unwrap().is_ack());
        }
        let _ = conn.close(200, "done".into()).await;
    })
}

/// Ready messages in `queue`.
fn queue_depth(config: &Config, queue: &str) -> u32 {
    infra::block_on(async {
        let conn = infra::amqp::connect(&config.amqp_url, "people-test")
            .await
            .unwrap();
        let ch = conn.create_channel().await.unwrap();
        let q = ch
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        let _ = conn.close(200, "done".into()).await;
        q.message_count()
    })
}

/// Deletes the test's queues (they are durable and would outlive the test), its pending set
/// and its sentinel.
fn delete_queues(config: &Config) {
    infra::block_on(async {
        let pool = infra::redis::pool(&config.redis_url, 1).unwrap();
        let mut conn = pool.get().await.unwrap();
        let _: i64 = redis::cmd("DEL")
            .arg(store::pending_key(&config.people_queue))
            .arg(store::seeded_key(&config.people_queue))
            .query_async(&mut *conn)
            .await
            .unwrap();
        let Ok(conn) = infra::amqp::connect(&config.amqp_url, "people-test").await else {
            return;
        };
        let ch = conn.create_channel().await.unwrap();
        for q in [
            config.people_queue.clone(),
            store::dead_letter_queue(&config.people_queue),
        ] {
            let _ = ch
                .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
        let _ = conn.close(200, "done".into()).await;
    })
}

#[test]
fn fifty_parallel_posts_of_one_apelido_create_exactly_one_person() {
    let config = config("dedup");
    let (a, b) = (
        TestServer::start(config.clone()),
        TestServer::start(config.clone()),
    );
    let body = person_body(&apelido());
    let urls = [a.url("/pessoas"), b.url("/pessoas")];
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..50)
            .map(|i| {
                let (url, body) = (&urls[i % 2], &body);
                s.spawn(move || send("POST", url, Some(body)).status)
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|&&s| s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&s| s == 422).count(),
        49,
        "{statuses:?}"
    );
    delete_queues(&config);
}

#[test]
fn a_created_person_is_readable_at_once_from_another_replica_then_from_postgres() {
    let config = config("ryw");
    let (a, b) = (
        TestServer::start(config.clone()),
        TestServer::start(config.clone()),
    );
    let apelido = apelido();
    let created = send("POST", &a.url("/pessoas"), Some(&person_body(&apelido)));
    assert_eq!(created.status, 201);
    let location = created.location.clone().unwrap();
    let read = send("GET", &b.url(&location), None);
    assert_eq!(read.status, 200);
    assert_eq!(read.body, created.body);
    let v: serde_json::Value = serde_json::from_str(&read.body).unwrap();
    assert_eq!(v["apelido"], apelido.as_str());
    assert_eq!(v["stack"], serde_json::json!(["Rust", "PostgreSQL"]));

    // Once inserted and gone from the cache, PostgreSQL answers with the same JSON.
    let id: Uuid = v["id"].as_str().unwrap().parse().unwrap();
    let _inserter = Inserter::start(&config);
    assert!(wait_until(Duration::from_secs(10), || in_postgres(
        &config,
        &[id]
    ) == 1));
    infra::block_on(async {
        let pool = infra::redis::pool(&config.redis_url, 1).unwrap();
        let mut conn = pool.get().await.unwrap();
        let _: i64 = redis::cmd("DEL")
            .arg(store::id_key(&id))
            .query_async(&mut *conn)
            .await
            .unwrap();
    });
    let from_pg = send("GET", &b.url(&location), None);
    assert_eq!(from_pg.status, 200);
    assert_eq!(from_pg.body, created.body);
    delete_queues(&config);
}

#[test]
fn a_batch_is_written_when_it_reaches_the_batch_size_and_the_rest_on_stop() {
    let mut config = config("size");
    config.inserter_batch_size = 5;
    config.inserter_flush_ms = 60_000;
    let app = TestServer::start(config.clone());
    let mut inserter = Inserter::start(&config);
    let full: Vec<Uuid> = (0..5).map(|_| create(&app, &apelido())).collect();
    assert!(
        wait_until(Duration::from_secs(10), || in_postgres(&config, &full) == 5),
        "a full batch is written without waiting for the flush interval"
    );
    let partial: Vec<Uuid> = (0..3).map(|_| create(&app, &apelido())).collect();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        in_postgres(&config, &partial),
        0,
        "a partial batch waits for the interval"
    );
    inserter.stop();
    assert_eq!(
        in_postgres(&config, &partial),
        3,
        "stopping flushes the batch in hand"
    );
    assert_eq!(queue_depth(&config, &config.people_queue), 0, "and acks it");
    delete_queues(&config);
}

#[test]
fn a_partial_batch_is_written_after_the_flush_interval() {
    let mut config = config("time");
    config.inserter_batch_size = 1000;
    config.inserter_flush_ms = 200;
    let app = TestServer::start(config.clone());
    let _inserter = Inserter::start(&config);
    let ids: Vec<Uuid> = (0..3).map(|_| create(&app, &apelido())).collect();
    let start = Instant::now();
    assert!(wait_until(Duration::from_secs(5), || in_postgres(
        &config, &ids
    ) == 3));
    assert!(start.elapsed() < Duration::from_secs(3));
    delete_queues(&config);
}

#[test]
fn a_redelivered_person_is_inserted_once() {
    let mut config = config("redeliver");
    config.inserter_flush_ms = 100;
    let Person { id, json, .. } = person(&apelido());
    // Twice, as after a crash between commit and ack; the second time in its own batch too.
    publish_raw(&config, &[&json, &json]);
    let inserter = Inserter::start(&config);
    assert!(wait_until(Duration::from_secs(10), || queue_depth(
        &config,
        &config.people_queue
    ) == 0));
    drop(inserter);
    publish_raw(&config, &[&json]);
    let inserter = Inserter::start(&config);
    assert!(wait_until(Duration::from_secs(10), || queue_depth(
        &config,
        &config.people_queue
    ) == 0));
    drop(inserter);
    assert_eq!(in_postgres(&config, &[id]), 1);
    assert_eq!(
        queue_depth(&config, &store::dead_letter_queue(&config.people_queue)),
        0
    );
    delete_queues(&config);
}

#[test]
fn a_poison_message_goes_to_the_dead_letter_queue_and_the_rest_are_inserted() {
    let config = config("poison");
    let Person { id, json: good, .. } = person(&apelido());
    publish_raw(
        &config,
        &[b"not json at all", &good, br#"{"id":"x","apelido":1}"#],
    );
    let _inserter = Inserter::start(&config);
    assert!(wait_until(Duration::from_secs(10), || in_postgres(
        &config,
        &[id]
    ) == 1));
    let dead = store::dead_letter_queue(&config.people_queue);
    assert!(
        wait_until(Duration::from_secs(5), || queue_depth(&config, &dead) == 2),
        "both poison messages are dead-lettered, not redelivered"
    );
    assert_eq!(queue_depth(&config, &config.people_queue), 0);
    delete_queues(&config);
}

#[test]
fn the_people_routes_answer_the_contract() {
    let config = config("contract");
    let app = TestServer::start(config.clone());
    let post = |body: &str| send("POST", &app.url("/pessoas"), Some(body));
    for (body, status) in [
        ("nope".to_owned(), 400),
        (
            r#"{"apelido":"a","nome":1,"nascimento":"2000-01-01"}"#.to_owned(),
            400,
        ),
        (
            r#"{"apelido":"a","nome":"a","nascimento":"2000-01-01","stack":[1,"PHP"]}"#.to_owned(),
            400,
        ),
        (
            r#"{"apelido":null,"nome":"a","nascimento":"2000-01-01"}"#.to_owned(),
            422,
        ),
        (
            r#"{"apelido":"a","nome":"a","nascimento":"2001-02-29"}"#.to_owned(),
            422,
        ),
        (
            format!(
                r#"{{"apelido":"{}","nome":"a","nascimento":"2000-01-01"}}"#,
                "x".repeat(33)
            ),
            422,
        ),
    ] {
        let r = post(&body);
        assert_eq!(r.status, status, "{body} → {}", r.body);
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert!(v["error"].is_string(), "{}", r.body);
    }
    let big = format!(r#"{{"apelido":"{}"}}"#, "x".repeat(70 * 1024));
    assert_eq!(post(&big).status, 413);

    assert_eq!(
        send("GET", &app.url("/pessoas/not-a-uuid"), None).status,
        404
    );
    let unknown = send(
        "GET",
        &app.url(&format!("/pessoas/{}", Uuid::new_v4())),
        None,
    );
    assert_eq!(unknown.status, 404);
    assert!(unknown.body.contains("error"));

    assert_eq!(send("GET", &app.url("/pessoas"), None).status, 400);
    assert_eq!(send("GET", &app.url("/pessoas?t="), None).status, 400);
    let none = send(
        "GET",
        &app.url(&format!("/pessoas?t={}", Uuid::new_v4().simple())),
        None,
    );
    assert_eq!((none.status, none.body.as_str()), (200, "[]"));

    let count = send("GET", &app.url("/contagem-pessoas"), None);
    assert_eq!(count.status, 200);
    assert!(count.content_type.unwrap().starts_with("text/plain"));
    assert!(count.body.parse::<i64>().is_ok(), "{}", count.body);
    assert_eq!(send("DELETE", &app.url("/pessoas"), None).status, 405);
    delete_queues(&config);
}

#[test]
fn search_finds_people_by_apelido_nome_or_stack_case_insensitively() {
    let mut config = config("search");
    config.inserter_flush_ms = 50;
    let app = TestServer::start(config.clone());
    let _inserter = Inserter::start(&config);
    let marker = Uuid::new_v4().simple().to_string()[..12].to_owned();
    // No three letters or digits in a row: no trigram to look up, so searched by a scan.
    let dotted = format!(
        "{}.{}.{}.{}",
        &marker[..2],
        &marker[2..4],
        &marker[4..6],
        &marker[6..8]
    );
    let bodies = [
        format!(r#"{{"apelido":"a{marker}","nome":"Ana","nascimento":"1990-01-01"}}"#),
        format!(
            r#"{{"apelido":"{}","nome":"Nome {}","nascimento":"1990-01-01","stack":null}}"#,
            apelido(),
            marker.to_uppercase()
        ),
        format!(
            r#"{{"apelido":"{}","nome":"Caio","nascimento":"1990-01-01","stack":["Go","x{marker}","{dotted}"]}}"#,
            apelido()
        ),
    ];
    let ids: Vec<Uuid> = bodies
        .iter()
        .map(|b| {
            let r = send("POST", &app.url("/pessoas"), Some(b));
            assert_eq!(r.status, 201, "{}", r.body);
            r.location.unwrap()[9..].parse().unwrap()
        })
        .collect();
    assert!(wait_until(Duration::from_secs(10), || in_postgres(
        &config, &ids
    ) == 3));
    let r = send(
        "GET",
        &app.url(&format!("/pessoas?t={}", marker.to_uppercase())),
        None,
    );
    assert_eq!(r.status, 200);
    let found: Vec<serde_json::Value> = serde_json::from_str(&r.body).unwrap();
    let mut found_ids: Vec<Uuid> = found
        .iter()
        .map(|p| p["id"].as_str().unwrap().parse().unwrap())
        .collect();
    found_ids.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(found_ids, expected);
    let r = send(
        "GET",
        &app.url(&format!("/pessoas?t={}", dotted.to_uppercase())),
        None,
    );
    assert_eq!(r.status, 200);
    let found: Vec<serde_json::Value> = serde_json::from_str(&r.body).unwrap();
    assert_eq!(found.len(), 1, "{}", r.body);
    assert_eq!(found[0]["id"].as_str(), Some(ids[2].to_string().as_str()));
    delete_queues(&config);
}

#[test]
fn a_count_with_wait_answers_once_every_created_person_is_inserted() {
    let mut config = config("drain");
    config.inserter_flush_ms = 400;
    let app = TestServer::start(config.clone());
    let _inserter = Inserter::start(&config);
    let ids: Vec<Uuid> = (0..5).map(|_| create(&app, &apelido())).collect();
    let r = send("GET", &app.url("/contagem-pessoas?wait=10"), None);
    assert_eq!(r.status, 200);
    assert_eq!(
        in_postgres(&config, &ids),
        5,
        "the count waited for the flush"
    );
    delete_queues(&config);
}

#[test]
fn a_person_released_after_a_lost_confirm_but_inserted_anyway_does_not_end_later_waits_early() {
    let mut config = config("ghost");
    config.inserter_flush_ms = 100;
    let redis = infra::redis::pool(&config.redis_url, 1).unwrap();
    // The inserter writes it: nobody took its apelido again.
    let ghost = answered_503_but_queued(&config, &apelido());
    let inserter = Inserter::start(&config);
    assert!(wait_until(Duration::from_secs(10), || in_postgres(
        &config,
        &[ghost.id]
    ) == 1));
    drop(inserter);

    // A later person, answered 201 while no inserter runs, must hold a wait back.
    let app = TestServer::start(config.clone());
    let id = create(&app, &apelido());
    let backlog = infra::block_on(store::backlog(&redis, &config.people_queue)).unwrap();
    assert_eq!(backlog, 1, "the person not yet inserted is pending");
    let _inserter = Inserter::start(&config);
    let r = send("GET", &app.url("/contagem-pessoas?wait=10"), None);
    assert_eq!(r.status, 200);
    assert_eq!(
        in_postgres(&config, &[id]),
        1,
        "the count waited for the flush"
    );
    delete_queues(&config);
}

#[test]
fn a_person_answered_503_whose_message_arrives_anyway_does_not_block_the_retry_answered_201() {
    let mut config = config("retaken");
    config.inserter_flush_ms = 100;
    let apelido = apelido();
    let first = answered_503_but_queued(&config, &apelido);
    // nginx retried the POST on the other replica, which took the apelido again: 201.
    let app = TestServer::start(config.clone());
    let second = create(&app, &apelido);
    // The inserter meets the 503'd person first, in the same batch.
    let _inserter = Inserter::start(&config);
    let r = send("GET", &app.url("/contagem-pessoas?wait=10"), None);
    assert_eq!(r.status, 200);
    assert_eq!(
        in_postgres(&config, &[second]),
        1,
        "the person answered 201 is written"
    );
    assert_eq!(
        in_postgres(&config, &[first.id]),
        0,
        "the person answered 503 is not"
    );
    assert_eq!(
        queue_depth(&config, &store::dead_letter_queue(&config.people_queue)),
        0,
        "nothing dead-lettered"
    );
    assert_eq!(
        queue_depth(&config, &config.people_queue),
        0,
        "everything acked"
    );
    delete_queues(&config);
}

/// Who holds `apelido` in Redis, and its time to live in ms (-1: for good, -2: no key).
fn apelido_owner(config: &Config, apelido: &str) -> (Option<String>, i64) {
    let redis = infra::redis::pool(&config.redis_url, 1).unwrap();
    infra::block_on(async {
        let mut conn = redis.get().await.unwrap();
        let key = store::apelido_key(apelido);
        redis::pipe()
            .cmd("GET")
            .arg(&key)
            .cmd("PTTL")
            .arg(&key)
            .query_async(&mut *conn)
            .await
            .unwrap()
    })
}

#[test]
fn a_reservation_is_a_lease_until_its_publish_is_confirmed_then_the_apelido_is_kept() {
    let config = config("lease");
    let redis = infra::redis::pool(&config.redis_url, 1).unwrap();
    // Reserved, and never published: the replica was killed right there.
    let orphan = person(&apelido());
    infra::block_on(store::reserve(&redis, &config.people_queue, &orphan)).unwrap();
    let (owner, ttl) = apelido_owner(&config, orphan.person.apelido.as_str());
    assert_eq!(owner, Some(orphan.id.to_string()));
    let lease = store::RESERVATION_LEASE.as_millis() as i64;
    assert!(
        ttl > 0 && ttl <= lease,
        "a lease of at most {lease} ms, not {ttl}"
    );

    // Created through the API: the 201 came after the claim.
    let app = TestServer::start(config.clone());
    let taken = apelido();
    let id = create(&app, &taken);
    assert_eq!(apelido_owner(&config, &taken), (Some(id.to_string()), -1));
    delete_queues(&config);
}

#[test]
fn a_release_after_the_inserter_claimed_the_apelido_leaves_it_taken() {
    let config = config("lateundo");
    let redis = infra::redis::pool(&config.redis_url, 1).unwrap();
    let person = person(&apelido());
    infra::block_on(async {
        assert_eq!(
            store::reserve(&redis, &config.people_queue, &person)
                .await
                .unwrap(),
            Reservation::Reserved
        );
        // The first confirm was lost but the message was queued: the inserter claims and
        // writes it while the replica's second try fails too, and the replica undoes.
        assert_eq!(
            store::claim(&redis, std::slice::from_ref(&person))
                .await
                .unwrap(),
            [true]
        );
        store::release(&redis, &config.people_queue, &person)
            .await
            .unwrap();
    });
    assert_eq!(
        apelido_owner(&config, person.person.apelido.as_str()),
        (Some(person.id.to_string()), -1),
        "the written person keeps its apelido"
    );
    delete_queues(&config);
}

#[test]
fn the_inserter_takes_back_the_apelido_of_a_person_it_writes() {
    let mut config = config("takeback");
    config.inserter_flush_ms = 100;
    // Answered 503, released, and queued all the same: nobody holds its apelido any more.
    let person = answered_503_but_queued(&config, &apelido());
    let apelido = person.person.apelido.as_str();
    assert_eq!(apelido_owner(&config, apelido), (None, -2));
    let _inserter = Inserter::start(&config);
    assert!(wait_until(Duration::from_secs(10), || in_postgres(
        &config,
        &[person.id]
    ) == 1));
    // PostgreSQL has the apelido now, so Redis must refuse it again: a POST reusing it
    // would otherwise be answered 201 and then refused by the table.
    assert_eq!(
        apelido_owner(&config, apelido),
        (Some(person.id.to_string()), -1)
    );
    let app = TestServer::start(config.clone());
    let r = send("POST", &app.url("/pessoas"), Some(&person_body(apelido)));
    assert_eq!(r.status, 422, "{}", r.body);
    delete_queues(&config);
}

#[test]
fn a_reservation_older_than_the_horizon_is_a_ghost_that_holds_no_wait_back() {
    let config = config("horizon");
    // Two: the test holds one connection while `backlog` takes the other.
    let redis = infra::redis::pool(&config.redis_url, 2).unwrap();
    let key = store::pending_key(&config.people_queue);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let old = now - store::PENDING_HORIZON.as_millis() as u64 - 1_000;
    infra::block_on(async {
        let mut conn = redis.get().await.unwrap();
        // Left by a replica killed between its reservation and its publish.
        let _: i64 = redis::cmd("ZADD")
            .arg(&key)
            .arg(old)
            .arg("ghost")
            .query_async(&mut *conn)
            .await
            .unwrap();
        assert_eq!(
            store::backlog(&redis, &config.people_queue).await.unwrap(),
            0
        );
        let _: i64 = redis::cmd("ZADD")
            .arg(&key)
            .arg(now)
            .arg("recent")
            .query_async(&mut *conn)
            .await
            .unwrap();
        assert_eq!(
            store::backlog(&redis, &config.people_queue).await.unwrap(),
            1
        );
    });
    delete_queues(&config);
}

/// The value of one series in the metrics text (0 when absent).
fn series(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn metrics_show_the_confirmed_publish_and_the_backlog_until_the_inserter_drains_it() {
    let config = config("metrics");
    let app = TestServer::start(config.clone());
    let confirmed = format!(
        r#"arena_publish_total{{queue="{}",outcome="confirmed"}}"#,
        config.people_queue
    );
    let depth = "arena_inserter_queue_depth";
    let before = send("GET", &app.url("/metrics"), None).body;
    assert_eq!(series(&before, &confirmed), 0.0, "a fresh queue: {before}");

    let id = create(&app, &apelido());
    let after = send("GET", &app.url("/metrics"), None).body;
    assert_eq!(series(&after, &confirmed), 1.0, "{after}");
    assert_eq!(series(&after, depth), 1.0, "no inserter yet: {after}");

    let _inserter = Inserter::start(&config);
    // The pending set empties just after the commit: wait on the scrape itself.
    let mut drained = String::new();
    let caught_up = wait_until(Duration::from_secs(10), || {
        drained = send("GET", &app.url("/metrics"), None).body;
        series(&drained, depth) == 0.0
    });
    assert!(caught_up, "{drained}");
    assert_eq!(in_postgres(&config, &[id]), 1);
    assert!(
        series(&drained, "arena_inserter_batch_rows_count") >= 1.0,
        "{drained}"
    );
    assert!(
        series(&drained, r#"arena_pool_wait_seconds_count{pool="redis"}"#) >= 1.0,
        "{drained}"
    );
    delete_queues(&config);
}

/// What a Redis restart leaves of the test's stack: no apelido key of `apelidos`, no
/// sentinel, no pending set (Redis keeps nothing on disk). Only the test's own keys go, so the
/// tests and a stack sharing this Redis go on undisturbed.
fn wipe_redis(config: &Config, apelidos: &[&str]) {
    let redis = infra::redis::pool(&config.redis_url, 1).unwrap();
    infra::block_on(async {
        let mut conn = redis.get().await.unwrap();
        let mut del = redis::cmd("DEL");
        del.arg(store::seeded_key(&config.people_queue))
            .arg(store::pending_key(&config.people_queue));
        for apelido in apelidos {
            del.arg(store::apelido_key(apelido));
        }
        let _: i64 = del.query_async(&mut *conn).await.unwrap();
    });
}

/// POSTs `apelido` until the answer is not 503 (at most `limit`), and returns every status seen.
fn post_until_not_503(app: &TestServer, apelido: &str, limit: Duration) -> Vec<u16> {
    let start = Instant::now();
    let mut statuses = Vec::new();
    loop {
        let r = send("POST", &app.url("/pessoas"), Some(&person_body(apelido)));
        statuses.push(r.status);
        if r.status != 503 || start.elapsed() > limit {
            return statuses;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn after_redis_loses_its_data_an_apelido_in_postgres_is_answered_503_then_422_never_201() {
    let mut config = config("wiped");
    config.inserter_flush_ms = 100;
    let app = TestServer::start(config.clone());
    let _inserter = Inserter::start(&config);
    let taken = apelido();
    let id = create(&app, &taken);
    assert!(wait_until(Duration::from_secs(10), || in_postgres(
        &config,
        &[id]
    ) == 1));

    wipe_redis(&config, &[&taken]);
    let first = send("POST", &app.url("/pessoas"), Some(&person_body(&taken)));
    assert_eq!(first.status, 503, "{}", first.body);
    let error: serde_json::Value = serde_json::from_str(&first.body).unwrap();
    assert!(
        error["error"].as_str().unwrap().contains("being rebuilt"),
        "{}",
        first.body
    );
    // The first 503 started the rebuild; the apelido is PostgreSQL's again once it is done.
    let statuses = post_until_not_503(&app, &taken, rebuild::DRAIN_LIMIT);
    assert_eq!(statuses.last(), Some(&422), "{statuses:?}");
    assert!(!statuses.contains(&201), "{statuses:?}");
    assert_eq!(
        apelido_owner(&config, &taken),
        (Some(id.to_string()), -1),
        "the key is back, for the person PostgreSQL has"
    );
    create(&app, &apelido());
    delete_queues(&config);
}

#[test]
fn a_rebuild_waits_until_the_people_queued_before_the_loss_are_written() {
    let mut config = config("rebuild-drain");
    config.inserter_flush_ms = 100;
    let app = TestServer::start(config.clone());
    // Answered 201 and still in the queue (no inserter yet) when Redis empties.
    let queued = apelido();
    let id = create(&app, &queued);
    wipe_redis(&config, &[&queued]);
    // Without the wait, the rebuild would find the table without this apelido, a POST would
    // take it (201), and the inserter would then drop the person answered 201 first.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1500) {
        let r = send("POST", &app.url("/pessoas"), Some(&person_body(&queued)));
        assert_eq!(r.status, 503, "the queue has not drained: {}", r.body);
        std::thread::sleep(Duration::from_millis(100));
    }
    let _inserter = Inserter::start(&config);
    let statuses = post_until_not_503(&app, &queued, rebuild::DRAIN_LIMIT);
    assert_eq!(statuses.last(), Some(&422), "{statuses:?}");
    assert!(wait_until(Duration::from_secs(10), || in_postgres(
        &config,
        &[id]
    ) == 1));
    assert_eq!(
        queue_depth(&config, &store::dead_letter_queue(&config.people_queue)),
        0,
        "nothing dead-lettered"
    );
    delete_queues(&config);
}

#[test]
fn a_replica_starting_on_an_emptied_redis_rebuilds_the_apelido_keys_before_it_serves() {
    let mut config = config("rebuild-start");
    config.inserter_flush_ms = 100;
    let taken = apelido();
    let id = {
        let app = TestServer::start(config.clone());
        let _inserter = Inserter::start(&config);
        let id = create(&app, &taken);
        assert!(wait_until(Duration::from_secs(10), || in_postgres(
            &config,
            &[id]
        ) == 1));
        id
    };
    wipe_redis(&config, &[&taken]);
    let app = TestServer::start(config.clone());
    let r = send("POST", &app.url("/pessoas"), Some(&person_body(&taken)));
    assert_eq!(r.status, 422, "no 503 once started: {}", r.body);
    assert_eq!(apelido_owner(&config, &taken), (Some(id.to_string()), -1));
    create(&app, &apelido());
    delete_queues(&config);
}

#[test]
fn one_replica_of_a_stack_rebuilds_at_a_time() {
    let config = config("rebuild-lock");
    let redis = infra::redis::pool(&config.redis_url, 1).unwrap();
    wipe_redis(&config, &[]);
    assert!(infra::block_on(store::lock_rebuild(
        &redis,
        &config.people_queue,
        "another replica"
    ))
    .unwrap());
    assert_eq!(
        infra::block_on(rebuild::rebuild(&config)).unwrap(),
        Outcome::Busy
    );
    assert!(!infra::block_on(store::is_seeded(&redis, &config.people_queue)).unwrap());
    // Another's token does not release it; its own does.
    infra::block_on(store::unlock_rebuild(
        &redis,
        &config.people_queue,
        "not the holder",
    ))
    .unwrap();
    assert_eq!(
        infra::block_on(rebuild::rebuild(&config)).unwrap(),
        Outcome::Busy
    );
    infra::block_on(store::unlock_rebuild(
        &redis,
        &config.people_queue,
        "another replica",
    ))
    .unwrap();
    assert!(matches!(
        infra::block_on(rebuild::rebuild(&config)).unwrap(),
        Outcome::Rebuilt { .. }
    ));
    assert!(infra::block_on(store::is_seeded(&redis, &config.people_queue)).unwrap());
    assert_eq!(
        infra::block_on(rebuild::rebuild(&config)).unwrap(),
        Outcome::Seeded
    );
    delete_queues(&config);
}
