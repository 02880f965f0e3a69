//! `jivachat-server`: config, tracing, bind, run.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use jivachat_server::{
    Args, Command, Config, create_tables, init_tracing, issue_token, run, shutdown_signal,
};

/// jemalloc rather than the system's malloc (feature `jemalloc`, on by default): under the
/// churn of chats opening and closing, glibc's arenas kept growing while the live heap did not
/// (docs/RELIABILITY.md, "Soak"); jemalloc hands freed pages back to the system.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// How long after the shutdown grace the process may still wait for blocking tasks (see
/// `docs/RELIABILITY.md`, "Shutdown within the grace").
const SHUTDOWN_MARGIN: Duration = Duration::from_millis(500);

fn main() -> ExitCode {
    // A missing .env is normal; values already in the environment win over it.
    let _ = dotenvy::dotenv();
    let config = match Config::from_args(Args::parse()) {
        Ok(config) => config,
        Err(problems) => {
            for problem in problems {
                eprintln!("configuration error: {problem}");
            }
            return ExitCode::from(2);
        }
    };
    if matches!(config.command, Command::Token(_)) {
        return print_token(&config);
    }
    init_tracing(&config);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        if config.command == Command::CreateTables {
            return create_tables(&config).await;
        }
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
        run(config, listener, shutdown_signal()).await
    });
    // `run` returned within the shutdown grace; a blocking task still running (a store read)
    // may hold the exit back by at most this margin.
    runtime.shutdown_timeout(SHUTDOWN_MARGIN);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The `token` command: the token on stdout, nothing else, so that `$(jivachat-server token …)`
/// captures it.
// Printing the token is this command's purpose; the workspace denies print_stdout elsewhere.
#[allow(clippy::print_stdout)]
fn print_token(config: &Config) -> ExitCode {
    match issue_token(config) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
