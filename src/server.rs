//! Builds the ntex application: per-worker state (pools), every domain's routes and OpenAPI
//! paths, the JSON 404/405 fallbacks, and the server itself (TCP port or Unix socket, graceful
//! stop on SIGTERM/SIGINT).
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ntex::web::{self, App, HttpServer};

use crate::accounts;
use crate::chat;
use crate::config::Config;
use crate::error;
use crate::fib;
use crate::infra;
use crate::lifecycle::Shutdown;
use crate::ops::{self, Gate, Liveness, Observe};
use crate::people;
use crate::users;
use crate::BoxError;

/// What a handler can reach. One per worker: the pools belong to that worker's runtime.
pub struct AppState {
    pub config: Arc<Config>,
    pub pg: deadpool_postgres::Pool,
    pub redis: deadpool_redis::Pool,
    pub liveness: Liveness,
    pub shutdown: Shutdown,
    pub ops: ops::OpsBodies,
    /// This worker's RabbitMQ publisher for new people (connects on first use).
    pub people: std::rc::Rc<people::Publisher>,
    /// This worker's open WebSockets and the process's fib pool.
    pub fib: fib::WorkerFib,
    /// The process's password hasher and token key.
    pub users: users::Users,
    /// This worker's chat subscribers (rooms, long-polls), fed by the process's fan-out.
    pub chat: chat::Hub,
    /// The process's cap on open WebSockets.
    pub ws_slots: crate::ws::Slots,
}

/// State shared by every worker of one process, built before the workers start.
#[derive(Clone)]
pub struct Shared {
    pub config: Arc<Config>,
    pub liveness: Liveness,
    pub shutdown: Shutdown,
    /// Threads for large Fibonacci numbers, shared by every worker.
    pub fib_pool: fib::ComputePool,
    pub users: users::Users,
    /// The process's RabbitMQ link for chat events (a thread of its own).
    pub fanout: chat::Fanout,
    pub ws_slots: crate::ws::Slots,
}

impl Shared {
    pub fn new(config: Config) -> Self {
        let shutdown = Shutdown::default();
        Self {
            fib_pool: fib::ComputePool::start(config.fib_pool_size),
            users: users::Users::new(&config),
            fanout: chat::Fanout::start(
                &config.amqp_url,
                &config.instance_name,
                &config.chat_exchange,
                shutdown.clone(),
                Duration::from_secs(config.shutdown_timeout_secs.into()),
            ),
            ws_slots: crate::ws::Slots::new(config.ws_max_connections),
            config: Arc::new(config),
            liveness: Liveness::default(),
            shutdown,
        }
    }

    /// Builds one worker's state: its own pools on its own runtime.
    pub fn worker_state(&self) -> Result<AppState, BoxError> {
        let c = &self.config;
        let pg = infra::postgres::pool(&c.database_url, c.pg_pool_size)?;
        let redis = infra::redis::pool(&c.redis_url, c.redis_pool_size)?;
        ops::metrics::register_pools(&pg, &redis);
        Ok(AppState {
            fib: fib::WorkerFib::new(
                pg.clone(),
                &c.instance_name,
                c.ws_max_pending_bytes,
                self.fib_pool.clone(),
                self.shutdown.clone(),
            ),
            chat: chat::Hub::new(
                self.fanout.clone(),
                self.shutdown.clone(),
                pg.clone(),
                c.ws_max_pending_bytes,
            ),
            users: self.users.clone(),
            ws_slots: self.ws_slots.clone(),
            pg,
            redis,
            liveness: self.liveness.clone(),
            shutdown: self.shutdown.clone(),
            ops: ops::OpsBodies::new(&c.instance_name),
            people: std::rc::Rc::new(people::Publisher::new(
                &c.amqp_url,
                &c.instance_name,
                &c.people_queue,
            )),
            config: c.clone(),
        })
    }
}

/// What [`resource`] returns: an ntex resource wearing the [`Observe`] middleware.
pub type Resource = web::Resource<
    web::DefaultError,
    web::stack::WebStack<ntex::service::Identity, Observe, web::DefaultError>,
>;

