//! Runs on Kubernetes (SPEC §7) end to end: signed webhook → run → the worker's `launch_run` →
//! objects on the fake API server through the real `kube` client → pod changes driven by the test →
//! run status in a real database.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use codex_k8s::cli::Role;
use serde_json::{Value, json};
use support::app::TestService;
use support::fake_k8s::{self, FakeKube};
use support::{TestDb, eventually};
use uuid::Uuid;

const REPO_ID: i64 = 186853002; // Codertocat/Hello-World in the fixtures
const WAIT: Duration = Duration::from_secs(20);

#[derive(sqlx::FromRow, Debug, Clone)]
struct Run {
    id: Uuid,
    status: String,
    attempt: i32,
    namespace: Option<String>,
    job_name: Option<String>,
    failure_reason: Option<String>,
    wait_reason: Option<String>,
}

/// A database with one connected project, the fake cluster and the service with all roles.
struct Cluster {
    db: TestDb,
    fake: FakeKube,
    app: TestService,
    env: Vec<(String, String)>,
    _kubeconfig_dir: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn seed_project(db: &TestDb, slug: &str, settings: Value, repo_id: i64) -> Uuid {
    let name = format!("repo-{repo_id}");
    support::seed::project_with_repository(db, slug, settings, repo_id, "Codertocat", &name).await
}

/// The fixtures' sender, a read_write member of `projects`.
async fn seed_sender(db: &TestDb, projects: &[Uuid]) {
    let user = support::seed::user(db, "codertocat@example.com", "Codertocat").await;
    for project in projects {
        support::seed::member(db, *project, user, "read_write").await;
    }
}

fn labeled_fixture() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/github-webhooks/issues.labeled.payload.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

impl Cluster {
    async fn start(extra: &[(&str, &str)]) -> Self {
        Self::start_with(json!({}), extra, |_| {}).await
    }

    async fn start_with(
        settings: Value,
        extra: &[(&str, &str)],
        seed: impl FnOnce(&FakeKube),
    ) -> Self {
        Self::start_seeded(settings, extra, &Role::ALL, seed).await
    }

    async fn start_roles(settings: Value, extra: &[(&str, &str)], roles: &[Role]) -> Self {
        Self::start_seeded(settings, extra, roles, |_| {}).await
    }

