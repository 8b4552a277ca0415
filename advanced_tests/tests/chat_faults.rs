//! Chat survives a RabbitMQ restart (locally `rabbitmqctl stop_app && start_app`: the broker
//! stops for every client on this machine, but its Erlang node and data stay, so it comes back
//! in seconds; in containers `docker stop` and `docker start`). While the broker is down a post is still stored and answered 201
//! (PostgreSQL is the source of truth); once it is back, every replica has reconnected and
//! re-declared its queue by itself, and events reach sockets on other replicas again.
use std::time::{Duration, Instant};

use advanced_tests::chat::{next_event, User};
use advanced_tests::{get, stack};

/// Whether replica `i`'s fan-out queue is bound, from its own `/metrics`.
fn bound(i: usize) -> bool {
    let r = get(&stack().replica(i, "/metrics"));
    r.body.lines().any(|l| l == "arena_chat_broker_connected 1")
}

#[test]
fn a_post_during_a_rabbitmq_restart_is_stored_and_later_events_are_delivered_again() {
    let s = stack();
    let alice = User::new("alice");
    let bob = User::new("bob");
    let g = alice.group(&[&bob], None);
    let mut socket = bob.room(&s.replica(1, ""), g).expect("bob is a member");

    s.broker_stop();
    let during = alice.post(&s.replica(0, ""), g, "while the broker is down");
    s.broker_start();
    assert_eq!(during.status, 201, "{during:?}");
    let page = bob.call("GET", &s.at(&format!("/messages?groupId={g}")), None);
    assert_eq!(page.status, 200, "{page:?}");
    assert_eq!(
        page.json()["messages"][0]["content"],
        "while the broker is down"
    );

    let started = Instant::now();
    while !(0..s.replica_count()).all(bound) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the replicas did not rebind their chat queues"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The first post after the rebinding reaches the socket on the other replica.
    let after = alice.post(&s.replica(0, ""), g, "after the restart");
    assert_eq!(after.status, 201, "{after:?}");
    loop {
        let event = next_event(&mut socket, Duration::from_secs(5));
        if event["message"]["content"] == "after the restart" {
            assert_eq!(event["message"], after.json());
            break;
        }
    }
    // A socket opened after the restart hears events too.
    let mut fresh = bob.room(&s.replica(1, ""), g).expect("a new socket");
    let again = alice.post(&s.replica(0, ""), g, "once more");
    let event = next_event(&mut fresh, Duration::from_secs(5));
    assert_eq!(event["message"], again.json());
}
