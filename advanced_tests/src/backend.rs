//! How the stack runs, and so how a test finds and fails its parts: local processes started by
//! `scripts/up` (pid files and logs in the state dir, RabbitMQ and Redis on this machine), or
//! the containers of one docker-compose project started by `scripts/docker-up` (found by
//! compose's labels, reached on their own addresses on compose's network, signalled with
//! `docker kill`, the broker stopped with `docker stop`).
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::{running, LogMark, Process};

/// How long a service started again may take to accept connections: RabbitMQ boots in 10-20 s
/// on compose's 0.3 CPU, more while the load goes on.
const START_LIMIT: Duration = Duration::from_secs(120);

#[derive(Debug)]
pub(crate) enum Backend {
    Local,
    Compose { project: String },
}

impl Backend {
    pub(crate) fn from_env(env: &HashMap<String, String>) -> Self {
        match env.get("ARENA_BACKEND").map(String::as_str) {
            Some("compose") => Backend::Compose {
                project: env
                    .get("ARENA_COMPOSE_PROJECT")
                    .cloned()
                    .expect("stack.env of a compose stack names ARENA_COMPOSE_PROJECT"),
            },
            None | Some("local") => Backend::Local,
            Some(other) => panic!("ARENA_BACKEND={other}: local or compose"),
        }
    }

    /// Each replica's base URL, api1 first.
    pub(crate) fn replica_urls(&self, env: &HashMap<String, String>) -> Vec<String> {
        match self {
            Backend::Local => env
                .get("ARENA_REPLICA_PORTS")
                .map(|s| {
                    s.split([',', ' '])
                        .filter_map(|p| p.trim().parse::<u16>().ok())
                        .collect()
                })
                .unwrap_or_else(|| vec![9001, 9002])
                .into_iter()
                .map(|port| format!("http://127.0.0.1:{port}"))
                .collect(),
            // Running ones only: a container left stopped by a test that failed has no
            // address, and the next `heal` starts it again.
            Backend::Compose { project } => containers(project, "api")
                .iter()
                .filter(|id| docker(&["inspect", "-f", "{{.State.Running}}", id]).trim() == "true")
                .map(|id| format!("http://{}:9999", address(id)))
                .collect(),
        }
    }

    pub(crate) fn replica_name(&self, i: usize) -> String {
        match self {
            Backend::Local => format!("api{}", i + 1),
            Backend::Compose { project } => docker(&[
                "inspect",
                "-f",
                "{{.Config.Hostname}}",
                &container_of(project, Process::Replica(i)),
            ])
            .trim()
            .to_owned(),
        }
    }

    pub(crate) fn pid_of(&self, state_dir: &Path, p: Process) -> Option<i32> {
        let pid = match self {
            Backend::Local => crate::read_pid(
                &state_dir
                    .join("pids")
                    .join(format!("{}.pid", local_name(p))),
            )?,
            Backend::Compose { project } => {
                docker(&["inspect", "-f", "{{.State.Pid}}", &container_of(project, p)])
                    .trim()
                    .parse()
                    .ok()?
            }
        };
        (pid > 0 && running(pid)).then_some(pid)
    }

    pub(crate) fn kill(&self, p: Process, pid: i32, signal: &str) {
        match self {
            Backend::Local => crate::signal(pid, signal),
            Backend::Compose { project } => {
                docker(&["kill", "--signal", signal, &container_of(project, p)]);
            }
        }
    }

    pub(crate) fn log_mark(&self, state_dir: &Path, p: Process) -> LogMark {
        match self {
            Backend::Local => {
                LogMark::Offset(std::fs::metadata(local_log(state_dir, p)).map_or(0, |m| m.len()))
            }
            Backend::Compose { .. } => {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
                LogMark::Since(format!("{}.{:09}", now.as_secs(), now.subsec_nanos()))
            }
        }
    }