/// A resource for `path` — always use it: unknown methods answer JSON 405 instead of ntex's
/// empty one, every request is counted and logged under `path` (the template, not the raw
/// path), and the route answers 503 while the replica is fallen. Registering it also records
/// `path` in [`registered_paths`], which the OpenAPI test checks against the document.
pub fn resource(path: &str) -> Resource {
    observed(register_path(path), Gate::WhenFallen)
}

/// Like [`resource`], but still answering while the replica is fallen (operations only).
pub fn ops_resource(path: &str) -> Resource {
    observed(register_path(path), Gate::Never)
}

fn observed(template: &'static str, gate: Gate) -> Resource {
    web::resource(template)
        .middleware(Observe::new(template, gate))
        .default_service(web::route().to(error::method_not_allowed))
}

fn paths() -> &'static Mutex<BTreeSet<&'static str>> {
    static PATHS: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    &PATHS
}

/// Records a route template and returns it as `'static` for the metric label. Each distinct
/// template is leaked once per process (a few dozen strings), never per request.
fn register_path(path: &str) -> &'static str {
    let mut paths = paths().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(known) = paths.get(path) {
        return known;
    }
    let leaked: &'static str = Box::leak(path.to_owned().into_boxed_str());
    paths.insert(leaked);
    leaked
}

/// Every path template registered through [`resource`] in this process so far (an app is
/// registered once its first worker has started).
pub fn registered_paths() -> Vec<&'static str> {
    paths()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .copied()
        .collect()
}

/// Every route of every domain. A new domain adds its `configure` here and its `Api` in
/// [`openapi`].
pub fn routes(cfg: &mut web::ServiceConfig) {
    ops::configure(cfg);
    people::configure(cfg);
    accounts::configure(cfg);
    fib::configure(cfg);
    users::configure(cfg);
    chat::configure(cfg);
}

/// The OpenAPI document: every domain's `#[derive(utoipa::OpenApi)] Api`, merged, every
/// response described (OpenAPI 3.1 requires it; see `ops::openapi::describe_every_response`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi;
    let mut doc = ops::Api::openapi();
    doc.merge(ops::openapi::Api::openapi());
    doc.merge(people::Api::openapi());
    doc.merge(accounts::Api::openapi());
    doc.merge(fib::Api::openapi());
    doc.merge(users::Api::openapi());
    doc.merge(chat::Api::openapi());
    doc.info.title = "Arena".to_owned();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc.info.description = Some(
        "Rinha-style service: people, accounts, real time and operations behind nginx.".to_owned(),
    );
    ops::openapi::describe_every_response(&mut doc);
    doc
}

/// What `arena reset` (and `scripts/up --fresh`) runs: each domain's statement that empties its
/// tables and restores its seed.
pub const RESET_SQL: &[&str] = &[
    people::store::RESET_SQL,
    accounts::RESET_SQL,
    fib::RESET_SQL,
    users::RESET_SQL,
];

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
        ntex::rt::spawn(infra::postgres::warm(
            state.pg.clone(),
            shared.config.pg_warm,
            &[accounts::store::PREPARED, people::store::PREPARED],
        ))
        .detach();
        App::new().state(state).configure(routes).default_service(
            observed(ops::metrics::UNMATCHED, Gate::WhenFallen)
                .route(web::route().to(error::not_found)),
        )
    })
    .workers(config.workers)
    .config(http_config())
    // serve() handles SIGTERM/SIGINT itself, to signal our tasks before the drain.
    .disable_signals()
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

/// HTTP settings beside ntex's defaults: a request body must keep arriving — at least 256
/// bytes every 5 s, and never longer than 30 s in all — or the connection is closed with 408,
/// so a client that stalls or trickles its body cannot hold a request (ntex leaves this off).
fn http_config() -> ntex::service::cfg::SharedCfg {
    use ntex::time::Seconds;
    ntex::service::cfg::SharedCfg::new("arena")
        .add(ntex::http::HttpServiceConfig::new().set_payload_read_rate(
            Seconds(5),
            Seconds(30),
            256,
        ))
        .into()
}

