//! However many replicas the stack runs (`REPLICAS=N scripts/up`): separate `/ping`s through
//! nginx take turns over all of them, and one replica down — killed with SIGKILL, or fallen
//! (`POST /fall`) — costs clients nothing: nginx sends its share to the others.
//! Its own test binary, so no other black-box test runs while a replica is down; the tests here
//! take their turns too (a lock), so two replicas are never down at once.
use std::collections::{BTreeSet, HashSet};
use std::io::{Read, Write};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use advanced_tests::{get, request, stack, Process, Resp, Value};

fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    // A test that failed while holding it poisons it; the next one still runs.
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Each replica's name, from its own port (api1, api2, … locally).
fn instances() -> Vec<String> {
    let s = stack();
    (0..s.replica_count())
        .map(|i| {
            let r = get(&s.replica(i, "/ping"));
            assert_eq!(r.status, 200, "replica {} on its own port: {r:?}", i + 1);
            r.json()["instance"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// `GET /ping` through nginx on a connection of its own, closed after the answer, as a separate
/// `curl` makes it: each lands on whichever nginx worker the kernel picks (`reuseport`).
/// Returns the status and the instance that answered.
fn ping_on_a_new_connection() -> (u16, String) {
    let s = stack();
    let addr = s.url.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr).expect("connect to nginx");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        conn,
        "GET /ping HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    conn.read_to_string(&mut raw)
        .expect("nginx answers and closes");
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {raw:?}"));
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, instance_of(body))
}

/// The `instance` a `/ping` body names; empty when the body is not a replica's `/ping`.
fn instance_of(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["instance"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn admin(i: usize, path: &str) -> Resp {
    let s = stack();
    let bearer = format!("Bearer {}", s.admin_token);
    request(
        "POST",
        &s.replica(i, path),
        &[("authorization", &bearer)],
        None,
    )
}

/// Revives replica `.0` when dropped, also when an assertion failed, so later tests and test
/// binaries find every replica up.
struct ReviveOnDrop(usize);
impl Drop for ReviveOnDrop {
    fn drop(&mut self) {
        admin(self.0, "/revive");
    }
}

/// Waits up to 10 s until every one of `names` answers a `/ping` through nginx. After a
/// revive or a restart nginx rests the replica's peer for `fail_timeout` (1 s) first.
fn wait_until_every_replica_answers(names: &[String]) {
    let s = stack();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = HashSet::new();
    while seen.len() < names.len() && Instant::now() < deadline {
        let r = get(&s.at("/ping"));
        assert_eq!(r.status, 200, "{r:?}");
        seen.insert(r.json()["instance"].as_str().unwrap().to_owned());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        seen.len(),
        names.len(),
        "only {seen:?} of {names:?} answered"
    );
}

#[test]
fn separate_pings_through_nginx_reach_every_replica_in_turn() {
    let _turn = one_at_a_time();
    let names = instances();
    let n = names.len();
    assert_eq!(
        names.iter().collect::<BTreeSet<_>>().len(),
        n,
        "every replica has its own name: {names:?}"
    );
    wait_until_every_replica_answers(&names);
    // nginx's round-robin position is shared by its workers (`zone`), so N separate requests
    // name N distinct replicas when nothing else is sent meanwhile. Other traffic through the
    // same nginx shifts the rotation, hence some slack: every replica within 4 x N.
    let mut answered = Vec::new();
    while answered.len() < 4 * n {
        let (status, instance) = ping_on_a_new_connection();
        assert_eq!(status, 200, "after {answered:?}");
        answered.push(instance);
        if names.iter().all(|name| answered.contains(name)) {
            break;
        }
    }
    let missing: Vec<&String> = names.iter().filter(|n| !answered.contains(n)).collect();
    assert!(
        missing.is_empty(),
        "{missing:?} never answered {} separate requests: {answered:?}",
        answered.len()
    );
    eprintln!(
        "{n} replicas: every one answered within {} separate requests: {answered:?}",
        answered.len()
    );
}

#[test]
fn with_any_one_replica_fallen_every_request_through_nginx_succeeds() {
    let _turn = one_at_a_time();
    let s = stack();
    let names = instances();
    assert!(names.len() >= 2, "needs at least two replicas");
    // Each replica in turn: the failover must not depend on where the fallen one sits in
    // nginx's rotation.
    for (i, fallen) in names.iter().enumerate() {
        wait_until_every_replica_answers(&names);
        let revive = ReviveOnDrop(i);
        let r = admin(i, "/fall");
        assert_eq!(r.status, 200, "{fallen}: {r:?}");
        assert_eq!(r.json()["active"], false);
        assert_eq!(
            get(&s.replica(i, "/ping")).status,
            503,
            "{fallen} is fallen"
        );

        // Enough requests that the rotation passes the fallen replica several times, on pooled
        // connections and on new ones.
        let mut failures = Vec::new();
        let mut others = HashSet::new();
        for k in 0..10 * names.len() {
            let (status, instance) = if k % 2 == 0 {
                let r = get(&s.at("/ping"));
                (r.status, instance_of(&r.body))
            } else {
                ping_on_a_new_connection()
            };
            if status != 200 || instance == *fallen {
                failures.push((k, status, instance));
            } else {
                others.insert(instance);
            }
        }
        assert!(
            failures.is_empty(),
            "with {fallen} fallen, {} of {} requests failed or reached it: {failures:?}",
            failures.len(),
            10 * names.len()
        );
        assert_eq!(
            others.len(),
            names.len() - 1,
            "with {fallen} fallen, every other replica answered: {others:?}"
        );

        let r = admin(i, "/revive");
        assert_eq!((r.status, r.json()["active"].clone()), (200, true.into()));
        drop(revive);
    }
    // And every replica back in rotation.
    wait_until_every_replica_answers(&names);
}

#[test]
fn with_one_replica_killed_two_hundred_requests_all_succeed() {
    let _turn = one_at_a_time();
    let s = stack();
    assert!(s.replica_count() >= 2, "needs at least two replicas");
    s.kill(Process::Replica(0), "KILL");
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
