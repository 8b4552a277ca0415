//! `/fall` on api1 costs clients nothing: nginx retries its 503s (GETs and POSTs) on another
//! replica, so people are created and accounts credited while it is down, by api2 only;
//! `/revive` brings it back into rotation. The credits are debited back afterwards. Its own binary: no other black-box test
//! runs while a replica is fallen.
use std::time::{Duration, Instant};

use advanced_tests::{get, post, request, stack, Resp};

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

/// A prefix no earlier run used, for apelidos (≤ 32 characters with `-<i>`).
fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("fall{nanos:x}")
}

fn total(cliente: usize) -> i64 {
    let r = get(&stack().at(&format!("/clientes/{cliente}/extrato")));
    assert_eq!(r.status, 200, "{r:?}");
    r.json()["saldo"]["total"].as_i64().unwrap()
}

/// api1's count of people it created and transactions it accepted, from its own `/metrics`
/// (which a fallen replica still serves).
fn api1_writes() -> (f64, f64) {
    let text = get(&stack().replica(0, "/metrics")).body;
    let series = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0.0)
    };
    (
        series(r#"arena_http_requests_total{route="/pessoas",method="POST",status="201"}"#),
        series(
            r#"arena_http_requests_total{route="/clientes/{id}/transacoes",method="POST",status="200"}"#,
        ),
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
    assert!(s.replica_count() >= 2, "needs at least two replicas");
    let _revive = ReviveOnDrop;
    let r = admin("/fall");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["active"], false);
    assert_eq!(get(&s.replica(0, "/ping")).status, 503, "api1 is fallen");
    assert_eq!(get(&s.replica(0, "/health")).status, 503);

    // Writes among them: new people (unique apelidos) and credits of 1 to accounts 1–5, each
    // of which must be answered by api2 alone (api1's success counters must not move).
    let run = run_id();
    let accounts_before: Vec<i64> = (1..=5).map(total).collect();
    let api1_writes_before = api1_writes();
    let mut credited = [0i64; 5];
    let mut last_person: Option<String> = None;
    let mut failures = Vec::new();
    for i in 0..300 {
        let cliente = (i / 6) % 5 + 1;
        let (r, expected) = match i % 6 {
            0 => (get(&s.at("/ping")), 200),
            1 => {
                let body = format!(
                    r#"{{"apelido":"{run}-{i}","nome":"Caída","nascimento":"1990-01-01","stack":["Rust"]}}"#
                );
                let r = post(&s.at("/pessoas"), &body);
                if r.status == 201 {
                    last_person = r.location.clone();
                }
                (r, 201)
            }
            2 => {
                let r = post(
                    &s.at(&format!("/clientes/{cliente}/transacoes")),
                    r#"{"valor":1,"tipo":"c","descricao":"queda"}"#,
                );
                if r.status == 200 {
                    credited[cliente - 1] += 1;
                }
                (r, 200)
            }
            3 => match &last_person {
                Some(location) => (get(&s.at(location)), 200),
                None => (get(&s.at("/contagem-pessoas")), 200),
            },
            4 => (get(&s.at(&format!("/clientes/{cliente}/extrato"))), 200),
            _ => (get(&s.at(&format!("/pessoas?t={run}"))), 200),
        };
        if r.status != expected || (i % 6 == 0 && r.json()["instance"] == "api1") {
            failures.push((i, r.status, r.body));
        }
    }
    // Put the balances back before asserting anything, so a failure leaves them as they were.
    for (k, &sum) in credited.iter().enumerate() {
        if sum > 0 {
            let r = post(
                &s.at(&format!("/clientes/{}/transacoes", k + 1)),
                &format!(r#"{{"valor":{sum},"tipo":"d","descricao":"devolve"}}"#),
            );
            assert_eq!(r.status, 200, "debiting back {sum} from {}: {r:?}", k + 1);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 300 failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert_eq!(credited.iter().sum::<i64>(), 50, "every credit succeeded");
    assert_eq!(
        (1..=5).map(total).collect::<Vec<_>>(),
        accounts_before,
        "credits debited back"
    );
    assert_eq!(
        api1_writes(),
        api1_writes_before,
        "the fallen api1 created and credited nothing"
    );

    let r = admin("/revive");
    assert_eq!((r.status, r.json()["active"].clone()), (200, true.into()));
    assert_eq!(get(&s.replica(0, "/health")).status, 200);
    // nginx rests a failed upstream for fail_timeout (1 s); then round robin finds it again.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = std::collections::HashSet::new();
    while seen.len() < s.replica_count() && Instant::now() < deadline {
        let r = get(&s.at("/ping"));
        assert_eq!(r.status, 200, "{r:?}");
        seen.insert(r.json()["instance"].as_str().unwrap().to_owned());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        seen.len(),
        s.replica_count(),
        "after /revive only {seen:?} answered"
    );
}
