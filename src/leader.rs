//! Leader election for singleton loops (reconcile, cleanup, pruning), with lease rows in PostgreSQL.
//!
//! A replica holds a named lease while it renews it (every third of the TTL). If it dies, the lease
//! expires and another replica takes it, with a higher `term`. Leadership is re-checked before every
//! side effect: [`LeaderGuard::confirm`] locks the lease row in the caller's transaction, so a
//! take-over waits for that transaction and a deposed leader's writes are refused.

use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::domain::errors::RepositoryError;
use crate::sql;
use crate::store::map_sqlx_error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Term {
    term: i64,
    /// Local deadline after which this replica stops trusting its lease, renewal or not.
    valid_until: Instant,
}

/// Observes whether this replica currently leads a named lease.
#[derive(Clone)]
pub struct Leadership {
    name: String,
    holder: String,
    state: watch::Receiver<Option<Term>>,
}

/// Proof of leadership for one round of singleton work.
#[derive(Debug, Clone)]
pub struct LeaderGuard {
    name: String,
    holder: String,
    term: i64,
}

impl LeaderGuard {
    pub fn term(&self) -> i64 {
        self.term
    }

    /// Confirms, inside the caller's transaction, that this term still holds the lease, and keeps
    /// any take-over waiting until the transaction ends. Call it before each side effect.
    pub async fn confirm(&self, tx: &mut sqlx::PgConnection) -> Result<(), RepositoryError> {
        let held: Option<i64> = sqlx::query_scalar(sql!("leader_leases/lock_term"))
            .bind(&self.name)
            .bind(&self.holder)
            .bind(self.term)
            .fetch_optional(tx)
            .await
            .map_err(map_sqlx_error)?;
        match held {
            Some(_) => Ok(()),
            None => Err(RepositoryError::Conflict(format!(
                "leadership of {} (term {}) was lost",
                self.name, self.term
            ))),
        }
    }
}

impl Leadership {
    /// A guard if this replica leads right now (by its local deadline).
    pub fn current(&self) -> Option<LeaderGuard> {
        let term = (*self.state.borrow())?;
        (Instant::now() < term.valid_until).then(|| LeaderGuard {
            name: self.name.clone(),
            holder: self.holder.clone(),
            term: term.term,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Settings of one elector.
#[derive(Debug, Clone)]
pub struct ElectionConfig {
    pub name: String,
    pub holder: String,
    pub ttl: Duration,
}

/// Starts campaigning for `config.name` until `shutdown`; returns the handle to observe leadership.
/// On shutdown a held lease is released so another replica takes over at once.
pub fn spawn_election(
    pool: PgPool,
    config: ElectionConfig,
    on_change: impl Fn(bool) + Send + 'static,
    shutdown: CancellationToken,
) -> (Leadership, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(None);
    let leadership = Leadership {
        name: config.name.clone(),
        holder: config.holder.clone(),
        state: rx,
    };
    let task = tokio::spawn(campaign(pool, config, tx, on_change, shutdown));
    (leadership, task)
}

async fn campaign(
    pool: PgPool,
    config: ElectionConfig,
    state: watch::Sender<Option<Term>>,
    on_change: impl Fn(bool),
    shutdown: CancellationToken,
) {
    let renew_every = config.ttl / 3;
    // Trust the lease a little less long than the database does, to absorb clock-rate differences.
    let trusted_for = config.ttl.mul_f64(0.8);
    let mut leading = false;
    loop {
        let asked_at = Instant::now();
        let attempt = tokio::time::timeout(
            renew_every,
            sqlx::query_scalar::<_, i64>(sql!("leader_leases/acquire"))
                .bind(&config.name)
                .bind(&config.holder)
                .bind(config.ttl.as_secs_f64())
                .fetch_optional(&pool),
        )
        .await;
        let next = match attempt {
            Ok(Ok(Some(term))) => Some(Term {
                term,
                valid_until: asked_at + trusted_for,
            }),
            Ok(Ok(None)) => None,
            Ok(Err(e)) => {
                tracing::warn!(lease = %config.name, error = %e, "leader lease renewal failed");
                current_if_valid(&state)
            }
            Err(_) => {
                tracing::warn!(lease = %config.name, "leader lease renewal timed out");
                current_if_valid(&state)
            }
        };
        let now_leading = next.is_some();
        if now_leading != leading {
            match next {
                Some(t) => tracing::info!(lease = %config.name, term = t.term, "became leader"),
                None => tracing::info!(lease = %config.name, "no longer leader"),
            }
            on_change(now_leading);
            leading = now_leading;
        }
        state.send_replace(next);
        // Wake when the local deadline passes too, so leadership is dropped on time even if renewals hang.
        let sleep_until = match next {
            Some(t) => (asked_at + renew_every).min(t.valid_until),
            None => asked_at + renew_every,
        };
        tokio::select! {
            _ = tokio::time::sleep_until(sleep_until) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    if let Some(term) = state.send_replace(None) {
        on_change(false);
        let released = sqlx::query(sql!("leader_leases/release"))
            .bind(&config.name)
            .bind(&config.holder)
            .bind(term.term)
            .execute(&pool)
            .await;
        if let Err(e) = released {
            tracing::warn!(lease = %config.name, error = %e, "could not release the leader lease; it expires on its own");
        }
    }
}

fn current_if_valid(state: &watch::Sender<Option<Term>>) -> Option<Term> {
    state.borrow().filter(|t| Instant::now() < t.valid_until)
}

/// Runs `round` every `every` while this replica leads, until `shutdown`. A failing round is logged
/// and retried at the next tick.
pub async fn run_singleton<F, Fut>(
    leadership: Leadership,
    every: Duration,
    shutdown: CancellationToken,
    mut round: F,
) where
    F: FnMut(LeaderGuard) -> Fut,
    Fut: std::future::Future<Output = Result<(), RepositoryError>>,
{
    loop {
        if let Some(guard) = leadership.current() {
            let term = guard.term();
            if let Err(e) = round(guard).await {
                tracing::warn!(lease = %leadership.name(), term, error = %e, "singleton round failed");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
