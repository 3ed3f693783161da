//! The `kube` adapter of [`ClusterRuntime`]: kubeconfig from `KUBECONFIG` or the default path, or the
//! in-cluster service account when running in a pod. Every call has a time limit; retries belong to
//! the queue job that made the call.

mod objects;
mod pods;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::Duration;

use futures::stream::BoxStream;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota, Secret, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::domain::runtime::{
    ATTEMPT_LABEL, ClusterRuntime, EXPIRES_AT_ANNOTATION, Ensured, EnsuredObject, EnsuredWorkload,
    MANAGED_BY, ManagedNamespace, NamespaceSpec, PROJECT_LABEL, PodEvent, RUN_LABEL, RunIdentity,
    RuntimeError, SecretValue, WorkloadSpec,
};

/// Longest a single API call may take before it counts as unavailable.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

fn managed_selector() -> String {
    format!("{}={}", MANAGED_BY.0, MANAGED_BY.1)
}

/// The cluster through `kube`.
#[derive(Clone)]
pub struct KubeRuntime {
    client: Client,
}

impl KubeRuntime {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// Builds a client from `kubeconfig` when given, else from `~/.kube/config` or the in-cluster
    /// service account. Fails when none is usable; nothing is contacted yet.
    pub async fn from_environment(kubeconfig: Option<&std::path::Path>) -> Result<Self, String> {
        let config = match kubeconfig {
            Some(path) => {
                let file = kube::config::Kubeconfig::read_from(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                kube::Config::from_custom_kubeconfig(
                    file,
                    &kube::config::KubeConfigOptions::default(),
                )
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => kube::Config::infer().await.map_err(|e| {
                format!("no Kubernetes configuration found (set KUBECONFIG or run in a pod): {e}")
            })?,
        };
        let client = Client::try_from(config).map_err(|e| format!("Kubernetes client: {e}"))?;
        Ok(Self::new(client))
    }

    fn namespaced<K>(&self, namespace: &str) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), namespace)
    }
}

/// Maps a client error: conflicts and refusals are permanent, everything else may pass.
fn classify(what: &str, err: kube::Error) -> RuntimeError {
    match err {
        // Creating in a namespace that is being deleted: transient, the retry recreates it.
        kube::Error::Api(status)
            if status.code == 403 && status.message.contains("being terminated") =>
        {
            RuntimeError::Unavailable(format!("{what}: {}", status.message))
        }
        kube::Error::Api(status) if status.code == 429 || status.code >= 500 => {
            RuntimeError::Unavailable(format!("{what}: {} ({})", status.message, status.code))
        }
        kube::Error::Api(status) => RuntimeError::Refused {
            what: what.to_owned(),
            message: format!("{} ({} {})", status.message, status.code, status.reason),
        },
        other => RuntimeError::Unavailable(format!("{what}: {other}")),
    }
}

fn is_status(err: &kube::Error, code: u16) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == code)
}

async fn timed<T>(
    what: &str,
    call: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, RuntimeError> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(result) => result.map_err(|e| classify(what, e)),
        Err(_) => Err(RuntimeError::Unavailable(format!(
            "{what}: no answer within {CALL_TIMEOUT:?}"
        ))),
    }
}

/// Creates `object`; when one of that name exists, adopts it if `owns` accepts its labels. Returns
/// the object as the API server has it.
async fn ensure<K>(
    api: &Api<K>,
    object: &K,
    kind: &'static str,
    owns: impl Fn(&BTreeMap<String, String>) -> bool,
) -> Result<(Ensured, K), RuntimeError>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    let name = object.name_any();
    let namespace = object.namespace().unwrap_or_default();
    let what = format!("create {kind} {namespace}/{name}");
    let created = tokio::time::timeout(CALL_TIMEOUT, api.create(&PostParams::default(), object))
        .await
        .map_err(|_| RuntimeError::Unavailable(format!("{what}: no answer in time")))?;
    match created {
        Ok(stored) => Ok((Ensured::Created, stored)),
        Err(e) if is_status(&e, 409) => {
            let existing = timed(&format!("get {kind} {namespace}/{name}"), api.get(&name)).await?;
            if owns(existing.labels()) {
                Ok((Ensured::Adopted, existing))
            } else {
                Err(RuntimeError::OwnedByOther {
                    kind,
                    namespace,
                    name,
                    owner: describe_owner(existing.labels()),
                })
            }
        }
        Err(e) => Err(classify(&what, e)),
    }
}

