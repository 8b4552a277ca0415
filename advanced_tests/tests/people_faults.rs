//! People survive their faults (issue 10, item 3). While POSTs stream in through nginx, in
//! order: replica api1 is killed with SIGKILL and healed (the stack's up script starts it
//! again); the inserter likewise; RabbitMQ stops and starts (locally `rabbitmqctl stop_app &&
//! start_app`: the broker stops for every client on this machine, but its Erlang node and data
//! stay; in containers `docker stop` and `docker start`: the whole node, from its durable
//! queue on disk); and Redis restarts for real (locally `SHUTDOWN NOSAVE`, then `redis-server`
//! again with the settings it ran with; in containers `docker kill`, `docker start`), so it
//! comes back empty, as after a crash, and the replicas rebuild its apelido keys from
//! PostgreSQL before they take a POST again. Before each fault, 201s flow again.
//!
//! Afterwards every id answered 201 is in PostgreSQL exactly once — polled for, not waited for
//! with `/contagem-pessoas?wait=`: its pending set died with Redis — nothing was dead-lettered,
//! and apelidos created before the Redis restart are refused after it. The answers other than
//! 201 are counted per fault and printed, with the time from the first to the last of them (a
//! client tries again 20 ms after a failure, so the count mostly measures that time). Killing
//! a replica may cost only the requests it held (nginx retries them on another, where one that
//! got as far as its reservation meets its own apelido: 422); the other faults answer 503
//! while a service is down (nginx passes a 503 on to the next replica and answers it when every
//! replica does; 502 is still accepted, from nginx versions that do not map their own 502 to
//! 503 as nginx.conf asks). Nothing else is allowed.
use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use advanced_tests::{post, stack, unique, wait_exit, Process, Stack, StopFlag};

/// Threads streaming POSTs: the most requests a fault can catch in flight.
const WORKERS: usize = 4;
/// The phases, as printed; the answers of each are counted apart.
const PHASES: [&str; 5] = [
    "warmup",
    "replica_kill",
    "inserter_kill",
    "rabbitmq",
    "redis",
];
const REPLICA_KILL: usize = 1;
/// How long 201s may take to flow again after a fault has been healed.
const RECOVERY: Duration = Duration::from_secs(60);

fn body(apelido: &str) -> String {
    format!(
        r#"{{"apelido":"{apelido}","nome":"Falha Segura","nascimento":"1991-03-04","stack":["Rust"]}}"#
    )
}

/// What the POST threads saw.
#[derive(Default)]
struct Seen {
    /// (id, apelido) of every 201, in order.
    created: Vec<(String, String)>,
    /// Answers other than 201, by phase and status.
    other: BTreeMap<(usize, u16), u32>,
    /// The first and the last answer other than 201 of each phase: how long it lasted.
    outage: BTreeMap<usize, (Instant, Instant)>,
    /// The first body of each (phase, status) other than 201: printed, and in failure messages.
    samples: BTreeMap<(usize, u16), String>,
}

