//! The control role's reads and writes, inside the caller's transaction. SQL in `sql/`.

use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::errors::RepositoryError;
use crate::sql;
use crate::store::map_sqlx_error;

#[derive(sqlx::FromRow)]
pub struct StoredEvent {
    pub id: i64,
    pub provider: String,
    pub delivery_id: String,
    pub event_name: String,
    /// The payload as JSON text: the parser reads a few fields, so no JSON tree is built.
    pub payload: String,
    pub processing_state: String,
}

/// Locks the stored deliveries named by (provider, delivery id); unknown ones are simply absent.
pub async fn lock_events(
    tx: &mut PgConnection,
    keys: &[(&str, &str)],
) -> Result<Vec<StoredEvent>, RepositoryError> {
    let (providers, deliveries): (Vec<&str>, Vec<&str>) = keys.iter().copied().unzip();
    sqlx::query_as(sql!("webhook_events/lock_for_processing"))
        .bind(providers)
        .bind(deliveries)
        .fetch_all(tx)
        .await
        .map_err(map_sqlx_error)
}

/// Marks events processed: (event id, outcome, reason).
pub async fn record_outcomes(
    tx: &mut PgConnection,
    outcomes: &[(i64, &str, Option<&str>)],
) -> Result<(), RepositoryError> {
    let mut ids = Vec::with_capacity(outcomes.len());
    let mut kinds = Vec::with_capacity(outcomes.len());
    let mut reasons = Vec::with_capacity(outcomes.len());
    for (id, outcome, reason) in outcomes {
        ids.push(*id);
        kinds.push(*outcome);
        reasons.push(*reason);
    }
    sqlx::query(sql!("webhook_events/record_outcomes"))
        .bind(ids)
        .bind(kinds)
        .bind(reasons)
        .execute(tx)
        .await
        .map_err(map_sqlx_error)?;
    Ok(())
}

#[derive(sqlx::FromRow, Clone)]
pub struct ConnectedRepository {
    pub repository_id: Uuid,
    pub project_id: Uuid,
    pub project_settings: Value,
}

pub async fn find_repository(
    tx: &mut PgConnection,
    provider: &str,
    external_id: i64,
) -> Result<Option<ConnectedRepository>, RepositoryError> {
    sqlx::query_as(sql!("repositories/find_connected"))
        .bind(provider)
        .bind(external_id)
        .fetch_optional(tx)
        .await
        .map_err(map_sqlx_error)
}

#[derive(sqlx::FromRow, Clone)]
pub struct UserAccess {
    pub is_platform_owner: bool,
    pub is_platform_admin: bool,
    pub member_role: Option<String>,
    pub learning_mode_override: Option<bool>,
}

pub async fn user_access(
    tx: &mut PgConnection,
    login: &str,
    project_id: Uuid,
) -> Result<Option<UserAccess>, RepositoryError> {
    sqlx::query_as(sql!("users/access_by_github_login"))
        .bind(login)
        .bind(project_id)
        .fetch_optional(tx)
        .await
        .map_err(map_sqlx_error)
}

/// A pending run to insert.
pub struct NewRun<'a> {
    pub id: Uuid,
    pub project_id: Uuid,
    pub repository_id: Uuid,
    pub agent_key: &'a str,
    pub trigger_label: &'a str,
    pub trigger_kind: &'a str,
    pub stage: Option<&'a str>,
    pub revise: bool,
    pub target_kind: &'a str,
    pub target_number: i32,
    pub dedupe_key: &'a str,
    pub runtime_mode: &'a str,
    pub model: &'a str,
    pub reasoning: &'a str,
    pub learning_mode: bool,
    pub payload: Value,
    pub correlation_id: &'a str,
}

/// Inserts the run; `None` when an active run holds the same dedupe slot.
pub async fn insert_pending_run(
    tx: &mut PgConnection,
    run: &NewRun<'_>,
) -> Result<Option<Uuid>, RepositoryError> {
    let (issue, pr) = match run.target_kind {
        "issue" => (Some(run.target_number), None),
        _ => (None, Some(run.target_number)),
    };
    sqlx::query_scalar(sql!("agent_runs/insert_pending"))
        .bind(run.id)
        .bind(run.project_id)
        .bind(run.repository_id)
        .bind(run.agent_key)
        .bind(run.trigger_label)
        .bind(run.trigger_kind)
        .bind(run.stage)
        .bind(run.revise)
        .bind(run.target_kind)
        .bind(run.target_number)
        .bind(run.dedupe_key)
        .bind(issue)
        .bind(pr)
        .bind(run.runtime_mode)
        .bind(run.model)
        .bind(run.reasoning)
        .bind(run.learning_mode)
        .bind(&run.payload)
        .bind(run.correlation_id)
        .fetch_optional(tx)
        .await
        .map_err(map_sqlx_error)
}

#[derive(sqlx::FromRow)]
pub struct ActiveRun {
    pub id: Uuid,
    pub status: String,
    pub dedupe_key: String,
}

pub async fn lock_active_runs(
    tx: &mut PgConnection,
    repository_id: Uuid,
    target_kind: &str,
    target_number: i32,
    dedupe_key: Option<&str>,
) -> Result<Vec<ActiveRun>, RepositoryError> {
    sqlx::query_as(sql!("agent_runs/lock_active_for_target"))
        .bind(repository_id)
        .bind(target_kind)
        .bind(target_number)
        .bind(dedupe_key)
        .fetch_all(tx)
        .await
        .map_err(map_sqlx_error)
}
