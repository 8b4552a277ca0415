//! Chat delivery that loses nothing (docs/API.md §5, "Resume and ordering"), in-process
//! against the real PostgreSQL and RabbitMQ: resume with `since` (on the upgrade, as a frame on
//! an open socket, and on `/subscribe/user`), every socket getting each group's events once
//! and in id order while two replicas post at once, and a replica whose broker link is cut
//! (a TCP proxy in front of RabbitMQ, so only that replica loses it) delivering what was
//! posted meanwhile, in order, once the link is back — and sooner, when a post of its own
//! shows it the gap.
mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arena::config::Config;
use arena::server::TestServer;
use common::chat::{
    group, http_status, next_event, person, room, room_with, said, said_at, try_next_event, Socket,
};
use common::{call, migrated_config};
use serde_json::{json, Value};
use tungstenite::Message;

fn app() -> TestServer {
    app_with(migrated_config())
}

fn app_with(mut config: Config) -> TestServer {
    config.pg_pool_size = 4;
    TestServer::start(config)
}

/// Reads events until `want` message ids have arrived (or `limit` passed); returns every
/// event read, in arrival order.
fn read_until(socket: &mut Socket, want: usize, limit: Duration) -> Vec<Value> {
    let started = Instant::now();
    let mut events = Vec::new();
    let mut created = 0;
    while created < want && started.elapsed() < limit {
        if let Some(event) = try_next_event(socket, Duration::from_millis(200)) {
            created += usize::from(event["type"] == "message.created");
            events.push(event);
        }
    }
    events
}

/// The ids of the `message.created` events, asserting they came in increasing `seq` order and
/// that each event's `seq` is its message's id.
fn created_in_order(events: &[Value]) -> Vec<i64> {
    let mut last = 0;
    let mut ids = Vec::new();
    for event in events {
        let seq = event["seq"]
            .as_i64()
            .unwrap_or_else(|| panic!("no seq: {event}"));
        assert!(
            seq > last,
            "out of order or repeated: {seq} after {last} in {events:?}"
        );
        last = seq;
        if event["type"] == "message.created" {
            assert_eq!(event["message"]["id"].as_i64(), Some(seq), "{event}");
            ids.push(seq);
        }
    }
    ids
}

/// Nothing more arrives on `socket` for a moment: no duplicate, no stray event.
fn quiet(socket: &mut Socket) {
    if let Some(extra) = try_next_event(socket, Duration::from_millis(700)) {
        panic!("unexpected event: {extra}");
    }
}

#[test]
fn a_socket_with_since_replays_every_later_message_and_deletion_in_order_then_goes_live() {
    let (a, b) = (app(), app());
    let alice = person(&a, "alice");
    let bob = person(&a, "bob");
    let g = group(&a, &alice, &[&bob], None);
    let m1 = said(&a, &alice, g, "one");
    let m2 = said(&a, &alice, g, "two");
    let m3 = said(&b, &alice, g, "three");
    let (status, body) = call(
        "DELETE",
        &a.url(&format!("/messages/{m2}")),
        Some(&alice.token),
        None,
    );
    assert_eq!(status, 200, "{body}");

    let mut socket = room_with(b.addr, g, &bob.token, &format!("&since={m1}")).expect("member");
    let e = next_event(&mut socket, Duration::from_secs(5));
    assert_eq!(
        (e["type"].as_str(), e["seq"].as_i64()),
        (Some("message.created"), Some(m3)),
        "{e}"
    );
    assert_eq!(e["message"]["content"], "three");
    let e = next_event(&mut socket, Duration::from_secs(5));
    assert_eq!(
        (e["type"].as_str(), e["id"].as_i64()),
        (Some("message.deleted"), Some(m2)),
        "{e}"
    );
    let deleted_at = e["seq"].as_i64().unwrap();
    assert!(deleted_at > m3, "{e}");

    let m4 = said(&a, &alice, g, "four");
    let e = next_event(&mut socket, Duration::from_secs(5));
    assert_eq!(e["seq"].as_i64(), Some(m4), "live after the replay: {e}");
    quiet(&mut socket);

    // since=0 is the whole group, however old.
    let mut socket = room_with(a.addr, g, &bob.token, "&since=0").expect("member");
    let events = read_until(&mut socket, 3, Duration::from_secs(5));
    assert_eq!(created_in_order(&events), [m1, m3, m4]);
    assert_eq!(events[2]["type"], "message.deleted", "{events:?}");
    assert_eq!(events[2]["seq"].as_i64(), Some(deleted_at));
    quiet(&mut socket);
}

