use std::time::Duration;

use crate::retry::Backoff;

/// A kind of job and how it is retried. Declared once as a `const` next to its handler, so the code
/// that enqueues and the code that runs a kind agree on its name and policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobKind {
    pub name: &'static str,
    /// Attempts before the job is `dead`; stored on each job at enqueue so staff may raise it.
    pub max_attempts: u32,
    pub backoff: Backoff,
    /// A run longer than this counts as a failed attempt.
    pub timeout: Duration,
}

impl JobKind {
    /// A kind with the defaults that suit most side effects: 10 attempts, 1 s → 10 min backoff,
    /// 5 min timeout.
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            max_attempts: 10,
            backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(600)),
            timeout: Duration::from_secs(300),
        }
    }

    pub const fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    pub const fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.backoff = Backoff::new(base, max);
        self
    }

    pub const fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}
