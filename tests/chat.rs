//! Chat in-process against the real PostgreSQL and RabbitMQ. Two `TestServer`s in one test are
//! two replicas: each has its own fan-out link and queue, so an event crossing from one to the
//! other really went through the broker. Every test makes users and groups of its own.
mod common;

use std::net::TcpStream;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use arena::server::TestServer;
use common::chat::{group, http_status, next_event, person, post, room, Person};
use common::{call, migrated_config, unique};
use serde_json::json;

fn app() -> TestServer {
    let mut config = migrated_config();
    config.pg_pool_size = 4;
    config.admin_token = Some("chat-admin".to_owned());
    TestServer::start(config)
}

#[test]
fn a_message_posted_on_one_replica_reaches_a_room_socket_on_the_other_within_a_second() {
    let (a, b) = (app(), app());
    let alice = person(&a, "alice");
    let bob = person(&a, "bob");
    let g = group(&a, &alice, &[&bob], None);
    let mut socket = room(b.addr, g, &bob.token).expect("bob is a member");

    let sent = Instant::now();
    let (status, message) = post(&a, &alice, g, "olá, mundo");
    assert_eq!(status, 201, "{message}");
    let event = next_event(&mut socket, Duration::from_secs(1));
    assert!(sent.elapsed() < Duration::from_secs(1));
    assert_eq!(event["type"], "message.created");
    assert_eq!(event["message"], message);
    assert_eq!(
        event["message"]["sender"],
        json!({"id": alice.id, "username": alice.name})
    );

    let (status, _) = call(
        "DELETE",
        &a.url(&format!("/messages/{}", message["id"])),
        Some(&alice.token),
        None,
    );
    assert_eq!(status, 200);
    let event = next_event(&mut socket, Duration::from_secs(2));
    assert_eq!(
        (event["type"].as_str(), &event["id"]),
        (Some("message.deleted"), &message["id"])
    );

    let carol = person(&a, "carol");
    let (status, _) = call(
        "POST",
        &a.url(&format!("/chats/{g}/members")),
        Some(&carol.token),
        Some(&json!({"userId": carol.id})),
    );
    assert_eq!(status, 201);
    let event = next_event(&mut socket, Duration::from_secs(2));
    assert_eq!(event["type"], "member.joined");
    assert_eq!(
        event["user"],
        json!({"id": carol.id, "username": carol.name})
    );

    assert_eq!(
        call("POST", &a.url(&format!("/notify/{g}")), None, None).0,
        200
    );
    let event = next_event(&mut socket, Duration::from_secs(2));
    assert_eq!(event, json!({"type": "notify", "group": g.to_string()}));
}

#[test]
fn a_user_long_poll_on_one_replica_is_woken_by_a_post_on_the_other() {
    let (a, b) = (app(), app());
    let alice = person(&a, "alice");
    let bob = person(&a, "bob");
    let g = group(&a, &alice, &[&bob], None);
    let poll_url = a.url(&format!("/subscribe/user?user_id={}&timeout=20", bob.id));
    std::thread::scope(|s| {
        let poll = s.spawn(|| call("GET", &poll_url, Some(&bob.token), None));
        // The poll registers a moment after its request arrives: post until it answers.
        let started = Instant::now();
        let mut n = 0;
        while !poll.is_finished() {
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "the poll never woke"
            );
            n += 1;
            assert_eq!(post(&b, &alice, g, &format!("ping {n}")).0, 201);
            std::thread::sleep(Duration::from_millis(100));
        }
        let (status, body) = poll.join().unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            (body["change"].as_bool(), body["user_id"].as_i64()),
            (Some(true), Some(bob.id))
        );
        assert_eq!(body["notified_group"].as_i64(), Some(g));
        let recent = body["recent_messages"].as_array().unwrap();
        assert!(!recent.is_empty() && recent.len() <= 10);
        assert!(recent.last().unwrap()["content"]
            .as_str()
            .unwrap()
            .starts_with("ping"));
    });
}

