//! The PostgreSQL adapter: connection pool, embedded migrations, readiness, and the mapping of driver
//! errors to domain errors. SQL lives in `sql/<model>/<operation>.sql`, loaded with [`sql!`].
//!
//! Nothing outside adapters sees `sqlx::Error`: repositories return [`RepositoryError`].

pub mod audit;
mod errors;
pub mod migrations;
mod pool;
pub mod runs;

pub use errors::map_sqlx_error;
pub use pool::{PoolSettings, connect, connect_lazy};

pub use crate::domain::errors::RepositoryError;

/// Loads a query from `sql/<model>/<operation>.sql` at compile time.
#[macro_export]
macro_rules! sql {
    ($path:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/sql/", $path, ".sql"))
    };
}
