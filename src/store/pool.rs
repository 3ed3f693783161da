use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

use super::errors::map_sqlx_error;
use crate::domain::errors::RepositoryError;

/// A pooled connection idle at least this long is pinged before use.
const CHECK_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// How the pool connects; comes from configuration.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub url: String,
    pub max_connections: u32,
    /// How long a caller waits for a free connection before the store counts as unavailable.
    pub acquire_timeout: Duration,
    pub application_name: String,
}

fn pool_options(
    settings: &PoolSettings,
) -> Result<(PgPoolOptions, PgConnectOptions), RepositoryError> {
    let options = PgConnectOptions::from_str(&settings.url)
        .map_err(|e| RepositoryError::Unexpected(format!("invalid database URL: {e}")))?
        .application_name(&settings.application_name)
        .log_statements(tracing::log::LevelFilter::Trace)
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(2));
    let pool = PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .min_connections(0)
        .acquire_timeout(settings.acquire_timeout)
        // A connection that survived a server restart is broken, so one idle for a while is checked
        // before it is handed out. sqlx already checks every connection on release, so checking one
        // that is reused at once (the common case under load) would only add a round trip per query.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= CHECK_IF_IDLE_FOR {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .idle_timeout(Duration::from_secs(300));
    Ok((pool, options))
}

/// Connects now, failing when the database cannot be reached.
pub async fn connect(settings: &PoolSettings) -> Result<PgPool, RepositoryError> {
    let (pool, options) = pool_options(settings)?;
    pool.connect_with(options).await.map_err(map_sqlx_error)
}

/// Creates the pool without connecting: the service starts while the database is down and recovers
/// on its own when it comes back.
pub fn connect_lazy(settings: &PoolSettings) -> Result<PgPool, RepositoryError> {
    let (pool, options) = pool_options(settings)?;
    Ok(pool.connect_lazy_with(options))
}
