//! A replica killed with SIGKILL cannot delete its connected users; they must still vanish from
//! `/connected-users` within 30 s (its rows stop being refreshed). Its own test binary, so no
//! other black-box test runs while a replica is down.
use std::time::{Duration, Instant};

use advanced_tests::ws::{connect, listed_on, next_of};
use advanced_tests::{get, stack, Process};

/// SPEC §6: a dead replica's rows disappear within 30 s; a little slack for the polling.
const VANISH_WITHIN: Duration = Duration::from_secs(31);

#[test]
fn the_users_of_a_killed_replica_vanish_within_thirty_seconds() {
    let s = stack();
    assert!(s.replica_count() >= 2, "needs at least two replicas");
    let username = format!("doomed-{}", std::process::id());
    // Two sockets straight on api1 (the one about to die), so the test does not depend on how
    // nginx spreads them.
    let api1 = s.replica(0, "");
    let mut sockets: Vec<_> = (0..2)
        .map(|_| connect(&api1, &username).expect("upgrade on api1"))
        .collect();
    for socket in &mut sockets {
        next_of(socket, "time");
    }
    assert_eq!(listed_on(1, &username), 2, "api2 sees api1's two sockets");

    s.kill(Process::Replica(0), "KILL");
    let killed = Instant::now();
    let mut vanished = None;
    while killed.elapsed() < VANISH_WITHIN {
        if listed_on(1, &username) == 0 {
            vanished = Some(killed.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(sockets);
    s.heal();
    let vanished = vanished.expect("the killed replica's users vanished within 30 s");
    eprintln!("a killed replica's users vanished after {vanished:?}");
    assert_eq!(get(&s.replica(0, "/ping")).status, 200, "api1 is back");
    assert_eq!(listed_on(0, &username), 0, "no ghost after api1's restart");
}
