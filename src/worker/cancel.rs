//! The `cancel_run` handler: the run is marked canceled (if the caller has not done so already), its
//! Job and Secret are deleted, and its slot goes to the next waiting run.

use std::sync::Arc;

use super::RuntimeDeps;
use super::runs::{self, status_of};
use super::store;
use crate::domain::runs::RunStatus;
use crate::domain::runtime::ClusterRuntime;
use crate::queue::{JobContext, JobError};
use crate::store::map_sqlx_error;

pub async fn handle<R: ClusterRuntime>(
    ctx: JobContext,
    deps: Arc<RuntimeDeps<R>>,
) -> Result<(), JobError> {
    let super::RunJob { run_id } = ctx.parse_payload()?;
    let mut tx = deps.pool.begin().await.map_err(map_sqlx_error)?;
    ctx.lock_lease(&mut tx).await?;
    let Some(run) = store::lock_run(&mut tx, run_id).await? else {
        return Err(JobError::permanent(format!("run {run_id} does not exist")));
    };
    let status = status_of(&run)?;
    drop(tx);
    if status.is_active() {
        runs::end_run(
            &deps,
            run_id,
            None,
            RunStatus::Canceled,
            Some("canceled"),
            true,
        )
        .await?;
    } else if status == RunStatus::Canceled {
        // Canceled by control in its own transaction: the workload and the slot remain to free.
        runs::delete_workload(&deps, &run).await?;
        let mut tx = deps.pool.begin().await.map_err(map_sqlx_error)?;
        ctx.lock_lease(&mut tx).await?;
        runs::promote_waiting(&mut tx, run.project_id, 1).await?;
        tx.commit().await.map_err(map_sqlx_error)?;
    }
    Ok(())
}
