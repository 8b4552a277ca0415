//! `/fall` on api1 costs clients nothing: nginx retries its 503s (GETs and POSTs) on another
//! replica; `/revive` brings it back into rotation. Its own binary: no other black-box test
//! runs while a replica is fallen.
use std::time::{Duration, Instant};

use advanced_tests::{get, request, stack, Resp};

fn admin(path: &str) -> Resp {
    let s = stack();
    let bearer = format!("Bearer {}", s.admin_token);
    request(
        "POST",
        &s.replica(0, path),
        &[("authorization", &bearer)],
        None,
    )
}

/// Revives api1 even when an assertion fails, so later test binaries find both replicas.
struct ReviveOnDrop;
impl Drop for ReviveOnDrop {
    fn drop(&mut self) {
        admin("/revive");
    }
}

#[test]
fn with_api1_fallen_three_hundred_mixed_requests_through_nginx_all_succeed_and_revive_restores_it()
{
    let s = stack();
    assert!(s.replica_ports.len() >= 2, "needs at least two replicas");
    let _revive = ReviveOnDrop;
    let r = admin("/fall");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["active"], false);
    assert_eq!(get(&s.replica(0, "/ping")).status, 503, "api1 is fallen");
    assert_eq!(get(&s.replica(0, "/health")).status, 503);

    // Until the people and accounts domains land, the POSTs are ones every replica answers
    // without side effects (405 and 404); what matters is who answers: never the fallen one.
    let mut failures = Vec::new();
    for i in 0..300 {
        let r = match i % 4 {
            0 | 1 => get(&s.at("/ping")),
            2 => request("POST", &s.at("/ping"), &[], Some("{}")),
            _ => request("POST", &s.at("/nowhere"), &[], Some("{}")),
        };
        let expected = match i % 4 {
            0 | 1 => 200,
            2 => 405,
            _ => 404,
        };
        if r.status != expected || (expected == 200 && r.json()["instance"] == "api1") {
            failures.push((i, r.status, r.body));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 300 failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );

    let r = admin("/revive");
    assert_eq!((r.status, r.json()["active"].clone()), (200, true.into()));
    assert_eq!(get(&s.replica(0, "/health")).status, 200);
    // nginx rests a failed upstream for fail_timeout (1 s); then round robin finds it again.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = std::collections::HashSet::new();
    while seen.len() < s.replica_ports.len() && Instant::now() < deadline {
        let r = get(&s.at("/ping"));
        assert_eq!(r.status, 200, "{r:?}");
        seen.insert(r.json()["instance"].as_str().unwrap().to_owned());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        seen.len(),
        s.replica_ports.len(),
        "after /revive only {seen:?} answered"
    );
}
