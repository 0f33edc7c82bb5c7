//! The `token-service` binary: parse the command line, load configuration, dispatch.

use std::process::ExitCode;

use clap::Parser;
use token_service::{
    admin,
    cli::{Cli, Command},
    config::{Config, InvalidConfig},
    server, telemetry,
};

/// mimalloc instead of the system allocator: the request path allocates and frees small
/// buffers on every call, and glibc's malloc spent a sixth of the cached path's CPU doing it
/// (README "Performance").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let (config, report) = match Config::load(cli.config.as_deref(), &cli.overrides()) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("error: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = telemetry::check_rust_log() {
        eprintln!("error: invalid configuration: {e}");
        return ExitCode::from(2);
    }
    let _telemetry = telemetry::init(&config.log);
    for name in &report.unknown_env_vars {
        tracing::warn!(variable = %name, "ignoring unknown TOKEN_SERVICE_* environment variable");
    }
    let outcome = match &cli.command {
        None | Some(Command::Serve(_)) => serve(&config).await,
        Some(Command::Migrate { action }) => {
            // Where the operator's command acts, on stderr (stdout is the JSON answer).
            eprintln!("token-service: database: {}", config.database_location());
            admin::migrate(&config, action).await.map(print)
        }
        Some(Command::Admin { action }) => {
            eprintln!("token-service: {}", config.state_summary());
            admin::admin_output(&config, action)
                .await
                .map(|output| match output {
                    admin::Output::Json(value) => print(value),
                    admin::Output::Printed => {}
                })
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<InvalidConfig>() => {
            eprintln!("error: invalid configuration: {e}");
            ExitCode::from(2)
        }
        Err(e) if e.is::<admin::NotSetUp>() => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: &Config) -> Result<(), server::ServerError> {
    let running = server::start(config).await?;
    let trigger = running.shutdown_trigger();
    tokio::spawn(async move {
        server::wait_for_signal().await;
        let _ = trigger.send(true);
    });
    running.wait().await
}

fn print(value: serde_json::Value) {
    println!("{value}");
}