/// Deletes `name` (and, for a Job, its pods) if it carries `owner`'s labels, guarded by its uid so
/// a replacement created meanwhile is never hit; `false` when there was nothing of ours to delete.
async fn delete_owned<K>(
    api: &Api<K>,
    kind: &str,
    name: &str,
    owner: &RunIdentity,
) -> Result<bool, RuntimeError>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let what = format!("delete {kind} {name}");
    let Some(existing) = timed(&format!("get {kind} {name}"), api.get_opt(name)).await? else {
        return Ok(false);
    };
    if !owner.owns(existing.labels()) {
        tracing::warn!(kind, name, owner = %describe_owner(existing.labels()), "not deleting an object that belongs to something else");
        return Ok(false);
    }
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        preconditions: existing.uid().map(|uid| kube::api::Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match tokio::time::timeout(CALL_TIMEOUT, api.delete(name, &params)).await {
        Err(_) => Err(RuntimeError::Unavailable(format!(
            "{what}: no answer in time"
        ))),
        Ok(Ok(_)) => Ok(true),
        Ok(Err(e)) if is_status(&e, 404) || is_status(&e, 409) => Ok(false),
        Ok(Err(e)) => Err(classify(&what, e)),
    }
}

fn describe_owner(labels: &BTreeMap<String, String>) -> String {
    match (labels.get(MANAGED_BY.0), labels.get(RUN_LABEL)) {
        (Some(m), Some(run)) if m == MANAGED_BY.1 => format!(
            "run {run} (attempt {})",
            labels.get(ATTEMPT_LABEL).map_or("?", String::as_str)
        ),
        (Some(m), None) if m == MANAGED_BY.1 => "another codex-k8s object".into(),
        _ => "something not managed by codex-k8s".into(),
    }
}

fn ensured_object(
    kind: &'static str,
    namespace: &str,
    name: &str,
    outcome: Ensured,
) -> EnsuredObject {
    EnsuredObject {
        kind,
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        outcome,
    }
}

fn is_managed(labels: &BTreeMap<String, String>) -> bool {
    labels.get(MANAGED_BY.0).map(String::as_str) == Some(MANAGED_BY.1)
}

impl ClusterRuntime for KubeRuntime {
    async fn ensure_namespace(
        &self,
        spec: &NamespaceSpec,
    ) -> Result<Vec<EnsuredObject>, RuntimeError> {
        // A namespace belongs to its project's issue: any run of that project may reuse it.
        let same_project = |labels: &BTreeMap<String, String>| {
            is_managed(labels) && labels.get(PROJECT_LABEL) == Some(&spec.owner.project)
        };
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let (outcome, _) = ensure(
            &namespaces,
            &objects::namespace(spec),
            "Namespace",
            same_project,
        )
        .await?;
        if outcome == Ensured::Adopted {
            self.extend_expiry(&namespaces, spec).await?;
        }
        let ns = spec.name.as_str();
        let mut done = vec![ensured_object("namespace", "", &spec.name, outcome)];
        let sa = objects::service_account(spec);
        let (o, _) = ensure(
            &self.namespaced::<ServiceAccount>(ns),
            &sa,
            "ServiceAccount",
            same_project,
        )
        .await?;
        done.push(ensured_object("serviceaccount", ns, &sa.name_any(), o));
        let role = objects::role(spec);
        let (o, _) = ensure(&self.namespaced::<Role>(ns), &role, "Role", same_project).await?;
        done.push(ensured_object("role", ns, &role.name_any(), o));
        let binding = objects::role_binding(spec);
        let (o, _) = ensure(
            &self.namespaced::<RoleBinding>(ns),
            &binding,
            "RoleBinding",
            same_project,
        )
        .await?;
        done.push(ensured_object("rolebinding", ns, &binding.name_any(), o));
        let quota = objects::resource_quota(spec);
        let (o, _) = ensure(
            &self.namespaced::<ResourceQuota>(ns),
            &quota,
            "ResourceQuota",
            same_project,
        )
        .await?;
        done.push(ensured_object("resourcequota", ns, &quota.name_any(), o));
        let limits = objects::limit_range(spec);
        let (o, _) = ensure(
            &self.namespaced::<LimitRange>(ns),
            &limits,
            "LimitRange",
            same_project,
        )
        .await?;
        done.push(ensured_object("limitrange", ns, &limits.name_any(), o));
        let policy = objects::network_policy(spec);
        let (o, _) = ensure(
            &self.namespaced::<NetworkPolicy>(ns),
            &policy,
            "NetworkPolicy",
            same_project,
        )
        .await?;
        done.push(ensured_object("networkpolicy", ns, &policy.name_any(), o));
        Ok(done)
    }