    pub(crate) fn log_since(&self, state_dir: &Path, p: Process, mark: &LogMark) -> String {
        match (self, mark) {
            (Backend::Local, LogMark::Offset(offset)) => {
                let text = std::fs::read_to_string(local_log(state_dir, p)).unwrap_or_default();
                text.get(*offset as usize..).unwrap_or_default().to_owned()
            }
            (Backend::Compose { project }, LogMark::Since(since)) => {
                let out = Command::new("docker")
                    .args(["logs", "--since", since, &container_of(project, p)])
                    .output()
                    .expect("docker runs");
                // The process's stdout and stderr, as docker keeps them apart.
                String::from_utf8_lossy(&out.stdout).into_owned()
                    + &String::from_utf8_lossy(&out.stderr)
            }
            (backend, mark) => panic!("a {mark:?} is not a mark of {backend:?}"),
        }
    }

    pub(crate) fn database_url(&self, env: &HashMap<String, String>) -> String {
        match self {
            Backend::Local => env
                .get("DATABASE_URL")
                .cloned()
                .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/arena".to_owned()),
            // docker-compose.yml's POSTGRES_PASSWORD and POSTGRES_DB.
            Backend::Compose { project } => {
                format!(
                    "postgres://postgres:postgres@{}:5432/arena",
                    address(&service(project, "db"))
                )
            }
        }
    }

    pub(crate) fn amqp_url(&self, env: &HashMap<String, String>) -> String {
        match self {
            Backend::Local => env
                .get("AMQP_URL")
                .cloned()
                .unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned()),
            Backend::Compose { project } => {
                format!(
                    "amqp://guest:guest@{}:5672/%2f",
                    address(&service(project, "rabbitmq"))
                )
            }
        }
    }

    pub(crate) fn broker_stop(&self) {
        match self {
            Backend::Local => rabbitmqctl("stop_app"),
            Backend::Compose { project } => {
                docker(&["stop", "-t", "10", &service(project, "rabbitmq")]);
            }
        }
    }

    pub(crate) fn broker_start(&self) {
        match self {
            Backend::Local => rabbitmqctl("start_app"),
            Backend::Compose { project } => {
                let id = service(project, "rabbitmq");
                docker(&["start", &id]);
                wait_tcp(&format!("{}:5672", address(&id)));
            }
        }
    }

    pub(crate) fn restart_redis(&self, env: &HashMap<String, String>) {
        match self {
            Backend::Local => restart_local_redis(redis_port(env)),
            Backend::Compose { project } => {
                let id = service(project, "redis");
                docker(&["kill", &id]);
                docker(&["start", &id]);
                let host = address(&id);
                wait_until("Redis answers PING", || {
                    redis_cli(&host, 6379, &["PING"]).as_deref() == Some("PONG")
                });
            }
        }
    }

    /// The script that (re)starts this stack, and the state dir it takes.
    pub(crate) fn up_command(&self, root: &Path) -> Vec<String> {
        match self {
            Backend::Local => vec![root.join("scripts/up").display().to_string()],
            Backend::Compose { .. } => vec![
                root.join("scripts/docker-up").display().to_string(),
                "--no-build".to_owned(),
            ],
        }
    }

    /// scripts/docker-up keeps its stack.env in `<state>/docker/`, the folder tests are given.
    pub(crate) fn up_state_dir(&self, state_dir: &Path) -> PathBuf {
        match self {
            Backend::Local => state_dir.to_path_buf(),
            Backend::Compose { .. } => state_dir.parent().unwrap_or(state_dir).to_path_buf(),
        }
    }
}

fn local_name(p: Process) -> String {
    match p {
        Process::Replica(i) => format!("api{}", i + 1),
        Process::Inserter => "inserter".to_owned(),
    }
}

fn local_log(state_dir: &Path, p: Process) -> PathBuf {
    state_dir
        .join("logs")
        .join(format!("{}.log", local_name(p)))
}

