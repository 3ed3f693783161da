//! Run status changes the worker makes, each in one transaction with its audit row, checked by the
//! domain state machine. Workload deletions follow the commit, so a crash leaves at worst a Job that
//! the resync or the TTL removes, never a run that claims a workload it lost.

use serde_json::{Value, json};
use sqlx::PgConnection;
use uuid::Uuid;

use super::RuntimeDeps;
use super::store::{self, RuntimeRun};
use crate::domain::errors::RepositoryError;
use crate::domain::runs::RunStatus;
use crate::domain::runtime::{ClusterRuntime, PodObservation, RunIdentity};
use crate::queue;
use crate::store::audit;
use crate::store::map_sqlx_error;

pub async fn audit(
    tx: &mut PgConnection,
    run: &RuntimeRun,
    event_type: &str,
    payload: Value,
) -> Result<(), RepositoryError> {
    audit::append_system(tx, &run.correlation_id, Some(run.id), event_type, payload).await
}

pub fn status_of(run: &RuntimeRun) -> Result<RunStatus, RepositoryError> {
    RunStatus::parse(&run.status)
        .ok_or_else(|| RepositoryError::Unexpected(format!("unknown run status {}", run.status)))
}

/// Moves `run` to `next` if the state machine allows it; returns whether it moved.
pub async fn transition(
    tx: &mut PgConnection,
    run: &mut RuntimeRun,
    next: RunStatus,
    reason: Option<&str>,
) -> Result<bool, RepositoryError> {
    let from = status_of(run)?;
    if !from.can_become(next) {
        return Ok(false);
    }
    crate::store::runs::set_status(tx, run.id, next, reason).await?;
    run.status = next.key().to_owned();
    queue::enqueue(
        &mut *tx,
        &super::GITHUB_STATUS_COMMENT,
        super::status_comment_job(run.id, next.key(), &run.correlation_id),
    )
    .await?;
    let event = format!("run.{}", next.key());
    audit(
        tx,
        run,
        &event,
        json!({ "from": from.key(), "attempt": run.attempt, "reason": reason }),
    )
    .await?;
    Ok(true)
}

/// Hands freed slots of `project_id` to the runs waiting longest: their launch jobs run again.
pub async fn promote_waiting(
    tx: &mut PgConnection,
    project_id: Uuid,
    slots: i64,
) -> Result<(), RepositoryError> {
    for (run_id, attempt, correlation) in store::waiting_for_slot(tx, project_id, slots).await? {
        let job = super::launch_job(run_id, attempt, &correlation);
        queue::enqueue(&mut *tx, &super::LAUNCH_RUN, job).await?;
    }
    Ok(())
}

/// Ends the run's attempt `attempt` with `status` (succeeded, failed or canceled) if it is still that
/// attempt and active, and frees its slot for the next waiting run. With `stop_workload` its Job
/// and Secret are deleted now; otherwise the Job stays until its TTL and the Secret goes with it.
pub async fn end_run<R: ClusterRuntime>(
    deps: &RuntimeDeps<R>,
    run_id: Uuid,
    attempt: Option<i32>,
    status: RunStatus,
    reason: Option<&str>,
    stop_workload: bool,
) -> Result<bool, RepositoryError> {
    let mut tx = deps.pool.begin().await.map_err(map_sqlx_error)?;
    let Some(mut run) = store::lock_run(&mut tx, run_id).await? else {
        return Ok(false);
    };
    if attempt.is_some_and(|a| a != run.attempt) {
        return Ok(false);
    }
    if status == RunStatus::Succeeded
        && matches!(status_of(&run)?, RunStatus::Starting | RunStatus::Waiting)
    {
        // A pod can finish before its Running phase was seen, or while the run waited for input.
        transition(&mut tx, &mut run, RunStatus::Running, None).await?;
    }
    if !transition(&mut tx, &mut run, status, reason).await? {
        return Ok(false);
    }
    promote_waiting(&mut tx, run.project_id, 1).await?;
    tx.commit().await.map_err(map_sqlx_error)?;
    if stop_workload {
        delete_workload(deps, &run).await?;
    }
    Ok(true)
}

/// Deletes the current attempt's Job and Secret, auditing what existed.
pub async fn delete_workload<R: ClusterRuntime>(
    deps: &RuntimeDeps<R>,
    run: &RuntimeRun,
) -> Result<(), RepositoryError> {
    let (Some(namespace), Some(name)) = (&run.namespace, &run.job_name) else {
        return Ok(());
    };
    let owner = RunIdentity {
        run_id: run.id,
        attempt: run.attempt,
        project: run.project_slug.clone(),
    };
    let existed = deps
        .cluster
        .delete_workload(namespace, name, &owner)
        .await
        .map_err(|e| RepositoryError::Unavailable(e.to_string()))?;
    if existed {
        let mut tx = deps.pool.begin().await.map_err(map_sqlx_error)?;
        audit(
            &mut tx,
            run,
            "k8s.job.deleted",
            json!({ "namespace": namespace, "job": name, "secret": name, "attempt": run.attempt }),
        )
        .await?;
        tx.commit().await.map_err(map_sqlx_error)?;
    }
    Ok(())
}

