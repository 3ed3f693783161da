//! Configuration: every `CODEXK8S_*` variable parsed once into one typed [`Config`], validated at
//! start-up. All problems are reported together, each naming its variable and how to fix it.
//! Secrets are wrapped so that printing the configuration never reveals them.

mod env;
mod reader;
mod secret;

use std::net::SocketAddr;
use std::time::Duration;

pub use env::{EnvSource, ProcessEnv};
pub use secret::{DatabaseUrl, Secret};

use reader::Reader;

/// Output format of the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "json" => Ok(Self::Json),
            "text" => Ok(Self::Text),
            _ => Err("expected `json` or `text`".into()),
        }
    }
}

/// An absolute `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl(url::Url);

impl HttpUrl {
    pub fn as_url(&self) -> &url::Url {
        &self.0
    }
}

impl std::str::FromStr for HttpUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let url = url::Url::parse(s).map_err(|e| e.to_string())?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
            return Err("expected an http:// or https:// URL with a host".into());
        }
        Ok(Self(url))
    }
}

impl std::fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::fmt::Display for LogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Json => "json",
            Self::Text => "text",
        })
    }
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub url: DatabaseUrl,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter directive such as `info,codex_k8s=debug`.
    pub filter: String,
}

/// Settings of the job queue consumers that every role runs (SPEC §6).
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// Jobs one process runs at once.
    pub concurrency: usize,
    /// Most jobs claimed in one round trip.
    pub claim_batch: usize,
    /// How long a claimed job stays leased without a heartbeat.
    pub lease: Duration,
    /// Fallback poll when no NOTIFY arrives.
    pub poll_interval: Duration,
    /// How often expired leases are looked for.
    pub rescue_interval: Duration,
    /// Time running jobs get to finish on SIGTERM before they are handed back.
    pub shutdown_grace: Duration,
    /// How long succeeded jobs are kept.
    pub succeeded_retention: Duration,
    /// How long dead jobs are kept for staff to inspect and retry.
    pub dead_retention: Duration,
}

#[derive(Debug, Clone)]
pub struct LeaderConfig {
    /// A leader that stops renewing loses its lease after this long.
    pub lease_ttl: Duration,
}

/// What a run gets when neither labels nor project settings choose.
#[derive(Debug, Clone)]
pub struct AgentDefaults {
    pub model: String,
    pub reasoning: String,
    pub learning_mode: bool,
}

/// How runs become Kubernetes workloads (SPEC §7).
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Namespace of `code-only` runs.
    pub runs_namespace: String,
    /// Prefix of the per-issue namespaces of `full-env` runs.
    pub namespace_prefix: String,
    pub runner_image: String,
    /// Runs of one project that may hold a workload at once, unless the project sets `slots`.
    pub slots_per_project: u32,
    /// New attempts after a pod is lost, before the run fails.
    pub max_relaunches: u32,
    /// `activeDeadlineSeconds` of a run's Job.
    pub run_deadline: std::time::Duration,
    pub pending_timeout: std::time::Duration,
    pub unschedulable_timeout: std::time::Duration,
    /// `ttlSecondsAfterFinished` of a run's Job.
    pub job_ttl: std::time::Duration,
    /// How long a `full-env` namespace outlives its last run.
    pub namespace_ttl: std::time::Duration,
    /// Leader-only repair of what the pod watch missed.
    pub resync_interval: std::time::Duration,
    /// Leader-only deletion of expired namespaces.
    pub cleanup_interval: std::time::Duration,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub database: DatabaseConfig,
    pub http_addr: SocketAddr,
    pub public_url: HttpUrl,
    pub log: LogConfig,
    pub otlp_endpoint: Option<HttpUrl>,
    pub queue: QueueConfig,
    pub leader: LeaderConfig,
    /// Secrets that sign GitHub webhooks; any of them may match, so secrets can be rotated.
    pub github_webhook_secrets: Vec<Secret<String>>,
    pub agents: AgentDefaults,
    pub runtime: RuntimeConfig,
    /// The cluster the worker role uses; unset: `~/.kube/config` or the in-cluster account.
    pub kubeconfig: Option<std::path::PathBuf>,
    /// Keys that seal stored tokens; the first seals, all open.
    pub token_keys: Option<crate::sealing::KeyRing>,
    /// GitHub's REST API (tests point it at a local fake).
    pub github_api_url: HttpUrl,
}