/// Runs `sql` through psql's standard input (a list of every id created is too long for one
/// command-line argument) and returns its unaligned, tuples-only output.
fn psql_stdin(url: &str, sql: &str) -> String {
    let mut child = Command::new("psql")
        .args([url, "-tA", "-v", "ON_ERROR_STOP=1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql is installed with PostgreSQL");
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(sql.as_bytes())
        .expect("psql reads its input");
    let out = child.wait_with_output().expect("psql runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Kills `p` with SIGKILL and heals the stack, which starts it again; returns once the new one
/// runs.
fn kill_and_heal(s: &Stack, p: Process) {
    let pid = s.kill(p, "KILL");
    assert!(wait_exit(pid, Duration::from_secs(5)), "{p:?} died");
    s.heal();
    let new_pid = s
        .pid_of(p)
        .unwrap_or_else(|| panic!("heal restarted {p:?}"));
    assert_ne!(new_pid, pid, "heal restarted {p:?}");
}

/// The entries of one phase in a map keyed by (phase, status), by status.
fn of_phase<V>(map: &BTreeMap<(usize, u16), V>, phase: usize) -> impl Iterator<Item = (u16, &V)> {
    map.range((phase, 0)..(phase + 1, 0))
        .map(|(&(_, status), v)| (status, v))
}

/// POSTs the apelido of a person created before the Redis restart until the answer is not a
/// 503/502 (the rebuild may still run); returns that answer's status.
fn post_again(s: &Stack, apelido: &str) -> u16 {
    let started = Instant::now();
    loop {
        let r = post(&s.at("/pessoas"), &body(apelido));
        if !matches!(r.status, 502 | 503) || started.elapsed() > RECOVERY {
            return r.status;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn every_201_survives_a_replica_kill_an_inserter_kill_and_rabbitmq_and_redis_restarts() {
    let s = stack();
    let started = Instant::now();
    let queue = s.people_queue();
    let dead_before = s.queue_depth(&format!("{queue}.dead"));
    let stop = StopFlag::default();
    let phase = AtomicUsize::new(0);
    let seen = Mutex::new(Seen::default());
    let created = || seen.lock().unwrap().created.len();
    // Waits until `n` more people than now have been answered 201.
    let flowing = |n: usize, limit: Duration| {
        let target = created() + n;
        let start = Instant::now();
        while start.elapsed() < limit {
            if created() >= target {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    };
    let mut before_redis = Vec::new();
    std::thread::scope(|scope| {
        let _stop = stop.stop_on_drop();
        for _ in 0..WORKERS {
            let (stop, phase, seen) = (&stop, &phase, &seen);
            scope.spawn(move || {
                while !stop.stopped() {
                    let apelido = unique();
                    let at = phase.load(Ordering::SeqCst);
                    let r = post(&s.at("/pessoas"), &body(&apelido));
                    let mut seen = seen.lock().unwrap();
                    if r.status == 201 {
                        let id = r.json()["id"].as_str().unwrap().to_owned();
                        seen.created.push((id, apelido));
                        continue;
                    }
                    *seen.other.entry((at, r.status)).or_default() += 1;
                    let now = Instant::now();
                    seen.outage.entry(at).or_insert((now, now)).1 = now;
                    seen.samples.entry((at, r.status)).or_insert(r.body);
                    drop(seen);
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
        }

        assert!(flowing(50, Duration::from_secs(30)), "POSTs are flowing");

        phase.store(1, Ordering::SeqCst);
        kill_and_heal(s, Process::Replica(0));
        assert!(
            flowing(50, RECOVERY),
            "201s flow again after api1's SIGKILL"
        );

        phase.store(2, Ordering::SeqCst);
        let pid = s.kill(Process::Inserter, "KILL");
        assert!(wait_exit(pid, Duration::from_secs(5)), "the inserter died");
        assert!(flowing(50, RECOVERY), "201s go on without an inserter");
        s.heal();
        assert_ne!(
            s.pid_of(Process::Inserter),
            Some(pid),
            "heal restarted the inserter"
        );
        assert!(flowing(50, RECOVERY), "201s flow with the new inserter");

        phase.store(3, Ordering::SeqCst);
        s.broker_stop();
        std::thread::sleep(Duration::from_millis(500));
        s.broker_start();
        assert!(
            flowing(100, RECOVERY),
            "publishers reconnect after RabbitMQ restarts"
        );

        // The first person of the run, long in PostgreSQL, and the last before the restart,
        // perhaps still in the queue when Redis empties.
        {
            let seen = seen.lock().unwrap();
            before_redis.push(seen.created[0].1.clone());
            before_redis.push(seen.created.last().unwrap().1.clone());
        }
        phase.store(4, Ordering::SeqCst);
        s.restart_redis();
        // A capped stack's Redis goes back into its cgroup (scripts/up --limits); otherwise
        // nothing to do.
        s.heal();
        assert!(
            flowing(100, RECOVERY),
            "POSTs are created again once the apelido keys are rebuilt"
        );
    });

    let seen = seen.into_inner().unwrap();
    let mut report = Vec::new();
    for (i, name) in PHASES.iter().enumerate().skip(1) {
        let statuses: Vec<String> = of_phase(&seen.other, i)
            .map(|(status, n)| format!("{status}:{n}"))
            .collect();
        let non2xx: u32 = of_phase(&seen.other, i).map(|(_, n)| n).sum();
        report.push((*name, non2xx));
        let outage = seen
            .outage
            .get(&i)
            .map_or(0, |(first, last)| last.duration_since(*first).as_millis());
        // What each status said: a 422 among a fault's 503s is explained by its body.
        let bodies: Vec<String> = of_phase(&seen.samples, i)
            .map(|(status, body)| format!("{status}={body}"))
            .collect();
        println!(
            "people_faults phase={name} non2xx={non2xx} statuses={} outage_ms={outage} first_bodies={}",
            statuses.join(","),
            bodies.join(" ")
        );
    }
    println!(
        "people_faults created={} workers={WORKERS} seconds={}",
        seen.created.len(),
        started.elapsed().as_secs()
    );

    let unexpected: Vec<_> = seen
        .other
        .keys()
        .filter(|(_, status)| !matches!(status, 422 | 502 | 503))
        .collect();
    assert!(
        unexpected.is_empty(),
        "only 422, 502 and 503 besides 201: {unexpected:?} {:?}",
        seen.samples
    );
    assert!(
        report[REPLICA_KILL - 1].1 as usize <= WORKERS,
        "a replica's SIGKILL costs at most the {WORKERS} requests in flight: {report:?} {:?}",
        seen.samples
    );

    // Redis lost every apelido key; PostgreSQL's came back before any POST was let through.
    for apelido in &before_redis {
        assert_eq!(
            post_again(s, apelido),
            422,
            "an apelido created before Redis restarted is still taken"
        );
    }

    let url = &s.database_url();
    let ids: Vec<&str> = seen.created.iter().map(|(id, _)| id.as_str()).collect();
    let sql = format!(
        "SELECT count(*) || ' ' || count(DISTINCT id) FROM pessoas WHERE id = ANY('{{{}}}'::uuid[]);",
        ids.join(",")
    );
    let expected = format!("{0} {0}", ids.len());
    let polled = Instant::now();
    let mut found = psql_stdin(url, &sql);
    while found != expected && polled.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(500));
        found = psql_stdin(url, &sql);
    }
    assert_eq!(found, expected, "every 201 is in PostgreSQL, once");
    // A 201 refused by PostgreSQL (its apelido handed out twice, say) would sit here rather
    // than be lost silently.
    assert_eq!(
        s.queue_depth(&format!("{queue}.dead")),
        dead_before,
        "nothing was dead-lettered"
    );
}
