//! A replica stopped with SIGTERM closes its WebSockets with 1001 (going away) and deletes its
//! connected users before it exits: no ghost rows, not even for 30 s. Its own test binary, so
//! no other black-box test runs while a replica is down.
use std::time::{Duration, Instant};

use advanced_tests::ws::{connect, listed_on, next_of, CloseCode, Message};
use advanced_tests::{stack, wait_exit, Process};

#[test]
fn sigterm_closes_sockets_with_going_away_and_deletes_the_replicas_users() {
    let s = stack();
    assert!(s.replica_count() >= 2, "needs at least two replicas");
    let username = format!("leaving-{}", std::process::id());
    let api1 = s.replica(0, "");
    let mut socket = connect(&api1, &username).expect("upgrade on api1");
    next_of(&mut socket, "time");
    assert_eq!(listed_on(1, &username), 1, "api2 sees api1's socket");

    let pid = s.kill(Process::Replica(0), "TERM");
    let close = loop {
        match socket.read() {
            Ok(Message::Close(frame)) => break frame,
            Ok(_) => continue,
            Err(e) => panic!("the socket ended without a close frame: {e}"),
        }
    };
    // The rows go before the process exits; allow for the exit itself, far below 30 s.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut left = listed_on(1, &username);
    while left > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        left = listed_on(1, &username);
    }
    // The stack's up keeps a replica it finds running: let this one finish exiting first.
    let exited = wait_exit(pid, Duration::from_secs(20));
    s.heal();
    assert!(exited, "api1 did not exit within 20 s of SIGTERM");
    let close = close.expect("a close frame with a code");
    assert_eq!(close.code, CloseCode::Away, "{close:?}");
    assert_eq!(
        left, 0,
        "api1's user is still listed after its graceful stop"
    );
}
