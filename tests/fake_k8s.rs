//! The fake Kubernetes API server (tests/support/fake_k8s.rs) driven by the real `kube` client over
//! HTTP: if these pass, tests built on the fake talk to it the way production code talks to a cluster.

mod support;

use std::fmt::Debug;
use std::time::Duration;

use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::api::{WatchEvent, WatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use support::eventually;
use support::fake_k8s::{self, FakeKube};

/// Upper bound for anything the fake should do quickly, so a broken fake fails instead of hanging.
const WAIT: Duration = Duration::from_secs(10);

/// A fake, a client for it, and a namespace `ns` created through the API.
async fn setup(ns: &str) -> (FakeKube, kube::Client) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let fake = FakeKube::start().await;
    let client = fake.client().await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace = object(json!({"metadata": {"name": ns}}));
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .expect("create namespace");
    (fake, client)
}

fn object<T: DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("valid Kubernetes object")
}

/// Creates a namespaced object of type K from JSON through the typed API.
async fn create<K>(client: &kube::Client, ns: &str, value: Value) -> Result<K, kube::Error>
where
    K: kube::Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
    K: Clone + Debug + DeserializeOwned + Serialize,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    api.create(&PostParams::default(), &object(value)).await
}

fn api_error<T: Debug>(result: Result<T, kube::Error>) -> (u16, String) {
    match result {
        Err(kube::Error::Api(status)) => (status.code, status.reason),
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// A Job with two containers, so container statuses can be checked per container.
fn agent_job(name: &str) -> Value {
    let containers = json!([{"name": "agent", "image": "example.org/agent:1"},
        {"name": "sidecar", "image": "example.org/sidecar:2"}]);
    json!({"metadata": {"name": name, "labels": {"app": "agent"}},
        "spec": {"backoffLimit": 0, "template": {
            "metadata": {"labels": {"app": "agent", "run": name}, "annotations": {"note": "kept"}},
            "spec": {"restartPolicy": "Never", "containers": containers}}}})
}

fn names<T: kube::Resource>(items: &[T]) -> Vec<String> {
    let mut names: Vec<String> = items.iter().filter_map(|o| o.meta().name.clone()).collect();
    names.sort();
    names
}

/// The name of the one pod of `job`.
fn pod_of(fake: &FakeKube, ns: &str, job: &str) -> String {
    let pods = fake.pods_of_job(ns, job);
    assert_eq!(pods.len(), 1, "job {job} has one pod");
    pods[0]["metadata"]["name"]
        .as_str()
        .expect("pod name")
        .to_owned()
}

/// Reads the watcher until it yields pod `name` in `phase`; returns it with the errors the
/// watcher reported on the way (it retries after them, as a controller loop would go on).
async fn wait_for_phase<S>(stream: &mut S, name: &str, phase: &str) -> (Pod, Vec<watcher::Error>)
where
    S: Stream<Item = Result<Pod, watcher::Error>> + Unpin,
{
    let mut errors = Vec::new();
    let wait = async {
        while let Some(item) = stream.next().await {
            match item {
                Err(error) => errors.push(error),
                Ok(pod) if pod.metadata.name.as_deref() != Some(name) => {}
                Ok(pod) if pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some(phase) => {
                    return pod;
                }
                Ok(_) => {}
            }
        }
        panic!("watcher ended before pod {name} was {phase}");
    };
    let pod = tokio::time::timeout(WAIT, wait).await;
    (
        pod.unwrap_or_else(|_| panic!("timed out waiting for pod {name} to be {phase}")),
        errors,
    )
}

#[tokio::test]
async fn creates_every_kind_and_fails_like_the_api_server() {
    let (fake, client) = setup("agents").await;
    let ns = fake
        .get("namespaces", None, "agents")
        .expect("namespace stored");
    assert_eq!(ns["status"]["phase"], "Active");

    let c = &client;
    let sa: core::ServiceAccount = create(c, "agents", json!({"metadata": {"name": "runner"}}))
        .await
        .unwrap();
    assert_eq!(sa.metadata.namespace.as_deref(), Some("agents"));
    let secret = json!({"metadata": {"name": "token"}, "stringData": {"t": "x"}});
    create::<Secret>(c, "agents", secret.clone()).await.unwrap();
    let rules = json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]);
    create::<Role>(
        c,
        "agents",
        json!({"metadata": {"name": "runner"}, "rules": rules}),
    )
    .await
    .unwrap();
    let role_ref =
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "runner"});
    let binding = json!({"metadata": {"name": "runner"}, "roleRef": role_ref,
        "subjects": [{"kind": "ServiceAccount", "name": "runner", "namespace": "agents"}]});
    create::<RoleBinding>(c, "agents", binding).await.unwrap();
    let quota = json!({"metadata": {"name": "quota"}, "spec": {"hard": {"pods": "4"}}});
    create::<core::ResourceQuota>(c, "agents", quota)
        .await
        .unwrap();
    let limits = json!({"metadata": {"name": "limits"},
        "spec": {"limits": [{"type": "Container", "default": {"cpu": "1"}}]}});
    create::<core::LimitRange>(c, "agents", limits)
        .await
        .unwrap();
    let policy = json!({"metadata": {"name": "deny"}, "spec": {"podSelector": {}}});
    create::<NetworkPolicy>(c, "agents", policy).await.unwrap();
    let job: Job = create(c, "agents", agent_job("agent-1")).await.unwrap();
    let stored = [
        ("serviceaccounts", "runner"),
        ("secrets", "token"),
        ("roles", "runner"),
        ("rolebindings", "runner"),
        ("resourcequotas", "quota"),
        ("limitranges", "limits"),
        ("networkpolicies", "deny"),
        ("jobs", "agent-1"),
    ];
    for (resource, name) in stored {
        let obj = fake.get(resource, Some("agents"), name).expect("stored");
        for field in ["uid", "resourceVersion", "creationTimestamp", "namespace"] {
            assert!(
                obj["metadata"][field].is_string(),
                "{resource}/{name} metadata.{field}"
            );
        }
        assert!(
            obj["kind"].is_string() && obj["apiVersion"].is_string(),
            "{resource}/{name}"
        );
    }

    // Errors come back as the server's Status objects.
    let again =
        create::<core::ServiceAccount>(c, "agents", json!({"metadata": {"name": "runner"}}));
    assert_eq!(api_error(again.await), (409, "AlreadyExists".into()));
    let missing = Api::<Pod>::namespaced(client.clone(), "agents")
        .get("nope")
        .await;
    assert_eq!(api_error(missing), (404, "NotFound".into()));
    let nowhere = create::<Secret>(c, "ghost", secret).await;
    assert_eq!(api_error(nowhere), (404, "NotFound".into()));

    // Label selectors filter lists.
    for (name, labels) in [
        ("s-a", json!({"app": "a", "tier": "x"})),
        ("s-b", json!({"app": "b"})),
    ] {
        create::<Secret>(
            c,
            "agents",
            json!({"metadata": {"name": name, "labels": labels}}),
        )
        .await
        .unwrap();
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "agents");
    let cases = [
        ("app=a", vec!["s-a"]),
        ("app!=a", vec!["s-b", "token"]),
        ("app", vec!["s-a", "s-b"]),
        ("app,tier==x", vec!["s-a"]),
        ("!app", vec!["token"]),
        ("app=b,!tier", vec!["s-b"]),
    ];
    for (selector, expected) in cases {
        let list = secrets
            .list(&ListParams::default().labels(selector))
            .await
            .unwrap();
        assert_eq!(names(&list.items), expected, "selector {selector}");
        assert!(list.metadata.resource_version.is_some());
    }
    let bad = secrets
        .list(&ListParams::default().labels("app in (a"))
        .await;
    assert_eq!(api_error(bad).0, 400);

    // The Job controller made the Job's pod.
    let pods = fake.pods_of_job("agents", "agent-1");
    let pod = &pods[0];
    let name = pod_of(&fake, "agents", "agent-1");
    let suffix = name
        .strip_prefix("agent-1-")
        .expect("pod named after its job");
    assert!(
        suffix.len() == 5
            && suffix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    );
    let labels = [
        ("app", "agent"),
        ("run", "agent-1"),
        ("job-name", "agent-1"),
        ("batch.kubernetes.io/job-name", "agent-1"),
    ];
    for (key, value) in labels {
        assert_eq!(pod["metadata"]["labels"][key], value, "label {key}");
    }
    let owner = &pod["metadata"]["ownerReferences"][0];
    assert_eq!(
        (&owner["kind"], &owner["name"], &owner["controller"]),
        (&json!("Job"), &json!("agent-1"), &json!(true))
    );
    assert_eq!(owner["uid"].as_str(), job.metadata.uid.as_deref());
    assert_eq!(
        pod["spec"]["containers"][1]["image"],
        "example.org/sidecar:2"
    );
    assert_eq!(pod["status"], json!({"phase": "Pending"}));
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), "agents");
    let listed = pods_api
        .list(&ListParams::default().labels("job-name=agent-1"))
        .await
        .unwrap();
    assert_eq!(names(&listed.items), vec![name.clone()]);
    assert_eq!(
        Api::<Pod>::all(client.clone())
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );

    // Patches, replaces and optimistic concurrency.
    let merge = Patch::Merge(json!({"metadata": {"labels": {"tier": null, "new": "1"}}}));
    let patched = secrets
        .patch("s-a", &PatchParams::default(), &merge)
        .await
        .unwrap();
    let labels = patched.metadata.labels.unwrap_or_default();
    assert_eq!(
        (labels.get("tier"), labels.get("new").map(String::as_str)),
        (None, Some("1"))
    );
    let strategic = Patch::Strategic(json!({"stringData": {"k": "v"}}));
    let patched = secrets
        .patch("s-b", &PatchParams::default(), &strategic)
        .await
        .unwrap();
    assert_eq!(patched.string_data.unwrap_or_default()["k"], "v");
    let applied: Secret =
        object(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s-d"}}));
    secrets
        .patch("s-d", &PatchParams::apply("tests"), &Patch::Apply(&applied))
        .await
        .unwrap();
    assert!(
        fake.get("secrets", Some("agents"), "s-d").is_some(),
        "apply creates"
    );
    let stale = secrets.get("token").await.unwrap();
    let mut current = stale.clone();
    current.string_data = Some([("x".to_owned(), "y".to_owned())].into());
    let replaced = secrets
        .replace("token", &PostParams::default(), &current)
        .await
        .unwrap();
    assert_ne!(
        replaced.metadata.resource_version,
        stale.metadata.resource_version
    );
    assert_eq!(replaced.metadata.uid, stale.metadata.uid);
    let conflict = secrets
        .replace("token", &PostParams::default(), &stale)
        .await;
    assert_eq!(api_error(conflict), (409, "Conflict".into()));

    // Deletes: a Status for secrets, the object for Jobs, whose pods go with them.
    let deleted = secrets
        .delete("s-a", &DeleteParams::default())
        .await
        .unwrap();
    assert!(deleted.is_right(), "secrets answer a Status");
    assert_eq!(api_error(secrets.get("s-a").await).0, 404);
    let jobs: Api<Job> = Api::namespaced(client.clone(), "agents");
    let deleted = jobs
        .delete("agent-1", &DeleteParams::background())
        .await
        .unwrap();
    assert!(deleted.is_left(), "jobs answer the object");
    assert!(fake.pods_of_job("agents", "agent-1").is_empty());
}