#[test]
fn a_long_poll_answers_204_on_timeout_and_at_once_for_a_user_in_no_group() {
    let app = app();
    let loner = person(&app, "loner");
    let started = Instant::now();
    let url = app.url(&format!("/subscribe/user?user_id={}&timeout=30", loner.id));
    assert_eq!(call("GET", &url, Some(&loner.token), None).0, 204);
    assert!(started.elapsed() < Duration::from_secs(5));

    let other = person(&app, "other");
    group(&app, &loner, &[], None);
    let started = Instant::now();
    let url = app.url(&format!("/subscribe/user?user_id={}&timeout=1", loner.id));
    assert_eq!(call("GET", &url, Some(&loner.token), None).0, 204);
    assert!(started.elapsed() >= Duration::from_secs(1));
    // Someone else's poll is refused, and so is a poll without a token.
    assert_eq!(call("GET", &url, Some(&other.token), None).0, 403);
    assert_eq!(call("GET", &url, None, None).0, 401);
    for bad in ["timeout=0", "timeout=-5", "timeout=x"] {
        let url = app.url(&format!("/subscribe/user?user_id={}&{bad}", loner.id));
        assert_eq!(call("GET", &url, Some(&loner.token), None).0, 400, "{bad}");
    }
}

#[test]
fn notify_all_wakes_status_polls_on_every_replica_and_fall_wakes_its_own() {
    let (a, b) = (app(), app());
    std::thread::scope(|s| {
        let polls: Vec<_> = [&a, &b, &b]
            .iter()
            .zip(["all", "all", "ops"])
            .map(|(app, group)| {
                let url = app.url(&format!("/subscribe/status?group={group}&timeout=20"));
                s.spawn(move || call("GET", &url, None, None))
            })
            .collect();
        let started = Instant::now();
        while !polls.iter().all(|p| p.is_finished()) {
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "a status poll never woke"
            );
            assert_eq!(call("POST", &a.url("/notify/all"), None, None).0, 200);
            std::thread::sleep(Duration::from_millis(100));
        }
        for (poll, group) in polls.into_iter().zip(["all", "all", "ops"]) {
            let (status, body) = poll.join().unwrap();
            assert_eq!(status, 200, "{body}");
            assert_eq!(
                body,
                json!({"status": "alive", "active": true, "change": true, "group": group})
            );
        }
    });
    let (status, body) = call("POST", &a.url("/notify/all"), None, None);
    assert_eq!(
        (status, &body["message"]),
        (200, &json!("notification sent to all groups"))
    );
    let (_, body) = call("POST", &a.url("/notify/ops"), None, None);
    assert_eq!(body["message"], "notification sent to group ops");
    assert_eq!(call("POST", &a.url("/notify/a%20b"), None, None).0, 400);

    // /fall wakes the fallen replica's own status poll. A poll that reaches the replica after
    // the fall is refused 503 by the fallen gate: then the round is tried again.
    let url = b.url("/subscribe/status?timeout=20");
    let woken = (0..10).find_map(|_| {
        std::thread::scope(|s| {
            let poll = s.spawn(|| call("GET", &url, None, None));
            std::thread::sleep(Duration::from_millis(200));
            assert_eq!(
                call("POST", &b.url("/fall"), Some("chat-admin"), None).0,
                200
            );
            let answer = poll.join().unwrap();
            assert_eq!(
                call("POST", &b.url("/revive"), Some("chat-admin"), None).0,
                200
            );
            // A poll woken by a stray `/notify/all` of the first half (still in flight) is tried again too.
            (answer.0 == 200 && answer.1["active"] == false).then_some(answer.1)
        })
    });
    let body = woken.expect("a status poll woken by /fall");
    assert_eq!(
        body,
        json!({"status": "down", "active": false, "change": true, "group": "all"})
    );
}

