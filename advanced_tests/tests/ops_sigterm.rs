//! SIGTERM to a replica while clients stream requests through nginx loses none: the replica
//! stops accepting, finishes what it accepted, and exits; nginx sends the rest to the others.
//! The stream writes — people and credits — so "none lost" is checked where it matters: every
//! person answered 201 is in PostgreSQL, and each account moved by exactly the credits answered
//! 200 (none lost, none applied twice).
use std::time::{Duration, Instant};

use advanced_tests::{get, post, psql, running, stack, unique, wait_exit, Process, StopFlag};

/// What one client saw: requests sent, unexpected answers, people created (ids), credits of 1
/// accepted per account 1–5.
#[derive(Default)]
struct Seen {
    sent: u32,
    failed: Vec<(u16, String)>,
    people: Vec<String>,
    credits: [i64; 5],
}

fn totals(s: &advanced_tests::Stack) -> [i64; 5] {
    std::array::from_fn(|i| {
        let r = get(&s.at(&format!("/clientes/{}/extrato", i + 1)));
        assert_eq!(r.status, 200, "{r:?}");
        r.json()["saldo"]["total"].as_i64().unwrap()
    })
}

/// One request of client `c`'s kind, recorded in `seen`.
fn one_request(s: &advanced_tests::Stack, c: usize, n: u32, seen: &mut Seen) {
    let account = (n as usize + c) % 5;
    let (r, ok) = match c % 4 {
        0 => (get(&s.at("/ping")), 200),
        1 => {
            let body = format!(
                r#"{{"apelido":"{}","nome":"sigterm","nascimento":"2000-01-01","stack":null}}"#,
                unique()
            );
            (post(&s.at("/pessoas"), &body), 201)
        }
        2 => (
            post(
                &s.at(&format!("/clientes/{}/transacoes", account + 1)),
                r#"{"valor":1,"tipo":"c","descricao":"sigterm"}"#,
            ),
            200,
        ),
        _ => (
            get(&s.at(&format!("/clientes/{}/extrato", account + 1))),
            200,
        ),
    };
    seen.sent += 1;
    if r.status != ok {
        seen.failed.push((r.status, r.body));
        return;
    }
    match c % 4 {
        1 => seen
            .people
            .push(r.json()["id"].as_str().unwrap().to_owned()),
        2 => seen.credits[account] += 1,
        _ => {}
    }
}

#[test]
fn sigterm_during_a_stream_of_requests_loses_none_and_the_replica_exits_cleanly() {
    let s = stack();
    assert!(s.replica_count() >= 2, "needs at least two replicas");
    let pid = s.pid_of(Process::Replica(0)).expect("api1 runs");
    let log_before = s.log_mark(Process::Replica(0));
    let before = totals(s);
    let stop = StopFlag::default();
    let (seen, exited_in) = std::thread::scope(|scope| {
        let stop_clients = stop.stop_on_drop();
        let clients: Vec<_> = (0..8)
            .map(|c| {
                let stop = &stop;
                scope.spawn(move || {
                    let mut seen = Seen::default();
                    let mut n = 0;
                    while !stop.stopped() {
                        one_request(s, c, n, &mut seen);
                        n += 1;
                    }
                    seen
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        s.kill(Process::Replica(0), "TERM");
        let t = Instant::now();
        wait_exit(pid, Duration::from_secs(20));
        let exited_in = t.elapsed();
        std::thread::sleep(Duration::from_millis(500));
        drop(stop_clients);
        let mut all = Seen::default();
        for c in clients {
            let seen = c.join().unwrap();
            all.sent += seen.sent;
            all.failed.extend(seen.failed);
            all.people.extend(seen.people);
            for (a, n) in all.credits.iter_mut().zip(seen.credits) {
                *a += n;
            }
        }
        (all, exited_in)
    });
    let Seen {
        sent,
        failed,
        people,
        credits,
    } = seen;
    let still_running = running(pid);
    let tail = s.log_since(Process::Replica(0), &log_before);
    s.heal();
    assert!(!still_running, "api1 ignored SIGTERM for {exited_in:?}");
    assert!(sent > 100, "only {sent} requests were sent");
    assert!(
        failed.is_empty(),
        "{} of {sent} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(
        tail.contains("stopping"),
        "api1 did not log its drain:\n{tail}"
    );
    assert!(
        tail.contains("stopped"),
        "api1 did not finish its shutdown:\n{tail}"
    );
    assert_eq!(
        get(&s.replica(0, "/ping")).status,
        200,
        "api1 is back after scripts/up"
    );

    let after = totals(s);
    for i in 0..5 {
        assert_eq!(
            after[i] - before[i],
            credits[i],
            "account {}: the balance moved by exactly the credits answered 200",
            i + 1
        );
        // Leave the balances as they were for the tests that follow.
        if credits[i] > 0 {
            let back = format!(
                r#"{{"valor":{},"tipo":"d","descricao":"sigterm"}}"#,
                credits[i]
            );
            assert_eq!(
                post(&s.at(&format!("/clientes/{}/transacoes", i + 1)), &back).status,
                200
            );
        }
    }
    assert!(
        !people.is_empty(),
        "no person was created during the stream"
    );
    assert_eq!(get(&s.at("/contagem-pessoas?wait=30")).status, 200);
    let found = psql(
        &s.database_url(),
        &format!(
            "SELECT count(*) FROM pessoas WHERE id = ANY('{{{}}}'::uuid[])",
            people.join(",")
        ),
    );
    assert_eq!(
        found,
        people.len().to_string(),
        "every person answered 201 is in PostgreSQL"
    );
}