#[tokio::test]
async fn watcher_follows_a_pod_through_dropped_and_expired_watches() {
    let (fake, client) = setup("w").await;
    create::<Job>(&client, "w", agent_job("agent-2"))
        .await
        .unwrap();
    let pod = pod_of(&fake, "w", "agent-2");
    fake.reset_requests();

    let config = watcher::Config::default().labels("job-name=agent-2");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "w");
    let mut stream = watcher(pods, config)
        .default_backoff()
        .applied_objects()
        .boxed();

    let (_, errors) = wait_for_phase(&mut stream, &pod, "Pending").await;
    assert!(errors.is_empty(), "{errors:?}");
    fake.set_pod_status("w", &pod, fake_k8s::pod_running());
    let (running, _) = wait_for_phase(&mut stream, &pod, "Running").await;
    let statuses = running
        .status
        .and_then(|s| s.container_statuses)
        .unwrap_or_default();
    let containers: Vec<&str> = statuses.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(containers, ["agent", "sidecar"]);

    // The change lands while no watch is open; the watcher resumes from its resourceVersion.
    fake.drop_watches();
    fake.set_pod_status("w", &pod, fake_k8s::pod_succeeded());
    let (done, errors) = wait_for_phase(&mut stream, &pod, "Succeeded").await;
    assert!(
        errors.is_empty(),
        "a dropped watch resumes without an error: {errors:?}"
    );
    let state = done
        .status
        .and_then(|s| s.container_statuses)
        .unwrap_or_default()[0]
        .state
        .clone();
    let terminated = state.and_then(|s| s.terminated).expect("terminated state");
    assert_eq!(
        (terminated.exit_code, terminated.reason.as_deref()),
        (0, Some("Completed"))
    );

    // The history the watcher would resume from is gone: 410 Expired, then a new list.
    fake.drop_watches();
    fake.set_pod_status("w", &pod, fake_k8s::pod_failed_exit(3));
    fake.compact_events();
    let (_, errors) = wait_for_phase(&mut stream, &pod, "Failed").await;
    let expired = errors
        .iter()
        .any(|e| matches!(e, watcher::Error::WatchError(s) if s.code == 410));
    assert!(expired, "the watcher saw 410 Expired: {errors:?}");

    let requests = fake.requests();
    let on_pods = requests
        .iter()
        .filter(|r| r.starts_with("GET /api/v1/namespaces/w/pods?"));
    let (watches, lists): (Vec<_>, Vec<_>) = on_pods.partition(|r| r.contains("watch=true"));
    assert!(
        watches.len() >= 3,
        "watched again after each drop: {requests:#?}"
    );
    assert!(lists.len() >= 2, "listed again after 410: {requests:#?}");
    if std::env::var_os("FAKE_K8S_SHOW_REQUESTS").is_some() {
        eprintln!("{requests:#?}");
    }
}

