//! The port to a repository host (SPEC §9). Nothing here is GitHub's: an issue or pull request is a
//! numbered item of a repository, comments and labels belong to it. GitHub is the first adapter
//! (`crate::providers::github`); GitLab can be added without touching the domain.

use std::future::Future;
use std::time::Duration;

/// A repository at its host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoRef {
    pub owner: String,
    pub name: String,
}

/// A comment the provider holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentRef {
    pub id: u64,
    pub url: Option<String>,
    /// Whether this call created it (otherwise an existing one was edited in place).
    pub created: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The host asks to wait (primary or secondary rate limit); retry after `retry_after`.
    #[error("rate limited by the repository host; retry in {retry_after:?}: {message}")]
    RateLimited {
        retry_after: Duration,
        message: String,
    },
    /// The token is missing, wrong or lacks the permission.
    #[error("the repository host refused the token: {0}")]
    Unauthorized(String),
    #[error("not found at the repository host: {0}")]
    NotFound(String),
    /// Refused for good (invalid request).
    #[error("the repository host refused the request: {0}")]
    Refused(String),
    /// Unreachable, slow or failing; try again.
    #[error("the repository host is unavailable: {0}")]
    Unavailable(String),
}

impl ProviderError {
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::RateLimited { .. } | Self::Unavailable(_))
    }

    /// How long the host asked to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
}

/// One repository host, acting with one token. Every call is bounded in time by the adapter.
pub trait RepositoryProvider: Send + Sync {
    /// Edits the comment of item `number` whose body contains `marker` so its body becomes `body`,
    /// or creates it: the same marker never makes a second comment, even after a crash.
    fn upsert_comment(
        &self,
        repo: &RepoRef,
        number: u64,
        marker: &str,
        body: &str,
    ) -> impl Future<Output = Result<CommentRef, ProviderError>> + Send;

    /// Marks item `number` as seen by codex-k8s (GitHub: an `eyes` reaction). Doing it twice leaves
    /// one mark.
    fn acknowledge(
        &self,
        repo: &RepoRef,
        number: u64,
    ) -> impl Future<Output = Result<(), ProviderError>> + Send;

    /// Adds labels to item `number` (labels it already has are left as they are).
    fn add_labels(
        &self,
        repo: &RepoRef,
        number: u64,
        labels: &[String],
    ) -> impl Future<Output = Result<(), ProviderError>> + Send;

    /// Removes a label from item `number`; a label it does not have is not an error.
    fn remove_label(
        &self,
        repo: &RepoRef,
        number: u64,
        label: &str,
    ) -> impl Future<Output = Result<(), ProviderError>> + Send;
}

/// Makes a provider that acts with a given token (each repository has its own).
pub trait ProviderConnector: Send + Sync + 'static {
    type Provider: RepositoryProvider;

    fn connect(&self, token: &str) -> Result<Self::Provider, ProviderError>;
}