/// One variable that is missing or malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.variable, self.problem)
    }
}

/// Every problem found in the environment, reported at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "invalid configuration:")?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl Config {
    pub fn from_env(env: &dyn EnvSource) -> Result<Self, ConfigErrors> {
        let mut r = Reader::new(env);
        let database_url: Option<DatabaseUrl> = r.required_secret(
            "CODEXK8S_DATABASE_URL",
            "postgres://codex:secret@127.0.0.1:5432/codex_k8s",
        );
        let max_connections = r.ranged("CODEXK8S_DATABASE_MAX_CONNECTIONS", 20, 1..=1000);
        let acquire_timeout =
            r.duration("CODEXK8S_DATABASE_ACQUIRE_TIMEOUT", Duration::from_secs(5));
        let http_addr = r.or_default(
            "CODEXK8S_HTTP_ADDR",
            "0.0.0.0:8080".parse().expect("valid literal"),
        );
        let public_url = r.or_default(
            "CODEXK8S_PUBLIC_URL",
            "http://localhost:8080".parse().expect("valid literal"),
        );
        let log = LogConfig {
            format: r.or_default("CODEXK8S_LOG_FORMAT", LogFormat::Json),
            filter: r.filter("CODEXK8S_LOG_FILTER", "info"),
        };
        let otlp_endpoint = r.optional("OTEL_EXPORTER_OTLP_ENDPOINT");
        let lease = r.duration("CODEXK8S_QUEUE_LEASE", Duration::from_secs(30));
        let queue = QueueConfig {
            concurrency: r.ranged("CODEXK8S_QUEUE_CONCURRENCY", 16, 1..=10_000),
            claim_batch: r.ranged("CODEXK8S_QUEUE_CLAIM_BATCH", 32, 1..=1_000),
            lease,
            poll_interval: r.duration("CODEXK8S_QUEUE_POLL_INTERVAL", Duration::from_secs(2)),
            rescue_interval: r.duration("CODEXK8S_QUEUE_RESCUE_INTERVAL", Duration::from_secs(10)),
            shutdown_grace: r.duration("CODEXK8S_SHUTDOWN_GRACE", Duration::from_secs(20)),
            succeeded_retention: r.duration(
                "CODEXK8S_JOBS_RETENTION",
                Duration::from_secs(7 * 24 * 3600),
            ),
            dead_retention: r.duration(
                "CODEXK8S_DEAD_JOBS_RETENTION",
                Duration::from_secs(30 * 24 * 3600),
            ),
        };
        if lease < Duration::from_secs(1) {
            r.problem(
                "CODEXK8S_QUEUE_LEASE",
                "must be at least 1s: heartbeats run at a third of it",
            );
        }
        let github_webhook_secrets = r.secret_list("CODEXK8S_GITHUB_WEBHOOK_SECRETS");
        let agents = AgentDefaults {
            model: r.or_default("CODEXK8S_DEFAULT_MODEL", "gpt-5-codex".to_owned()),
            reasoning: r.one_of(
                "CODEXK8S_DEFAULT_REASONING",
                "medium",
                &["low", "medium", "high", "extra-high"],
            ),
            learning_mode: r.or_default("CODEXK8S_LEARNING_MODE_DEFAULT", false),
        };
        let leader = LeaderConfig {
            lease_ttl: r.duration("CODEXK8S_LEADER_LEASE_TTL", Duration::from_secs(10)),
        };
        if leader.lease_ttl < Duration::from_secs(1) {
            r.problem(
                "CODEXK8S_LEADER_LEASE_TTL",
                "must be at least 1s: leaders renew at a third of it",
            );
        }
        let runtime = RuntimeConfig {
            runs_namespace: r.or_default("CODEXK8S_RUNS_NAMESPACE", "codex-k8s-runs".to_owned()),
            namespace_prefix: r.or_default("CODEXK8S_NAMESPACE_PREFIX", "codex".to_owned()),
            runner_image: r.or_default(
                "CODEXK8S_RUNNER_IMAGE",
                "ghcr.io/codex-k8s/codex-k8s:latest".to_owned(),
            ),
            slots_per_project: r.ranged("CODEXK8S_SLOTS_PER_PROJECT", 2, 1..=1_000),
            max_relaunches: r.ranged("CODEXK8S_MAX_RELAUNCHES", 2, 0..=100),
            run_deadline: r.duration("CODEXK8S_RUN_DEADLINE", Duration::from_secs(4 * 3600)),
            pending_timeout: r.duration("CODEXK8S_RUN_PENDING_TIMEOUT", Duration::from_secs(600)),
            unschedulable_timeout: r.duration(
                "CODEXK8S_RUN_UNSCHEDULABLE_TIMEOUT",
                Duration::from_secs(300),
            ),
            job_ttl: r.duration("CODEXK8S_JOB_TTL", Duration::from_secs(3600)),
            namespace_ttl: r.duration("CODEXK8S_NAMESPACE_TTL", Duration::from_secs(24 * 3600)),
            resync_interval: r
                .duration("CODEXK8S_RUNTIME_RESYNC_INTERVAL", Duration::from_secs(60)),
            cleanup_interval: r.duration("CODEXK8S_CLEANUP_INTERVAL", Duration::from_secs(300)),
        };
        let kubeconfig: Option<std::path::PathBuf> = r.optional("KUBECONFIG");
        let token_keys = r.optional_secret("CODEXK8S_TOKEN_KEYS");
        let github_api_url = r.or_default(
            "CODEXK8S_GITHUB_API_URL",
            "https://api.github.com".parse().expect("valid literal"),
        );
        for (var, value) in [
            ("CODEXK8S_RUNS_NAMESPACE", &runtime.runs_namespace),
            ("CODEXK8S_NAMESPACE_PREFIX", &runtime.namespace_prefix),
        ] {
            if !is_dns_label(value) || value.len() > 40 {
                r.problem(
                    var,
                    "must be a DNS label of at most 40 characters (lowercase letters, digits, '-')",
                );
            }
        }
        r.finish()?;
        let url = database_url.expect("a missing database URL is reported by finish()");
        Ok(Self {
            database: DatabaseConfig {
                url,
                max_connections,
                acquire_timeout,
            },
            http_addr,
            public_url,
            log,
            otlp_endpoint,
            queue,
            leader,
            github_webhook_secrets,
            agents,
            runtime,
            kubeconfig,
            token_keys,
            github_api_url,
        })
    }

    /// The effective configuration as `VARIABLE=value` pairs, secrets masked. This is the only way the
    /// configuration is ever printed.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        let d = |v: Duration| humantime::format_duration(v).to_string();
        vec![
            ("CODEXK8S_DATABASE_URL", self.database.url.masked()),
            (
                "CODEXK8S_DATABASE_MAX_CONNECTIONS",
                self.database.max_connections.to_string(),
            ),
            (
                "CODEXK8S_DATABASE_ACQUIRE_TIMEOUT",
                d(self.database.acquire_timeout),
            ),
            ("CODEXK8S_HTTP_ADDR", self.http_addr.to_string()),
            ("CODEXK8S_PUBLIC_URL", self.public_url.to_string()),
            ("CODEXK8S_LOG_FORMAT", self.log.format.to_string()),
            ("CODEXK8S_LOG_FILTER", self.log.filter.clone()),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                self.otlp_endpoint.as_ref().map_or_else(
                    || "(unset: traces are not exported)".into(),
                    |u| u.to_string(),
                ),
            ),
            (
                "CODEXK8S_QUEUE_CONCURRENCY",
                self.queue.concurrency.to_string(),
            ),
            (
                "CODEXK8S_QUEUE_CLAIM_BATCH",
                self.queue.claim_batch.to_string(),
            ),
            ("CODEXK8S_QUEUE_LEASE", d(self.queue.lease)),
            ("CODEXK8S_QUEUE_POLL_INTERVAL", d(self.queue.poll_interval)),
            (
                "CODEXK8S_QUEUE_RESCUE_INTERVAL",
                d(self.queue.rescue_interval),
            ),
            ("CODEXK8S_SHUTDOWN_GRACE", d(self.queue.shutdown_grace)),
            ("CODEXK8S_JOBS_RETENTION", d(self.queue.succeeded_retention)),
            ("CODEXK8S_DEAD_JOBS_RETENTION", d(self.queue.dead_retention)),
            ("CODEXK8S_LEADER_LEASE_TTL", d(self.leader.lease_ttl)),
            ("CODEXK8S_DEFAULT_MODEL", self.agents.model.clone()),
            ("CODEXK8S_DEFAULT_REASONING", self.agents.reasoning.clone()),
            (
                "CODEXK8S_LEARNING_MODE_DEFAULT",
                self.agents.learning_mode.to_string(),
            ),
            (
                "CODEXK8S_TOKEN_KEYS",
                self.token_keys.as_ref().map_or_else(
                    || "(unset)".into(),
                    |k| format!("(active key {:?}, keys masked)", k.active_id()),
                ),
            ),
            ("CODEXK8S_GITHUB_API_URL", self.github_api_url.to_string()),
            (
                "KUBECONFIG",
                self.kubeconfig.as_ref().map_or_else(
                    || "(unset: ~/.kube/config or in-cluster)".into(),
                    |p| p.display().to_string(),
                ),
            ),
            (
                "CODEXK8S_RUNS_NAMESPACE",
                self.runtime.runs_namespace.clone(),
            ),
            (
                "CODEXK8S_NAMESPACE_PREFIX",
                self.runtime.namespace_prefix.clone(),
            ),
            ("CODEXK8S_RUNNER_IMAGE", self.runtime.runner_image.clone()),
            (
                "CODEXK8S_SLOTS_PER_PROJECT",
                self.runtime.slots_per_project.to_string(),
            ),
            (
                "CODEXK8S_MAX_RELAUNCHES",
                self.runtime.max_relaunches.to_string(),
            ),
            ("CODEXK8S_RUN_DEADLINE", d(self.runtime.run_deadline)),
            (
                "CODEXK8S_RUN_PENDING_TIMEOUT",
                d(self.runtime.pending_timeout),
            ),
            (
                "CODEXK8S_RUN_UNSCHEDULABLE_TIMEOUT",
                d(self.runtime.unschedulable_timeout),
            ),
            ("CODEXK8S_JOB_TTL", d(self.runtime.job_ttl)),
            ("CODEXK8S_NAMESPACE_TTL", d(self.runtime.namespace_ttl)),
            (
                "CODEXK8S_RUNTIME_RESYNC_INTERVAL",
                d(self.runtime.resync_interval),
            ),
            (
                "CODEXK8S_CLEANUP_INTERVAL",
                d(self.runtime.cleanup_interval),
            ),
            (
                "CODEXK8S_GITHUB_WEBHOOK_SECRETS",
                match self.github_webhook_secrets.len() {
                    0 => "(unset)".to_owned(),
                    n => format!("({n} secret(s), masked)"),
                },
            ),
        ]
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

impl Config {
    /// Checks what only some roles need: the gateway refuses to start without a webhook secret.
    pub fn check_for_gateway(&self) -> Result<(), ConfigErrors> {
        if self.github_webhook_secrets.is_empty() {
            return Err(ConfigErrors(vec![ConfigError {
                variable: "CODEXK8S_GITHUB_WEBHOOK_SECRETS",
                problem: "is not set, and the gateway role needs it: export the secret configured on the GitHub \
                          webhook, e.g. CODEXK8S_GITHUB_WEBHOOK_SECRETS=<secret>[,<previous secret>]"
                    .into(),
            }]));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
