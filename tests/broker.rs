//! The RabbitMQ connection helper against a broker that is not there. A process of its own:
//! the check reads the process's resident memory, which other tests would move.
use std::net::TcpListener;

use arena::infra;

fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// lapin 4.12 keeps ~10 KB of every connection attempt that fails; during a broker outage a
/// replica that reconnected per POST grew by 137 MB in 8 s. `infra::amqp::connect` probes the
/// port first, so a refused attempt never reaches lapin: 2 000 of them (20 MB through lapin)
/// leave the process about where it was.
#[test]
fn refused_connects_leave_nothing_behind() {
    // A port that refuses: bound, then let go.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
    infra::block_on(async {
        let refused = |e: &lapin::Error| matches!(e.kind(), lapin::ErrorKind::IOError(io) if io.kind() == std::io::ErrorKind::ConnectionRefused);
        // Warm-up: the runtime's and the allocator's first allocations are not a leak.
        for _ in 0..200 {
            let e = infra::amqp::connect(&url, "broker-test")
                .await
                .expect_err("refused");
            assert!(refused(&e), "{e}");
        }
        let before = resident_kib();
        for _ in 0..2_000 {
            let e = infra::amqp::connect(&url, "broker-test")
                .await
                .expect_err("refused");
            assert!(refused(&e), "{e}");
        }
        let grown = resident_kib().saturating_sub(before);
        assert!(grown < 5 * 1024, "2 000 refused connects kept {grown} KiB");
    });
}
