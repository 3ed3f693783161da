//! Leader-only repairs: the resync puts right what the pod watch or a lost job missed, and the
//! cleanup deletes expired managed namespaces nobody uses. Each tick makes one list request to the
//! cluster however many runs exist.

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use uuid::Uuid;

use super::{LAUNCH_RUN, RuntimeDeps, runs, store};
use crate::domain::errors::RepositoryError;
use crate::domain::runtime::ClusterRuntime;
use crate::queue::{self, NewJob};
use crate::store::audit::{self, Actor, FlowEvent};
use crate::store::map_sqlx_error;

/// A run still `starting` this long after taking its slot, without a Job, lost its launch.
const STARTING_GRACE: Duration = Duration::from_secs(300);

pub async fn resync<R: ClusterRuntime>(deps: &RuntimeDeps<R>) -> Result<(), RepositoryError> {
    let mut conn = deps.pool.acquire().await.map_err(map_sqlx_error)?;
    for (run_id, correlation) in store::runs_without_launch_job(&mut conn, LAUNCH_RUN.name).await? {
        let job = NewJob::new(json!({ "run_id": run_id }))
            .unique_key(run_id.to_string())
            .correlation_id(Uuid::parse_str(&correlation).unwrap_or(run_id));
        queue::enqueue(&mut *conn, &LAUNCH_RUN, job).await?;
    }
    let expected = store::runs_with_workload(&mut conn).await?;
    drop(conn);
    if expected.is_empty() {
        return Ok(());
    }
    let existing: HashSet<(String, String)> = deps
        .cluster
        .managed_jobs()
        .await
        .map_err(|e| RepositoryError::Unavailable(e.to_string()))?
        .into_iter()
        .collect();
    let grace = chrono::Duration::from_std(STARTING_GRACE).unwrap_or(chrono::Duration::MAX);
    for run in expected {
        let (Some(namespace), Some(job)) = (run.namespace, run.job_name) else {
            continue;
        };
        let settled =
            run.status == "running" || run.started_at.is_some_and(|t| Utc::now() - t > grace);
        if settled && !existing.contains(&(namespace.clone(), job.clone())) {
            runs::workload_lost(
                deps,
                run.id,
                run.attempt,
                &format!("its Job {namespace}/{job} no longer exists"),
            )
            .await?;
        }
    }
    Ok(())
}

pub async fn cleanup<R: ClusterRuntime>(deps: &RuntimeDeps<R>) -> Result<usize, RepositoryError> {
    let mut conn = deps.pool.acquire().await.map_err(map_sqlx_error)?;
    let in_use: HashSet<String> = store::namespaces_in_use(&mut conn)
        .await?
        .into_iter()
        .collect();
    drop(conn);
    let namespaces = deps
        .cluster
        .managed_namespaces()
        .await
        .map_err(|e| RepositoryError::Unavailable(e.to_string()))?;
    let now = Utc::now();
    let mut deleted = 0;
    for ns in namespaces {
        // A managed namespace without an expiry (the runs namespace, if labelled) is never deleted.
        let expired = ns.expires_at.is_some_and(|t| t < now);
        if !expired || in_use.contains(&ns.name) {
            continue;
        }
        match deps.cluster.delete_namespace(&ns.name).await {
            Ok(true) => {
                deleted += 1;
                let mut tx = deps.pool.begin().await.map_err(map_sqlx_error)?;
                let correlation = format!("namespace-cleanup:{}", ns.name);
                audit::append(
                    &mut tx,
                    FlowEvent {
                        correlation_id: &correlation,
                        run_id: None,
                        actor: Actor::System,
                        event_type: "k8s.namespace.deleted",
                        payload: json!({ "namespace": ns.name, "expired_at": ns.expires_at.map(|t| t.to_rfc3339()) }),
                    },
                )
                .await?;
                tx.commit().await.map_err(map_sqlx_error)?;
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(namespace = %ns.name, error = %e, "could not delete an expired namespace")
            }
        }
    }
    Ok(deleted)
}
