//! Run status writes shared by the roles that change a run (control cancels, the worker drives the
//! rest). Callers check the transition with `domain::runs::RunStatus::can_become` first.

use sqlx::PgConnection;
use uuid::Uuid;

use super::map_sqlx_error;
use crate::domain::errors::RepositoryError;
use crate::domain::runs::RunStatus;
use crate::sql;

/// Moves run `id` to `status`; a terminal status stamps `finished_at`, `reason` is kept as the
/// failure reason when given.
pub async fn set_status(
    tx: &mut PgConnection,
    id: Uuid,
    status: RunStatus,
    reason: Option<&str>,
) -> Result<(), RepositoryError> {
    sqlx::query(sql!("agent_runs/set_status"))
        .bind(id)
        .bind(status.key())
        .bind(reason)
        .execute(tx)
        .await
        .map_err(map_sqlx_error)?;
    Ok(())
}
