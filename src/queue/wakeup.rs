//! NOTIFY-based wake-ups. Only a hint: a worker that misses one finds the job on its next poll.

use std::sync::{Arc, Mutex, Weak};

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::retry::{Backoff, Retrier};

const CHANNEL: &str = "codex_k8s_jobs";

/// Idle workers of one process, each woken when new due jobs are inserted.
#[derive(Clone, Default)]
pub struct Wakeups {
    waiters: Arc<Mutex<Vec<Weak<Notify>>>>,
}

impl Wakeups {
    pub fn new() -> Self {
        Self::default()
    }

    /// A handle to wait on. `Notify` keeps one permit, so a wake-up that arrives while the worker is
    /// busy claiming is not lost.
    pub fn subscribe(&self) -> Arc<Notify> {
        let notify = Arc::new(Notify::new());
        let mut waiters = self.waiters.lock().expect("wakeup list poisoned");
        waiters.retain(|w| w.strong_count() > 0);
        waiters.push(Arc::downgrade(&notify));
        notify
    }

    pub fn wake_all(&self) {
        let waiters = self.waiters.lock().expect("wakeup list poisoned");
        for waiter in waiters.iter().filter_map(Weak::upgrade) {
            waiter.notify_one();
        }
    }
}

/// Listens on the jobs channel until `shutdown`, waking every subscriber on each notification. On a
/// lost connection it reconnects with backoff and wakes everyone, since notifications may have been
/// missed meanwhile.
pub async fn listen_for_wakeups(pool: PgPool, wakeups: Wakeups, shutdown: CancellationToken) {
    let mut retrier = Retrier::new(Backoff::new(
        std::time::Duration::from_millis(100),
        std::time::Duration::from_secs(10),
    ));
    while !shutdown.is_cancelled() {
        let listener = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = tokio::select! {
            r = listener => match r {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "job wake-up listener cannot connect; workers fall back to polling");
                    tokio::select! { _ = tokio::time::sleep(retrier.next_delay()) => {}, _ = shutdown.cancelled() => {} }
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        retrier.reset();
        wakeups.wake_all();
        loop {
            tokio::select! {
                message = listener.try_recv() => match message {
                    Ok(Some(_)) => wakeups.wake_all(),
                    Ok(None) => {
                        tracing::warn!("job wake-up listener lost its connection; reconnecting");
                        wakeups.wake_all();
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "job wake-up listener failed; reconnecting");
                        tokio::select! { _ = tokio::time::sleep(retrier.next_delay()) => {}, _ = shutdown.cancelled() => {} }
                        break;
                    }
                },
                _ = shutdown.cancelled() => return,
            }
        }
    }
}