fn describe(event: &WatchEvent<Secret>) -> String {
    let name = |s: &Secret| s.metadata.name.clone().unwrap_or_default();
    match event {
        WatchEvent::Added(s) => format!("ADDED {}", name(s)),
        WatchEvent::Modified(s) => format!("MODIFIED {}", name(s)),
        WatchEvent::Deleted(s) => format!("DELETED {}", name(s)),
        WatchEvent::Bookmark(_) => "BOOKMARK".to_owned(),
        WatchEvent::Error(e) => format!("ERROR {} {}", e.code, e.reason),
    }
}

/// Every event of a watch with `timeoutSeconds=1`, which must end by itself.
async fn watch_all(api: &Api<Secret>, labels: &str, from: &str) -> Vec<String> {
    let params = WatchParams::default().labels(labels).timeout(1);
    let stream = api.watch(&params, from).await.expect("watch starts");
    let events: Vec<_> = tokio::time::timeout(WAIT, stream.try_collect())
        .await
        .expect("ends")
        .unwrap();
    events.iter().map(describe).collect()
}

#[tokio::test]
async fn raw_watches_replay_filter_expire_and_time_out() {
    let (fake, client) = setup("raw").await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "raw");
    let start = secrets
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    for (name, app) in [("a", "x"), ("b", "y")] {
        let secret = json!({"metadata": {"name": name, "labels": {"app": app}}});
        create::<Secret>(&client, "raw", secret).await.unwrap();
    }
    let relabel = |app: &str| Patch::Merge(json!({"metadata": {"labels": {"app": app}}}));
    let pp = PatchParams::default();
    secrets.patch("a", &pp, &relabel("x")).await.unwrap();
    // Leaving the selection is DELETED for this watch, entering it is ADDED.
    secrets.patch("a", &pp, &relabel("z")).await.unwrap();
    secrets.patch("b", &pp, &relabel("x")).await.unwrap();
    fake.delete_object("secrets", Some("raw"), "b")
        .expect("deleted");

    let replayed = watch_all(&secrets, "app=x", &start).await;
    let expected = [
        "ADDED a",
        "MODIFIED a",
        "DELETED a",
        "ADDED b",
        "DELETED b",
        "BOOKMARK",
    ];
    assert_eq!(replayed, expected);
    // Without a resourceVersion, the current state comes first as ADDED events.
    assert_eq!(
        watch_all(&secrets, "app=z", "0").await,
        ["ADDED a", "BOOKMARK"]
    );
    // Watching all namespaces sees this one too; another namespace sees nothing.
    let everywhere = watch_all(&Api::all(client.clone()), "app=z", &start).await;
    assert_eq!(everywhere[0], "ADDED a");
    let elsewhere = watch_all(&Api::namespaced(client.clone(), "default"), "", &start).await;
    assert_eq!(elsewhere, ["BOOKMARK"]);

    fake.compact_events();
    assert_eq!(watch_all(&secrets, "", &start).await, ["ERROR 410 Expired"]);
}

