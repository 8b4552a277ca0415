//! Chat loses nothing across a RabbitMQ restart (locally `rabbitmqctl stop_app && start_app`:
//! the broker stops for every client on this machine, but its Erlang node and data stay, so it
//! comes back in seconds; in containers `docker stop` and `docker start`) or a replica's
//! `kill -9`. While the broker is down a post is still stored and answered 201 (PostgreSQL is
//! the source of truth); once it is back, every replica has reconnected and re-declared its
//! queue by itself, and the socket on the other replica gets what was posted meanwhile, then
//! the later events, in order. A socket whose replica died reconnects to another with `since`
//! and gets exactly what it missed.
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use advanced_tests::chat::{next_event, User};
use advanced_tests::{get, stack, Process};

/// The tests here stop the broker or kill a replica: one at a time.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether replica `i`'s fan-out queue is bound, from its own `/metrics`.
fn bound(i: usize) -> bool {
    let r = get(&stack().replica(i, "/metrics"));
    r.body.lines().any(|l| l == "arena_chat_broker_connected 1")
}

#[test]
fn a_post_during_a_rabbitmq_restart_is_stored_and_delivered_in_order_once_it_is_back() {
    let _turn = one_at_a_time();
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
    // The post made during the outage reaches the socket on the other replica (its re-read of
    // PostgreSQL at the rebinding), then the first post after it, in that order.
    let after = alice.post(&s.replica(0, ""), g, "after the restart");
    assert_eq!(after.status, 201, "{after:?}");
    let event = next_event(&mut socket, Duration::from_secs(15));
    assert_eq!(event["message"], during.json(), "{event}");
    let event = next_event(&mut socket, Duration::from_secs(5));
    assert_eq!(event["message"], after.json(), "{event}");
    // A socket opened after the restart hears events too.
    let mut fresh = bob.room(&s.replica(1, ""), g).expect("a new socket");
    let again = alice.post(&s.replica(0, ""), g, "once more");
    let event = next_event(&mut fresh, Duration::from_secs(5));
    assert_eq!(event["message"], again.json());
}

#[test]
fn a_socket_whose_replica_is_killed_resumes_on_another_with_since_and_misses_nothing() {
    let _turn = one_at_a_time();
    let s = stack();
    assert!(s.replica_count() >= 2, "needs at least two replicas");
    let alice = User::new("alice");
    let bob = User::new("bob");
    let g = alice.group(&[&bob], None);
    let mut socket = bob.room(&s.replica(1, ""), g).expect("bob is a member");
    let seen = alice.post(&s.replica(0, ""), g, "before");
    let event = next_event(&mut socket, Duration::from_secs(5));
    assert_eq!(event["message"], seen.json());
    let last = event["seq"].as_i64().expect("a message event has its seq");

    s.kill(Process::Replica(1), "KILL");
    let missed: Vec<_> = (0..3)
        .map(|n| alice.post(&s.replica(0, ""), g, &format!("missed {n}")))
        .collect();
    let mut resumed = bob
        .room_since(&s.replica(0, ""), g, last)
        .expect("the other replica takes the socket");
    let live = alice.post(&s.replica(0, ""), g, "live");
    let healed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for expected in missed.iter().chain([&live]) {
            assert_eq!(expected.status, 201, "{expected:?}");
            let event = next_event(&mut resumed, Duration::from_secs(5));
            assert_eq!(event["message"], expected.json(), "{event}");
        }
    }));
    s.heal();
    if let Err(panic) = healed {
        std::panic::resume_unwind(panic);
    }
}
