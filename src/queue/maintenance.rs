//! Leader-only housekeeping of the jobs table: pruning finished jobs after their retention, and
//! recording an error on jobs whose kind this build does not know.

use std::time::Duration;

use sqlx::PgPool;

use crate::domain::errors::RepositoryError;
use crate::leader::LeaderGuard;
use crate::sql;
use crate::store::map_sqlx_error;

/// Rows deleted per statement, so pruning never holds long locks or bloats one transaction.
const PRUNE_BATCH: i64 = 5_000;

#[derive(Debug, Clone)]
pub struct Retention {
    pub succeeded: Duration,
    pub dead: Duration,
}

/// Deletes finished jobs past their retention, in batches, re-checking leadership before each one.
/// Returns how many rows were deleted.
pub async fn prune_finished(
    pool: &PgPool,
    guard: &LeaderGuard,
    retention: &Retention,
) -> Result<u64, RepositoryError> {
    let mut total = 0;
    loop {
        let mut tx = pool.begin().await.map_err(map_sqlx_error)?;
        guard.confirm(&mut tx).await?;
        let deleted = sqlx::query(sql!("jobs/prune_finished"))
            .bind(retention.succeeded.as_secs_f64())
            .bind(retention.dead.as_secs_f64())
            .bind(PRUNE_BATCH)
            .execute(&mut *tx)
            .await
            .map_err(map_sqlx_error)?
            .rows_affected();
        tx.commit().await.map_err(map_sqlx_error)?;
        total += deleted;
        if deleted < PRUNE_BATCH as u64 {
            return Ok(total);
        }
    }
}

/// Records an error on waiting jobs whose kind is not in `known_kinds`. They stay queued: during a
/// rolling upgrade a newer replica may know the kind. Returns the flagged job ids.
pub async fn flag_unknown_kinds(
    pool: &PgPool,
    guard: &LeaderGuard,
    known_kinds: &[String],
) -> Result<Vec<i64>, RepositoryError> {
    let mut tx = pool.begin().await.map_err(map_sqlx_error)?;
    guard.confirm(&mut tx).await?;
    let flagged: Vec<(i64, String)> = sqlx::query_as(sql!("jobs/flag_unknown_kinds"))
        .bind(known_kinds)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_sqlx_error)?;
    tx.commit().await.map_err(map_sqlx_error)?;
    for (id, kind) in &flagged {
        tracing::warn!(job_id = id, %kind, "job of unknown kind waits for a handler");
    }
    Ok(flagged.into_iter().map(|(id, _)| id).collect())
}
