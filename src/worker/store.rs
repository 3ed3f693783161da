//! The worker's reads and writes of runs, inside the caller's transaction. SQL in `sql/`.

use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::errors::RepositoryError;
use crate::sql;
use crate::store::map_sqlx_error;

/// A run as the runtime sees it.
#[derive(sqlx::FromRow, Debug, Clone)]
pub struct RuntimeRun {
    pub id: Uuid,
    pub project_id: Uuid,
    pub project_slug: String,
    pub status: String,
    pub wait_reason: Option<String>,
    pub attempt: i32,
    pub runtime_mode: String,
    pub target_kind: String,
    pub target_number: i32,
    pub namespace: Option<String>,
    pub job_name: Option<String>,
    pub agent_key: String,
    pub model: Option<String>,
    pub reasoning_effort: Option<String>,
    pub correlation_id: String,
    pub relaunches: i32,
}

pub async fn lock_run(
    tx: &mut PgConnection,
    id: Uuid,
) -> Result<Option<RuntimeRun>, RepositoryError> {
    sqlx::query_as(sql!("agent_runs/lock_for_runtime"))
        .bind(id)
        .fetch_optional(tx)
        .await
        .map_err(map_sqlx_error)
}

/// Locks the project's slot accounting; returns its slot count (`default` unless it sets one).
pub async fn lock_project_slots(
    tx: &mut PgConnection,
    project_id: Uuid,
    default: u32,
) -> Result<i32, RepositoryError> {
    sqlx::query_scalar(sql!("projects/lock_for_slots"))
        .bind(project_id)
        .bind(i32::try_from(default).unwrap_or(i32::MAX))
        .fetch_one(tx)
        .await
        .map_err(map_sqlx_error)
}

pub async fn count_slot_holders(
    tx: &mut PgConnection,
    project_id: Uuid,
) -> Result<i32, RepositoryError> {
    sqlx::query_scalar(sql!("agent_runs/count_slot_holders"))
        .bind(project_id)
        .fetch_one(tx)
        .await
        .map_err(map_sqlx_error)
}

pub async fn mark_starting(
    tx: &mut PgConnection,
    id: Uuid,
    namespace: &str,
    job_name: &str,
) -> Result<(), RepositoryError> {
    sqlx::query(sql!("agent_runs/mark_starting"))
        .bind(id)
        .bind(namespace)
        .bind(job_name)
        .execute(tx)
        .await
        .map_err(map_sqlx_error)?;
    Ok(())
}

pub async fn mark_waiting_for_slot(tx: &mut PgConnection, id: Uuid) -> Result<(), RepositoryError> {
    sqlx::query(sql!("agent_runs/mark_waiting_for_slot"))
        .bind(id)
        .execute(tx)
        .await
        .map_err(map_sqlx_error)?;
    Ok(())
}

/// (run id, attempt, correlation id) of the oldest runs of a project waiting for a slot.
pub async fn waiting_for_slot(
    tx: &mut PgConnection,
    project_id: Uuid,
    limit: i64,
) -> Result<Vec<(Uuid, i32, String)>, RepositoryError> {
    sqlx::query_as(sql!("agent_runs/waiting_for_slot"))
        .bind(project_id)
        .bind(limit)
        .fetch_all(tx)
        .await
        .map_err(map_sqlx_error)
}

pub async fn relaunch(
    tx: &mut PgConnection,
    id: Uuid,
    job_name: &str,
) -> Result<(), RepositoryError> {
    sqlx::query(sql!("agent_runs/relaunch"))
        .bind(id)
        .bind(job_name)
        .execute(tx)
        .await
        .map_err(map_sqlx_error)?;
    Ok(())
}

pub async fn set_run_token_hash(
    tx: &mut PgConnection,
    id: Uuid,
    attempt: i32,
    hash: &[u8],
) -> Result<(), RepositoryError> {
    sqlx::query(sql!("agent_runs/set_run_token_hash"))
        .bind(id)
        .bind(attempt)
        .bind(hash)
        .execute(tx)
        .await
        .map_err(map_sqlx_error)?;
    Ok(())
}

/// A run whose workload should exist.
#[derive(sqlx::FromRow, Debug, Clone)]
pub struct RunWithWorkload {
    pub id: Uuid,
    pub attempt: i32,
    pub status: String,
    pub namespace: Option<String>,
    pub job_name: Option<String>,
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
}

pub async fn runs_with_workload(
    conn: &mut PgConnection,
) -> Result<Vec<RunWithWorkload>, RepositoryError> {
    sqlx::query_as(sql!("agent_runs/with_workload"))
        .fetch_all(conn)
        .await
        .map_err(map_sqlx_error)
}

pub async fn runs_without_launch_job(
    conn: &mut PgConnection,
    launch_kind: &str,
) -> Result<Vec<(Uuid, i32, String)>, RepositoryError> {
    sqlx::query_as(sql!("agent_runs/without_launch_job"))
        .bind(launch_kind)
        .fetch_all(conn)
        .await
        .map_err(map_sqlx_error)
}

/// Projects with runs waiting for a slot.
pub async fn projects_with_waiting_runs(
    conn: &mut PgConnection,
) -> Result<Vec<Uuid>, RepositoryError> {
    sqlx::query_scalar(sql!("agent_runs/projects_with_waiting_runs"))
        .fetch_all(conn)
        .await
        .map_err(map_sqlx_error)
}

pub async fn namespaces_in_use(conn: &mut PgConnection) -> Result<Vec<String>, RepositoryError> {
    sqlx::query_scalar(sql!("agent_runs/namespaces_in_use"))
        .fetch_all(conn)
        .await
        .map_err(map_sqlx_error)
}
