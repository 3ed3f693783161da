//! `codex-k8s serve`: wires the chosen roles into one process and runs them until SIGTERM/SIGINT.
//!
//! Every process serves `/healthz`, `/readyz` and `/metrics`, listens for job wake-ups and runs one
//! queue worker for the job kinds its roles own. The worker role also leads queue maintenance.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::cli::Role;
use crate::config::Config;
use crate::control::{self, ControlDeps};
use crate::domain::errors::RepositoryError;
use crate::gateway::{self, GatewayState};
use crate::k8s::KubeRuntime;
use crate::leader::{self, ElectionConfig};
use crate::observability::http::{OpsState, router, with_request_spans};
use crate::observability::metrics::{LeaseLabels, Metrics};
use crate::providers::github::GithubConnector;
use crate::queue::JobKind;
use crate::queue::maintenance::{self, Retention};
use crate::queue::{Registry, Wakeups, Worker, WorkerConfig, listen_for_wakeups};
use crate::store::{self, PoolSettings};
use crate::worker::{self, ProviderDeps, RuntimeDeps};

/// The lease that guards job pruning and unknown-kind flagging.
pub const MAINTENANCE_LEASE: &str = "queue-maintenance";
const MAINTENANCE_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("CODEXK8S_HTTP_ADDR: cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("CODEXK8S_DATABASE_URL: {0}")]
    Database(RepositoryError),
    #[error("{0}")]
    Config(crate::config::ConfigErrors),
    #[error("KUBECONFIG: the worker role needs a cluster: {0}")]
    Kubernetes(String),
}

/// Every job kind this build declares, whether or not a handler exists yet: jobs of other kinds
/// get an "unknown kind" error recorded by queue maintenance.
pub const DECLARED_KINDS: [&JobKind; 7] = [
    &control::PROCESS_EVENT,
    &worker::LAUNCH_RUN,
    &worker::CANCEL_RUN,
    &worker::GITHUB_COMMENT,
    &worker::GITHUB_ACKNOWLEDGE,
    &worker::GITHUB_STATUS_COMMENT,
    &worker::GITHUB_LABELS,
];

/// The job handlers a process with `roles` runs; `cluster` is set when the worker role runs.
pub fn handlers_for(
    roles: &[Role],
    config: &Config,
    pool: &PgPool,
    runtime: Option<&Arc<RuntimeDeps<KubeRuntime>>>,
) -> Registry {
    let mut registry = Registry::new();
    if roles.contains(&Role::Control) {
        registry.merge(control::handlers(Arc::new(ControlDeps {
            pool: pool.clone(),
            defaults: config.agents.clone(),
        })));
    }
    if let Some(runtime) = runtime {
        registry.merge(worker::handlers(runtime.clone()));
        registry.merge(worker::provider_handlers(Arc::new(ProviderDeps {
            pool: pool.clone(),
            connector: GithubConnector::new(config.github_api_url.as_url().as_str()),
            keys: config.token_keys.clone(),
            console_url: config.public_url.to_string(),
        })));
    }
    registry
}

/// Every job kind this build knows.
pub fn known_kinds() -> Vec<String> {
    DECLARED_KINDS.iter().map(|k| k.name.to_owned()).collect()
}

/// Identifies this process in leases: host, pid and a random suffix (pids repeat across restarts).
pub fn instance_id() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &suffix[..8])
}

pub fn pool_settings(config: &Config) -> PoolSettings {
    PoolSettings {
        url: config.database.url.expose().to_owned(),
        max_connections: config.database.max_connections,
        acquire_timeout: config.database.acquire_timeout,
        application_name: "codex-k8s".into(),
    }
}

/// A started service.
pub struct Running {
    pub http_addr: SocketAddr,
    pub pool: PgPool,
    pub metrics: Arc<Metrics>,
    tasks: JoinSet<()>,
}

impl Running {
    /// Waits until every task has stopped after `shutdown` fired.
    pub async fn wait(mut self) {
        while self.tasks.join_next().await.is_some() {}
        self.pool.close().await;
    }
}

