//! The Kubernetes objects of SPEC §7, built from the domain's specs. Pure: no API calls here.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, LimitRange, LimitRangeItem, LimitRangeSpec, Namespace,
    PodSpec, PodTemplateSpec, ResourceQuota, ResourceQuotaSpec, ResourceRequirements, Secret,
    SecretKeySelector, ServiceAccount,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicySpec,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use crate::domain::runtime::{
    AGENT_ACCOUNT, EXPIRES_AT_ANNOTATION, MANAGED_BY, NamespaceSpec, Resources, WorkloadSpec,
};

/// The name of the guard-rail objects in a managed namespace.
const GUARD: &str = "codex-k8s";
/// The label the NetworkPolicy uses to tell run namespaces apart from the rest of the cluster.
const MANAGED_NAMESPACE_SELECTOR: (&str, &str) = MANAGED_BY;

fn meta(name: &str, namespace: Option<&str>, labels: &BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(labels.clone()),
        ..ObjectMeta::default()
    }
}

fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
        .collect()
}

pub fn namespace(spec: &NamespaceSpec) -> Namespace {
    let mut meta = meta(&spec.name, None, &spec.owner.labels());
    meta.annotations = Some(BTreeMap::from([(
        EXPIRES_AT_ANNOTATION.to_owned(),
        spec.expires_at.to_rfc3339(),
    )]));
    Namespace {
        metadata: meta,
        ..Namespace::default()
    }
}

pub fn service_account(spec: &NamespaceSpec) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(AGENT_ACCOUNT, Some(&spec.name), &spec.owner.labels()),
        // The agent talks to the API with its own token; nothing else is mounted.
        automount_service_account_token: Some(true),
        ..ServiceAccount::default()
    }
}

/// Workloads, services, configmaps, logs and exec in the namespace; never secrets.
pub fn role(spec: &NamespaceSpec) -> Role {
    let rule = |groups: &[&str], resources: &[&str], verbs: &[&str]| PolicyRule {
        api_groups: Some(groups.iter().map(|s| (*s).to_owned()).collect()),
        resources: Some(resources.iter().map(|s| (*s).to_owned()).collect()),
        verbs: verbs.iter().map(|s| (*s).to_owned()).collect(),
        ..PolicyRule::default()
    };
    let all = [
        "get", "list", "watch", "create", "update", "patch", "delete",
    ];
    Role {
        metadata: meta(AGENT_ACCOUNT, Some(&spec.name), &spec.owner.labels()),
        rules: Some(vec![
            rule(
                &[""],
                &["pods", "services", "configmaps", "persistentvolumeclaims"],
                &all,
            ),
            rule(&[""], &["pods/log"], &["get", "list", "watch"]),
            rule(
                &[""],
                &["pods/exec", "pods/portforward"],
                &["create", "get"],
            ),
            rule(
                &["apps"],
                &["deployments", "statefulsets", "replicasets", "daemonsets"],
                &all,
            ),
            rule(&["batch"], &["jobs", "cronjobs"], &all),
            rule(&["networking.k8s.io"], &["ingresses"], &all),
        ]),
    }
}

pub fn role_binding(spec: &NamespaceSpec) -> RoleBinding {
    RoleBinding {
        metadata: meta(AGENT_ACCOUNT, Some(&spec.name), &spec.owner.labels()),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: AGENT_ACCOUNT.into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: AGENT_ACCOUNT.into(),
            namespace: Some(spec.name.clone()),
            ..Subject::default()
        }]),
    }
}

pub fn resource_quota(spec: &NamespaceSpec) -> ResourceQuota {
    let pods = spec.quota_pods.to_string();
    ResourceQuota {
        metadata: meta(GUARD, Some(&spec.name), &spec.owner.labels()),
        spec: Some(ResourceQuotaSpec {
            hard: Some(quantities(&[
                ("limits.cpu", &spec.quota_cpu),
                ("limits.memory", &spec.quota_memory),
                ("requests.cpu", &spec.quota_cpu),
                ("requests.memory", &spec.quota_memory),
                ("pods", &pods),
            ])),
            ..ResourceQuotaSpec::default()
        }),
        ..ResourceQuota::default()
    }
}