    async fn start_seeded(
        settings: Value,
        extra: &[(&str, &str)],
        roles: &[Role],
        seed: impl FnOnce(&FakeKube),
    ) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let db = TestDb::migrated().await;
        let project = seed_project(&db, "hello", settings, REPO_ID).await;
        seed_sender(&db, &[project]).await;
        let fake = FakeKube::start().await;
        fake.insert(
            "namespaces",
            json!({ "metadata": { "name": "codex-k8s-runs" } }),
        );
        seed(&fake);
        let dir = std::env::temp_dir().join(format!("codex-k8s-runtime-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let kubeconfig = fake.write_kubeconfig(&dir, "default").display().to_string();
        let mut env: Vec<(String, String)> = [
            ("KUBECONFIG", kubeconfig.as_str()),
            ("CODEXK8S_RUNTIME_RESYNC_INTERVAL", "500ms"),
            ("CODEXK8S_CLEANUP_INTERVAL", "500ms"),
            ("CODEXK8S_QUEUE_POLL_INTERVAL", "200ms"),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        env.dedup_by(|a, b| a.0 == b.0);
        let app = Self::service(&db, roles, &env).await;
        Self {
            db,
            fake,
            app,
            env,
            _kubeconfig_dir: TempDir(dir),
        }
    }

    async fn service(db: &TestDb, roles: &[Role], env: &[(String, String)]) -> TestService {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        TestService::start_with(&db.url, roles, &env).await
    }

    /// A second process-like service with only the worker role, against the same database.
    async fn start_worker(&self) -> TestService {
        Self::service(&self.db, &[Role::Worker], &self.env).await
    }

    /// Delivers `label` added to issue `number` of repository `repo`; returns the delivery id.
    async fn label_issue_of(&self, repo: i64, number: u64, label: &str) -> String {
        let mut payload = labeled_fixture();
        payload["label"]["name"] = json!(label);
        payload["issue"]["labels"] = json!([{ "name": label }]);
        payload["issue"]["number"] = json!(number);
        payload["repository"]["id"] = json!(repo);
        let delivery = Uuid::new_v4().to_string();
        let reply = self
            .app
            .post_webhook("issues", &delivery, &serde_json::to_vec(&payload).unwrap())
            .await;
        assert_eq!(reply.status, 202, "{}", reply.body);
        delivery
    }

    async fn label_issue(&self, number: u64, label: &str) -> String {
        self.label_issue_of(REPO_ID, number, label).await
    }

    async fn run(&self, delivery: &str) -> Option<Run> {
        sqlx::query_as(include_str!("support/sql/run_by_correlation.sql"))
            .bind(delivery)
            .fetch_optional(&self.db.pool)
            .await
            .unwrap()
    }

    async fn run_in(&self, delivery: &str, status: &str) -> Run {
        eventually(
            WAIT,
            &format!("the run of {delivery} to be {status}"),
            || async { self.run(delivery).await.filter(|r| r.status == status) },
        )
        .await
    }

    /// Waits for the Job of the run's current attempt and returns (run, job, pod name).
    async fn launched(&self, delivery: &str) -> (Run, Value, String) {
        eventually(WAIT, "the run's Job and pod", || async {
            let run = self.run(delivery).await?;
            let (ns, name) = (run.namespace.clone()?, run.job_name.clone()?);
            let job = self.fake.get("jobs", Some(&ns), &name)?;
            let pod = self.fake.pods_of_job(&ns, &name).first()?["metadata"]["name"]
                .as_str()?
                .to_owned();
            Some((run, job, pod))
        })
        .await
    }

    async fn set_pod(&self, run: &Run, pod: &str, status: Value) {
        self.fake
            .set_pod_status(run.namespace.as_deref().unwrap(), pod, status);
    }

    async fn token_hash(&self, run: Uuid) -> Option<Vec<u8>> {
        sqlx::query_scalar(include_str!("support/sql/run_token_hash.sql"))
            .bind(run)
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }

    async fn events_of(&self, run: Uuid) -> Vec<(String, Value)> {
        sqlx::query_as(include_str!("support/sql/flow_events_of_run.sql"))
            .bind(run)
            .fetch_all(&self.db.pool)
            .await
            .unwrap()
    }

    /// Waits until the Job of `run`'s recorded attempt no longer exists.
    async fn job_gone(&self, run: &Run) {
        let (ns, name) = (
            run.namespace.as_deref().unwrap(),
            run.job_name.as_deref().unwrap(),
        );
        eventually(WAIT, &format!("Job {ns}/{name} to be deleted"), || async {
            self.fake
                .get("jobs", Some(ns), name)
                .is_none()
                .then_some(())
        })
        .await;
    }

    /// Whether `run` has an audit row of `event_type`, waiting a little for one written just after
    /// the change the test saw.
    async fn has_event(&self, run: Uuid, event_type: &str) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        loop {
            if self.event_types(run).await.iter().any(|t| t == event_type) {
                return true;
            }
            if std::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn event_types(&self, run: Uuid) -> Vec<String> {
        self.events_of(run)
            .await
            .into_iter()
            .map(|(t, _)| t)
            .collect()
    }
}

fn labels(object: &Value) -> &serde_json::Map<String, Value> {
    object["metadata"]["labels"].as_object().expect("labels")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_goes_from_pending_to_succeeded_with_checked_objects_and_no_secret_in_the_spec() {
    let c = Cluster::start(&[]).await;
    let delivery = c.label_issue(42, "run:dev").await;
    let (run, job, pod) = c.launched(&delivery).await;
    assert_eq!(run.status, "starting");
    assert_eq!(run.attempt, 1);
    let ns = "codex-hello-i42";
    assert_eq!(run.namespace.as_deref(), Some(ns));
    let name = format!("codex-run-{}-a1", run.id.simple());
    assert_eq!(run.job_name.as_deref(), Some(name.as_str()));

    // The namespace and its guard rails.
    let namespace = c.fake.get("namespaces", None, ns).expect("namespace");
    let run_id = run.id.to_string();
    for object in [&namespace, &job] {
        let l = labels(object);
        assert_eq!(l["app.kubernetes.io/managed-by"], "codex-k8s");
        assert_eq!(l["codex-k8s.io/project"], "hello");
        assert_eq!(l["codex-k8s.io/run"], run_id.as_str());
    }
    let expires = namespace["metadata"]["annotations"]["codex-k8s.io/expires-at"]
        .as_str()
        .unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(expires).unwrap()
            > chrono::Utc::now() + chrono::Duration::hours(24)
    );
    for (resource, object) in [
        ("serviceaccounts", "codex-agent"),
        ("roles", "codex-agent"),
        ("rolebindings", "codex-agent"),
        ("resourcequotas", "codex-k8s"),
        ("limitranges", "codex-k8s"),
        ("networkpolicies", "codex-k8s"),
    ] {
        let found = c
            .fake
            .get(resource, Some(ns), object)
            .unwrap_or_else(|| panic!("{resource}/{object}"));
        assert_eq!(
            labels(&found)["app.kubernetes.io/managed-by"],
            "codex-k8s",
            "{resource}"
        );
    }
    let role = c.fake.get("roles", Some(ns), "codex-agent").unwrap();
    let rules = role["rules"].as_array().unwrap();
    assert!(!rules.is_empty());
    for rule in rules {
        let resources: Vec<&str> = rule["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        assert!(
            !resources.contains(&"secrets"),
            "the agent role never reaches secrets: {rule}"
        );
    }
    let binding = c.fake.get("rolebindings", Some(ns), "codex-agent").unwrap();
    assert_eq!(binding["roleRef"]["name"], "codex-agent");
    assert_eq!(binding["subjects"][0]["name"], "codex-agent");
    let quota = c.fake.get("resourcequotas", Some(ns), "codex-k8s").unwrap();
    assert!(quota["spec"]["hard"]["pods"].is_string());
    let policy = c
        .fake
        .get("networkpolicies", Some(ns), "codex-k8s")
        .unwrap();
    assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress"]));

    // The Job, field by field.
    let spec = &job["spec"];
    assert_eq!(spec["backoffLimit"], 0);
    assert_eq!(
        spec["activeDeadlineSeconds"],
        4 * 3600 + 120,
        "the worker's deadline comes first"
    );
    assert_eq!(spec["ttlSecondsAfterFinished"], 3600);
    let pod_spec = &spec["template"]["spec"];
    assert_eq!(pod_spec["restartPolicy"], "Never");
    assert_eq!(pod_spec["serviceAccountName"], "codex-agent");
    assert_eq!(
        spec["template"]["metadata"]["labels"]["codex-k8s.io/attempt"],
        "1"
    );
    let container = &pod_spec["containers"][0];
    assert_eq!(container["image"], "ghcr.io/codex-k8s/codex-k8s:latest");
    assert_eq!(container["command"], json!(["codex-k8s", "runner"]));
    assert_eq!(container["resources"]["requests"]["cpu"], "500m");
    assert_eq!(container["resources"]["limits"]["memory"], "4Gi");
    let env = container["env"].as_array().unwrap();
    let var = |name: &str| {
        env.iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("{name}"))
            .clone()
    };
    assert_eq!(var("CODEXK8S_RUN_ID")["value"], run_id.as_str());
    assert_eq!(var("CODEXK8S_AGENT")["value"], "dev");
    assert_eq!(var("CODEXK8S_TARGET_NUMBER")["value"], "42");
    for (variable, key) in [
        ("CODEXK8S_RUN_TOKEN", "run-token"),
        ("CODEXK8S_BOT_TOKEN", "bot-token"),
        ("CODEXK8S_MODEL_API_KEY", "model-api-key"),
    ] {
        let v = var(variable);
        assert!(v.get("value").is_none(), "{variable} has no literal value");
        assert_eq!(
            v["valueFrom"]["secretKeyRef"],
            json!({ "name": name, "key": key, "optional": false })
        );
    }

    // The Secret holds the values; none of them appears in the Job, the pod or the audit trail.
    let secret = c
        .fake
        .get("secrets", Some(ns), &name)
        .expect("the run's Secret");
    let data = secret["data"].as_object().unwrap();
    assert_eq!(data.len(), 3);
    let token = String::from_utf8(base64_decode(data["run-token"].as_str().unwrap())).unwrap();
    assert_eq!(token.len(), 64, "a random run token");
    let pod_json = c.fake.get("pods", Some(ns), &pod).unwrap().to_string();
    assert!(!job.to_string().contains(&token) && !pod_json.contains(&token));
    let audit: Vec<String> = sqlx::query_scalar(include_str!("support/sql/all_flow_payloads.sql"))
        .fetch_all(&c.db.pool)
        .await
        .unwrap();
    assert!(
        audit.iter().all(|p| !p.contains(&token)),
        "no secret in flow_events"
    );
    // The launch records the hash right after the API answered; wait for that commit.
    let expected = sha256(&token);
    eventually(WAIT, "the run token's hash to be stored", || async {
        (c.token_hash(run.id).await.as_ref() == Some(&expected)).then_some(())
    })
    .await;

    // Pod phases drive the run.
    c.set_pod(&run, &pod, fake_k8s::pod_running()).await;
    c.run_in(&delivery, "running").await;
    c.set_pod(&run, &pod, fake_k8s::pod_succeeded()).await;
    let done = c.run_in(&delivery, "succeeded").await;
    assert_eq!(done.failure_reason, None);
    // The Job stays for its TTL (logs); the Secret is owned by it and goes with it.
    let job_now = c
        .fake
        .get("jobs", Some(ns), &name)
        .expect("the finished Job is kept");
    let secret_now = c.fake.get("secrets", Some(ns), &name).expect("the Secret");
    assert_eq!(
        secret_now["metadata"]["ownerReferences"],
        json!([{ "apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": job_now["metadata"]["uid"], "blockOwnerDeletion": false }])
    );
    assert!(!c.has_event(run.id, "k8s.job.deleted").await);
    let types = c.event_types(run.id).await;
    for expected in [
        "run.created",
        "run.starting",
        "k8s.namespace.created",
        "k8s.serviceaccount.created",
        "k8s.role.created",
        "k8s.rolebinding.created",
        "k8s.resourcequota.created",
        "k8s.limitrange.created",
        "k8s.networkpolicy.created",
        "k8s.secret.created",
        "k8s.job.created",
        "run.running",
        "run.succeeded",
    ] {
        assert!(
            types.contains(&expected.to_owned()),
            "{expected} in {types:?}"
        );
    }
}

fn sha256(text: &str) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes()).to_vec()
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("base64")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_failure_path_fails_the_run_with_its_reason_and_removes_the_job() {
    let c = Cluster::start(&[
        ("CODEXK8S_RUN_PENDING_TIMEOUT", "3s"),
        ("CODEXK8S_RUN_UNSCHEDULABLE_TIMEOUT", "1s"),
    ])
    .await;
    // (issue, pod status, reason, whether the Job is deleted now): a pod that ended by itself keeps
    // its Job until the TTL; a stuck or overdue one is stopped.
    let cases: Vec<(u64, Option<Value>, &str, bool)> = vec![
        (
            1,
            Some(fake_k8s::pod_failed_exit(3)),
            "exited with code 3",
            false,
        ),
        (2, Some(fake_k8s::pod_oom_killed()), "OOMKilled", false),
        (
            3,
            Some(fake_k8s::pod_image_pull_backoff()),
            "ImagePullBackOff",
            true,
        ),
        (
            4,
            Some(fake_k8s::pod_unschedulable()),
            "Unschedulable",
            true,
        ),
        (
            5,
            Some(fake_k8s::pod_deadline_exceeded()),
            "DeadlineExceeded",
            false,
        ),
        (6, None, "pending for more than 3s", true),
    ];
    let mut started = Vec::new();
    for (issue, status, reason, stopped) in cases {
        let delivery = c.label_issue(issue, "run:intake").await;
        let (run, _, pod) = c.launched(&delivery).await;
        assert_eq!(
            run.namespace.as_deref(),
            Some("codex-k8s-runs"),
            "code-only runs share the runs namespace"
        );
        if let Some(status) = status {
            c.set_pod(&run, &pod, status).await;
        }
        started.push((delivery, run, reason, stopped));
    }
    for (delivery, run, reason, stopped) in started {
        let failed = c.run_in(&delivery, "failed").await;
        let why = failed.failure_reason.unwrap_or_default();
        assert!(why.contains(reason), "{reason:?} in {why:?}");
        assert!(c.has_event(run.id, "run.failed").await);
        if stopped {
            c.job_gone(&run).await;
            assert!(c.has_event(run.id, "k8s.job.deleted").await);
        } else {
            let job = run.job_name.as_deref().unwrap();
            assert!(
                c.fake.get("jobs", Some("codex-k8s-runs"), job).is_some(),
                "{reason}: the ended Job stays for its TTL"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_past_its_deadline_is_stopped_even_if_the_cluster_does_not() {
    let c = Cluster::start(&[("CODEXK8S_RUN_DEADLINE", "2s")]).await;
    let delivery = c.label_issue(21, "run:intake").await;
    let (run, job, pod) = c.launched(&delivery).await;
    assert_eq!(job["spec"]["activeDeadlineSeconds"], 2 + 120);
    c.set_pod(&run, &pod, fake_k8s::pod_running()).await;
    c.run_in(&delivery, "running").await;
    let failed = c.run_in(&delivery, "failed").await;
    assert!(
        failed
            .failure_reason
            .unwrap()
            .contains("exceeded its deadline of 2s")
    );
    c.job_gone(&run).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_launch_adopts_its_own_job_and_a_foreign_job_fails_the_run() {
    // No worker yet: the runs wait, pending, while the test prepares the cluster.
    let c = Cluster::start_roles(json!({}), &[], &[Role::Gateway, Role::Control]).await;
    let ours = c.label_issue(7, "run:intake").await;
    let theirs = c.label_issue(8, "run:intake").await;
    let ours_run = c.run_in(&ours, "pending").await;
    let theirs_run = c.run_in(&theirs, "pending").await;
    // What a worker killed between creating the Job and recording it leaves behind: the run
    // starting with its names recorded, the objects created, no audit of them ...
    let name = format!("codex-run-{}-a1", ours_run.id.simple());
    let own_labels = json!({
        "app.kubernetes.io/managed-by": "codex-k8s",
        "codex-k8s.io/project": "hello",
        "codex-k8s.io/run": ours_run.id.to_string(),
        "codex-k8s.io/attempt": "1",
    });
    let seeded_token = "token-of-the-crashed-launch";
    c.fake.insert(
        "secrets",
        json!({ "metadata": { "name": name, "namespace": "codex-k8s-runs", "labels": own_labels },
        "data": { "run-token": base64_encode(seeded_token.as_bytes()) } }),
    );
    c.fake.insert("jobs", json!({ "metadata": { "name": name, "namespace": "codex-k8s-runs", "labels": own_labels }, "spec": { "template": { "metadata": { "labels": own_labels }, "spec": { "containers": [] } } } }));
    // ... and a Job of the other run's name that belongs to a third run.
    let stranger = Uuid::new_v4();
    let foreign_name = format!("codex-run-{}-a1", theirs_run.id.simple());
    c.fake.insert("jobs", json!({ "metadata": { "name": foreign_name, "namespace": "codex-k8s-runs", "labels": {
        "app.kubernetes.io/managed-by": "codex-k8s", "codex-k8s.io/run": stranger.to_string(), "codex-k8s.io/attempt": "1" } },
        "spec": { "template": { "spec": { "containers": [] } } } }));

    sqlx::query(include_str!("support/sql/mark_run_starting.sql"))
        .bind(ours_run.id)
        .bind("codex-k8s-runs")
        .bind(&name)
        .execute(&c.db.pool)
        .await
        .unwrap();
    let _worker = c.start_worker().await;
    eventually(WAIT, "the launch to adopt the existing Job", || async {
        c.event_types(ours_run.id)
            .await
            .contains(&"k8s.job.adopted".to_owned())
            .then_some(())
    })
    .await;
    let jobs = c.fake.list("jobs", Some("codex-k8s-runs"));
    assert_eq!(
        jobs.iter()
            .filter(|j| j["metadata"]["name"] == name.as_str())
            .count(),
        1,
        "exactly one Job"
    );
    assert!(
        !c.event_types(ours_run.id)
            .await
            .contains(&"k8s.job.created".to_owned())
    );
    assert_eq!(c.run(&ours).await.unwrap().status, "starting");
    assert_eq!(
        c.token_hash(ours_run.id).await,
        Some(sha256(seeded_token)),
        "the adopted Secret's token is the one whose hash is kept"
    );

    let failed = c.run_in(&theirs, "failed").await;
    let why = failed.failure_reason.unwrap();
    assert!(why.contains(&format!("belongs to run {stranger}")), "{why}");
    assert!(
        c.fake
            .get("jobs", Some("codex-k8s-runs"), &foreign_name)
            .is_some_and(|j| labels(&j)["codex-k8s.io/run"] == stranger.to_string().as_str()),
        "the other run's Job is left alone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_converges_after_the_watch_stream_drops() {
    let c = Cluster::start(&[]).await;
    let delivery = c.label_issue(3, "run:intake").await;
    let (run, _, pod) = c.launched(&delivery).await;
    c.set_pod(&run, &pod, fake_k8s::pod_running()).await;
    c.run_in(&delivery, "running").await;
    c.fake.drop_watches();
    c.set_pod(&run, &pod, fake_k8s::pod_succeeded()).await;
    c.fake.drop_watches();
    c.run_in(&delivery, "succeeded").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_without_free_slots_does_not_delay_another_project() {
    const OTHER_REPO: i64 = 999_001;
    let c = Cluster::start(&[("CODEXK8S_SLOTS_PER_PROJECT", "2")]).await;
    let other = seed_project(&c.db, "other", json!({}), OTHER_REPO).await;
    seed_member(&c.db, other).await;
    let mut busy = Vec::new();
    for issue in 1..=12 {
        busy.push(c.label_issue(issue, "run:intake").await);
    }
    eventually(
        WAIT,
        "two runs of the busy project to start and ten to wait",
        || async {
            let mut starting = 0;
            let mut waiting = 0;
            for d in &busy {
                match c.run(d).await.map(|r| (r.status, r.wait_reason)) {
                    Some((s, _)) if s == "starting" => starting += 1,
                    Some((s, Some(w))) if s == "waiting" && w == "backpressure" => waiting += 1,
                    _ => {}
                }
            }
            (starting == 2 && waiting == 10).then_some(())
        },
    )
    .await;
    // The two slot holders run.
    for d in &busy {
        if c.run(d).await.is_some_and(|r| r.status == "starting") {
            let (run, _, pod) = c.launched(d).await;
            c.set_pod(&run, &pod, fake_k8s::pod_running()).await;
        }
    }
    eventually(WAIT, "two runs of the busy project to run", || async {
        let mut running = 0;
        for d in &busy {
            if c.run(d).await.is_some_and(|r| r.status == "running") {
                running += 1;
            }
        }
        (running == 2).then_some(())
    })
    .await;
    let other_delivery = c.label_issue_of(OTHER_REPO, 1, "run:intake").await;
    let started = std::time::Instant::now();
    let (other_run, _, _) = c.launched(&other_delivery).await;
    assert_eq!(other_run.status, "starting");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );

    // A finished run hands its slot to the oldest waiting run of its project.
    let mut holder = None;
    for d in &busy {
        if c.run(d).await.is_some_and(|r| r.status == "running") {
            holder = Some(d.clone());
            break;
        }
    }
    let holder = holder.expect("a running run");
    let (run, _, pod) = c.launched(&holder).await;
    c.set_pod(&run, &pod, fake_k8s::pod_succeeded()).await;
    c.run_in(&holder, "succeeded").await;
    eventually(WAIT, "a waiting run to take the freed slot", || async {
        let (mut running, mut starting, mut waiting) = (0, 0, 0);
        for d in &busy {
            match c.run(d).await?.status.as_str() {
                "running" => running += 1,
                "starting" => starting += 1,
                "waiting" => waiting += 1,
                _ => {}
            }
        }
        (running == 1 && starting == 1 && waiting == 9).then_some(())
    })
    .await;
}

async fn seed_member(db: &TestDb, project: Uuid) {
    let user: Uuid = sqlx::query_scalar(include_str!("support/sql/user_by_login.sql"))
        .bind("Codertocat")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    support::seed::member(db, project, user, "read_write").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_issue_cancels_the_run_and_deletes_its_job() {
    let c = Cluster::start(&[]).await;
    let delivery = c.label_issue(5, "run:intake").await;
    let (run, _, pod) = c.launched(&delivery).await;
    c.set_pod(&run, &pod, fake_k8s::pod_running()).await;
    c.run_in(&delivery, "running").await;
    let mut closed = labeled_fixture();
    closed["action"] = json!("closed");
    closed.as_object_mut().unwrap().remove("label");
    closed["issue"]["state"] = json!("closed");
    closed["issue"]["number"] = json!(5);
    closed["repository"]["id"] = json!(REPO_ID);
    let reply = c
        .app
        .post_webhook(
            "issues",
            &Uuid::new_v4().to_string(),
            &serde_json::to_vec(&closed).unwrap(),
        )
        .await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    c.run_in(&delivery, "canceled").await;
    c.job_gone(&run).await;
    assert!(c.has_event(run.id, "k8s.job.deleted").await);

    // A launch that was still creating the workload when the cancel came leaves a stray Job and
    // pod behind: the watch notices the pod of an ended run and removes its Job.
    let name = run.job_name.clone().unwrap();
    let labels = json!({
        "app.kubernetes.io/managed-by": "codex-k8s",
        "codex-k8s.io/project": "hello",
        "codex-k8s.io/run": run.id.to_string(),
        "codex-k8s.io/attempt": "1",
    });
    c.fake.insert(
        "jobs",
        json!({ "metadata": { "name": name, "namespace": "codex-k8s-runs", "labels": labels },
        "spec": { "template": { "spec": { "containers": [] } } } }),
    );
    let mut pod_labels = labels.clone();
    pod_labels["batch.kubernetes.io/job-name"] = json!(name);
    c.fake.insert("pods", json!({ "metadata": { "name": format!("{name}-stray"), "namespace": "codex-k8s-runs", "labels": pod_labels },
        "spec": { "containers": [] }, "status": { "phase": "Pending" } }));
    c.job_gone(&run).await;
    assert_eq!(c.run(&delivery).await.unwrap().status, "canceled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_deletes_only_expired_managed_namespaces_without_active_runs() {
    let past = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let managed = |name: &str, expires: &str| {
        json!({ "metadata": { "name": name,
            "labels": { "app.kubernetes.io/managed-by": "codex-k8s", "codex-k8s.io/project": "hello" },
            "annotations": { "codex-k8s.io/expires-at": expires } } })
    };
    let c = Cluster::start_roles(json!({}), &[], &[Role::Gateway, Role::Control]).await;
    c.fake
        .insert("namespaces", managed("codex-hello-i100", &past));
    c.fake
        .insert("namespaces", managed("codex-hello-i101", &future));
    c.fake
        .insert("namespaces", managed("codex-hello-i102", &past));
    c.fake.insert(
        "namespaces",
        json!({ "metadata": { "name": "someone-elses", "annotations": { "codex-k8s.io/expires-at": past } } }),
    );
    // Issue 102's run is active (waiting for a human) in its expired namespace.
    let delivery = c.label_issue(102, "run:dev").await;
    let run = c.run_in(&delivery, "pending").await;
    sqlx::query(include_str!("support/sql/mark_run_waiting_for_input.sql"))
        .bind(run.id)
        .bind("codex-hello-i102")
        .execute(&c.db.pool)
        .await
        .unwrap();

    let _worker = c.start_worker().await;
    eventually(
        WAIT,
        "the expired unused namespace to be deleted",
        || async {
            c.fake
                .get("namespaces", None, "codex-hello-i100")
                .is_none()
                .then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await; // a few more cleanup rounds
    assert!(
        c.fake.get("namespaces", None, "codex-hello-i101").is_some(),
        "not expired"
    );
    assert!(
        c.fake.get("namespaces", None, "someone-elses").is_some(),
        "not managed by codex-k8s"
    );
    assert!(
        c.fake.get("namespaces", None, "codex-hello-i102").is_some(),
        "in use by an active run"
    );
    assert_eq!(c.run(&delivery).await.unwrap().status, "waiting");
    let audited: Vec<String> = sqlx::query_scalar(include_str!("support/sql/flow_event_types.sql"))
        .bind("namespace-cleanup:codex-hello-i100")
        .fetch_all(&c.db.pool)
        .await
        .unwrap();
    assert_eq!(audited, vec!["k8s.namespace.deleted"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_pod_is_relaunched_as_a_new_attempt_until_the_limit() {
    let c = Cluster::start(&[("CODEXK8S_MAX_RELAUNCHES", "1")]).await;
    let delivery = c.label_issue(9, "run:intake").await;
    let (first, _, pod) = c.launched(&delivery).await;
    c.set_pod(&first, &pod, fake_k8s::pod_running()).await;
    c.run_in(&delivery, "running").await;
    c.fake.delete_object("pods", Some("codex-k8s-runs"), &pod);
    let (second, _, pod) = eventually(WAIT, "attempt 2 to be launched", || async {
        let launched = c.launched(&delivery).await;
        (launched.0.attempt == 2).then_some(launched)
    })
    .await;
    assert_ne!(
        second.job_name, first.job_name,
        "a new attempt gets a new Job"
    );
    assert!(
        c.fake
            .get(
                "jobs",
                Some("codex-k8s-runs"),
                first.job_name.as_deref().unwrap()
            )
            .is_none(),
        "the lost attempt's Job is gone"
    );
    assert!(
        c.event_types(first.id)
            .await
            .contains(&"run.relaunched".to_owned())
    );
    c.fake.delete_object("pods", Some("codex-k8s-runs"), &pod);
    let failed = c.run_in(&delivery, "failed").await;
    assert!(failed.failure_reason.unwrap().contains("no relaunch left"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resync_relaunches_a_running_run_whose_job_no_longer_exists() {
    let c = Cluster::start(&[]).await;
    let delivery = c.label_issue(11, "run:intake").await;
    let (run, _, pod) = c.launched(&delivery).await;
    c.set_pod(&run, &pod, fake_k8s::pod_running()).await;
    c.run_in(&delivery, "running").await;
    // The database now names a Job the cluster does not have, with no pod event to tell: only the
    // resync's list of managed Jobs can notice.
    sqlx::query(include_str!("support/sql/set_run_job_name.sql"))
        .bind(run.id)
        .bind("codex-run-vanished-a1")
        .execute(&c.db.pool)
        .await
        .unwrap();
    let relaunched = eventually(WAIT, "the resync to relaunch the run", || async {
        c.run(&delivery).await.filter(|r| r.attempt == 2)
    })
    .await;
    assert_eq!(relaunched.status, "starting");
    let events = c.events_of(run.id).await;
    let (_, why) = events
        .iter()
        .find(|(t, _)| t == "run.relaunched")
        .expect("run.relaunched audited");
    assert!(
        why["reason"]
            .as_str()
            .unwrap()
            .contains("codex-run-vanished-a1 no longer exists"),
        "{why}"
    );
    c.launched(&delivery).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_run_of_the_issue_reuses_its_namespace_and_extends_its_expiry() {
    let c = Cluster::start(&[]).await;
    let first = c.label_issue(77, "run:dev").await;
    let (run, _, pod) = c.launched(&first).await;
    let ns = run.namespace.clone().unwrap();
    let expiry = |c: &Cluster| {
        let namespace = c.fake.get("namespaces", None, &ns).expect("namespace");
        chrono::DateTime::parse_from_rfc3339(
            namespace["metadata"]["annotations"]["codex-k8s.io/expires-at"]
                .as_str()
                .unwrap(),
        )
        .unwrap()
    };
    let first_expiry = expiry(&c);
    c.set_pod(&run, &pod, fake_k8s::pod_succeeded()).await;
    c.run_in(&first, "succeeded").await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // expiry timestamps have second precision

    let second = c.label_issue(77, "run:qa").await;
    let (next, _, _) = c.launched(&second).await;
    assert_eq!(
        next.namespace.as_deref(),
        Some(ns.as_str()),
        "the issue's namespace is reused"
    );
    assert!(c.has_event(next.id, "k8s.namespace.adopted").await);
    assert!(c.has_event(next.id, "k8s.role.adopted").await);
    assert!(!c.has_event(next.id, "k8s.namespace.created").await);
    assert!(expiry(&c) > first_expiry, "the expiry moved later");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_pod_is_relaunched_not_failed() {
    let c = Cluster::start(&[]).await;
    let delivery = c.label_issue(31, "run:intake").await;
    let (first, _, pod) = c.launched(&delivery).await;
    c.set_pod(&first, &pod, fake_k8s::pod_running()).await;
    c.run_in(&delivery, "running").await;
    // What the kubelet reports for a pod evicted by the taint manager before it is deleted.
    let mut evicted = fake_k8s::pod_failed_exit(137);
    evicted["conditions"].as_array_mut().unwrap().push(
        json!({ "type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
            "lastTransitionTime": chrono::Utc::now().to_rfc3339() }),
    );
    c.set_pod(&first, &pod, evicted).await;
    let (second, _, _) = eventually(WAIT, "attempt 2 to be launched", || async {
        let launched = c.launched(&delivery).await;
        (launched.0.attempt == 2).then_some(launched)
    })
    .await;
    assert_eq!(second.status, "starting");
    let events = c.events_of(first.id).await;
    let (_, relaunch) = events
        .iter()
        .find(|(t, _)| t == "run.relaunched")
        .expect("relaunched");
    assert!(
        relaunch["reason"].as_str().unwrap().contains("disrupted"),
        "{relaunch}"
    );
    assert!(!c.has_event(first.id, "run.failed").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_never_gets_a_pod_fails_its_run() {
    // The Job exists (a quota or an admission policy keeps its pod from being created): no pod
    // event ever comes, so only the resync can tell.
    let c = Cluster::start_roles(
        json!({}),
        &[("CODEXK8S_RUN_PENDING_TIMEOUT", "1s")],
        &[Role::Gateway, Role::Control],
    )
    .await;
    let delivery = c.label_issue(41, "run:intake").await;
    let run = c.run_in(&delivery, "pending").await;
    let name = format!("codex-run-{}-a1", run.id.simple());
    let labels = json!({
        "app.kubernetes.io/managed-by": "codex-k8s",
        "codex-k8s.io/project": "hello",
        "codex-k8s.io/run": run.id.to_string(),
        "codex-k8s.io/attempt": "1",
    });
    c.fake.insert("jobs", json!({ "metadata": { "name": name, "namespace": "codex-k8s-runs", "labels": labels },
        "spec": { "template": { "metadata": { "labels": labels }, "spec": { "containers": [] } } } }));
    let _worker = c.start_worker().await;
    let failed = c.run_in(&delivery, "failed").await;
    let why = failed.failure_reason.clone().unwrap();
    assert!(
        why.contains(&format!(
            "no pod of Job codex-k8s-runs/{name} appeared within 2s"
        )),
        "{why}"
    );
    c.job_gone(&failed).await;
}
