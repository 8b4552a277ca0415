//! People survive their faults: while POSTs stream in through nginx, the inserter is killed
//! with SIGKILL and started again, and RabbitMQ's application is restarted (`rabbitmqctl
//! stop_app && start_app`: the broker stops for every client on this machine, but its
//! Erlang node and data stay, so it comes back in seconds). Every 201 must end up in
//! PostgreSQL exactly once; the only other answers allowed meanwhile are 503 (and 502 while
//! `heal` restarts replicas).
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use advanced_tests::{get, post, psql, read_pid, signal, stack, StopFlag};

fn apelido(worker: usize, n: u64) -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros();
    format!("f{t:x}w{worker}n{n}")
}

fn rabbitmqctl(arg: &str) {
    let status = std::process::Command::new("rabbitmqctl")
        .arg(arg)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("rabbitmqctl is installed with RabbitMQ");
    assert!(status.success(), "rabbitmqctl {arg} failed");
}

/// Messages in the stack's dead-letter queue (0 when it does not exist yet).
fn dead_letters() -> u64 {
    let out = std::process::Command::new("rabbitmqctl")
        .args(["list_queues", "--silent", "name", "messages"])
        .output()
        .expect("rabbitmqctl is installed with RabbitMQ");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("arena.people.dead\t")?.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn every_201_survives_an_inserter_kill_and_a_rabbitmq_restart() {
    let s = stack();
    let dead_before = dead_letters();
    let stop = StopFlag::default();
    let created = Mutex::new(Vec::<String>::new());
    let unavailable = AtomicU64::new(0);
    let created_since = |n: usize, limit: Duration| {
        let start = Instant::now();
        while start.elapsed() < limit {
            if created.lock().unwrap().len() >= n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    };
    std::thread::scope(|scope| {
        let _stop = stop.stop_on_drop();
        for worker in 0..4 {
            let (stop, created, unavailable) = (&stop, &created, &unavailable);
            scope.spawn(move || {
                let mut n = 0;
                while !stop.stopped() {
                    n += 1;
                    let body = format!(
                        r#"{{"apelido":"{}","nome":"Falha Segura","nascimento":"1991-03-04","stack":["Rust"]}}"#,
                        apelido(worker, n)
                    );
                    let r = post(&s.at("/pessoas"), &body);
                    match r.status {
                        201 => created.lock().unwrap().push(r.json()["id"].as_str().unwrap().to_owned()),
                        // 503: the broker is restarting. 502: `heal` restarts replicas whose
                        // binary changed. Neither is a 201, so neither is owed a row.
                        502 | 503 => {
                            unavailable.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        other => panic!("unexpected {other}: {r:?}"),
                    }
                }
            });
        }

        assert!(
            created_since(50, Duration::from_secs(30)),
            "POSTs are flowing"
        );
        let pid = read_pid(&s.pid_file("inserter")).expect("scripts/up started the inserter");
        signal(pid, "KILL");
        let before = created.lock().unwrap().len();
        assert!(
            created_since(before + 50, Duration::from_secs(30)),
            "201s go on without an inserter"
        );
        s.heal();
        let new_pid = read_pid(&s.pid_file("inserter")).expect("heal restarted the inserter");
        assert_ne!(new_pid, pid);

        rabbitmqctl("stop_app");
        std::thread::sleep(Duration::from_millis(500));
        rabbitmqctl("start_app");
        let before = created.lock().unwrap().len();
        assert!(
            created_since(before + 100, Duration::from_secs(60)),
            "publishers reconnect after RabbitMQ restarts"
        );
    });

    let ids = created.into_inner().unwrap();
    let drained = get(&s.at("/contagem-pessoas?wait=60"));
    assert_eq!(drained.status, 200, "{drained:?}");
    let url = s
        .env
        .get("DATABASE_URL")
        .expect("stack.env names DATABASE_URL");
    let list = ids.join(",");
    let found = psql(
        url,
        &format!("SELECT count(*) || ' ' || count(DISTINCT id) FROM pessoas WHERE id = ANY('{{{list}}}'::uuid[])"),
    );
    assert_eq!(
        found,
        format!("{0} {0}", ids.len()),
        "every 201 is in PostgreSQL once ({} answered 503 meanwhile)",
        unavailable.load(Ordering::Relaxed)
    );
    // A 201 refused by PostgreSQL (say, its apelido taken by a person answered 503 whose
    // message arrived anyway) would sit here rather than be lost silently.
    assert_eq!(dead_letters(), dead_before, "nothing was dead-lettered");
}