    async fn ensure_workload(&self, spec: &WorkloadSpec) -> Result<EnsuredWorkload, RuntimeError> {
        let this_attempt = |labels: &BTreeMap<String, String>| spec.identity.owns(labels);
        let name = spec.name();
        // The Secret first, so the pod never starts without it.
        let secrets = self.namespaced::<Secret>(&spec.namespace);
        let (secret, stored) =
            ensure(&secrets, &objects::run_secret(spec), "Secret", this_attempt).await?;
        let secret_data = match secret {
            Ensured::Created => spec.secret_data.clone(),
            Ensured::Adopted => stored
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, SecretValue(String::from_utf8_lossy(&v.0).into_owned())))
                .collect(),
        };
        let (outcome, job) = ensure(
            &self.namespaced::<Job>(&spec.namespace),
            &objects::job(spec),
            "Job",
            this_attempt,
        )
        .await?;
        // Owned by the Job, the Secret is garbage-collected with it (ttlSecondsAfterFinished).
        let owner = serde_json::json!({ "metadata": { "ownerReferences": [{
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": job.name_any(),
            "uid": job.uid().unwrap_or_default(),
            "blockOwnerDeletion": false,
        }] } });
        timed(
            &format!("make Job {name} own Secret {name}"),
            secrets.patch(&name, &PatchParams::default(), &Patch::Merge(&owner)),
        )
        .await?;
        Ok(EnsuredWorkload {
            objects: vec![
                ensured_object("secret", &spec.namespace, &name, secret),
                ensured_object("job", &spec.namespace, &name, outcome),
            ],
            secret_data,
        })
    }

    async fn delete_workload(
        &self,
        namespace: &str,
        name: &str,
        owner: &RunIdentity,
    ) -> Result<bool, RuntimeError> {
        let job = delete_owned(&self.namespaced::<Job>(namespace), "Job", name, owner).await?;
        let secret =
            delete_owned(&self.namespaced::<Secret>(namespace), "Secret", name, owner).await?;
        Ok(job || secret)
    }

    async fn managed_jobs(&self) -> Result<Vec<(String, String)>, RuntimeError> {
        let jobs: Api<Job> = Api::all(self.client.clone());
        let list = timed(
            "list managed Jobs",
            jobs.list_metadata(&ListParams::default().labels(&managed_selector())),
        )
        .await?;
        Ok(list
            .items
            .into_iter()
            .map(|j| (j.namespace().unwrap_or_default(), j.name_any()))
            .collect())
    }

    async fn managed_namespaces(&self) -> Result<Vec<ManagedNamespace>, RuntimeError> {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let list = timed(
            "list managed namespaces",
            namespaces.list_metadata(&ListParams::default().labels(&managed_selector())),
        )
        .await?;
        Ok(list
            .items
            .into_iter()
            .map(|n| ManagedNamespace {
                resource_version: n.resource_version(),
                expires_at: n
                    .annotations()
                    .get(EXPIRES_AT_ANNOTATION)
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&chrono::Utc)),
                name: n.name_any(),
            })
            .collect())
    }

    async fn delete_namespace(
        &self,
        name: &str,
        resource_version: Option<&str>,
    ) -> Result<bool, RuntimeError> {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let Some(existing) =
            timed(&format!("get namespace {name}"), namespaces.get_opt(name)).await?
        else {
            return Ok(false);
        };
        if !is_managed(existing.labels()) {
            return Err(RuntimeError::OwnedByOther {
                kind: "Namespace",
                namespace: String::new(),
                name: name.to_owned(),
                owner: describe_owner(existing.labels()),
            });
        }
        let params = DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                uid: existing.uid(),
                resource_version: resource_version.map(str::to_owned),
            }),
            ..DeleteParams::default()
        };
        let what = format!("delete namespace {name}");
        match tokio::time::timeout(CALL_TIMEOUT, namespaces.delete(name, &params)).await {
            Err(_) => Err(RuntimeError::Unavailable(format!(
                "{what}: no answer in time"
            ))),
            Ok(Ok(_)) => Ok(true),
            // Gone already, or changed since it was listed (a launch extended it): keep it.
            Ok(Err(e)) if is_status(&e, 404) || is_status(&e, 409) => Ok(false),
            Ok(Err(e)) => Err(classify(&what, e)),
        }
    }

    fn watch_pods(&self) -> BoxStream<'static, PodEvent> {
        pods::watch(self.client.clone(), managed_selector())
    }
}

impl KubeRuntime {
    /// Moves a reused namespace's expiry later, never earlier.
    async fn extend_expiry(
        &self,
        namespaces: &Api<Namespace>,
        spec: &NamespaceSpec,
    ) -> Result<(), RuntimeError> {
        let current = timed(
            &format!("get namespace {}", spec.name),
            namespaces.get(&spec.name),
        )
        .await?;
        let later = current
            .annotations()
            .get(EXPIRES_AT_ANNOTATION)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .is_some_and(|t| t >= spec.expires_at);
        if later {
            return Ok(());
        }
        let patch = serde_json::json!({
            "metadata": { "annotations": { EXPIRES_AT_ANNOTATION: spec.expires_at.to_rfc3339() } }
        });
        timed(
            &format!("extend namespace {}", spec.name),
            namespaces.patch(&spec.name, &PatchParams::default(), &Patch::Merge(&patch)),
        )
        .await?;
        Ok(())
    }
}