/// `arena serve`: runs a replica until SIGTERM/SIGINT.
pub fn serve(config: Config) -> Result<(), BoxError> {
    if config.token_secret.as_deref().is_none_or(str::is_empty) {
        tracing::warn!("TOKEN_SECRET is not set: login tokens are signed with a development secret that every copy of arena knows");
    }
    let shared = Shared::new(config);
    // Fail fast on malformed URLs instead of inside a worker.
    shared.worker_state()?;
    ntex::rt::System::new("arena", ntex::rt::DefaultRuntime).block_on(async move {
        if shared.config.migrate_on_start {
            infra::postgres::migrate(&shared.config.database_url).await?;
        }
        // Redis may have lost its data while this replica was down: the apelido keys are
        // checked (rebuilt from PostgreSQL if need be) before the first POST can reserve one.
        people::rebuild::ensure_at_start(&shared.config).await;
        tracing::info!(instance = %shared.config.instance_name, port = shared.config.port, "serving");
        let server = build(shared.clone(), None)?;
        let limit = Duration::from_secs(shared.config.shutdown_timeout_secs.into());
        ntex::rt::spawn(stop_on_signal(server.clone(), shared.shutdown.clone(), limit));
        server.await?;
        // The listeners are closed and in-flight requests done; our own tasks (sockets,
        // consumers, the clock) got the signal first and now report back, bounded.
        if !shared.shutdown.tasks_done(limit).await {
            tracing::warn!(?limit, "some tasks had not finished when the time ran out");
        }
        tracing::info!("stopped");
        Ok(())
    })
}

/// On SIGTERM or SIGINT: signal [`Shutdown`] (gated routes answer 503, tasks start closing
/// WebSockets with 1001 and deleting their rows), wait for the requests already inside, then
/// stop the server gracefully — each wait bounded by `limit` (`SHUTDOWN_TIMEOUT_SECS`).
async fn stop_on_signal(server: ntex::server::Server, shutdown: Shutdown, limit: Duration) {
    let Some(signal) = termination().await else {
        return;
    };
    tracing::info!(signal, "stopping: draining in-flight requests");
    // From here every gated route answers 503 at once (nginx retries it elsewhere), and our
    // tasks start closing. The requests already inside finish before ntex is told to stop: its
    // stop closed keep-alive connections with a request still being handled (seen as nginx's
    // "upstream prematurely closed connection"), and nginx replays a POST whose answer never
    // came — a person created twice over, a credit applied twice.
    shutdown.signal();
    if !shutdown.requests_done(limit).await {
        tracing::warn!(?limit, "requests still running when the time ran out");
    }
    server.stop(true).await;
}

/// Waits for SIGTERM or SIGINT and names it; `None` if signals cannot be watched (then the
/// process stops only when killed, as before).
async fn termination() -> Option<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "cannot watch SIGTERM/SIGINT");
            return None;
        }
    };
    tokio::select! {
        _ = term.recv() => Some("SIGTERM"),
        _ = int.recv() => Some("SIGINT"),
    }
}

/// A server started in its own thread on an ephemeral port, for integration tests. Unless the
/// test names its replica, it gets a name of its own (`test-<uuid>`), see [`TestServer::start`].
pub struct TestServer {
    pub addr: std::net::SocketAddr,
    pub shared: Shared,
    server: ntex::server::Server,
}

impl TestServer {
    pub fn start(mut config: Config) -> Self {
        // A test that left the name as the environment gave it (by default `api1`) would run as
        // that live replica: its start-up cleanup (`fib::forget_previous_run`) deletes every row
        // of the name connected before it started, i.e. the live replica's users. A name the
        // test set itself differs from the environment's and is kept.
        let defaults = Config::from_env();
        if config.instance_name == defaults.instance_name {
            config.instance_name = format!("test-{}", uuid::Uuid::new_v4().simple());
        }
        // Tests start dozens of servers against one PostgreSQL (max_connections 100): each opens
        // connections as its requests need them, unless the test asked for a warm pool.
        if config.pg_warm == defaults.pg_warm {
            config.pg_warm = 0;
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let shared = Shared::new(config);
        let (tx, rx) = std::sync::mpsc::channel();
        let for_thread = shared.clone();
        std::thread::spawn(move || {
            ntex::rt::System::new("arena-test", ntex::rt::DefaultRuntime).block_on(async move {
                // As `serve` does before it serves.
                people::rebuild::ensure_at_start(&for_thread.config).await;
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
        // stop() sends the command at once; its future only reports completion.
        drop(self.server.stop(false));
    }
}
