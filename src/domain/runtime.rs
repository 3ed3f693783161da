//! The port to the cluster that runs agent workloads (SPEC §7). The domain says what must exist and
//! reads what happened to it; an adapter (the `kube` one in `crate::k8s`) talks to the cluster.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use uuid::Uuid;

/// Label every object codex-k8s creates carries; nothing without it is ever changed or deleted.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "codex-k8s");
pub const PROJECT_LABEL: &str = "codex-k8s.io/project";
pub const RUN_LABEL: &str = "codex-k8s.io/run";
pub const ATTEMPT_LABEL: &str = "codex-k8s.io/attempt";
/// Annotation on a managed namespace: when it may be deleted once no run uses it (RFC 3339).
pub const EXPIRES_AT_ANNOTATION: &str = "codex-k8s.io/expires-at";

/// The service account (and Role, RoleBinding) of a managed namespace, which full-env runs use.
pub const AGENT_ACCOUNT: &str = "codex-agent";

/// The labels of one run's objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunIdentity {
    pub run_id: Uuid,
    pub attempt: i32,
    /// DNS-safe project slug.
    pub project: String,
}

impl RunIdentity {
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
            (PROJECT_LABEL.to_owned(), self.project.clone()),
            (RUN_LABEL.to_owned(), self.run_id.to_string()),
            (ATTEMPT_LABEL.to_owned(), self.attempt.to_string()),
        ])
    }

    /// The Job and Secret name: derived from run and attempt only, so a retried launch finds its
    /// own objects, and a relaunch (next attempt) gets new ones.
    /// Whether `labels` are this run attempt's.
    pub fn owns(&self, labels: &BTreeMap<String, String>) -> bool {
        labels.get(MANAGED_BY.0).map(String::as_str) == Some(MANAGED_BY.1)
            && labels.get(RUN_LABEL) == Some(&self.run_id.to_string())
            && labels.get(ATTEMPT_LABEL) == Some(&self.attempt.to_string())
    }

    pub fn workload_name(&self) -> String {
        format!("codex-run-{}-a{}", self.run_id.simple(), self.attempt)
    }
}

/// CPU and memory, as Kubernetes quantities (`500m`, `1Gi`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resources {
    pub cpu_request: String,
    pub memory_request: String,
    pub cpu_limit: String,
    pub memory_limit: String,
}

impl Default for Resources {
    fn default() -> Self {
        Self {
            cpu_request: "500m".into(),
            memory_request: "1Gi".into(),
            cpu_limit: "2".into(),
            memory_limit: "4Gi".into(),
        }
    }
}

/// A per-issue namespace for `full-env` runs, with its guard rails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceSpec {
    pub name: String,
    pub owner: RunIdentity,
    pub expires_at: DateTime<Utc>,
    /// ResourceQuota hard limits.
    pub quota_cpu: String,
    pub quota_memory: String,
    pub quota_pods: u32,
    /// LimitRange defaults for containers that set none.
    pub default_container: Resources,
}

/// A value for the run's Secret. Never logged, never placed in a Job spec.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(pub String);

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretValue(***)")
    }
}

/// Everything the cluster needs to run one attempt of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadSpec {
    pub identity: RunIdentity,
    pub namespace: String,
    /// `None`: the namespace's default service account (code-only runs get one without rights).
    pub service_account: Option<String>,
    pub image: String,
    pub command: Vec<String>,
    /// Plain settings for the runner (run id, API URL, …).
    pub env: Vec<(String, String)>,
    /// Environment variable → key of the run's Secret.
    pub secret_env: Vec<(String, String)>,
    /// The run's Secret: key → value.
    pub secret_data: BTreeMap<String, SecretValue>,
    pub resources: Resources,
    pub active_deadline: Duration,
    pub ttl_after_finished: Duration,
}

impl WorkloadSpec {
    pub fn name(&self) -> String {
        self.identity.workload_name()
    }
}

/// What an ensure call found for one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ensured {
    Created,
    /// It existed already and carries this run's labels (a retried launch), or, for a namespace and
    /// its guard rails, its project's (a later run of the same issue).
    Adopted,
}

/// What `ensure_workload` made sure of, and the Secret's values as they are in the cluster: an
/// adopted Secret keeps the values a crashed launch gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnsuredWorkload {
    pub objects: Vec<EnsuredObject>,
    pub secret_data: BTreeMap<String, SecretValue>,
}

/// One object an ensure call made sure of, for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnsuredObject {
    /// Lowercase kind, as in `k8s.<kind>.created`: `namespace`, `serviceaccount`, `job`, …
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub outcome: Ensured,
}