#[tokio::test]
async fn pods_complete_on_their_own_and_seeds_start_nothing() {
    let (fake, client) = setup("jobs").await;
    fake.complete_pods_after(Some(Duration::from_millis(100)));
    create::<Job>(&client, "jobs", agent_job("quick"))
        .await
        .unwrap();
    let pod = pod_of(&fake, "jobs", "quick");
    let phase = |fake: &FakeKube| {
        fake.get("pods", Some("jobs"), &pod)
            .map(|p| p["status"]["phase"].clone())
    };
    assert_eq!(phase(&fake), Some(json!("Running")));
    eventually(WAIT, "pod to succeed", || async {
        (phase(&fake)? == "Succeeded").then_some(())
    })
    .await;

    fake.complete_pods_after(None);
    let mut suspended = agent_job("later");
    suspended["spec"]["suspend"] = json!(true);
    create::<Job>(&client, "jobs", suspended).await.unwrap();
    assert!(
        fake.pods_of_job("jobs", "later").is_empty(),
        "a suspended Job has no pod"
    );

    let seeded = json!({"metadata": {"name": "seeded", "namespace": "jobs",
        "creationTimestamp": "2020-01-01T00:00:00Z"}, "spec": {"template": {}}});
    fake.insert("jobs", seeded);
    assert!(
        fake.pods_of_job("jobs", "seeded").is_empty(),
        "a seeded Job has no pod"
    );
    let job = Api::<Job>::namespaced(client.clone(), "jobs")
        .get("seeded")
        .await
        .unwrap();
    let created = job.metadata.creation_timestamp.map(|t| t.0.to_string());
    assert_eq!(created.as_deref(), Some("2020-01-01T00:00:00Z"));
    assert_eq!(fake.list("jobs", Some("jobs")).len(), 3);

    // A pod lost with its node is DELETED for a watcher.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "jobs");
    let mut events = pods
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    let first = tokio::time::timeout(WAIT, events.try_next())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(first, Some(WatchEvent::Added(_))));
    fake.delete_object("pods", Some("jobs"), &pod)
        .expect("pod deleted");
    let next = tokio::time::timeout(WAIT, events.try_next())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(next, Some(WatchEvent::Deleted(p)) if p.metadata.name == Some(pod.clone())));
}

