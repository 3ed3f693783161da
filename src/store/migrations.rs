//! Embedded schema migrations (`migrations/`), applied by `codex-k8s migrate`.
//!
//! sqlx takes a PostgreSQL advisory lock around the run, so several `migrate` processes started at
//! once serialise: the first applies, the others find nothing left to do.

use std::collections::HashMap;

use sqlx::PgPool;
use sqlx::migrate::Migrator;

use super::errors::map_sqlx_error;
use crate::domain::errors::RepositoryError;
use crate::sql;

pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Applies every pending migration.
pub async fn run(pool: &PgPool) -> Result<(), RepositoryError> {
    MIGRATOR.run(pool).await.map_err(|err| match err {
        sqlx::migrate::MigrateError::Execute(e) => map_sqlx_error(e),
        other => RepositoryError::Unexpected(other.to_string()),
    })
}

/// Whether the database holds exactly the migrations this build embeds, all applied successfully.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaStatus {
    Current,
    /// Some embedded migrations are not applied yet (`codex-k8s migrate` has not run).
    Pending(Vec<i64>),
    /// A migration failed half-way, or an applied one differs from the embedded file.
    Broken(String),
}

#[derive(sqlx::FromRow)]
struct AppliedMigration {
    version: i64,
    success: bool,
    checksum: Vec<u8>,
}

pub async fn status(pool: &PgPool) -> Result<SchemaStatus, RepositoryError> {
    let applied: Vec<AppliedMigration> = match sqlx::query_as(sql!("schema/applied_migrations"))
        .fetch_all(pool)
        .await
    {
        Ok(rows) => rows,
        // 42P01: the bookkeeping table does not exist, so nothing is applied.
        Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P01") => Vec::new(),
        Err(e) => return Err(map_sqlx_error(e)),
    };
    let applied: HashMap<i64, &AppliedMigration> = applied.iter().map(|m| (m.version, m)).collect();
    let mut pending = Vec::new();
    for migration in MIGRATOR.iter() {
        match applied.get(&migration.version) {
            None => pending.push(migration.version),
            Some(m) if !m.success => {
                return Ok(SchemaStatus::Broken(format!(
                    "migration {} failed part-way",
                    m.version
                )));
            }
            Some(m) if m.checksum != migration.checksum.as_ref() => {
                return Ok(SchemaStatus::Broken(format!(
                    "migration {} was changed after it was applied",
                    m.version
                )));
            }
            Some(_) => {}
        }
    }
    Ok(if pending.is_empty() {
        SchemaStatus::Current
    } else {
        SchemaStatus::Pending(pending)
    })
}
