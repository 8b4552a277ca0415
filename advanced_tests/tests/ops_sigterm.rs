//! SIGTERM to a replica while clients stream requests through nginx loses none: the replica
//! stops accepting, finishes what it accepted, and exits; nginx sends the rest to the others.
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use advanced_tests::{get, read_pid, request, running, signal, stack, wait_exit};

#[test]
fn sigterm_during_a_stream_of_requests_loses_none_and_the_replica_exits_cleanly() {
    let s = stack();
    assert!(s.replica_ports.len() >= 2, "needs at least two replicas");
    let pid = read_pid(&s.pid_file("api1")).expect("scripts/up wrote api1's pid");
    let log = s.state_dir.join("logs/api1.log");
    let log_before = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let stop = AtomicBool::new(false);
    let (sent, failed, exited_in) = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..8)
            .map(|c| {
                let stop = &stop;
                scope.spawn(move || {
                    let (mut sent, mut failed) = (0u32, Vec::new());
                    while !stop.load(Ordering::Relaxed) {
                        let r = if c % 2 == 0 {
                            get(&s.at("/ping"))
                        } else {
                            request("POST", &s.at("/ping"), &[], Some("{}"))
                        };
                        sent += 1;
                        let ok = if c % 2 == 0 { 200 } else { 405 };
                        if r.status != ok {
                            failed.push((r.status, r.body));
                        }
                    }
                    (sent, failed)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        signal(pid, "TERM");
        let t = Instant::now();
        wait_exit(pid, Duration::from_secs(20));
        let exited_in = t.elapsed();
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        let mut sent = 0;
        let mut failed = Vec::new();
        for c in clients {
            let (n, f) = c.join().unwrap();
            sent += n;
            failed.extend(f);
        }
        (sent, failed, exited_in)
    });
    let still_running = running(pid);
    let tail = std::fs::read_to_string(&log).unwrap_or_default();
    let tail = tail
        .get(log_before as usize..)
        .unwrap_or_default()
        .to_owned();
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
}
