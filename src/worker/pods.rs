//! Drives run status from the pod watch: `starting → running → succeeded | failed`, failing runs
//! whose pod cannot start or waits too long, and relaunching runs whose pod was lost. Every worker
//! process follows the watch; row locks and attempt checks make concurrent observers harmless.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::RuntimeDeps;
use super::runs::{self, PodOwner};
use crate::domain::errors::RepositoryError;
use crate::domain::runs::RunStatus;
use crate::domain::runtime::{
    ClusterRuntime, PodEvent, PodLimits, PodObservation, PodPhase, failure_of,
};
use crate::store::map_sqlx_error;

type Key = (Uuid, i32);

fn key(pod: &PodObservation) -> Key {
    (pod.run_id, pod.attempt)
}

/// Follows pods until `shutdown`.
pub async fn follow<R: ClusterRuntime>(deps: Arc<RuntimeDeps<R>>, shutdown: CancellationToken) {
    let limits = PodLimits {
        pending: deps.config.pending_timeout,
        unschedulable: deps.config.unschedulable_timeout,
        deadline: deps.config.run_deadline,
    };
    let check_every = (limits
        .pending
        .min(limits.unschedulable)
        .min(limits.deadline)
        / 10)
        .clamp(Duration::from_millis(100), Duration::from_secs(5));
    let mut tick = tokio::time::interval(check_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut events = deps.cluster.watch_pods();
    // Live pods, which may still fail by waiting or running too long, and observations to apply
    // again after a database error.
    let mut waiting: HashMap<Key, PodObservation> = HashMap::new();
    let mut unapplied: HashMap<Key, PodEvent> = HashMap::new();
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(PodEvent::Resynced(pods)) => {
                    // Live pods that vanished while the watch was down get their Gone now.
                    let listed: std::collections::HashSet<Key> = pods.iter().map(key).collect();
                    let vanished: Vec<PodObservation> = waiting
                        .iter()
                        .filter(|(k, _)| !listed.contains(k))
                        .map(|(_, p)| p.clone())
                        .collect();
                    for pod in vanished {
                        apply(&deps, &limits, &mut waiting, &mut unapplied, PodEvent::Gone(pod)).await;
                    }
                    for pod in pods {
                        apply(&deps, &limits, &mut waiting, &mut unapplied, PodEvent::Seen(pod)).await;
                    }
                }
                Some(event) => apply(&deps, &limits, &mut waiting, &mut unapplied, event).await,
                None => break,
            },
            _ = tick.tick() => {
                let due: Vec<PodEvent> = unapplied.drain().map(|(_, e)| e).collect();
                let due = due.into_iter().chain(
                    waiting.values().filter(|p| failure_of(p, Utc::now(), &limits).is_some()).cloned().map(PodEvent::Seen).collect::<Vec<_>>()
                );
                for event in due {
                    apply(&deps, &limits, &mut waiting, &mut unapplied, event).await;
                }
            }
            _ = shutdown.cancelled() => break,
        }
    }
}

async fn apply<R: ClusterRuntime>(
    deps: &RuntimeDeps<R>,
    limits: &PodLimits,
    waiting: &mut HashMap<Key, PodObservation>,
    unapplied: &mut HashMap<Key, PodEvent>,
    event: PodEvent,
) {
    let (pod, result) = match event {
        PodEvent::Seen(pod) => {
            let result = seen(deps, limits, waiting, &pod).await;
            let retry = PodEvent::Seen(pod.clone());
            (pod, result.map_err(|e| (e, retry)))
        }
        PodEvent::Gone(pod) => {
            waiting.remove(&key(&pod));
            let result = gone(deps, limits, &pod).await;
            let retry = PodEvent::Gone(pod.clone());
            (pod, result.map_err(|e| (e, retry)))
        }
        PodEvent::Resynced(_) => return,
    };
    if let Err((error, event)) = result {
        tracing::warn!(run_id = %pod.run_id, pod = %pod.pod, %error, "could not apply a pod change; retrying shortly");
        unapplied.insert(key(&pod), event);
    }
}

async fn seen<R: ClusterRuntime>(
    deps: &RuntimeDeps<R>,
    limits: &PodLimits,
    waiting: &mut HashMap<Key, PodObservation>,
    pod: &PodObservation,
) -> Result<(), RepositoryError> {
    let live = matches!(pod.phase, PodPhase::Pending | PodPhase::Running);
    let mut tx = deps.pool.begin().await.map_err(map_sqlx_error)?;
    let mut run = match runs::owner_of(&mut tx, pod).await? {
        PodOwner::Current(run) => run,
        PodOwner::Stray(run) => {
            drop(tx);
            waiting.remove(&key(pod));
            if live {
                runs::delete_stray(deps, &run, pod).await?;
            }
            return Ok(());
        }
        PodOwner::Unknown => return Ok(()),
    };
    if pod.disrupted {
        drop(tx);
        waiting.remove(&key(pod));
        let what = format!(
            "the pod {} was disrupted (evicted, preempted or its node is gone)",
            pod.pod
        );
        return runs::workload_lost(deps, pod.run_id, pod.attempt, &what).await;
    }
    if let Some(failure) = failure_of(pod, Utc::now(), limits) {
        drop(tx);
        waiting.remove(&key(pod));
        runs::end_run(
            deps,
            pod.run_id,
            Some(pod.attempt),
            RunStatus::Failed,
            Some(&failure.reason),
            failure.stop_workload,
        )
        .await?;
        return Ok(());
    }
    match pod.phase {
        PodPhase::Pending => {
            waiting.insert(key(pod), pod.clone());
        }
        PodPhase::Running => {
            waiting.insert(key(pod), pod.clone());
            if runs::mark_running(&mut tx, &mut run).await? {
                tx.commit().await.map_err(map_sqlx_error)?;
            }
        }
        PodPhase::Succeeded => {
            drop(tx);
            waiting.remove(&key(pod));
            runs::end_run(
                deps,
                pod.run_id,
                Some(pod.attempt),
                RunStatus::Succeeded,
                None,
                false,
            )
            .await?;
        }
        PodPhase::Failed | PodPhase::Unknown => {
            waiting.remove(&key(pod));
        }
    }
    Ok(())
}

async fn gone<R: ClusterRuntime>(
    deps: &RuntimeDeps<R>,
    limits: &PodLimits,
    pod: &PodObservation,
) -> Result<(), RepositoryError> {
    if matches!(pod.phase, PodPhase::Succeeded | PodPhase::Failed) {
        // A finished pod removed with its Job: its outcome was recorded when it finished.
        return Ok(());
    }
    let mut tx = deps.pool.begin().await.map_err(map_sqlx_error)?;
    if !matches!(runs::owner_of(&mut tx, pod).await?, PodOwner::Current(_)) {
        return Ok(());
    }
    drop(tx);
    let mut running = pod.clone();
    running.phase = PodPhase::Running;
    if let Some(over) = failure_of(&running, Utc::now(), limits) {
        // The Job controller removes the pods of a Job past its deadline: not a lost pod.
        runs::end_run(
            deps,
            pod.run_id,
            Some(pod.attempt),
            RunStatus::Failed,
            Some(&over.reason),
            true,
        )
        .await?;
        return Ok(());
    }
    runs::workload_lost(
        deps,
        pod.run_id,
        pod.attempt,
        &format!(
            "the pod {} was lost (deleted, or its node is gone)",
            pod.pod
        ),
    )
    .await
}
