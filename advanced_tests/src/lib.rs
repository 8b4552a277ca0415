//! What every black-box test needs: where the running stack is and how to fail its parts, and a
//! small blocking HTTP client that returns every status as a value instead of an error.
//!
//! The stack is either the local one (`scripts/up` writes `.state/stack.env`) or a
//! docker-compose one (`scripts/docker-up` writes `<state>/docker/stack.env` with
//! `ARENA_BACKEND=compose`; point `ARENA_STATE_DIR` at that folder). `ARENA_URL` and friends in
//! the environment override the file. A test reaches a replica directly with
//! [`Stack::replica`] and fails one with [`Stack::kill`] (`kill` locally, `docker kill` for a
//! container, which works for a member of the docker group too); it waits for the exit on the
//! process id either way ([`wait_exit`]): a container's main process is a process of this
//! machine as well.
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{OnceLock, RwLock};
use std::time::Duration;

pub use serde_json::{json, Value};

mod backend;
pub mod chat;
pub mod ws;

use backend::Backend;

/// The stack under test.
#[derive(Debug)]
pub struct Stack {
    /// nginx, e.g. `http://127.0.0.1:9999`.
    pub url: String,
    pub admin_token: String,
    pub state_dir: PathBuf,
    pub root: PathBuf,
    pub env: HashMap<String, String>,
    backend: Backend,
    /// Each replica's own base URL, api1 first. Refreshed by `heal`: a container started
    /// again may come back on another address.
    replicas: RwLock<Vec<String>>,
}

/// A process of the stack that a test may kill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    /// Replica `i`, 0-based (api1 is 0).
    Replica(usize),
    Inserter,
}

pub fn stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(Stack::discover)
}

