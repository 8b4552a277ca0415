//! A replica killed with SIGKILL costs clients nothing: nginx sends its share elsewhere.
//! Its own test binary, so no other black-box test runs while a replica is down.
use advanced_tests::{get, read_pid, signal, stack};

#[test]
fn with_one_replica_killed_two_hundred_requests_all_succeed() {
    let s = stack();
    assert!(s.replica_ports.len() >= 2, "needs at least two replicas");
    let pid = read_pid(&s.pid_file("api1")).expect("scripts/up wrote api1's pid");
    signal(pid, "KILL");
    let failed: Vec<u16> = (0..200)
        .map(|_| get(&s.at("/ping")).status)
        .filter(|&st| st != 200)
        .collect();
    let answered_by = get(&s.at("/ping")).json()["instance"].clone();
    s.heal();
    assert!(
        failed.is_empty(),
        "{} of 200 failed: {failed:?}",
        failed.len()
    );
    assert_ne!(answered_by, "api1", "a killed replica answered");
    assert_eq!(
        get(&s.replica(0, "/ping")).status,
        200,
        "api1 is back after scripts/up"
    );
}
