use crate::domain::errors::RepositoryError;

/// Maps a driver error to a domain error, deciding which failures are worth retrying.
pub fn map_sqlx_error(err: sqlx::Error) -> RepositoryError {
    match &err {
        sqlx::Error::RowNotFound => RepositoryError::NotFound("row".into()),
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => RepositoryError::Unavailable(err.to_string()),
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            match code.as_str() {
                "23505" | "23P01" => RepositoryError::Conflict(db.message().to_owned()),
                // Class 08: connection exceptions; 57P0x: shutdown/recovery; 53300: too many
                // connections; 40001/40P01: serialization failure and deadlock, both retryable.
                c if c.starts_with("08") => RepositoryError::Unavailable(db.message().to_owned()),
                // Class 22: data exceptions, i.e. a value the column cannot hold.
                c if c.starts_with("22") => RepositoryError::InvalidInput(db.message().to_owned()),
                "57P01" | "57P02" | "57P03" | "53300" | "40001" | "40P01" => {
                    RepositoryError::Unavailable(db.message().to_owned())
                }
                _ => RepositoryError::Unexpected(format!("{} (SQLSTATE {code})", db.message())),
            }
        }
        _ => RepositoryError::Unexpected(err.to_string()),
    }
}