impl Stack {
    fn discover() -> Self {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root")
            .to_path_buf();
        let state_dir = std::env::var("ARENA_STATE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| root.join(".state"));
        let mut env: HashMap<String, String> = std::fs::read_to_string(state_dir.join("stack.env"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        for key in [
            "ARENA_URL",
            "ARENA_REPLICA_PORTS",
            "ADMIN_TOKEN",
            "DATABASE_URL",
            "REDIS_URL",
            "AMQP_URL",
        ] {
            if let Ok(v) = std::env::var(key) {
                env.insert(key.to_owned(), v);
            }
        }
        let url = env
            .get("ARENA_URL")
            .cloned()
            .unwrap_or_else(|| "http://127.0.0.1:9999".to_owned());
        let admin_token = env
            .get("ADMIN_TOKEN")
            .cloned()
            .unwrap_or_else(|| "arena-admin".to_owned());
        let backend = Backend::from_env(&env);
        let replicas = RwLock::new(backend.replica_urls(&env));
        let stack = Self {
            url,
            admin_token,
            state_dir,
            root,
            env,
            backend,
            replicas,
        };
        assert!(
            get(&stack.at("/ping")).status == 200,
            "the stack does not answer at {}: start it with scripts/up (or run scripts/test)",
            stack.url
        );
        stack
    }

    /// `path` through nginx.
    pub fn at(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }

    /// How many replicas the stack runs.
    pub fn replica_count(&self) -> usize {
        self.replicas.read().unwrap().len()
    }

    /// `path` on replica `i` (0-based) directly.
    pub fn replica(&self, i: usize, path: &str) -> String {
        format!("{}{}", self.replicas.read().unwrap()[i], path)
    }

    /// The name replica `i` gives itself (`INSTANCE_NAME`): api1, api2, … locally; in compose
    /// its container's hostname, which the api service's entrypoint takes as its name.
    pub fn replica_name(&self, i: usize) -> String {
        self.backend.replica_name(i)
    }

    /// Whether the stack runs in containers (docker-compose) rather than as local processes.
    pub fn in_containers(&self) -> bool {
        matches!(self.backend, Backend::Compose { .. })
    }

    /// The process id of `p` on this machine, while it runs.
    pub fn pid_of(&self, p: Process) -> Option<i32> {
        self.backend.pid_of(&self.state_dir, p)
    }

    /// Sends `signal` ("KILL", "TERM") to `p`; returns the process id it had, to wait for its
    /// exit with [`wait_exit`]. Panics when `p` does not run.
    pub fn kill(&self, p: Process, signal: &str) -> i32 {
        let pid = self
            .pid_of(p)
            .unwrap_or_else(|| panic!("{p:?} does not run"));
        self.backend.kill(p, pid, signal);
        pid
    }

    /// A mark in `p`'s log, to read what it writes from now on with [`Stack::log_since`].
    pub fn log_mark(&self, p: Process) -> LogMark {
        self.backend.log_mark(&self.state_dir, p)
    }

    /// What `p` logged since `mark` (also after it exited).
    pub fn log_since(&self, p: Process, mark: &LogMark) -> String {
        self.backend.log_since(&self.state_dir, p, mark)
    }

    /// PostgreSQL's URL as seen from this machine.
    pub fn database_url(&self) -> String {
        self.backend.database_url(&self.env)
    }

    /// RabbitMQ's URL as seen from this machine.
    pub fn amqp_url(&self) -> String {
        self.backend.amqp_url(&self.env)
    }

    /// Stops the broker for every client (locally `rabbitmqctl stop_app`: the Erlang node and
    /// its data stay; in containers `docker stop`), until [`Stack::broker_start`].
    pub fn broker_stop(&self) {
        self.backend.broker_stop();
    }

    /// Starts the broker again; returns once it accepts connections.
    pub fn broker_start(&self) {
        self.backend.broker_start();
    }

    /// Restarts Redis as after a crash: it keeps nothing on disk, so it comes back empty, with
    /// the settings it ran with. Returns once it answers PING.
    pub fn restart_redis(&self) {
        self.backend.restart_redis(&self.env);
    }

    /// Messages ready in `queue` (0 when it does not exist), by a passive declare over AMQP.
    pub fn queue_depth(&self, queue: &str) -> u32 {
        backend::queue_depth(&self.amqp_url(), queue)
    }

    /// The people queue the stack's replicas publish to: `PEOPLE_QUEUE` as this process has it
    /// (`heal` passes it on to the replicas it restarts), else as stack.env has it, else the
    /// default.
    pub fn people_queue(&self) -> String {
        std::env::var("PEOPLE_QUEUE")
            .ok()
            .or_else(|| self.env.get("PEOPLE_QUEUE").cloned())
            .unwrap_or_else(|| "arena.people".to_owned())
    }

    /// Runs the stack's `up` again (`scripts/up`, or `scripts/docker-up` for containers): it
    /// restarts whatever is missing and waits until nginx answers. It runs with the settings
    /// the stack was started with (stack.env) unless this process sets them: a test run by hand
    /// with plain `cargo test` would otherwise restart the stack on the defaults.
    pub fn heal(&self) {
        let mut up = std::process::Command::new("bash");
        up.args(self.backend.up_command(&self.root)).env(
            "ARENA_STATE_DIR",
            self.backend.up_state_dir(&self.state_dir),
        );
        for (key, value) in &self.env {
            if std::env::var_os(key).is_none() {
                up.env(key, value);
            }
        }
        let status = up.status().expect("run the stack's up script");
        assert!(status.success(), "{up:?} failed while healing the stack");
        *self.replicas.write().unwrap() = self.backend.replica_urls(&self.env);
    }
}

/// Where a log stood: a byte offset in a local log file, or a time for `docker logs --since`.
#[derive(Debug, Clone)]
pub enum LogMark {
    Offset(u64),
    Since(String),
}

/// An answer: status, headers we care about, body.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub body: String,
    pub location: Option<String>,
    pub content_type: Option<String>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(30))
            .max_idle_connections_per_host(64)
            .build()
    })
}

