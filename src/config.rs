//! Every setting, read once from the command line or the environment, with a default that runs
//! the whole stack on one machine. `arena --help` lists them; the README's table mirrors it.
use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "arena",
    version,
    about = "Arena: Rinha-style API replicas, batch inserter and migrations"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub config: Config,
}

impl Cli {
    /// The process's arguments, parsed. The settings are global (a subcommand takes them after
    /// its name too), so clap would list all of them under `fib-bench --help`, which reads none:
    /// that subcommand gets hidden copies instead, accepted and left out of its help.
    pub fn from_args() -> Self {
        use clap::FromArgMatches;
        Self::from_arg_matches(&Self::full_command().get_matches()).unwrap_or_else(|e| e.exit())
    }

    fn full_command() -> clap::Command {
        use clap::CommandFactory;
        let command = Self::command();
        let settings: Vec<clap::Arg> = command
            .get_arguments()
            .filter(|a| a.is_global_set())
            .map(|a| a.clone().global(false).hide(true))
            .collect();
        command.mut_subcommand("fib-bench", |sub| sub.args(settings))
    }
}

#[derive(Debug, Clone, Copy, Subcommand)]
pub enum Command {
    /// Run one API replica (HTTP + WebSocket).
    Serve,
    /// Apply the numbered SQL migrations in sql/ (safe to run from every replica at once).
    Migrate,
    /// Empty every domain's tables and reseed them (accounts 1-5 back to balance 0).
    Reset,
    /// Consume the people queue and write people to PostgreSQL in batches.
    Inserter,
    /// Time fib(N) and its conversion to decimal (best of a few rounds), to compare with GMP.
    FibBench {
        /// Which Fibonacci number to compute.
        #[arg(default_value_t = 1_000_000)]
        n: u64,
        /// Rounds to run; the fastest is reported.
        #[arg(long, default_value_t = 5)]
        rounds: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Name this replica reports in /ping, /health and logs.
    #[arg(long, env = "INSTANCE_NAME", default_value = "api1", global = true)]
    pub instance_name: String,
    /// TCP port to listen on (all interfaces are not used: 0.0.0.0 only when HOST says so).
    #[arg(long, env = "PORT", default_value_t = 9001, global = true)]
    pub port: u16,
    /// Address to bind the TCP port on.
    #[arg(long, env = "HOST", default_value = "127.0.0.1", global = true)]
    pub host: String,
    /// Listen on this Unix socket instead of TCP (nginx can proxy to unix:PATH).
    #[arg(long, env = "SOCKET_PATH", global = true)]
    pub socket_path: Option<String>,
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/arena",
        global = true
    )]
    pub database_url: String,
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379/0",
        global = true
    )]
    pub redis_url: String,
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        global = true
    )]
    pub amqp_url: String,
    /// Bearer token for /fall and /revive; unset means those routes answer 403.
    #[arg(long, env = "ADMIN_TOKEN", global = true, hide_env_values = true)]
    pub admin_token: Option<String>,
    /// PostgreSQL connections per worker. Budget: replicas x workers x this (+ inserter) must
    /// stay under PostgreSQL's max_connections (100 by default): 2 x 1 x 16 + 4 leaves room.
    #[arg(long, env = "PG_POOL_SIZE", default_value_t = 16, global = true)]
    pub pg_pool_size: usize,
    /// PostgreSQL connections each worker opens (and prepares its hot statements on) as it
    /// starts, instead of on the first requests that need them; at most PG_POOL_SIZE, 0 = all
    /// on demand. Half the pool: two replicas meet a 16-request burst ready (accounts opens
    /// with 25 debits at once, which queue on one row anyway), and a rolling update that runs
    /// three replicas for a while does not add 48 backends to the db's 200 MB at once.
    #[arg(long, env = "PG_WARM", default_value_t = 8, global = true)]
    pub pg_warm: usize,
    /// Redis connections per worker; Redis multiplexes cheaply, a few suffice.
    #[arg(long, env = "REDIS_POOL_SIZE", default_value_t = 8, global = true)]
    pub redis_pool_size: usize,
    /// ntex workers (one single-threaded runtime each). One per replica because the contest
    /// machine runs two replicas on two cores; raise it when a replica has cores to itself.
    #[arg(long, env = "WORKERS", default_value_t = 1, global = true)]
    pub workers: usize,
    /// Apply migrations before serving (every replica may do it; they take an advisory lock).
    #[arg(long, env = "MIGRATE_ON_START", default_value_t = false, global = true)]
    pub migrate_on_start: bool,
    /// Seconds a stopping replica waits for in-flight requests before closing them.
    #[arg(
        long,
        env = "SHUTDOWN_TIMEOUT_SECS",
        default_value_t = 10,
        global = true
    )]
    pub shutdown_timeout_secs: u16,
    /// RabbitMQ queue the replicas publish new people to and the inserter consumes; rejected
    /// (undecodable) messages go to `<queue>.dead`.
    #[arg(
        long,
        env = "PEOPLE_QUEUE",
        default_value = "arena.people",
        global = true
    )]
    pub people_queue: String,
    /// The inserter writes a batch once it holds this many people. 1000 rows of ~200 bytes is
    /// one ~200 KB statement: large enough that 600 POST/s are a handful of statements a second,
    /// small enough to keep the inserter inside its 20 MB.
    #[arg(
        long,
        env = "INSERTER_BATCH_SIZE",
        default_value_t = 1000,
        global = true
    )]
    pub inserter_batch_size: usize,
    /// ...or once the oldest person in the batch has waited this long (ms). Bounds how far
    /// `/contagem-pessoas` lags behind the last 201; reads by id never wait (Redis has them).
    #[arg(long, env = "INSERTER_FLUSH_MS", default_value_t = 100, global = true)]
    pub inserter_flush_ms: u64,
    /// Port on `HOST` where `arena inserter` serves its own `GET /metrics` (batch sizes, flush
    /// times); 0 serves none. nginx publishes it as `/metrics/inserter`.
    #[arg(
        long,
        env = "INSERTER_METRICS_PORT",
        default_value_t = 9100,
        global = true
    )]
    pub inserter_metrics_port: u16,
    /// `text` for people, `json` for log collectors.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Largest n a WebSocket client may ask fib(n) of (SPEC §6). fib(1 000 000) has 208 988
    /// digits and takes tens of milliseconds.
    #[arg(long, env = "FIB_MAX_N", default_value_t = 1_000_000, global = true)]
    pub fib_max_n: u64,
    /// Threads computing large Fibonacci numbers, per process (shared by its workers). Two: the
    /// contest machine has two cores for two replicas, and the event loop needs its share.
    #[arg(long, env = "FIB_POOL_SIZE", default_value_t = 2, global = true)]
    pub fib_pool_size: usize,
    /// Bytes a WebSocket client may leave unread before it is closed with 1008 "client too
    /// slow". 256 KiB holds a fib(1 000 000) reply (209 KB) plus ticks, and bounds a replica
    /// with 1 000 stuck clients to a quarter GiB of buffers.
    #[arg(long, env = "WS_MAX_PENDING_BYTES", default_value_t = 256 * 1024, global = true)]
    pub ws_max_pending_bytes: usize,
    /// WebSockets (Fibonacci and chat rooms together) one replica holds open; an upgrade
    /// beyond it is answered 503 before any socket exists, so a flood of connections meets a
    /// clear refusal instead of the replica's memory limit. 5 000: a room socket costs ~5 KiB
    /// idle and a Fibonacci socket ~30 KiB when busy; under chat.sh's load a replica grew
    /// ~15 MiB per 1 000 room sockets, so compose's 50 MB replica fills before this bound does
    /// when every socket is busy: set it lower there, or give the replica more memory.
    #[arg(
        long,
        env = "WS_MAX_CONNECTIONS",
        default_value_t = 5_000,
        global = true
    )]
    pub ws_max_connections: usize,
    /// Secret every replica signs and checks login tokens with (HMAC-SHA256, SPEC §4). Replicas
    /// must share it; unset, a fixed development secret is used and a warning logged, which is
    /// fine on one machine and wrong anywhere else.
    #[arg(long, env = "TOKEN_SECRET", global = true, hide_env_values = true)]
    pub token_secret: Option<String>,
    /// How long a login token is accepted (seconds). A day: a chat client logs in once a day.
    #[arg(long, env = "TOKEN_TTL_SECS", default_value_t = 86_400, global = true)]
    pub token_ttl_secs: u32,
    /// RabbitMQ topic exchange chat events fan out through. Every replica binds its own
    /// exclusive, auto-delete queue to it, so an event reaches the subscribers of all replicas.
    #[arg(
        long,
        env = "CHAT_EXCHANGE",
        default_value = "arena.chat",
        global = true
    )]
    pub chat_exchange: String,
    /// tracing filter, e.g. `info` or `arena=debug`.
    #[arg(long, env = "RUST_LOG", default_value = "info", global = true)]
    pub log_filter: String,
}

