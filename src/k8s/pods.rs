//! The pod watch: one `kube::runtime` watcher over every managed pod, turned into domain events.

use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::{ContainerState, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use uuid::Uuid;

use crate::domain::runtime::{
    ATTEMPT_LABEL, ContainerExit, PodEvent, PodObservation, PodPhase, RUN_LABEL,
};

/// Container waiting reasons that will not fix themselves. `ErrImagePull` is left out: one
/// transient registry error becomes `ImagePullBackOff` only if pulling keeps failing.
const STUCK: [&str; 4] = [
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// Follows the pods matching `selector` in every namespace. On errors the watch restarts with
/// backoff and relists, which arrives as [`PodEvent::Resynced`].
pub fn watch(client: Client, selector: String) -> BoxStream<'static, PodEvent> {
    let pods: Api<Pod> = Api::all(client);
    let mut listed: Vec<PodObservation> = Vec::new();
    watcher::watcher(pods, watcher::Config::default().labels(&selector))
        .default_backoff()
        .filter_map(move |event| {
            let out = match event {
                Ok(Event::Apply(pod)) => observe(&pod).map(PodEvent::Seen),
                Ok(Event::Delete(pod)) => observe(&pod).map(PodEvent::Gone),
                Ok(Event::Init) => {
                    listed.clear();
                    None
                }
                Ok(Event::InitApply(pod)) => {
                    listed.extend(observe(&pod));
                    None
                }
                Ok(Event::InitDone) => Some(PodEvent::Resynced(std::mem::take(&mut listed))),
                Err(e) => {
                    tracing::warn!(error = %e, "pod watch failed; it restarts with backoff");
                    None
                }
            };
            futures::future::ready(out)
        })
        .boxed()
}

fn to_utc(time: &Time) -> Option<DateTime<Utc>> {
    let ts = time.0;
    DateTime::from_timestamp(ts.as_second(), u32::try_from(ts.subsec_nanosecond()).ok()?)
}

/// The domain's view of a pod; `None` for a pod without a run's labels.
pub fn observe(pod: &Pod) -> Option<PodObservation> {
    let labels = pod.labels();
    let run_id = Uuid::parse_str(labels.get(RUN_LABEL)?).ok()?;
    let attempt = labels.get(ATTEMPT_LABEL)?.parse().ok()?;
    let status = pod.status.clone().unwrap_or_default();
    let phase = match status.phase.as_deref() {
        Some("Pending") => PodPhase::Pending,
        Some("Running") => PodPhase::Running,
        Some("Succeeded") => PodPhase::Succeeded,
        Some("Failed") => PodPhase::Failed,
        _ => PodPhase::Unknown,
    };
    let unschedulable_since = status
        .conditions
        .iter()
        .flatten()
        .find(|c| {
            c.type_ == "PodScheduled"
                && c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
        })
        .map(|c| {
            c.last_transition_time
                .as_ref()
                .and_then(to_utc)
                .unwrap_or_else(Utc::now)
        });
    let states: Vec<&ContainerState> = status
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|c| c.state.as_ref())
        .collect();
    let stuck_reason = states
        .iter()
        .filter_map(|s| s.waiting.as_ref()?.reason.clone())
        .find(|r| STUCK.contains(&r.as_str()));
    let exit = states.iter().find_map(|s| {
        let t = s.terminated.as_ref()?;
        Some(ContainerExit {
            code: t.exit_code,
            reason: t.reason.clone(),
        })
    });
    let disrupted = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "DisruptionTarget" && c.status == "True")
        || (pod.metadata.deletion_timestamp.is_some()
            && matches!(phase, PodPhase::Pending | PodPhase::Running));
    let job_name = labels
        .get("batch.kubernetes.io/job-name")
        .or_else(|| labels.get("job-name"))
        .cloned();
    Some(PodObservation {
        run_id,
        attempt,
        namespace: pod.namespace().unwrap_or_default(),
        pod: pod.name_any(),
        job_name,
        phase,
        disrupted,
        created_at: pod.metadata.creation_timestamp.as_ref().and_then(to_utc),
        unschedulable_since,
        stuck_reason,
        exit,
        reason: status.reason,
    })
}