/// Runs docker with `args`; its standard output. Panics when it fails.
fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker is installed (scripts/docker-engine)");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The containers of compose service `svc`, by compose's container number (api_1 first),
/// stopped ones included.
fn containers(project: &str, svc: &str) -> Vec<String> {
    let out = docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=com.docker.compose.project={project}"),
        "--filter",
        &format!("label=com.docker.compose.service={svc}"),
        "--format",
        "{{.Label \"com.docker.compose.container-number\"}} {{.ID}}",
    ]);
    let mut numbered: Vec<(u32, String)> = out
        .lines()
        .filter_map(|l| {
            let (n, id) = l.split_once(' ')?;
            Some((n.parse().ok()?, id.to_owned()))
        })
        .collect();
    numbered.sort();
    numbered.into_iter().map(|(_, id)| id).collect()
}

fn service(project: &str, svc: &str) -> String {
    containers(project, svc)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("compose project {project} has no {svc} container"))
}

fn container_of(project: &str, p: Process) -> String {
    match p {
        Process::Replica(i) => containers(project, "api")
            .into_iter()
            .nth(i)
            .unwrap_or_else(|| panic!("compose project {project} has no replica {}", i + 1)),
        Process::Inserter => service(project, "inserter"),
    }
}

/// A container's address on its (first) network: reachable from this machine.
fn address(id: &str) -> String {
    let out = docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
        id,
    ]);
    out.split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("container {id} has no address: is it running?"))
        .to_owned()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < START_LIMIT,
            "{what}: not within {START_LIMIT:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn wait_tcp(addr: &str) {
    let addr: std::net::SocketAddr = addr.parse().expect("an address and a port");
    wait_until(&format!("{addr} accepts connections"), || {
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
    });
}

fn rabbitmqctl(arg: &str) {
    let status = Command::new("rabbitmqctl")
        .arg(arg)
        .stdout(Stdio::null())
        .status()
        .expect("rabbitmqctl is installed with RabbitMQ");
    assert!(status.success(), "rabbitmqctl {arg} failed");
}

/// The port of the local stack's Redis, from `REDIS_URL` (6379 when it names none).
fn redis_port(env: &HashMap<String, String>) -> u16 {
    let url = env
        .get("REDIS_URL")
        .map_or("redis://127.0.0.1:6379/0", String::as_str);
    let authority = url.split("://").nth(1).unwrap_or(url);
    let host_port = authority.split('/').next().unwrap_or(authority);
    let host_port = host_port.rsplit('@').next().unwrap_or(host_port);
    host_port
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or(6379)
}

fn redis_cli(host: &str, port: u16, args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli")
        .args(["-h", host, "-p", &port.to_string()])
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
fn restart_local_redis(port: u16) {
    let cli = |args: &[&str]| redis_cli("127.0.0.1", port, args);
    let setting = |name: &str| {
        let got = cli(&["CONFIG", "GET", name]).expect("Redis answers CONFIG GET");
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
    let _ = cli(&["SHUTDOWN", "NOSAVE"]);
    let down = Instant::now();
    while cli(&["PING"]).is_some() {
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
    wait_until(&format!("Redis on {port} answers PING"), || {
        cli(&["PING"]).as_deref() == Some("PONG")
    });
}

/// Messages ready in `queue` at the broker of `url`: a passive declare, which creates nothing
/// (the broker answers 404 for a queue that does not exist: 0). Over AMQP rather than
/// `rabbitmqctl list_queues`, which in a container starts a second Erlang VM inside the
/// broker's memory limit.
pub(crate) fn queue_depth(url: &str, queue: &str) -> u32 {
    use lapin::options::QueueDeclareOptions;
    use lapin::types::FieldTable;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let connection = lapin::Connection::connect_with_runtime(
            url,
            lapin::ConnectionProperties::default(),
            async_rs::Runtime::tokio_current(),
        )
        .await
        .unwrap_or_else(|e| panic!("connect to RabbitMQ at {url}: {e}"));
        let channel = connection.create_channel().await.expect("a channel");
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let depth = match channel
            .queue_declare(queue.into(), passive, FieldTable::default())
            .await
        {
            Ok(q) => q.message_count(),
            Err(e) if matches!(e.kind(), lapin::ErrorKind::ProtocolError(amqp) if amqp.get_id() == 404) => 0,
            Err(e) => panic!("passive declare of {queue}: {e}"),
        };
        let _ = connection.close(200, "counted".into()).await;
        depth
    })
}
