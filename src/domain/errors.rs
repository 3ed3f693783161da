//! Errors that storage ports report in domain words, so callers never see a database driver's types.

/// What went wrong when a port read or wrote persistent state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepositoryError {
    /// The thing asked for does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The write would break a uniqueness or consistency rule.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The value cannot be stored as given (e.g. JSON text PostgreSQL's `jsonb` refuses).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The store cannot be reached right now; the same call may succeed later.
    #[error("store temporarily unavailable: {0}")]
    Unavailable(String),
    /// A failure that retrying will not fix (a bug or a schema mismatch).
    #[error("unexpected store error: {0}")]
    Unexpected(String),
}

impl RepositoryError {
    /// Whether retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}