pub fn limit_range(spec: &NamespaceSpec) -> LimitRange {
    let d = &spec.default_container;
    LimitRange {
        metadata: meta(GUARD, Some(&spec.name), &spec.owner.labels()),
        spec: Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".into(),
                default: Some(quantities(&[
                    ("cpu", &d.cpu_limit),
                    ("memory", &d.memory_limit),
                ])),
                default_request: Some(quantities(&[
                    ("cpu", &d.cpu_request),
                    ("memory", &d.memory_request),
                ])),
                ..LimitRangeItem::default()
            }],
        }),
    }
}

/// Ingress only from inside the namespace and from namespaces that are not run namespaces.
pub fn network_policy(spec: &NamespaceSpec) -> NetworkPolicy {
    let not_a_run_namespace = LabelSelector {
        match_expressions: Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement {
                key: MANAGED_NAMESPACE_SELECTOR.0.into(),
                operator: "NotIn".into(),
                values: Some(vec![MANAGED_NAMESPACE_SELECTOR.1.into()]),
            },
        ]),
        ..LabelSelector::default()
    };
    NetworkPolicy {
        metadata: meta(GUARD, Some(&spec.name), &spec.owner.labels()),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector::default()),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![
                    NetworkPolicyPeer {
                        pod_selector: Some(LabelSelector::default()),
                        ..NetworkPolicyPeer::default()
                    },
                    NetworkPolicyPeer {
                        namespace_selector: Some(not_a_run_namespace),
                        ..NetworkPolicyPeer::default()
                    },
                ]),
                ..NetworkPolicyIngressRule::default()
            }]),
            ..NetworkPolicySpec::default()
        }),
    }
}

pub fn run_secret(spec: &WorkloadSpec) -> Secret {
    Secret {
        metadata: meta(&spec.name(), Some(&spec.namespace), &spec.identity.labels()),
        type_: Some("Opaque".into()),
        data: Some(
            spec.secret_data
                .iter()
                .map(|(k, v)| (k.clone(), ByteString(v.0.as_bytes().to_vec())))
                .collect(),
        ),
        ..Secret::default()
    }
}

fn requirements(r: &Resources) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(quantities(&[
            ("cpu", &r.cpu_request),
            ("memory", &r.memory_request),
        ])),
        limits: Some(quantities(&[
            ("cpu", &r.cpu_limit),
            ("memory", &r.memory_limit),
        ])),
        ..ResourceRequirements::default()
    }
}

pub fn job(spec: &WorkloadSpec) -> Job {
    let name = spec.name();
    let labels = spec.identity.labels();
    let mut env: Vec<EnvVar> = spec
        .env
        .iter()
        .map(|(k, v)| EnvVar {
            name: k.clone(),
            value: Some(v.clone()),
            ..EnvVar::default()
        })
        .collect();
    env.extend(spec.secret_env.iter().map(|(var, key)| EnvVar {
        name: var.clone(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: name.clone(),
                key: key.clone(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }));
    let secs = |d: std::time::Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    Job {
        metadata: meta(&name, Some(&spec.namespace), &labels),
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: Some(secs(spec.active_deadline)),
            ttl_seconds_after_finished: Some(
                i32::try_from(spec.ttl_after_finished.as_secs()).unwrap_or(i32::MAX),
            ),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    service_account_name: spec.service_account.clone(),
                    // Code-only runs get no Kubernetes credentials at all.
                    automount_service_account_token: Some(spec.service_account.is_some()),
                    containers: vec![Container {
                        name: "agent".into(),
                        image: Some(spec.image.clone()),
                        command: Some(spec.command.clone()),
                        env: Some(env),
                        resources: Some(requirements(&spec.resources)),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        ..Job::default()
    }
}