#[test]
fn a_group_capped_at_two_admits_exactly_one_of_ten_concurrent_joins_beside_its_creator() {
    let app = app();
    let creator = person(&app, "host");
    let g = group(&app, &creator, &[], Some(2));
    let joiners: Vec<Person> = (0..10).map(|i| person(&app, &format!("j{i}"))).collect();
    let barrier = Barrier::new(joiners.len());
    let url = app.url(&format!("/chats/{g}/members"));
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = joiners
            .iter()
            .map(|p| {
                let (barrier, url) = (&barrier, &url);
                s.spawn(move || {
                    barrier.wait();
                    call("POST", url, Some(&p.token), Some(&json!({"userId": p.id}))).0
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        9,
        "{statuses:?}"
    );
    let (_, members) = call(
        "GET",
        &app.url(&format!("/group-users?groupId={g}")),
        None,
        None,
    );
    assert_eq!(members["users"].as_array().unwrap().len(), 2, "{members}");
}

#[test]
fn a_non_member_gets_403_on_read_write_and_subscribe() {
    let app = app();
    let alice = person(&app, "alice");
    let mallory = person(&app, "mallory");
    let g = group(&app, &alice, &[], None);
    assert_eq!(post(&app, &mallory, g, "let me in").0, 403);
    let read = app.url(&format!("/messages?groupId={g}"));
    assert_eq!(call("GET", &read, Some(&mallory.token), None).0, 403);
    assert_eq!(
        http_status(room(app.addr, g, &mallory.token).unwrap_err()),
        403
    );
    // Without a token, or with a forged one: 401.
    assert_eq!(call("GET", &read, None, None).0, 401);
    assert_eq!(
        http_status(room(app.addr, g, "1.99999999999.AAAA").unwrap_err()),
        401
    );
    // Acting in someone else's name: 403 whatever the membership.
    let as_alice = json!({"userId": alice.id, "groupId": g, "content": "hi"});
    assert_eq!(
        call(
            "POST",
            &app.url("/messages"),
            Some(&mallory.token),
            Some(&as_alice)
        )
        .0,
        403
    );
    // Unknown groups are 404.
    assert_eq!(post(&app, &alice, 999_999_999_999, "x").0, 404);
    assert_eq!(
        http_status(room(app.addr, 999_999_999_999, &alice.token).unwrap_err()),
        404
    );
}

#[test]
fn messages_are_paged_oldest_first_with_a_cursor_and_only_the_sender_deletes() {
    let app = app();
    let alice = person(&app, "alice");
    let bob = person(&app, "bob");
    let g = group(&app, &alice, &[&bob], None);
    let ids: Vec<i64> = (1..=5)
        .map(|n| {
            let (status, m) = post(&app, &alice, g, &format!("m{n}"));
            assert_eq!(status, 201, "{m}");
            assert_eq!(m["group_id"].as_i64(), Some(g));
            m["id"].as_i64().unwrap()
        })
        .collect();
    let page = |query: &str| {
        let (status, body) = call(
            "GET",
            &app.url(&format!("/messages?groupId={g}{query}")),
            Some(&bob.token),
            None,
        );
        assert_eq!(status, 200, "{body}");
        body
    };
    let first = page("&limit=2");
    let contents: Vec<&str> = first["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["m4", "m5"]);
    assert_eq!(first["next"].as_i64(), Some(ids[3]));
    let second = page(&format!("&limit=2&before={}", ids[3]));
    let contents: Vec<&str> = second["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["m2", "m3"]);
    let all = page("");
    assert_eq!(all["messages"].as_array().unwrap().len(), 5);
    assert_eq!(all["next"], json!(null));

    assert_eq!(post(&app, &alice, g, "").0, 422);
    assert_eq!(post(&app, &alice, g, &"x".repeat(2049)).0, 422);
    assert_eq!(post(&app, &alice, g, &"é".repeat(2048)).0, 201);

    let by_body = |who: &Person, id: i64| {
        call(
            "DELETE",
            &app.url("/messages"),
            Some(&who.token),
            Some(&json!({"messageId": id})),
        )
    };
    assert_eq!(by_body(&bob, ids[0]).0, 403);
    let (status, body) = by_body(&alice, ids[0]);
    assert_eq!(
        (status, body),
        (200, json!({"message": "Mensagem removida"}))
    );
    assert_eq!(by_body(&alice, ids[0]).0, 404);
}

#[test]
fn create_chat_acts_only_as_the_token_user_and_warns_about_unknown_members() {
    let app = app();
    let alice = person(&app, "alice");
    let bob = person(&app, "bob");
    let ghost = unique("ghost");
    let body = json!({"groupName": "friends", "creatorId": alice.id, "members": [bob.name, ghost]});
    assert_eq!(
        call("POST", &app.url("/create-chat"), None, Some(&body)).0,
        401
    );
    assert_eq!(
        call(
            "POST",
            &app.url("/create-chat"),
            Some(&bob.token),
            Some(&body)
        )
        .0,
        403
    );
    let (status, created) = call(
        "POST",
        &app.url("/create-chat"),
        Some(&alice.token),
        Some(&body),
    );
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["group_name"], "friends");
    assert_eq!(created["creator_id"].as_i64(), Some(alice.id));
    assert_eq!(created["warning"], format!("Users not found: {ghost}"));
    let members: Vec<i64> = created["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    assert_eq!(members, [alice.id, bob.id]);

    let (status, chats) = call(
        "GET",
        &app.url(&format!("/chats?userId={}", bob.id)),
        None,
        None,
    );
    assert_eq!(status, 200, "{chats}");
    assert_eq!(chats["chats"][0]["id"], created["group_id"]);
    assert_eq!(chats["chats"][0]["members"].as_array().unwrap().len(), 2);

    let too_many =
        json!({"groupName": "dm", "creatorId": alice.id, "members": [bob.name], "maxMembers": 1});
    assert_eq!(
        call(
            "POST",
            &app.url("/create-chat"),
            Some(&alice.token),
            Some(&too_many)
        )
        .0,
        409
    );
    let invalid = json!({"groupName": "", "creatorId": alice.id});
    assert_eq!(
        call(
            "POST",
            &app.url("/create-chat"),
            Some(&alice.token),
            Some(&invalid)
        )
        .0,
        422
    );
}

/// Deletes a test's own exchange when the test ends, passed or failed: the exchange is durable
/// (as the product declares it), so otherwise one would be left in RabbitMQ per run. Declared
/// before the server so that it drops after it, once nothing is bound to the exchange.
struct OwnExchange {
    amqp_url: String,
    name: String,
}

impl Drop for OwnExchange {
    fn drop(&mut self) {
        let _ = arena::infra::block_on(async {
            let conn = arena::infra::amqp::connect(&self.amqp_url, "chat-test").await?;
            let channel = conn.create_channel().await?;
            channel
                .exchange_delete(
                    self.name.as_str().into(),
                    lapin::options::ExchangeDeleteOptions::default(),
                )
                .await?;
            conn.close(200, "done".into()).await
        });
    }
}

#[test]
fn waiting_long_polls_answer_204_at_once_when_the_replica_stops() {
    // An exchange of its own: the notify test of this binary sends `/notify/all`, which wakes
    // every status poll it reaches.
    let mut config = migrated_config();
    config.pg_pool_size = 4;
    config.chat_exchange = unique("arena.chat.test");
    let _exchange = OwnExchange {
        amqp_url: config.amqp_url.clone(),
        name: config.chat_exchange.clone(),
    };
    let app = TestServer::start(config);
    let alice = person(&app, "alice");
    group(&app, &alice, &[], None);
    let user_poll = app.url(&format!("/subscribe/user?user_id={}&timeout=60", alice.id));
    // A group of its own: the notify test of this binary sends `/notify/all` meanwhile.
    let status_poll = app.url(&format!(
        "/subscribe/status?group={}&timeout=60",
        unique("g")
    ));
    std::thread::scope(|s| {
        let polls = [
            s.spawn(|| call("GET", &user_poll, Some(&alice.token), None)),
            s.spawn(|| call("GET", &status_poll, None, None)),
        ];
        // Both requests are inside (and waiting) once the process counts them as in flight.
        let started = Instant::now();
        while app.shared.shutdown.requests_in_flight() < 2 {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the polls never arrived"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(100));
        let signalled = Instant::now();
        app.shared.shutdown.signal();
        for poll in polls {
            let (status, body) = poll.join().unwrap();
            assert_eq!(status, 204, "{body}");
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(2),
            "{:?}",
            signalled.elapsed()
        );
    });
}

#[test]
fn an_upgrade_past_ws_max_connections_is_503_and_a_closed_socket_frees_its_place() {
    let mut config = migrated_config();
    config.pg_pool_size = 4;
    config.ws_max_connections = 2;
    let app = TestServer::start(config);
    let alice = person(&app, "alice");
    let g = group(&app, &alice, &[], None);
    let first = room(app.addr, g, &alice.token).expect("first socket");
    let _second = room(app.addr, g, &alice.token).expect("second socket");
    assert_eq!(
        http_status(room(app.addr, g, &alice.token).unwrap_err()),
        503
    );
    // Fibonacci sockets count against the same cap.
    let fib = tungstenite::client(
        format!("ws://{}/ws/fibonacci/alice", app.addr),
        TcpStream::connect(app.addr).unwrap(),
    );
    match fib {
        Err(tungstenite::HandshakeError::Failure(e)) => assert_eq!(http_status(e), 503),
        _ => panic!("a Fibonacci socket past the cap was accepted"),
    }
    drop(first);
    // The server notices the close a moment later; its place is then free again.
    let started = Instant::now();
    loop {
        match room(app.addr, g, &alice.token) {
            Ok(_) => break,
            Err(e) => {
                assert_eq!(http_status(e), 503);
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "the place never freed"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}
