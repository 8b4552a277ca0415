//! Builds the ntex application: per-worker state (pools), every domain's routes, the JSON
//! 404/405 fallbacks, and the server itself (TCP port or Unix socket, graceful stop).
use std::sync::Arc;

use ntex::web::{self, App, HttpServer};

use crate::config::Config;
use crate::error;
use crate::fib;
use crate::infra;
use crate::lifecycle::Shutdown;
use crate::ops::{self, Liveness};
use crate::BoxError;

/// What a handler can reach. One per worker: the pools belong to that worker's runtime.
pub struct AppState {
    pub config: Arc<Config>,
    pub pg: deadpool_postgres::Pool,
    pub redis: deadpool_redis::Pool,
    pub liveness: Liveness,
    pub shutdown: Shutdown,
    pub ops: ops::OpsBodies,
    /// This worker's open WebSockets and the process's fib pool.
    pub fib: fib::WorkerFib,
}

/// State shared by every worker of one process, built before the workers start.
#[derive(Clone)]
pub struct Shared {
    pub config: Arc<Config>,
    pub liveness: Liveness,
    pub shutdown: Shutdown,
    /// Threads for large Fibonacci numbers, shared by every worker.
    pub fib_pool: fib::ComputePool,
}

impl Shared {
    pub fn new(config: Config) -> Self {
        Self {
            fib_pool: fib::ComputePool::start(config.fib_pool_size),
            config: Arc::new(config),
            liveness: Liveness::default(),
            shutdown: Shutdown::default(),
        }
    }

    /// Builds one worker's state: its own pools on its own runtime.
    pub fn worker_state(&self) -> Result<AppState, BoxError> {
        let c = &self.config;
        let pg = infra::postgres::pool(&c.database_url, c.pg_pool_size)?;
        Ok(AppState {
            fib: fib::WorkerFib::new(
                pg.clone(),
                &c.instance_name,
                c.ws_max_pending_bytes,
                self.fib_pool.clone(),
                self.shutdown.clone(),
            ),
            pg,
            redis: infra::redis::pool(&c.redis_url, c.redis_pool_size)?,
            liveness: self.liveness.clone(),
            shutdown: self.shutdown.clone(),
            ops: ops::OpsBodies::new(&c.instance_name),
            config: c.clone(),
        })
    }
}

/// A resource whose unknown methods answer JSON 405 instead of ntex's empty one.
pub fn resource(path: &str) -> web::Resource<web::DefaultError> {
    web::resource(path).default_service(web::route().to(error::method_not_allowed))
}

/// Every route of every domain.
pub fn routes(cfg: &mut web::ServiceConfig) {
    ops::configure(cfg);
    fib::configure(cfg);
}

/// What `arena reset` (and `scripts/up --fresh`) runs: each domain's statement that empties its
/// tables and restores its seed.
pub const RESET_SQL: &[&str] = &[fib::RESET_SQL];

/// Builds the HTTP server for `shared`, bound where the configuration says (or to `listener`).
fn build(
    shared: Shared,
    listener: Option<std::net::TcpListener>,
) -> std::io::Result<ntex::server::Server> {
    let config = shared.config.clone();
    // Rows an earlier run of this replica left when it was killed; in the background, so a
    // replica starts even while PostgreSQL is down.
    let pg = infra::postgres::pool(&config.database_url, 1).map_err(std::io::Error::other)?;
    let started = chrono::Utc::now();
    ntex::rt::spawn(fib::forget_previous_run(
        pg,
        config.instance_name.clone(),
        started,
    ))
    .detach();
    let server = HttpServer::new(async move || {
        let state = shared
            .worker_state()
            .expect("BUG: pool settings were validated at start");
        App::new()
            .state(state)
            .configure(routes)
            .default_service(web::route().to(error::not_found))
    })
    .workers(config.workers)
    .shutdown_timeout(ntex::time::Seconds(config.shutdown_timeout_secs));
    let server = match (listener, &config.socket_path) {
        (Some(l), _) => server.listen(l)?,
        (None, Some(path)) => {
            let _ = std::fs::remove_file(path);
            server.bind_uds(path)?
        }
        (None, None) => server.bind((config.host.as_str(), config.port))?,
    };
    Ok(server.run())
}

/// `arena serve`: runs a replica until SIGTERM/SIGINT.
pub fn serve(config: Config) -> Result<(), BoxError> {
    let shared = Shared::new(config);
    // Fail fast on malformed URLs instead of inside a worker.
    shared.worker_state()?;
    ntex::rt::System::new("arena", ntex::rt::DefaultRuntime).block_on(async move {
        if shared.config.migrate_on_start {
            infra::postgres::migrate(&shared.config.database_url).await?;
        }
        tracing::info!(instance = %shared.config.instance_name, port = shared.config.port, "serving");
        build(shared, None)?.await?;
        tracing::info!("stopped");
        Ok(())
    })
}

/// A server started in its own thread on an ephemeral port, for integration tests.
pub struct TestServer {
    pub addr: std::net::SocketAddr,
    pub shared: Shared,
    server: ntex::server::Server,
}

impl TestServer {
    pub fn start(config: Config) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let shared = Shared::new(config);
        let (tx, rx) = std::sync::mpsc::channel();
        let for_thread = shared.clone();
        std::thread::spawn(move || {
            ntex::rt::System::new("arena-test", ntex::rt::DefaultRuntime).block_on(async move {
                let server = build(for_thread, Some(listener)).expect("start the test server");
                tx.send(server.clone()).expect("test is waiting");
                let _ = server.await;
            })
        });
        let server = rx.recv().expect("test server started");
        Self {
            addr,
            shared,
            server,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.server.stop(false);
    }
}
