//! The `codex-k8s` binary: parses the command line and configuration, then hands over to the library.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use codex_k8s::cli::{Cli, Command};
use codex_k8s::config::{Config, ProcessEnv};
use codex_k8s::retry::{Backoff, Retrier};
use codex_k8s::{serve, store, telemetry};
use tokio_util::sync::CancellationToken;

/// Exit status for a missing or malformed configuration variable (sysexits' EX_CONFIG).
const EXIT_CONFIG: u8 = 78;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Both kube and reqwest build rustls clients; pick the one crypto provider up front.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = match Config::from_env(&ProcessEnv) {
        Ok(config) => config,
        Err(errors) => {
            eprint!("codex-k8s: {errors}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Command::Serve(args) = &cli.command
        && args.roles.contains(&codex_k8s::cli::Role::Gateway)
        && let Err(errors) = config.check_for_gateway()
    {
        eprint!("codex-k8s: {errors}");
        return ExitCode::from(EXIT_CONFIG);
    }
    if let Command::Config = cli.command {
        for (name, value) in config.describe() {
            println!("{name}={value}");
        }
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("codex-k8s: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let _telemetry = match telemetry::init(&config.log, config.otlp_endpoint.as_ref()) {
            Ok(guard) => guard,
            Err(e) => {
                eprintln!("codex-k8s: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        };
        let result = match cli.command {
            Command::Serve(args) => run_serve(&config, &args.roles).await,
            Command::Migrate(args) => run_migrate(&config, args.wait).await,
            Command::Config => unreachable!("handled before the runtime starts"),
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "codex-k8s stopped with an error");
                eprintln!("codex-k8s: {e:#}");
                ExitCode::FAILURE
            }
        }
    })
}

async fn run_serve(config: &Config, roles: &[codex_k8s::cli::Role]) -> anyhow::Result<()> {
    tracing::info!(config = ?config.describe(), "effective configuration");
    let shutdown = CancellationToken::new();
    serve::cancel_on_signals(shutdown.clone());
    let running = serve::start(config, roles, shutdown).await?;
    running.wait().await;
    Ok(())
}

async fn run_migrate(config: &Config, wait: Duration) -> anyhow::Result<()> {
    let settings = serve::pool_settings(config);
    let deadline = tokio::time::Instant::now() + wait;
    let mut retrier = Retrier::new(Backoff::new(
        Duration::from_millis(250),
        Duration::from_secs(5),
    ));
    let pool = loop {
        match store::connect(&settings).await {
            Ok(pool) => break pool,
            Err(e) if e.is_transient() && tokio::time::Instant::now() < deadline => {
                let delay = retrier.next_delay();
                tracing::warn!(error = %e, retry_in = ?delay, "database not reachable yet");
                tokio::time::sleep(delay).await;
            }
            Err(e) => anyhow::bail!(
                "CODEXK8S_DATABASE_URL: cannot connect to {}: {e}",
                config.database.url.masked()
            ),
        }
    };
    store::migrations::run(&pool).await?;
    tracing::info!(database = %config.database.url.masked(), "migrations applied; schema is current");
    pool.close().await;
    Ok(())
}