#[tokio::test]
async fn pod_status_helpers_decode_as_kubernetes_types() {
    let (fake, client) = setup("st").await;
    create::<Job>(&client, "st", agent_job("s")).await.unwrap();
    let pod = pod_of(&fake, "st", "s");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "st");
    let cases = [
        (fake_k8s::pod_running(), "Running", "running", None),
        (
            fake_k8s::pod_image_pull_backoff(),
            "Pending",
            "ImagePullBackOff",
            None,
        ),
        (
            fake_k8s::pod_unschedulable(),
            "Pending",
            "Unschedulable",
            None,
        ),
        (fake_k8s::pod_failed_exit(7), "Failed", "Error", Some(7)),
        (fake_k8s::pod_oom_killed(), "Failed", "OOMKilled", Some(137)),
        (
            fake_k8s::pod_deadline_exceeded(),
            "Failed",
            "DeadlineExceeded",
            Some(137),
        ),
        (fake_k8s::pod_succeeded(), "Succeeded", "Completed", Some(0)),
    ];
    for (status, phase, reason, exit_code) in cases {
        fake.set_pod_status("st", &pod, status);
        let got = pods
            .get(&pod)
            .await
            .expect("decodes as a Pod")
            .status
            .expect("status");
        assert_eq!(got.phase.as_deref(), Some(phase));
        let containers = got.container_statuses.clone().unwrap_or_default();
        let state = containers
            .first()
            .and_then(|c| c.state.clone())
            .unwrap_or_default();
        let conditions = got.conditions.clone().unwrap_or_default();
        let found = match reason {
            "running" => state.running.is_some(),
            "ImagePullBackOff" => state.waiting.and_then(|w| w.reason).as_deref() == Some(reason),
            "Unschedulable" => conditions.iter().any(|c| {
                (c.type_.as_str(), c.status.as_str(), c.reason.as_deref())
                    == ("PodScheduled", "False", Some(reason))
            }),
            "DeadlineExceeded" => got.reason.as_deref() == Some(reason),
            _ => state.terminated.and_then(|t| t.reason).as_deref() == Some(reason),
        };
        assert!(found, "{reason} shows in the pod status");
        let exit = |c: &core::ContainerStatus| c.state.clone()?.terminated.map(|t| t.exit_code);
        if let Some(code) = exit_code {
            assert!(
                containers.iter().all(|c| exit(c) == Some(code)),
                "exit code {code}"
            );
        }
        if !containers.is_empty() {
            let images: Vec<&str> = containers.iter().map(|c| c.image.as_str()).collect();
            assert_eq!(images, ["example.org/agent:1", "example.org/sidecar:2"]);
        }
    }
}

