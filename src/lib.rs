//! Arena: one binary, several stateless replicas behind nginx, sharing PostgreSQL, Redis and
//! RabbitMQ. `run` dispatches the subcommands; each domain lives in its own folder.
pub mod accounts;
pub mod chat;
pub mod config;
pub mod error;
pub mod fib;
pub mod infra;
pub mod json;
pub mod lifecycle;
pub mod ops;
pub mod people;
pub mod server;
pub mod telemetry;
pub mod users;
pub mod ws;

use config::{Cli, Command};

/// Everything that can stop a subcommand before it starts serving.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Runs the chosen subcommand to completion.
pub fn run(cli: Cli) -> Result<(), BoxError> {
    let config = cli.config;
    match cli.command {
        Command::Serve => server::serve(config),
        Command::Migrate => infra::block_on(async move {
            infra::postgres::migrate(&config.database_url).await?;
            Ok(())
        }),
        Command::Reset => infra::block_on(async move {
            infra::postgres::migrate(&config.database_url).await?;
            infra::postgres::reset(&config.database_url, server::RESET_SQL).await?;
            // People's dedup keys, cache and pending set go with their table; then the
            // sentinel, since Redis's (no) apelido keys now cover the (empty) table.
            people::store::reset_redis(&config.redis_url, &config.people_queue).await?;
            Ok(())
        }),
        Command::Inserter => people::inserter::run(config),
        Command::FibBench { n, rounds } => {
            let (computed, rendered, digits) = fib::bench(n, rounds);
            println!(
                "fib({n}): {digits} digits, compute {:.2} ms, to decimal {:.2} ms, total {:.2} ms",
                computed.as_secs_f64() * 1e3,
                rendered.as_secs_f64() * 1e3,
                (computed + rendered).as_secs_f64() * 1e3,
            );
            Ok(())
        }
    }
}