impl EnsuredObject {
    /// The audit event type: `k8s.<kind>.created` or `k8s.<kind>.adopted`.
    pub fn event_type(&self) -> String {
        let verb = match self.outcome {
            Ensured::Created => "created",
            Ensured::Adopted => "adopted",
        };
        format!("k8s.{}.{verb}", self.kind)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    /// An object of the wanted name exists and belongs to something else.
    #[error("{kind} {namespace}/{name} exists and belongs to {owner}")]
    OwnedByOther {
        kind: &'static str,
        namespace: String,
        name: String,
        owner: String,
    },
    /// The API refused the request for good (invalid object, forbidden).
    #[error("the Kubernetes API refused {what}: {message}")]
    Refused { what: String, message: String },
    /// The API could not be reached or answered with a transient error; try again.
    #[error("the Kubernetes API is unavailable: {0}")]
    Unavailable(String),
}

impl RuntimeError {
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// A namespace codex-k8s manages, as listed from the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedNamespace {
    pub name: String,
    pub expires_at: Option<DateTime<Utc>>,
    /// Its version when listed: a delete made with it fails if a launch changed it meanwhile.
    pub resource_version: Option<String>,
}

/// Phase of a run's pod, as the kubelet reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
    Unknown,
}

/// What one pod of a run looks like now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodObservation {
    pub run_id: Uuid,
    pub attempt: i32,
    pub namespace: String,
    pub pod: String,
    /// The Job the pod belongs to (`batch.kubernetes.io/job-name`).
    pub job_name: Option<String>,
    pub phase: PodPhase,
    /// Being evicted, preempted or deleted with its node (`DisruptionTarget`, or a deletion in
    /// progress before the pod finished): lost, not failed.
    pub disrupted: bool,
    pub created_at: Option<DateTime<Utc>>,
    /// Set while the scheduler reports the pod unschedulable: since when.
    pub unschedulable_since: Option<DateTime<Utc>>,
    /// A container waiting for a reason that will not fix itself (`ImagePullBackOff`, …).
    pub stuck_reason: Option<String>,
    /// The agent container's exit, once terminated.
    pub exit: Option<ContainerExit>,
    /// The pod-level reason (`DeadlineExceeded`, `Evicted`, …).
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerExit {
    pub code: i32,
    pub reason: Option<String>,
}

/// A change seen by the pod watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodEvent {
    /// The pod now looks like this.
    Seen(PodObservation),
    /// The pod is gone (deleted, or lost with its node).
    Gone(PodObservation),
    /// The watch (re)started and listed every pod: observations not seen since are gone.
    Resynced(Vec<PodObservation>),
}

/// The cluster, as the worker uses it. Every call is bounded in time by the adapter.
pub trait ClusterRuntime: Send + Sync + 'static {
    /// Creates the namespace and its ServiceAccount, Role, RoleBinding, ResourceQuota, LimitRange
    /// and NetworkPolicy, or adopts them; moves the namespace's expiry to `spec.expires_at` if later.
    fn ensure_namespace(
        &self,
        spec: &NamespaceSpec,
    ) -> impl Future<Output = Result<Vec<EnsuredObject>, RuntimeError>> + Send;

    /// Creates the run's Secret and Job, or adopts them when they carry this run's labels.
    fn ensure_workload(
        &self,
        spec: &WorkloadSpec,
    ) -> impl Future<Output = Result<EnsuredWorkload, RuntimeError>> + Send;

    /// Deletes a run attempt's Job (with its pods) and Secret, each only if it carries `owner`'s
    /// labels; `false` when neither of them did.
    fn delete_workload(
        &self,
        namespace: &str,
        name: &str,
        owner: &RunIdentity,
    ) -> impl Future<Output = Result<bool, RuntimeError>> + Send;

    /// Names of the managed Jobs that exist now, in one request.
    fn managed_jobs(
        &self,
    ) -> impl Future<Output = Result<Vec<(String, String)>, RuntimeError>> + Send;

    fn managed_namespaces(
        &self,
    ) -> impl Future<Output = Result<Vec<ManagedNamespace>, RuntimeError>> + Send;

    /// Deletes a namespace, only if it carries the managed-by label and, when given, is still at
    /// `resource_version`; `false` if it did not exist or had changed.
    fn delete_namespace(
        &self,
        name: &str,
        resource_version: Option<&str>,
    ) -> impl Future<Output = Result<bool, RuntimeError>> + Send;

    /// Follows every managed pod. The stream restarts its watch on errors by itself and never ends
    /// while the runtime lives.
    fn watch_pods(&self) -> BoxStream<'static, PodEvent>;
}