#[test]
fn a_history_longer_than_a_page_is_replayed_in_order_before_live_messages() {
    let app = app();
    let alice = person(&app, "alice");
    let g = group(&app, &alice, &[], None);
    let first = said(&app, &alice, g, "m0");
    let mut posted: Vec<i64> = (1..450)
        .map(|n| said(&app, &alice, g, &format!("m{n}")))
        .collect();
    let mut socket = room_with(app.addr, g, &alice.token, &format!("&since={first}")).unwrap();
    posted.push(said(&app, &alice, g, "live"));
    let events = read_until(&mut socket, posted.len(), Duration::from_secs(30));
    assert_eq!(created_in_order(&events), posted);
    quiet(&mut socket);
}

#[test]
fn a_malformed_since_is_a_400_naming_it_before_any_upgrade() {
    let app = app();
    let alice = person(&app, "alice");
    let g = group(&app, &alice, &[], None);
    for bad in ["-1", "x", "1.5", "", "99999999999999999999"] {
        let refused = room_with(app.addr, g, &alice.token, &format!("&since={bad}")).unwrap_err();
        assert_eq!(http_status(refused), 400, "since={bad}");
        let (status, body) = call(
            "GET",
            &app.url(&format!("/subscribe/user?user_id={}&since={bad}", alice.id)),
            Some(&alice.token),
            None,
        );
        assert_eq!(
            (status, &body["field"]),
            (400, &json!("since")),
            "since={bad}: {body}"
        );
    }
}

#[test]
fn a_resume_frame_replays_on_the_open_socket_and_a_bad_one_is_answered_with_an_error() {
    let app = app();
    let alice = person(&app, "alice");
    let g = group(&app, &alice, &[], None);
    let mut socket = room(app.addr, g, &alice.token).unwrap();
    let m1 = said(&app, &alice, g, "one");
    let m2 = said(&app, &alice, g, "two");
    assert_eq!(
        created_in_order(&read_until(&mut socket, 2, Duration::from_secs(5))),
        [m1, m2]
    );

    let resume = json!({"type": "resume", "since": m1}).to_string();
    socket.send(Message::Text(resume.into())).unwrap();
    let e = next_event(&mut socket, Duration::from_secs(5));
    assert_eq!(e["seq"].as_i64(), Some(m2), "replayed: {e}");
    let m3 = said(&app, &alice, g, "three");
    assert_eq!(
        next_event(&mut socket, Duration::from_secs(5))["seq"].as_i64(),
        Some(m3)
    );
    quiet(&mut socket);

    let bad = json!({"type": "resume", "since": "yesterday"}).to_string();
    socket.send(Message::Text(bad.into())).unwrap();
    let e = next_event(&mut socket, Duration::from_secs(5));
    assert_eq!(
        (e["type"].as_str(), e["field"].as_str()),
        (Some("error"), Some("since")),
        "{e}"
    );
    // Any other text is still ignored.
    socket.send(Message::Text("hello".into())).unwrap();
    quiet(&mut socket);
}