#[tokio::test]
async fn deleting_a_namespace_removes_everything_in_it() {
    let (fake, client) = setup("doomed").await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &object(json!({"metadata": {"name": "kept"}})),
        )
        .await
        .unwrap();
    for ns in ["doomed", "kept"] {
        create::<Secret>(&client, ns, json!({"metadata": {"name": "s"}}))
            .await
            .unwrap();
        create::<core::ServiceAccount>(&client, ns, json!({"metadata": {"name": "sa"}}))
            .await
            .unwrap();
        create::<Job>(&client, ns, agent_job("j")).await.unwrap();
    }
    let deleted = namespaces
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    let ns = deleted
        .left()
        .expect("a namespace delete answers the namespace");
    assert_eq!(
        ns.status.and_then(|s| s.phase).as_deref(),
        Some("Terminating")
    );

    for resource in ["secrets", "serviceaccounts", "jobs", "pods"] {
        assert!(
            fake.list(resource, Some("doomed")).is_empty(),
            "{resource} in doomed"
        );
        assert_eq!(
            fake.list(resource, Some("kept")).len(),
            1,
            "{resource} in kept"
        );
    }
    assert_eq!(api_error(namespaces.get("doomed").await).0, 404);
    let all = namespaces.list(&ListParams::default()).await.unwrap();
    assert_eq!(names(&all.items), ["default", "kept"]);
}

#[tokio::test]
async fn kubeconfig_version_and_bad_input() {
    let (fake, _) = setup("team").await;
    let dir = std::env::temp_dir().join(format!("fake-k8s-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig =
        kube::config::Kubeconfig::read_from(fake.write_kubeconfig(&dir, "team")).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    assert_eq!(config.default_namespace, "team");
    let client = kube::Client::try_from(config).unwrap();
    assert_eq!(client.apiserver_version().await.unwrap().minor, "33");

    let http = reqwest::Client::new();
    let url = fake.url();
    let send = |request: reqwest::RequestBuilder| async move {
        let response = request.send().await.expect("fake answers");
        let code = response.status().as_u16();
        (code, response.json::<Value>().await.expect("JSON body"))
    };
    for path in [
        "/apis/batch/v1/namespaces/x/pods",
        "/healthz",
        "/api/v1/namespaces/team/widgets",
    ] {
        let (code, body) = send(http.get(format!("{url}{path}"))).await;
        assert_eq!(
            (code, &body["kind"], &body["reason"]),
            (404, &json!("Status"), &json!("NotFound"))
        );
    }
    let secrets = format!("{url}/api/v1/namespaces/team/secrets");
    let bad_bodies = [
        "{not json",
        "[1,2]",
        r#"{"metadata": {"name": "x", "labels": {"a": 1}}}"#,
        r#"{"metadata": 7}"#,
        r#"{"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "x"}}"#,
    ];
    for body in bad_bodies {
        let (code, status) = send(http.post(&secrets).body(body)).await;
        assert_eq!(
            (code, &status["reason"]),
            (400, &json!("BadRequest")),
            "{body}"
        );
    }
    let (code, _) = send(http.post(&secrets).body(r#"{"metadata": {}}"#)).await;
    assert_eq!(code, 422);
    fake.insert(
        "secrets",
        json!({"metadata": {"name": "one", "namespace": "team"}}),
    );
    let one = format!("{secrets}/one");
    let json_patch = http
        .patch(&one)
        .header("content-type", "application/json-patch+json")
        .body("[]");
    assert_eq!(send(json_patch).await.0, 415);
    let bad_merge = http
        .patch(&one)
        .header("content-type", "application/merge-patch+json");
    assert_eq!(
        send(bad_merge.body(r#"{"metadata": {"labels": 5}}"#))
            .await
            .0,
        400
    );
    assert_eq!(
        send(http.get(format!("{secrets}?labelSelector=%3D%3D")))
            .await
            .0,
        400
    );
    assert_eq!(
        send(http.get(format!("{secrets}?watch=true&resourceVersion=abc")))
            .await
            .0,
        400
    );
    assert_eq!(send(http.put(format!("{url}/api/v1/secrets"))).await.0, 405);

    // Lists carry kind and apiVersion on every item.
    let (_, list) = send(http.get(format!("{url}/api/v1/secrets"))).await;
    assert_eq!(
        (&list["kind"], &list["apiVersion"]),
        (&json!("SecretList"), &json!("v1"))
    );
    assert_eq!(
        (&list["items"][0]["kind"], &list["items"][0]["apiVersion"]),
        (&json!("Secret"), &json!("v1"))
    );
    assert!(fake.requests().contains(&"GET /api/v1/secrets".to_owned()));
}