/// Starts the roles and returns once the HTTP listener is bound. Nothing needs the database to be
/// up at this point: every loop retries until it is.
pub async fn start(
    config: &Config,
    roles: &[Role],
    shutdown: CancellationToken,
) -> Result<Running, StartError> {
    let pool = store::connect_lazy(&pool_settings(config)).map_err(StartError::Database)?;
    let metrics = Metrics::new();
    let owner = instance_id();
    let mut tasks = JoinSet::new();

    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.http_addr,
            source,
        })?;
    let http_addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.http_addr,
        source,
    })?;
    let mut app = router(OpsState {
        pool: pool.clone(),
        metrics: metrics.clone(),
    });
    if roles.contains(&Role::Gateway) {
        config.check_for_gateway().map_err(StartError::Config)?;
        app = app.merge(gateway::router(GatewayState {
            pool: pool.clone(),
            webhook_secrets: Arc::new(config.github_webhook_secrets.clone()),
        }));
    }
    let app = with_request_spans(app);
    let http_shutdown = shutdown.clone();
    tasks.spawn(async move {
        let server = axum::serve(listener, app)
            .with_graceful_shutdown(async move { http_shutdown.cancelled().await });
        if let Err(e) = server.await {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });

    let wakeups = Wakeups::new();
    tasks.spawn(listen_for_wakeups(
        pool.clone(),
        wakeups.clone(),
        shutdown.clone(),
    ));

    let runtime = if roles.contains(&Role::Worker) {
        let cluster = KubeRuntime::from_environment(config.kubeconfig.as_deref())
            .await
            .map_err(StartError::Kubernetes)?;
        Some(Arc::new(RuntimeDeps {
            pool: pool.clone(),
            cluster,
            config: config.runtime.clone(),
            public_url: config.public_url.to_string(),
        }))
    } else {
        None
    };
    let worker_config = WorkerConfig::from_queue_config(owner.clone(), &config.queue);
    let worker = Worker::new(
        pool.clone(),
        handlers_for(roles, config, &pool, runtime.as_ref()),
        worker_config,
        metrics.queue.clone(),
        &wakeups,
    );
    tasks.spawn(worker.run(shutdown.clone()));

    if roles.contains(&Role::Worker) {
        let gauge = metrics
            .leader
            .get_or_create(&LeaseLabels {
                lease: MAINTENANCE_LEASE.into(),
            })
            .clone();
        let (leadership, election) = leader::spawn_election(
            pool.clone(),
            ElectionConfig {
                name: MAINTENANCE_LEASE.into(),
                holder: owner,
                ttl: config.leader.lease_ttl,
            },
            move |leading| {
                gauge.set(i64::from(leading));
            },
            shutdown.clone(),
        );
        tasks.spawn(async move {
            let _ = election.await;
        });
        let retention = Retention {
            succeeded: config.queue.succeeded_retention,
            dead: config.queue.dead_retention,
        };
        let runtime = runtime.expect("the worker role has a runtime");
        tasks.spawn(worker::follow_pods(runtime.clone(), shutdown.clone()));
        let deps = runtime.clone();
        tasks.spawn(leader::run_singleton(
            leadership.clone(),
            config.runtime.resync_interval,
            shutdown.clone(),
            move |guard| {
                let deps = deps.clone();
                async move { worker::resync(&deps, &guard).await }
            },
        ));
        tasks.spawn(leader::run_singleton(
            leadership.clone(),
            config.runtime.cleanup_interval,
            shutdown.clone(),
            move |guard| {
                let deps = runtime.clone();
                async move {
                    let deleted = worker::cleanup(&deps, &guard).await?;
                    if deleted > 0 {
                        tracing::info!(deleted, "deleted expired run namespaces");
                    }
                    Ok(())
                }
            },
        ));
        let known = known_kinds();
        let pool = pool.clone();
        tasks.spawn(leader::run_singleton(
            leadership,
            MAINTENANCE_EVERY,
            shutdown.clone(),
            move |guard| {
                let (pool, retention, known) = (pool.clone(), retention.clone(), known.clone());
                async move {
                    let pruned = maintenance::prune_finished(&pool, &guard, &retention).await?;
                    if pruned > 0 {
                        tracing::info!(pruned, "pruned finished jobs");
                    }
                    maintenance::flag_unknown_kinds(&pool, &guard, &known).await?;
                    Ok(())
                }
            },
        ));
    }

    tracing::info!(%http_addr, roles = ?roles, "codex-k8s started");
    Ok(Running {
        http_addr,
        pool,
        metrics,
        tasks,
    })
}

/// Cancels `token` on SIGTERM or SIGINT.
pub fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = terminate => tracing::info!("SIGTERM received; shutting down"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received; shutting down"),
        }
        token.cancel();
    });
}
