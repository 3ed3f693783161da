//! The `codex-k8s` binary: parses the command line and configuration, then hands over to the library.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use codex_k8s::cli::{Cli, Command, KeysCommand};
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
    if matches!(cli.command, Command::Keys(_)) && config.token_keys.is_none() {
        eprintln!(
            "codex-k8s: CODEXK8S_TOKEN_KEYS is not set: export the keys, the new one first, e.g. \
             CODEXK8S_TOKEN_KEYS=k2:<base64 of 32 bytes>,k1:<old key>"
        );
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
            Command::Keys(KeysCommand::Rotate) => rotate_keys(&config).await,
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

async fn rotate_keys(config: &Config) -> anyhow::Result<()> {
    let keys = config
        .token_keys
        .as_ref()
        .expect("checked before the runtime starts");
    let pool = store::connect(&serve::pool_settings(config))
        .await
        .map_err(|e| anyhow::anyhow!("CODEXK8S_DATABASE_URL: {e}"))?;
    let report = codex_k8s::tokens::rotate(&pool, keys).await?;
    println!(
        "resealed {} token(s) with key {:?}; {} could not be opened",
        report.resealed,
        keys.active_id(),
        report.failed.len()
    );
    for (repository, kind, error) in &report.failed {
        eprintln!("codex-k8s: repository {repository}, {kind:?} token: {error}");
    }
    anyhow::ensure!(
        report.failed.is_empty(),
        "{} token(s) were left sealed with keys that do not open them; keep those keys until they are fixed",
        report.failed.len()
    );
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