/// The pod of attempt `attempt` is gone while the run still needed it: a new attempt, up to the
/// configured limit, then the run fails.
pub async fn workload_lost<R: ClusterRuntime>(
    deps: &RuntimeDeps<R>,
    run_id: Uuid,
    attempt: i32,
    what: &str,
) -> Result<(), RepositoryError> {
    let mut tx = deps.pool.begin().await.map_err(map_sqlx_error)?;
    let Some(mut run) = store::lock_run(&mut tx, run_id).await? else {
        return Ok(());
    };
    if run.attempt != attempt || !status_of(&run)?.can_relaunch() {
        return Ok(());
    }
    let relaunches = u32::try_from(run.relaunches).unwrap_or(0);
    if relaunches >= deps.config.max_relaunches {
        drop(tx);
        let reason = format!(
            "{what}; no relaunch left ({relaunches} of {} used)",
            deps.config.max_relaunches
        );
        end_run(
            deps,
            run_id,
            Some(attempt),
            RunStatus::Failed,
            Some(&reason),
            true,
        )
        .await?;
        return Ok(());
    }
    let lost = run.clone();
    let next = RunIdentity {
        run_id,
        attempt: run.attempt + 1,
        project: run.project_slug.clone(),
    };
    store::relaunch(&mut tx, run_id, &next.workload_name()).await?;
    run.attempt = next.attempt;
    run.status = RunStatus::Starting.key().to_owned();
    audit(
        &mut tx,
        &run,
        "run.relaunched",
        json!({ "lost_attempt": attempt, "attempt": next.attempt, "reason": what, "relaunch": relaunches + 1 }),
    )
    .await?;
    queue::enqueue(
        &mut *tx,
        &super::GITHUB_STATUS_COMMENT,
        super::status_comment_job(run_id, "relaunched", &run.correlation_id),
    )
    .await?;
    let job = super::launch_job(run_id, next.attempt, &run.correlation_id);
    queue::enqueue(&mut *tx, &super::LAUNCH_RUN, job).await?;
    tx.commit().await.map_err(map_sqlx_error)?;
    delete_workload(deps, &lost).await
}

/// The pod of the current attempt runs: `starting → running` (never `waiting → running`: a run
/// waits for a person, not for its pod).
pub async fn mark_running(
    tx: &mut PgConnection,
    run: &mut RuntimeRun,
) -> Result<bool, RepositoryError> {
    if status_of(run)? != RunStatus::Starting {
        return Ok(false);
    }
    transition(tx, run, RunStatus::Running, None).await
}

/// Whose a pod is, by the database rather than by its labels alone (an agent can label a pod).
pub enum PodOwner {
    /// The workload of the run's current attempt, in the run's namespace, while the run is active.
    Current(RuntimeRun),
    /// A pod of an earlier attempt or of a run that has ended, in the run's namespace.
    Stray(RuntimeRun),
    /// No such run, or a pod outside the run's namespace.
    Unknown,
}

/// Locks the pod's run and says whose the pod is.
pub async fn owner_of(
    tx: &mut PgConnection,
    pod: &PodObservation,
) -> Result<PodOwner, RepositoryError> {
    let Some(run) = store::lock_run(tx, pod.run_id).await? else {
        return Ok(PodOwner::Unknown);
    };
    if run.namespace.as_deref() != Some(pod.namespace.as_str()) {
        return Ok(PodOwner::Unknown);
    }
    let current = run.attempt == pod.attempt && run.job_name == pod.job_name;
    Ok(if current && status_of(&run)?.is_active() {
        PodOwner::Current(run)
    } else {
        PodOwner::Stray(run)
    })
}

/// Deletes the workload a stray pod belongs to (a launch that finished after its run was canceled,
/// an attempt replaced by a relaunch), if it carries that attempt's labels.
pub async fn delete_stray<R: ClusterRuntime>(
    deps: &RuntimeDeps<R>,
    run: &RuntimeRun,
    pod: &PodObservation,
) -> Result<(), RepositoryError> {
    let Some(job) = &pod.job_name else {
        return Ok(());
    };
    let mut stray = run.clone();
    stray.attempt = pod.attempt;
    stray.job_name = Some(job.clone());
    delete_workload(deps, &stray).await
}
