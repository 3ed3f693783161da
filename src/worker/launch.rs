//! The `launch_run` handler: take a slot of the run's project (or wait for one), then create the
//! run's namespace (full-env), Secret and Job, idempotently: a retry adopts what a crashed attempt
//! created, and an object of the same name that belongs to something else fails the run.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::RuntimeDeps;
use super::runs::{self, audit, status_of};
use super::store::{self, RuntimeRun};
use crate::domain::runs::RunStatus;
use crate::domain::runtime::{
    AGENT_ACCOUNT, ClusterRuntime, EnsuredObject, NamespaceSpec, Resources, RunIdentity,
    RuntimeError, SecretValue, WorkloadSpec, issue_namespace,
};
use crate::queue::{self, JobContext, JobError};
use crate::store::map_sqlx_error;

/// How much later than the run deadline the Job's own `activeDeadlineSeconds` falls.
const CLUSTER_DEADLINE_MARGIN: std::time::Duration = std::time::Duration::from_secs(120);

/// The Secret key of the run token; only its SHA-256 is stored in the database.
const RUN_TOKEN_KEY: &str = "run-token";

/// Keys of the per-run Secret and the variables that read them.
const SECRET_ENV: [(&str, &str); 3] = [
    ("CODEXK8S_RUN_TOKEN", "run-token"),
    ("CODEXK8S_BOT_TOKEN", "bot-token"),
    ("CODEXK8S_MODEL_API_KEY", "model-api-key"),
];

pub async fn handle<R: ClusterRuntime>(
    ctx: JobContext,
    deps: Arc<RuntimeDeps<R>>,
) -> Result<(), JobError> {
    let super::RunJob { run_id } = ctx.parse_payload()?;
    let mut tx = deps.pool.begin().await.map_err(map_sqlx_error)?;
    ctx.lock_lease(&mut tx).await?;
    let Some(mut run) = store::lock_run(&mut tx, run_id).await? else {
        return Err(JobError::permanent(format!("run {run_id} does not exist")));
    };
    let waiting_for_slot = run.wait_reason.as_deref() == Some("backpressure");
    match status_of(&run)? {
        RunStatus::Pending => {}
        RunStatus::Waiting if waiting_for_slot => {}
        // A retry after a crash, or a relaunch: the names are decided, (re)create the objects.
        RunStatus::Starting => {}
        _ => return Ok(()),
    }
    let identity = RunIdentity {
        run_id,
        attempt: run.attempt,
        project: run.project_slug.clone(),
    };
    let namespace = match run.runtime_mode.as_str() {
        "full-env" => issue_namespace(
            &deps.config.namespace_prefix,
            &run.project_slug,
            i64::from(run.target_number),
        ),
        _ => deps.config.runs_namespace.clone(),
    };
    if status_of(&run)? != RunStatus::Starting {
        let slots =
            store::lock_project_slots(&mut tx, run.project_id, deps.config.slots_per_project)
                .await?;
        let holders = store::count_slot_holders(&mut tx, run.project_id).await?;
        if holders >= slots {
            if !waiting_for_slot {
                store::mark_waiting_for_slot(&mut tx, run_id).await?;
                queue::enqueue(
                    &mut *tx,
                    &super::GITHUB_STATUS_COMMENT,
                    super::status_comment_job(run_id, "waiting", &run.correlation_id),
                )
                .await?;
                run.status = RunStatus::Waiting.key().to_owned();
                audit(
                    &mut tx,
                    &run,
                    "run.waiting",
                    json!({ "reason": "backpressure", "slots": slots, "in_use": holders }),
                )
                .await?;
            }
            tx.commit().await.map_err(map_sqlx_error)?;
            return Ok(());
        }
        store::mark_starting(&mut tx, run_id, &namespace, &identity.workload_name()).await?;
        queue::enqueue(
            &mut *tx,
            &super::GITHUB_STATUS_COMMENT,
            super::status_comment_job(run_id, "starting", &run.correlation_id),
        )
        .await?;
        let from = run.status.clone();
        run.status = RunStatus::Starting.key().to_owned();
        audit(&mut tx, &run, "run.starting", json!({ "from": from, "attempt": run.attempt, "namespace": namespace, "job": identity.workload_name() })).await?;
    }
    run.namespace = Some(namespace.clone());
    run.job_name = Some(identity.workload_name());
    tx.commit().await.map_err(map_sqlx_error)?;

    match create_objects(&deps, &run, &identity, &namespace).await {
        Ok((effects, token_hash)) => {
            let mut tx = deps.pool.begin().await.map_err(map_sqlx_error)?;
            ctx.lock_lease(&mut tx).await?;
            if let Some(hash) = &token_hash {
                store::set_run_token_hash(&mut tx, run_id, run.attempt, hash).await?;
            }
            // Canceled or relaunched while the objects were being made: they are nobody's now.
            // (A run of this attempt that already ran, or even ended by itself, keeps them: its
            // pod can finish before this transaction, and whoever stopped it deleted them.)
            let still_wanted = match store::lock_run(&mut tx, run_id).await? {
                Some(now) => now.attempt == run.attempt && status_of(&now)? != RunStatus::Canceled,
                None => false,
            };
            for (event, payload) in effects {
                audit(&mut tx, &run, &event, payload).await?;
            }
            tx.commit().await.map_err(map_sqlx_error)?;
            if !still_wanted {
                runs::delete_workload(&deps, &run).await?;
            }
            Ok(())
        }
        Err(e) if e.is_transient() => Err(JobError::retryable(e.to_string())),
        Err(e) => {
            runs::end_run(
                &deps,
                run_id,
                Some(run.attempt),
                RunStatus::Failed,
                Some(&format!("the workload could not be created: {e}")),
                true,
            )
            .await?;
            Ok(())
        }
    }
}

