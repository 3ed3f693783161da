//! Leader-only repairs: the resync puts right what the pod watch or a lost job missed, and the
//! cleanup deletes expired managed namespaces nobody uses. Each tick makes one list request to the
//! cluster however many runs exist.

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use serde_json::json;

use super::{LAUNCH_RUN, RuntimeDeps, runs, store};
use crate::domain::errors::RepositoryError;
use crate::domain::runs::RunStatus;
use crate::domain::runtime::ClusterRuntime;
use crate::leader::LeaderGuard;
use crate::queue;
use crate::store::audit;
use crate::store::map_sqlx_error;
use sqlx::Connection;

/// A run still `starting` this long after taking its slot, without a Job, lost its launch.
const STARTING_GRACE: Duration = Duration::from_secs(300);

pub async fn resync<R: ClusterRuntime>(
    deps: &RuntimeDeps<R>,
    guard: &LeaderGuard,
) -> Result<(), RepositoryError> {
    let mut conn = deps.pool.acquire().await.map_err(map_sqlx_error)?;
    let mut tx = conn.begin().await.map_err(map_sqlx_error)?;
    guard.confirm(&mut tx).await?;
    for (run_id, attempt, correlation) in
        store::runs_without_launch_job(&mut tx, LAUNCH_RUN.name).await?
    {
        queue::enqueue(
            &mut *tx,
            &LAUNCH_RUN,
            super::launch_job(run_id, attempt, &correlation),
        )
        .await?;
    }
    // One launch per project with waiting runs: it takes a slot if one is free (a slot freed by a
    // run whose end was not observed, for instance).
    for project in store::projects_with_waiting_runs(&mut tx).await? {
        runs::promote_waiting(&mut tx, project, 1).await?;
    }
    tx.commit().await.map_err(map_sqlx_error)?;
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
    // A pending pod fails after the pending timeout; a Job without any pod gets twice that.
    let no_pod_for = deps.config.pending_timeout * 2;
    let no_pod_after = chrono::Duration::from_std(no_pod_for).unwrap_or(chrono::Duration::MAX);
    for run in expected {
        let (Some(namespace), Some(job)) = (run.namespace, run.job_name) else {
            continue;
        };
        let age = run.started_at.map(|t| Utc::now() - t);
        let settled = run.status == "running" || age.is_some_and(|a| a > grace);
        let exists = existing.contains(&(namespace.clone(), job.clone()));
        if settled && !exists {
            runs::workload_lost(
                deps,
                run.id,
                run.attempt,
                &format!("its Job {namespace}/{job} no longer exists"),
            )
            .await?;
        } else if run.status == "starting" && exists && age.is_some_and(|a| a > no_pod_after) {
            // A pending pod would have failed by now; this Job never got one.
            let reason = format!(
                "no pod of Job {namespace}/{job} appeared within {}: check the namespace's ResourceQuota and admission policies",
                humantime::format_duration(no_pod_for)
            );
            runs::end_run(
                deps,
                run.id,
                Some(run.attempt),
                RunStatus::Failed,
                Some(&reason),
                true,
            )
            .await?;
        }
    }
    Ok(())
}

pub async fn cleanup<R: ClusterRuntime>(
    deps: &RuntimeDeps<R>,
    guard: &LeaderGuard,
) -> Result<usize, RepositoryError> {
    let mut conn = deps.pool.acquire().await.map_err(map_sqlx_error)?;
    let mut tx = conn.begin().await.map_err(map_sqlx_error)?;
    guard.confirm(&mut tx).await?;
    tx.commit().await.map_err(map_sqlx_error)?;
    let namespaces = deps
        .cluster
        .managed_namespaces()
        .await
        .map_err(|e| RepositoryError::Unavailable(e.to_string()))?;
    // Read after the list: a run that took a namespace before the list is seen here, and a launch
    // after it changes the namespace's version, which makes the guarded delete below refuse.
    let in_use: HashSet<String> = store::namespaces_in_use(&mut conn)
        .await?
        .into_iter()
        .collect();
    drop(conn);
    let now = Utc::now();
    let mut deleted = 0;
    for ns in namespaces {
        // A managed namespace without an expiry (the runs namespace, if labelled) is never deleted.
        let expired = ns.expires_at.is_some_and(|t| t < now);
        if !expired || in_use.contains(&ns.name) {
            continue;
        }
        match deps
            .cluster
            .delete_namespace(&ns.name, ns.resource_version.as_deref())
            .await
        {
            Ok(true) => {
                deleted += 1;
                let mut tx = deps.pool.begin().await.map_err(map_sqlx_error)?;
                let correlation = format!("namespace-cleanup:{}", ns.name);
                let payload = json!({ "namespace": ns.name, "expired_at": ns.expires_at.map(|t| t.to_rfc3339()) });
                audit::append_system(
                    &mut tx,
                    &correlation,
                    None,
                    "k8s.namespace.deleted",
                    payload,
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
