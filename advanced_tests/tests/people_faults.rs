//! People survive their faults (issue 10, item 3). While POSTs stream in through nginx, in
//! order: replica api1 is killed with SIGKILL and healed (`scripts/up` starts it again); the
//! inserter likewise; RabbitMQ's application restarts (`rabbitmqctl stop_app && start_app`:
//! the broker stops for every client on this machine, but its Erlang node and data stay); and
//! Redis restarts for real (`SHUTDOWN NOSAVE`, then `redis-server` again with the settings it
//! ran with), so it comes back empty, as after a crash, and the replicas rebuild its apelido
//! keys from PostgreSQL before they take a POST again. Before each fault, 201s flow again.
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

use advanced_tests::{post, read_pid, signal, stack, unique, wait_exit, Stack, StopFlag};

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

fn rabbitmqctl(arg: &str) {
    let status = Command::new("rabbitmqctl")
        .arg(arg)
        .stdout(Stdio::null())
        .status()
        .expect("rabbitmqctl is installed with RabbitMQ");
    assert!(status.success(), "rabbitmqctl {arg} failed");
}

/// Messages in `queue`'s dead-letter queue (0 when it does not exist yet).
fn dead_letters(queue: &str) -> u64 {
    let out = Command::new("rabbitmqctl")
        .args(["list_queues", "--silent", "name", "messages"])
        .output()
        .expect("rabbitmqctl is installed with RabbitMQ");
    let dead = format!("{queue}.dead\t");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(&dead)?.trim().parse().ok())
        .unwrap_or(0)
}

fn redis_cli(port: u16, args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .stderr(Stdio::null())
        .output()
        .expect("redis-cli is installed with Redis");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Stops the Redis on `port` without saving (what a crash leaves: nothing, as it keeps nothing
/// on disk) and starts it again on the same port with the settings it ran with.
fn restart_redis(port: u16) {
    let setting = |name: &str| {
        let got = redis_cli(port, &["CONFIG", "GET", name]).expect("Redis answers CONFIG GET");
        got.lines().nth(1).unwrap_or("").trim().to_owned()
    };
    let mut args: Vec<String> = vec![
        "--port".into(),
        port.to_string(),
        "--save".into(),
        String::new(),
        "--appendonly".into(),
        "no".into(),
        "--daemonize".into(),
        "yes".into(),
    ];
    // bind may list several addresses: one argument each.
    let bind = setting("bind");
    args.push("--bind".into());
    args.extend(bind.split_whitespace().map(str::to_owned));
    for name in ["dir", "maxmemory", "maxmemory-policy", "pidfile", "logfile"] {
        let value = setting(name);
        if !value.is_empty() {
            args.push(format!("--{name}"));
            args.push(value);
        }
    }
    // The connection drops as Redis exits, so redis-cli reports an error either way.
    let _ = redis_cli(port, &["SHUTDOWN", "NOSAVE"]);
    let down = Instant::now();
    while redis_cli(port, &["PING"]).is_some() {
        assert!(
            down.elapsed() < Duration::from_secs(10),
            "Redis on {port} did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = Command::new("redis-server")
        .args(&args)
        .stdout(Stdio::null())
        .status()
        .expect("redis-server is installed");
    assert!(status.success(), "redis-server {args:?} failed");
    let up = Instant::now();
    while redis_cli(port, &["PING"]).as_deref() != Some("PONG") {
        assert!(
            up.elapsed() < Duration::from_secs(10),
            "Redis on {port} did not come back"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
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

/// Kills the process in `name`'s pid file with SIGKILL and heals the stack, which starts it
/// again; returns once the new one runs.
fn kill_and_heal(s: &Stack, name: &str) {
    let pid = read_pid(&s.pid_file(name)).unwrap_or_else(|| panic!("scripts/up started {name}"));
    signal(pid, "KILL");
    assert!(wait_exit(pid, Duration::from_secs(5)), "{name} died");
    s.heal();
    let new_pid = read_pid(&s.pid_file(name)).unwrap_or_else(|| panic!("heal restarted {name}"));
    assert_ne!(new_pid, pid, "heal restarted {name}");
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
    let dead_before = dead_letters(&queue);
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
        kill_and_heal(s, "api1");
        assert!(
            flowing(50, RECOVERY),
            "201s flow again after api1's SIGKILL"
        );

        phase.store(2, Ordering::SeqCst);
        let pid = read_pid(&s.pid_file("inserter")).expect("scripts/up started the inserter");
        signal(pid, "KILL");
        assert!(wait_exit(pid, Duration::from_secs(5)), "the inserter died");
        assert!(flowing(50, RECOVERY), "201s go on without an inserter");
        s.heal();
        assert_ne!(
            read_pid(&s.pid_file("inserter")),
            Some(pid),
            "heal restarted the inserter"
        );
        assert!(flowing(50, RECOVERY), "201s flow with the new inserter");

        phase.store(3, Ordering::SeqCst);
        rabbitmqctl("stop_app");
        std::thread::sleep(Duration::from_millis(500));
        rabbitmqctl("start_app");
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
        restart_redis(s.redis_port());
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

    let url = s
        .env
        .get("DATABASE_URL")
        .expect("stack.env names DATABASE_URL");
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
        dead_letters(&queue),
        dead_before,
        "nothing was dead-lettered"
    );
}