#[test]
fn posts_racing_on_two_replicas_reach_every_socket_once_and_in_id_order() {
    let (a, b) = (app(), app());
    let alice = person(&a, "alice");
    let bob = person(&a, "bob");
    let g = group(&a, &alice, &[&bob], None);
    let start = said(&a, &alice, g, "start");
    let mut on_a = room(a.addr, g, &bob.token).unwrap();
    let mut on_b = room(b.addr, g, &alice.token).unwrap();
    let late_since = Arc::new(Mutex::new(None));

    let posted: Vec<i64> = std::thread::scope(|s| {
        let writers: Vec<_> = [(a.url(""), &alice), (b.url(""), &bob)]
            .into_iter()
            .map(|(base, who)| {
                s.spawn(move || {
                    (0..60)
                        .map(|n| said_at(&base, who, g, &format!("n{n}")))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        // A socket that joins mid-stream, resuming from a message it saw elsewhere.
        std::thread::sleep(Duration::from_millis(50));
        let (_, page) = call(
            "GET",
            &a.url(&format!("/messages?groupId={g}&limit=1")),
            Some(&bob.token),
            None,
        );
        let seen = page["messages"][0]["id"].as_i64().unwrap();
        *late_since.lock().unwrap() = Some((
            seen,
            room_with(b.addr, g, &bob.token, &format!("&since={seen}")).unwrap(),
        ));
        writers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let all: BTreeSet<i64> = posted.iter().copied().collect();
    assert_eq!(all.len(), 120);
    for socket in [&mut on_a, &mut on_b] {
        let got = created_in_order(&read_until(socket, 120, Duration::from_secs(20)));
        assert_eq!(
            got,
            all.iter().copied().collect::<Vec<_>>(),
            "a live socket"
        );
        quiet(socket);
    }
    let (seen, mut late) = late_since.lock().unwrap().take().unwrap();
    assert!(seen >= start);
    let want: Vec<i64> = all.iter().copied().filter(|&id| id > seen).collect();
    let got = created_in_order(&read_until(&mut late, want.len(), Duration::from_secs(20)));
    assert_eq!(got, want, "the socket that joined with since={seen}");
    quiet(&mut late);
}

/// A TCP proxy in front of RabbitMQ that can be cut: the replica behind it loses its broker
/// link alone (its connections are shut, new ones refused) until it is restored.
struct BrokerLink {
    port: u16,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl BrokerLink {
    fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (is_cut, conns) = (cut.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if is_cut.load(Ordering::SeqCst) {
                    continue; // dropped: refused
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let mut conns = conns.lock().unwrap();
                conns.push(client.try_clone().unwrap());
                conns.push(server.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16 * 1024];
                        while let Ok(n @ 1..) = from.read(&mut buf) {
                            if to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Self { port, cut, open }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// `amqp://user:pass@host:port/vhost` → (`host:port`, the URL with `host:port` replaced).
fn through(url: &str, port: u16) -> (String, String) {
    let (scheme_auth, rest) = url.split_once('@').expect("an AMQP URL with credentials");
    let (host, vhost) = rest.split_once('/').unwrap_or((rest, ""));
    (
        host.to_owned(),
        format!("{scheme_auth}@127.0.0.1:{port}/{vhost}"),
    )
}

#[test]
fn what_was_posted_while_a_replicas_broker_link_was_cut_arrives_in_order_and_once() {
    let a = app();
    let config = migrated_config();
    let (upstream, _) = through(&config.amqp_url, 0);
    let link = BrokerLink::start(upstream);
    let mut config_b = migrated_config();
    config_b.amqp_url = through(&config.amqp_url, link.port).1;
    let b = app_with(config_b);

    let alice = person(&a, "alice");
    let bob = person(&a, "bob");
    let g = group(&a, &alice, &[&bob], None);
    let mut socket = room(b.addr, g, &bob.token).unwrap();
    // Through the broker: b's link is up.
    let warm = said(&a, &alice, g, "warm-up");
    assert_eq!(
        next_event(&mut socket, Duration::from_secs(10))["seq"].as_i64(),
        Some(warm)
    );

    // Posted on a while b cannot hear the broker: they reach b's socket anyway (its periodic
    // check or its new link re-reads PostgreSQL), in order, once.
    link.cut();
    let during: Vec<i64> = (0..3)
        .map(|n| said(&a, &alice, g, &format!("during {n}")))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    link.restore();
    let got = created_in_order(&read_until(&mut socket, 3, Duration::from_secs(20)));
    assert_eq!(got, during);
    let after = said(&a, &alice, g, "after");
    assert_eq!(
        next_event(&mut socket, Duration::from_secs(10))["seq"].as_i64(),
        Some(after)
    );
    quiet(&mut socket);

    // While cut, a post on b itself shows b the gap: it re-reads before delivering its own.
    link.cut();
    let missed = said(&a, &alice, g, "posted on a");
    let own = said(&b, &bob, g, "posted on b");
    let got = created_in_order(&read_until(&mut socket, 2, Duration::from_secs(20)));
    assert_eq!(got, [missed, own]);
    link.restore();
    quiet(&mut socket);
}

#[test]
fn subscribe_user_with_since_answers_every_later_event_of_all_the_users_groups() {
    let app = app();
    let alice = person(&app, "alice");
    let bob = person(&app, "bob");
    let g1 = group(&app, &alice, &[&bob], None);
    let g2 = group(&app, &alice, &[&bob], None);
    let m1 = said(&app, &alice, g1, "one");
    let m2 = said(&app, &alice, g2, "two");
    let m3 = said(&app, &alice, g1, "three");
    let base = app.url("");
    let poll = |since: i64, timeout: u64| {
        call(
            "GET",
            &format!(
                "{base}/subscribe/user?user_id={}&since={since}&timeout={timeout}",
                bob.id
            ),
            Some(&bob.token),
            None,
        )
    };
    let (status, body) = poll(m1, 1);
    assert_eq!(status, 200, "{body}");
    let events = body["events"].as_array().unwrap();
    assert_eq!(created_in_order(events), [m2, m3]);
    assert_eq!(
        (
            events[0]["group_id"].as_i64(),
            events[1]["group_id"].as_i64()
        ),
        (Some(g2), Some(g1))
    );
    assert_eq!(body["notified_group"].as_i64(), Some(g2));
    let next = body["next"].as_i64().unwrap();
    assert!(next >= m3, "{body}");

    std::thread::scope(|s| {
        let waiting = s.spawn(|| poll(next, 20));
        std::thread::sleep(Duration::from_millis(300));
        let m4 = said_at(&base, &alice, g2, "four");
        let (status, body) = waiting.join().unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(created_in_order(body["events"].as_array().unwrap()), [m4]);
        let (status, body) = poll(body["next"].as_i64().unwrap(), 1);
        assert_eq!(status, 204, "nothing after the last answer: {body}");
    });
}

/// A room where nobody posts still hears from the server: a ping within its 30 s, which keeps a
/// proxy's read timeout (nginx: 75 s) from closing the quiet socket.
#[test]
fn a_quiet_room_socket_is_pinged_every_30_s() {
    let app = app();
    let alice = person(&app, "alice");
    let g = group(&app, &alice, &[], None);
    let mut socket = room(app.addr, g, &alice.token).unwrap();
    socket
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(40)))
        .unwrap();
    let started = Instant::now();
    loop {
        match socket.read() {
            Ok(Message::Ping(_)) => break,
            Ok(Message::Text(text)) => panic!("nothing was posted, yet: {text}"),
            Ok(_) => {}
            Err(e) => panic!("no ping after {:?}: {e}", started.elapsed()),
        }
    }
    // The socket is still a room socket: a post reaches it.
    let m = said(&app, &alice, g, "after the ping");
    assert_eq!(
        next_event(&mut socket, Duration::from_secs(5))["seq"].as_i64(),
        Some(m)
    );
}
