//! The recorder: writes the outcomes of finished attempts in batches, fenced by (id, attempt).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{Notify, mpsc};

use super::job::outcome_of;
use super::{Finished, RECORD_BATCH, RECORD_COALESCE, STORE_RETRY, Shared};
use crate::observability::metrics::{KindOutcomeLabels, Outcome};
use crate::queue::store::{self, JobId, Verdict};
use crate::retry::Retrier;

/// Writes outcomes in batches until the channel closes. While PostgreSQL is unreachable it keeps
/// retrying the same batch (the jobs stay leased and heartbeated meanwhile), so an outcome is only
/// dropped when its attempt was fenced out.
///
/// Recording a retry wakes the claim loop, which may be asleep without knowing the retry's time.
pub(super) async fn record_outcomes(
    shared: Arc<Shared>,
    mut finished: mpsc::UnboundedReceiver<Finished>,
    wakeup: Arc<Notify>,
) {
    let mut batch: Vec<Finished> = Vec::with_capacity(RECORD_BATCH);
    let mut retrier = Retrier::new(STORE_RETRY);
    loop {
        if batch.is_empty() {
            match finished.recv().await {
                Some(f) => batch.push(f),
                None => return,
            }
            let deadline = tokio::time::Instant::now() + RECORD_COALESCE;
            while batch.len() < RECORD_BATCH {
                tokio::select! {
                    next = finished.recv() => match next {
                        Some(f) => batch.push(f),
                        None => break,
                    },
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
        }
        while batch.len() < RECORD_BATCH {
            match finished.try_recv() {
                Ok(f) => batch.push(f),
                Err(_) => break,
            }
        }
        let rows: Vec<(JobId, i32, Verdict)> = batch
            .iter()
            .map(|f| (f.id, f.attempt, f.verdict.clone()))
            .collect();
        let asked_at = Instant::now();
        match store::finish_many(&shared.pool, &rows).await {
            Ok(recorded) => {
                let recorded: HashSet<JobId> = recorded.into_iter().collect();
                tracing::trace!(outcomes = rows.len(), took = ?asked_at.elapsed(), "recorded");
                if rows
                    .iter()
                    .any(|(_, _, v)| matches!(v, Verdict::Retry { .. }))
                {
                    wakeup.notify_one();
                }
                retrier.reset();
                let mut held = shared.held.lock().expect("held jobs poisoned");
                for f in batch.drain(..) {
                    held.remove(&f.id);
                    let outcome = if recorded.contains(&f.id) {
                        outcome_of(&f.verdict)
                    } else {
                        Outcome::Fenced
                    };
                    if outcome == Outcome::Fenced {
                        tracing::warn!(
                            job_id = f.id,
                            attempt = f.attempt,
                            "attempt finished after losing its lease; outcome discarded"
                        );
                    }
                    shared
                        .metrics
                        .outcomes
                        .get_or_create(&KindOutcomeLabels {
                            kind: f.kind,
                            outcome,
                        })
                        .inc();
                }
            }
            Err(e) if e.is_transient() => {
                shared.metrics.store_error("finish");
                let delay = retrier.next_delay();
                tracing::warn!(error = %e, jobs = batch.len(), retry_in = ?delay, "recording job outcomes failed; retrying");
                tokio::time::sleep(delay).await;
            }
            Err(e) => {
                shared.metrics.store_error("finish");
                // Retrying a statement the server rejects cannot help. Dropping the batch stops its
                // heartbeats, so the jobs come back through lease rescue and run again.
                tracing::error!(error = %e, jobs = batch.len(), "recording job outcomes was rejected; the jobs will be rescued");
                let mut held = shared.held.lock().expect("held jobs poisoned");
                for f in batch.drain(..) {
                    held.remove(&f.id);
                }
            }
        }
    }
}
