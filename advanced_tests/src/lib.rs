//! What every black-box test needs: where the running stack is (`scripts/up` writes
//! `.state/stack.env`; `ARENA_URL` and friends override it) and a small blocking HTTP client
//! that returns every status as a value instead of an error.
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

pub use serde_json::{json, Value};

pub mod chat;
pub mod ws;

/// The stack under test.
#[derive(Debug, Clone)]
pub struct Stack {
    /// nginx, e.g. `http://127.0.0.1:9999`.
    pub url: String,
    /// Each replica's own port, api1 first.
    pub replica_ports: Vec<u16>,
    pub admin_token: String,
    pub state_dir: PathBuf,
    pub root: PathBuf,
    pub env: HashMap<String, String>,
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
        let replica_ports = env
            .get("ARENA_REPLICA_PORTS")
            .map(|s| {
                s.split([',', ' '])
                    .filter_map(|p| p.trim().parse().ok())
                    .collect()
            })
            .unwrap_or_else(|| vec![9001, 9002]);
        let admin_token = env
            .get("ADMIN_TOKEN")
            .cloned()
            .unwrap_or_else(|| "arena-admin".to_owned());
        let stack = Self {
            url,
            replica_ports,
            admin_token,
            state_dir,
            root,
            env,
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

    /// `path` on replica `i` (0-based) directly.
    pub fn replica(&self, i: usize, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.replica_ports[i], path)
    }

    pub fn pid_file(&self, name: &str) -> PathBuf {
        self.state_dir.join("pids").join(format!("{name}.pid"))
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

    /// The port of the stack's Redis, from `REDIS_URL` (6379 when it names none).
    pub fn redis_port(&self) -> u16 {
        let url = self
            .env
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

    /// Runs `scripts/up` again: it restarts whatever is missing and waits until it answers.
    /// It runs with the settings the stack was started with (stack.env: build, replicas,
    /// ports, URLs) unless this process sets them: a test run by hand with plain `cargo test`
    /// would otherwise rebuild in release and restart the stack on the defaults.
    pub fn heal(&self) {
        let mut up = std::process::Command::new("bash");
        up.arg(self.root.join("scripts/up"))
            .env("ARENA_STATE_DIR", &self.state_dir);
        for (key, value) in &self.env {
            if std::env::var_os(key).is_none() {
                up.env(key, value);
            }
        }
        let status = up.status().expect("run scripts/up");
        assert!(
            status.success(),
            "scripts/up failed while healing the stack"
        );
    }
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
