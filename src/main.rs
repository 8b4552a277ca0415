//! The `arena` binary: parse the command line, start telemetry, hand over to the library.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = arena::config::Cli::from_args();
    arena::telemetry::init(&cli.config);
    match arena::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "arena stopped with an error");
            eprintln!("arena: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
