//! Lease upkeep: the heartbeat that keeps this worker's leases, and the rescuer that takes back the
//! leases of workers that died.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::queue::store::{self, JobId};

/// Extends every held lease at a third of the lease time. A job whose lease is gone (rescued while
/// this process was stalled) is cancelled: whatever it writes now would be fenced anyway.
pub(super) async fn heartbeat(shared: Arc<Shared>, stop: CancellationToken) {
    let every = shared.config.lease / 3;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return,
        }
        let held = shared.held_snapshot();
        if held.is_empty() {
            continue;
        }
        match store::extend_leases(&shared.pool, &held, shared.config.lease).await {
            Ok(extended) => {
                let extended: HashSet<JobId> = extended.into_iter().collect();
                let lost: Vec<JobId> = held
                    .iter()
                    .map(|(id, _)| *id)
                    .filter(|id| !extended.contains(id))
                    .collect();
                if !lost.is_empty() {
                    let map = shared.held.lock().expect("held jobs poisoned");
                    for id in &lost {
                        if let Some(h) = map.get(id) {
                            h.cancel.cancel();
                        }
                    }
                    tracing::warn!(jobs = ?lost, "leases lost; cancelling those attempts");
                }
            }
            Err(e) => {
                shared.metrics.store_error("heartbeat");
                tracing::warn!(error = %e, "extending job leases failed; will retry");
            }
        }
    }
}

/// Any worker may rescue: the statement skips rows another rescuer already locked.
pub(super) async fn rescue_loop(shared: Arc<Shared>, wakeup: Arc<Notify>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(shared.config.rescue_interval) => {}
            _ = stop.cancelled() => return,
        }
        match store::rescue_expired(&shared.pool, 1000).await {
            Ok(rescued) if !rescued.is_empty() => {
                shared.metrics.rescued.inc_by(rescued.len() as u64);
                for job in &rescued {
                    tracing::warn!(job_id = job.id, kind = %job.kind, attempt = job.attempt, state = %job.state, "rescued a job whose lease expired");
                }
                wakeup.notify_one();
            }
            Ok(_) => {}
            Err(e) => {
                shared.metrics.store_error("rescue");
                tracing::warn!(error = %e, "rescuing expired leases failed; will retry");
            }
        }
    }
}