/// The namespace of a `full-env` run: `<prefix>-<project>-i<issue>`, DNS-safe and at most 63
/// characters (a long project slug is shortened and keeps a hash so names stay distinct).
pub fn issue_namespace(prefix: &str, project_slug: &str, issue: i64) -> String {
    let tail = format!("-i{issue}");
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| c.to_ascii_lowercase())
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect::<String>()
            .trim_matches('-')
            .to_owned()
    };
    let (prefix, slug) = (clean(prefix), clean(project_slug));
    let full = format!("{prefix}-{slug}{tail}");
    if full.len() <= 63 {
        return full;
    }
    let hash = fnv1a(project_slug.as_bytes());
    let keep = 63 - prefix.len() - 1 - tail.len() - 9;
    let short: String = slug.chars().take(keep).collect();
    format!("{prefix}-{}-{hash:08x}{tail}", short.trim_end_matches('-'))
}

/// A stable, dependency-free hash for name shortening (not for security).
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |h: u32, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// Why a run failed, judging by its pod, and whether its Job must go now: a pod that ended by itself
/// keeps its Job (and logs) until `ttlSecondsAfterFinished`; one that is stuck or over time is
/// stopped by deleting its Job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodFailure {
    pub reason: String,
    pub stop_workload: bool,
}

impl PodFailure {
    fn ended(reason: String) -> Self {
        Self {
            reason,
            stop_workload: false,
        }
    }

    fn stopped(reason: String) -> Self {
        Self {
            reason,
            stop_workload: true,
        }
    }
}

/// Why a run's pod means the run has failed, if it does. Pure: the caller passes the time.
pub fn failure_of(
    pod: &PodObservation,
    now: DateTime<Utc>,
    limits: &PodLimits,
) -> Option<PodFailure> {
    if let Some(reason) = &pod.stuck_reason {
        return Some(PodFailure::stopped(format!(
            "the agent container cannot start: {reason}"
        )));
    }
    let over = |limit: Duration, since: Option<DateTime<Utc>>| {
        since.is_some_and(|t| now - t > chrono_duration(limit))
    };
    match pod.phase {
        PodPhase::Failed => Some(PodFailure::ended(
            match (&pod.exit, pod.reason.as_deref()) {
                (_, Some("DeadlineExceeded")) => {
                    "the run exceeded its deadline (DeadlineExceeded)".into()
                }
                (Some(exit), _) if exit.reason.as_deref() == Some("OOMKilled") => {
                    format!(
                        "the agent ran out of memory (OOMKilled, exit code {})",
                        exit.code
                    )
                }
                (Some(exit), _) => format!(
                    "the agent exited with code {}{}",
                    exit.code,
                    exit.reason
                        .as_deref()
                        .filter(|r| *r != "Error")
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                ),
                (None, Some(reason)) => format!("the pod failed: {reason}"),
                (None, None) => "the pod failed".into(),
            },
        )),
        PodPhase::Pending | PodPhase::Running if over(limits.deadline, pod.created_at) => {
            Some(PodFailure::stopped(format!(
                "the run exceeded its deadline of {} (DeadlineExceeded)",
                humantime::format_duration(limits.deadline)
            )))
        }
        PodPhase::Pending if over(limits.unschedulable, pod.unschedulable_since) => {
            Some(PodFailure::stopped(format!(
                "the pod stayed unschedulable for more than {} (Unschedulable)",
                humantime::format_duration(limits.unschedulable)
            )))
        }
        PodPhase::Pending if over(limits.pending, pod.created_at) => {
            Some(PodFailure::stopped(format!(
                "the pod stayed pending for more than {}",
                humantime::format_duration(limits.pending)
            )))
        }
        PodPhase::Pending | PodPhase::Running | PodPhase::Succeeded | PodPhase::Unknown => None,
    }
}

/// How long a pod may wait or run before its run fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodLimits {
    pub pending: Duration,
    pub unschedulable: Duration,
    /// The Job's `activeDeadlineSeconds`, enforced here too in case the cluster does not.
    pub deadline: Duration,
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// When a live pod will next need a look (a time limit runs out), if ever.
pub fn next_check(pod: &PodObservation, limits: &PodLimits) -> Option<DateTime<Utc>> {
    let at =
        |since: Option<DateTime<Utc>>, limit: Duration| since.map(|t| t + chrono_duration(limit));
    let candidates = match pod.phase {
        PodPhase::Pending => vec![
            at(pod.created_at, limits.pending),
            at(pod.unschedulable_since, limits.unschedulable),
            at(pod.created_at, limits.deadline),
        ],
        PodPhase::Running => vec![at(pod.created_at, limits.deadline)],
        _ => vec![],
    };
    candidates.into_iter().flatten().min()
}

#[cfg(test)]
mod tests;
