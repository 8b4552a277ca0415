//! The foundation through nginx: load balancing, concurrency, each replica on its own port,
//! the JSON error contract.
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use advanced_tests::{get, request, stack};

/// Pings through nginx until every replica has answered (10 s at most). A replica the previous
/// test binary killed or stopped and `heal` restarted can still be resting in nginx for its
/// `fail_timeout` (1 s), and would miss its share of what follows.
fn until_every_replica_answers() {
    let s = stack();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = HashSet::new();
    while seen.len() < s.replica_count() && Instant::now() < deadline {
        let r = get(&s.at("/ping"));
        if r.status == 200 {
            seen.insert(r.json()["instance"].as_str().unwrap().to_owned());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn ping_through_nginx_reaches_every_replica_nearly_evenly() {
    let s = stack();
    until_every_replica_answers();
    let mut seen: HashMap<String, u32> = HashMap::new();
    for _ in 0..100 {
        let r = get(&s.at("/ping"));
        assert_eq!(r.status, 200, "{r:?}");
        let v = r.json();
        assert_eq!(
            v["message"],
            format!("pong from {}", v["instance"].as_str().unwrap())
        );
        *seen
            .entry(v["instance"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(
        seen.len(),
        s.replica_count(),
        "not every replica answered: {seen:?}"
    );
    let even = 100 / s.replica_count() as u32;
    for (instance, n) in &seen {
        // Round robin gives an exact split; other tests running at once may shift it a little.
        assert!(
            n.abs_diff(even) <= even / 2,
            "{instance} answered {n} of 100: {seen:?}"
        );
    }
}

#[test]
fn twenty_concurrent_clients_of_fifty_requests_all_succeed() {
    let s = stack();
    let failures: u32 = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..20)
            .map(|_| {
                scope.spawn(|| {
                    (0..50)
                        .filter(|_| get(&s.at("/ping")).status != 200)
                        .count() as u32
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(failures, 0);
}

#[test]
fn each_replica_answers_on_its_own_port_with_its_own_name() {
    let s = stack();
    for i in 0..s.replica_count() {
        let v = get(&s.replica(i, "/ping")).json();
        assert_eq!(v["instance"], s.replica_name(i));
        assert_eq!(v["host"], s.replica_name(i));
    }
}

#[test]
fn root_and_health_describe_the_replica() {
    let s = stack();
    let root = get(&s.at("/")).json();
    assert_eq!(root["name"], "arena");
    assert!(root["version"].is_string());
    let health = get(&s.at("/health"));
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "alive");
    assert_eq!(health.json()["active"], true);
    assert_eq!(request("HEAD", &s.at("/health"), &[], None).status, 200);
}

#[test]
fn errors_are_json_with_the_contract_status() {
    let s = stack();
    let r = get(&s.at("/no/such/route"));
    assert_eq!(r.status, 404);
    assert!(r.json()["error"].is_string());
    assert_eq!(r.content_type.as_deref(), Some("application/json"));

    let r = request("DELETE", &s.at("/ping"), &[], None);
    assert_eq!(r.status, 405);
    assert!(r.json()["error"].is_string());
}