impl Config {
    /// The configuration the environment describes, as `arena` would read it with no flags.
    /// Tests use it and then override what they need.
    pub fn from_env() -> Self {
        Cli::parse_from(["arena", "serve"]).config
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::FromArgMatches;

    #[test]
    fn fib_bench_help_lists_its_own_flags_only_but_serve_lists_every_setting() {
        let mut command = Cli::full_command();
        command.build();
        let help = |name: &str| {
            command
                .find_subcommand(name)
                .unwrap()
                .clone()
                .render_long_help()
                .to_string()
        };
        let (bench, serve) = (help("fib-bench"), help("serve"));
        assert!(bench.contains("--rounds"), "{bench}");
        assert!(
            !bench.contains("--port") && !bench.contains("DATABASE_URL"),
            "{bench}"
        );
        assert!(
            serve.contains("--port") && serve.contains("DATABASE_URL"),
            "{serve}"
        );
        // Still accepted after the subcommand's name, as before.
        let args = ["arena", "fib-bench", "10", "--rounds", "1", "--port", "1"];
        let cli = Cli::from_arg_matches(&Cli::full_command().get_matches_from(args)).unwrap();
        assert!(matches!(
            cli.command,
            Command::FibBench { n: 10, rounds: 1 }
        ));
    }
}
