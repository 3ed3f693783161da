//! Command-line interface: `serve`, `migrate`, `config`, `keys rotate`.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// codex-k8s runs AI coding agents as Kubernetes workloads, driven by labels on GitHub issues.
///
/// Configuration comes from CODEXK8S_* environment variables (see docs/configuration.md);
/// `codex-k8s config` prints the effective values with secrets masked.
#[derive(Debug, Parser)]
#[command(name = "codex-k8s", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service with one or more roles (default: all three in one process).
    Serve(ServeArgs),
    /// Apply the embedded database migrations and exit. Safe to run from several pods at once.
    Migrate(MigrateArgs),
    /// Print the effective configuration, one VARIABLE=value per line, secrets masked.
    Config,
    /// Manage the keys that seal stored tokens (CODEXK8S_TOKEN_KEYS).
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Re-seal every stored token with the active (first) key of CODEXK8S_TOKEN_KEYS. Run it after
    /// putting a new key first; remove the old key only once this reports nothing failed.
    Rotate,
}

/// A role a process plays. Roles never call each other: they share PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, ValueEnum)]
pub enum Role {
    /// Webhooks, staff API, MCP endpoint and the admin console.
    Gateway,
    /// Turns webhook events into agent runs and owns the run state machine.
    Control,
    /// Executes side effects (Kubernetes, GitHub) with retries, and maintains the job queue.
    Worker,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Gateway, Role::Control, Role::Worker];
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Roles to run, comma-separated or repeated: gateway, control, worker.
    #[arg(long = "role", value_enum, value_delimiter = ',', env = "CODEXK8S_ROLES", default_values_t = Role::ALL)]
    pub roles: Vec<Role>,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// How long to keep retrying while the database is not reachable yet (e.g. 0s, 30s, 2m).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub wait: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(args: &[&str]) -> Result<Vec<Role>, clap::Error> {
        let mut argv = vec!["codex-k8s", "serve"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv)?.command {
            Command::Serve(serve) => Ok(serve.roles),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn all_roles_by_default() {
        assert_eq!(roles(&[]).unwrap(), Role::ALL);
    }

    #[test]
    fn roles_comma_separated_or_repeated() {
        assert_eq!(
            roles(&["--role=gateway,worker"]).unwrap(),
            [Role::Gateway, Role::Worker]
        );
        assert_eq!(
            roles(&["--role", "control", "--role", "worker"]).unwrap(),
            [Role::Control, Role::Worker]
        );
    }

    #[test]
    fn unknown_role_is_rejected() {
        let err = roles(&["--role=gateway,janitor"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::InvalidValue);
    }
}