fn finish(result: Result<ureq::Response, ureq::Error>) -> Resp {
    let resp = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => {
            return Resp {
                status: 0,
                body: format!("transport error: {e}"),
                location: None,
                content_type: None,
            }
        }
    };
    let status = resp.status();
    let location = resp.header("location").map(str::to_owned);
    let content_type = resp.header("content-type").map(str::to_owned);
    let body = resp.into_string().unwrap_or_default();
    Resp {
        status,
        body,
        location,
        content_type,
    }
}

pub fn request(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> Resp {
    let mut req = agent().request(method, url);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    finish(match body {
        Some(b) => req.set("content-type", "application/json").send_string(b),
        None => req.call(),
    })
}

pub fn get(url: &str) -> Resp {
    request("GET", url, &[], None)
}

pub fn post(url: &str, body: &str) -> Resp {
    request("POST", url, &[], Some(body))
}

/// Tells a test's streaming client threads to stop, also when the test panics: a scoped
/// thread that never sees the flag keeps `thread::scope` waiting, and the run would hang
/// instead of failing. Hold `stop_on_drop()` inside the scope.
#[derive(Default)]
pub struct StopFlag(AtomicBool);

impl StopFlag {
    pub fn stopped(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub fn stop(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    #[must_use = "the flag is raised when the guard is dropped"]
    pub fn stop_on_drop(&self) -> StopOnDrop<'_> {
        StopOnDrop(self)
    }
}

pub struct StopOnDrop<'a>(&'a StopFlag);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// docker-compose.yml's `text` with every `${NAME:-default}` replaced by its default, as compose reads it when
/// NAME is unset.
pub fn at_defaults(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = start + rest[start..].find('}').expect("${ closes");
        let inner = &rest[start + 2..end];
        let (_, default) = inner
            .split_once(":-")
            .unwrap_or_else(|| panic!("${{{inner}}} has no default"));
        out.push_str(default);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Reads a pid file written by scripts/up.
pub fn read_pid(path: &std::path::Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Sends `signal` (e.g. "KILL", "TERM") to a process.
pub fn signal(pid: i32, signal: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
    assert!(
        status.is_ok_and(|s| s.success()),
        "kill -{signal} {pid} failed"
    );
}

/// True while process `pid` runs. A zombie counts as gone: where PID 1 does not reap
/// (containers), a dead replica stays a zombie, and `kill -0` would still succeed on it.
pub fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.split(' ').nth(2) != Some("Z"))
}

/// Waits up to `limit` for process `pid` to exit; true if it did.
pub fn wait_exit(pid: i32, limit: Duration) -> bool {
    let started = std::time::Instant::now();
    while running(pid) && started.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(20));
    }
    !running(pid)
}

/// 24 hex characters unique across tests and runs (time, a counter and the process id), short
/// enough for an apelido; no extra dependency.
pub fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let n = (t << 16)
        ^ u128::from(N.fetch_add(1, Ordering::Relaxed))
        ^ (u128::from(std::process::id()) << 80);
    // The low 96 bits, always 24 digits.
    format!("{n:032x}")[8..].to_owned()
}

/// Runs `sql` with `psql` against `url` and returns its unaligned, tuples-only output.
pub fn psql(url: &str, sql: &str) -> String {
    let out = std::process::Command::new("psql")
        .args([url, "-tAc", sql])
        .output()
        .expect("psql is installed with PostgreSQL");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Debian's chromium, for the tests that drive a headless browser (Swagger UI, the chat page).
pub fn chromium() -> &'static str {
    ["chromium", "chromium-browser", "/usr/bin/chromium"]
        .into_iter()
        .find(|c| {
            std::process::Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("chromium is missing: scripts/test installs it (apt-get install chromium)")
}

/// The flags every headless chromium of the tests runs with: no sandbox (root in CI), no GPU,
/// no background traffic or first-run screens that would race the page under test.
pub const CHROMIUM_HEADLESS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
];