/// Audit rows for what the launch made sure of: (event type, payload).
type Effects = Vec<(String, serde_json::Value)>;

fn effects_of(objects: Vec<EnsuredObject>, extra: &serde_json::Value) -> Effects {
    objects
        .into_iter()
        .map(|o| {
            let mut payload = json!({ "namespace": o.namespace, "name": o.name });
            if let (Some(p), Some(extra)) = (payload.as_object_mut(), extra.as_object()) {
                p.extend(extra.clone());
            }
            (o.event_type(), payload)
        })
        .collect()
}

/// Creates or adopts the run's objects; returns their audit rows and the SHA-256 of the run token
/// the Secret really holds.
async fn create_objects<R: ClusterRuntime>(
    deps: &RuntimeDeps<R>,
    run: &RuntimeRun,
    identity: &RunIdentity,
    namespace: &str,
) -> Result<(Effects, Option<Vec<u8>>), RuntimeError> {
    let mut effects = Effects::new();
    let full_env = run.runtime_mode == "full-env";
    if full_env {
        let ttl = deps.config.run_deadline + deps.config.namespace_ttl;
        let spec = NamespaceSpec {
            name: namespace.to_owned(),
            owner: identity.clone(),
            expires_at: Utc::now()
                + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX),
            quota_cpu: "8".into(),
            quota_memory: "16Gi".into(),
            quota_pods: 30,
            default_container: Resources {
                cpu_request: "100m".into(),
                memory_request: "128Mi".into(),
                cpu_limit: "1".into(),
                memory_limit: "1Gi".into(),
            },
        };
        let objects = deps.cluster.ensure_namespace(&spec).await?;
        effects.extend(effects_of(
            objects,
            &json!({ "expires_at": spec.expires_at.to_rfc3339() }),
        ));
    }
    let spec = workload_spec(deps, run, identity, namespace, full_env);
    let workload = deps.cluster.ensure_workload(&spec).await?;
    let token_hash = workload
        .secret_data
        .get(RUN_TOKEN_KEY)
        .map(|token| Sha256::digest(token.0.as_bytes()).to_vec());
    effects.extend(effects_of(
        workload.objects,
        &json!({
            "attempt": identity.attempt,
            "image": spec.image,
            "secret_keys": spec.secret_data.keys().collect::<Vec<_>>(),
        }),
    ));
    Ok((effects, token_hash))
}

fn workload_spec<R>(
    deps: &RuntimeDeps<R>,
    run: &RuntimeRun,
    identity: &RunIdentity,
    namespace: &str,
    full_env: bool,
) -> WorkloadSpec {
    let env = vec![
        ("CODEXK8S_RUN_ID".to_owned(), run.id.to_string()),
        ("CODEXK8S_RUN_ATTEMPT".to_owned(), run.attempt.to_string()),
        ("CODEXK8S_API_URL".to_owned(), deps.public_url.clone()),
        ("CODEXK8S_AGENT".to_owned(), run.agent_key.clone()),
        ("CODEXK8S_TARGET_KIND".to_owned(), run.target_kind.clone()),
        (
            "CODEXK8S_TARGET_NUMBER".to_owned(),
            run.target_number.to_string(),
        ),
        (
            "CODEXK8S_MODEL".to_owned(),
            run.model.clone().unwrap_or_default(),
        ),
        (
            "CODEXK8S_REASONING".to_owned(),
            run.reasoning_effort.clone().unwrap_or_default(),
        ),
        ("CODEXK8S_RUNTIME_MODE".to_owned(), run.runtime_mode.clone()),
    ];
    // The run token is random per attempt; the runner API that checks it (by hash) comes with the
    // runner. Bot token and model key stay empty until the GitHub and runner features fill them.
    let secret_data: BTreeMap<String, SecretValue> = SECRET_ENV
        .iter()
        .map(|(_, key)| {
            let value = match *key {
                RUN_TOKEN_KEY => hex::encode(rand::random::<[u8; 32]>()),
                _ => String::new(),
            };
            ((*key).to_owned(), SecretValue(value))
        })
        .collect();
    WorkloadSpec {
        identity: identity.clone(),
        namespace: namespace.to_owned(),
        service_account: full_env.then(|| AGENT_ACCOUNT.to_owned()),
        image: deps.config.runner_image.clone(),
        command: vec!["codex-k8s".into(), "runner".into()],
        env,
        secret_env: SECRET_ENV
            .iter()
            .map(|(var, key)| ((*var).to_owned(), (*key).to_owned()))
            .collect(),
        secret_data,
        resources: Resources::default(),
        // The cluster's deadline comes later than the worker's own, so the worker stops an overdue
        // run itself and records why, instead of the Job controller silently removing its pod.
        active_deadline: deps.config.run_deadline + CLUSTER_DEADLINE_MARGIN,
        ttl_after_finished: deps.config.job_ttl,
    }
}
