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
use crate::domain::runtime::{ClusterRuntime, RunIdentity};
use crate::queue::{self, NewJob};
use crate::store::audit::{self, Actor, FlowEvent};
use crate::store::map_sqlx_error;

pub async fn audit(
    tx: &mut PgConnection,
    run: &RuntimeRun,
    event_type: &str,
    payload: Value,
) -> Result<(), RepositoryError> {
    audit::append(
        tx,
        FlowEvent {
            correlation_id: &run.correlation_id,
            run_id: Some(run.id),
            actor: Actor::System,
            event_type,
            payload,
        },
    )
    .await
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
    store::set_status(tx, run.id, next.key(), reason).await?;
    run.status = next.key().to_owned();
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
    for (run_id, correlation) in store::waiting_for_slot(tx, project_id, slots).await? {
        let job = NewJob::new(json!({ "run_id": run_id }))
            .unique_key(run_id.to_string())
            .correlation_id(Uuid::parse_str(&correlation).unwrap_or(run_id));
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
    if status == RunStatus::Succeeded && status_of(&run)? == RunStatus::Starting {
        // A pod can finish before its Running phase was seen.
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
    let job = NewJob::new(json!({ "run_id": run_id }))
        .unique_key(run_id.to_string())
        .correlation_id(Uuid::parse_str(&run.correlation_id).unwrap_or(run_id));
    queue::enqueue(&mut *tx, &super::LAUNCH_RUN, job).await?;
    tx.commit().await.map_err(map_sqlx_error)?;
    delete_workload(deps, &lost).await
}

/// The pod of the current attempt runs: `starting → running`.
pub async fn mark_running(
    tx: &mut PgConnection,
    run: &mut RuntimeRun,
) -> Result<bool, RepositoryError> {
    transition(tx, run, RunStatus::Running, None).await
}
