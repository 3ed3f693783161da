//! The worker role: executes side effects with retries. Kubernetes (SPEC §7): `launch_run` and
//! `cancel_run` handlers, the pod watch that drives run status, and the leader-only resync and
//! namespace cleanup. GitHub: `github_comment` (comment and labels, retried with the host's wait).

mod cancel;
mod comment;
mod launch;
mod pods;
mod runs;
mod status_comment;
mod store;
mod upkeep;

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;

use crate::config::RuntimeConfig;
use crate::domain::runtime::ClusterRuntime;
use crate::queue::{JobKind, Registry};

pub use comment::ProviderDeps;
pub use pods::follow as follow_pods;
pub use status_comment::job as status_comment_job;
pub use upkeep::{cleanup, resync};

/// Creates the Kubernetes objects of a pending run (payload: `{"run_id": …}`).
pub const LAUNCH_RUN: JobKind = JobKind::new("launch_run").timeout(Duration::from_secs(120));
/// Stops a run's workload and marks it canceled (payload: `{"run_id": …}`).
pub const CANCEL_RUN: JobKind = JobKind::new("cancel_run").timeout(Duration::from_secs(120));
/// Posts a comment (and optionally labels) on an issue or pull request.
pub const GITHUB_COMMENT: JobKind = JobKind::new("github_comment").timeout(Duration::from_secs(60));
/// Adds and removes labels on an issue or pull request (payload: repository id, item number,
/// `add`, `remove`).
pub const GITHUB_LABELS: JobKind = JobKind::new("github_labels").timeout(Duration::from_secs(60));
/// Renders a run's status comment on its issue or pull request (payload: `{"run_id": …}`).
pub const GITHUB_STATUS_COMMENT: JobKind =
    JobKind::new("github_status_comment").timeout(Duration::from_secs(60));
/// Acknowledges a trigger on its issue or pull request (payload: repository id, item number).
pub const GITHUB_ACKNOWLEDGE: JobKind =
    JobKind::new("github_acknowledge").timeout(Duration::from_secs(60));

/// The `launch_run` job of a run's current attempt; at most one unfinished per attempt, so a
/// relaunch is never swallowed by the previous attempt's launch job.
pub fn launch_job(run_id: uuid::Uuid, attempt: i32, correlation: &str) -> crate::queue::NewJob {
    crate::queue::NewJob::new(serde_json::json!({ "run_id": run_id }))
        .unique_key(format!("{run_id}:{attempt}"))
        .correlation_id(uuid::Uuid::parse_str(correlation).unwrap_or(run_id))
}

/// The payload of `launch_run` and `cancel_run`.
#[derive(serde::Deserialize)]
struct RunJob {
    run_id: uuid::Uuid,
}

/// What the runtime handlers need.
pub struct RuntimeDeps<R> {
    pub pool: PgPool,
    pub cluster: R,
    pub config: RuntimeConfig,
    /// Where runners reach the gateway.
    pub public_url: String,
}

/// The worker role's repository-host handlers.
pub fn provider_handlers<C: crate::domain::provider::ProviderConnector>(
    deps: Arc<ProviderDeps<C>>,
) -> Registry {
    let mut registry = Registry::new();
    let labelling = deps.clone();
    registry.register(GITHUB_LABELS, move |ctx| {
        comment::labels(ctx, labelling.clone())
    });
    let statuses = deps.clone();
    registry.register(GITHUB_STATUS_COMMENT, move |ctx| {
        status_comment::handle(ctx, statuses.clone())
    });
    let acknowledging = deps.clone();
    registry.register(GITHUB_ACKNOWLEDGE, move |ctx| {
        comment::acknowledge(ctx, acknowledging.clone())
    });
    registry.register(GITHUB_COMMENT, move |ctx| {
        comment::handle(ctx, deps.clone())
    });
    registry
}

/// The worker role's job handlers.
pub fn handlers<R: ClusterRuntime>(deps: Arc<RuntimeDeps<R>>) -> Registry {
    let mut registry = Registry::new();
    let launch = deps.clone();
    registry.register(LAUNCH_RUN, move |ctx| launch::handle(ctx, launch.clone()));
    registry.register(CANCEL_RUN, move |ctx| cancel::handle(ctx, deps.clone()));
    registry
}
