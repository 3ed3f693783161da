//! The `process_event` handler: each stored delivery → the label policy's decision → its effects
//! (a pending run and its `launch_run` job, a comment job, cancellations), the audit trail and the
//! recorded outcome, in one transaction fenced by the jobs' leases. Deliveries that arrive together
//! share that transaction (one commit for many). Re-running it for an event already processed
//! changes nothing.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use super::events;
use super::store::{self, NewRun};
use crate::config::AgentDefaults;
use crate::domain::labels::{RuntimeMode, Stage};
use crate::domain::policy::{
    self, Decision, PolicyContext, ProjectPolicy, ProjectRole, RunKind, RunPlan, Sender,
    SenderAccess, Target,
};
use crate::domain::runs::RunStatus;
use crate::queue::{self, BatchResults, JobContext, JobError, NewJob};
use crate::store::audit::{self, Actor, FlowEvent};
use crate::store::map_sqlx_error;
use crate::worker::{
    CANCEL_RUN, GITHUB_ACKNOWLEDGE, GITHUB_COMMENT, GITHUB_STATUS_COMMENT, LAUNCH_RUN,
};

/// What the handler needs besides the job.
pub struct ControlDeps {
    pub pool: PgPool,
    pub defaults: AgentDefaults,
}

#[derive(Deserialize)]
struct Payload {
    provider: String,
    delivery_id: String,
}

/// Project settings the control role reads (the rest belongs to other features).
#[derive(Deserialize, Default)]
struct ProjectSettings {
    #[serde(default)]
    runtime_overrides: std::collections::HashMap<String, String>,
    learning_mode_default: Option<bool>,
    model: Option<String>,
    reasoning: Option<String>,
}

fn target_parts(target: Target) -> (&'static str, i32) {
    match target {
        Target::Issue(n) => ("issue", i32::try_from(n).unwrap_or(i32::MAX)),
        Target::PullRequest(n) => ("pull_request", i32::try_from(n).unwrap_or(i32::MAX)),
    }
}

fn access_of(user: Option<&store::UserAccess>) -> SenderAccess {
    match user {
        None => SenderAccess::Unknown,
        Some(u) if u.is_platform_owner => SenderAccess::PlatformOwner,
        Some(u) if u.is_platform_admin => SenderAccess::PlatformAdmin,
        Some(u) => match u.member_role.as_deref() {
            Some("admin") => SenderAccess::Member(ProjectRole::Admin),
            Some("read_write") => SenderAccess::Member(ProjectRole::ReadWrite),
            Some("read") => SenderAccess::Member(ProjectRole::Read),
            _ => SenderAccess::NotMember,
        },
    }
}

/// The outcome recorded on the webhook event: (outcome, reason).
type Outcome = (&'static str, Option<String>);

/// Processes attempts of `process_event` that arrive together in one transaction. When anything
/// fails that is not one job's own problem, each attempt is processed alone, so one bad event never
/// holds its neighbours back.
pub async fn handle_batch(jobs: Vec<JobContext>, deps: Arc<ControlDeps>) -> BatchResults {
    if jobs.len() > 1 {
        match process(&jobs, &deps).await {
            Ok(results) => return results,
            Err(e) => {
                tracing::warn!(error = %e, jobs = jobs.len(), "processing events together failed; processing them one by one");
            }
        }
    }
    let mut results = Vec::with_capacity(jobs.len());
    for job in &jobs {
        let result = match process(std::slice::from_ref(job), &deps).await {
            Ok(mut own) => own.pop().unwrap_or(Ok(())),
            Err(e) => Err(e),
        };
        results.push(result);
    }
    results
}

/// Reads repeated within one transaction, made once.
#[derive(Default)]
struct Lookups {
    repositories: HashMap<i64, Option<store::ConnectedRepository>>,
    users: HashMap<(String, Uuid), Option<store::UserAccess>>,
}

impl Lookups {
    async fn repository(
        &mut self,
        tx: &mut sqlx::PgConnection,
        provider: &str,
        external_id: i64,
    ) -> Result<Option<store::ConnectedRepository>, JobError> {
        if let Some(found) = self.repositories.get(&external_id) {
            return Ok(found.clone());
        }
        let found = store::find_repository(tx, provider, external_id).await?;
        self.repositories.insert(external_id, found.clone());
        Ok(found)
    }

    async fn user(
        &mut self,
        tx: &mut sqlx::PgConnection,
        login: &str,
        project_id: Uuid,
    ) -> Result<Option<store::UserAccess>, JobError> {
        let key = (login.to_owned(), project_id);
        if let Some(found) = self.users.get(&key) {
            return Ok(found.clone());
        }
        let found = store::user_access(tx, login, project_id).await?;
        self.users.insert(key, found.clone());
        Ok(found)
    }
}

/// One transaction for `jobs`, fenced by their leases. A problem of one job alone (a malformed
/// payload, a lost lease, an unknown delivery, an unparsable event) is that job's result; any other
/// error is returned and nothing is committed.
async fn process(jobs: &[JobContext], deps: &ControlDeps) -> Result<BatchResults, JobError> {
    let mut results: BatchResults = Vec::with_capacity(jobs.len());
    let mut wanted: Vec<Option<Payload>> = Vec::with_capacity(jobs.len());
    for job in jobs {
        match job.parse_payload::<Payload>() {
            Ok(payload) => {
                results.push(Ok(()));
                wanted.push(Some(payload));
            }
            Err(e) => {
                results.push(Err(e));
                wanted.push(None);
            }
        }
    }
    let mut tx = deps.pool.begin().await.map_err(map_sqlx_error)?;
    let held = queue::lock_leases(&mut tx, jobs).await?;
    for (i, job) in jobs.iter().enumerate() {
        if !held[i] && wanted[i].is_some() {
            results[i] = Err(job.lease_lost());
            wanted[i] = None;
        }
    }
    let keys: Vec<(&str, &str)> = wanted
        .iter()
        .flatten()
        .map(|p| (p.provider.as_str(), p.delivery_id.as_str()))
        .collect();
    let stored = store::lock_events(&mut tx, &keys).await?;
    let by_key: HashMap<(&str, &str), &store::StoredEvent> = stored
        .iter()
        .map(|e| ((e.provider.as_str(), e.delivery_id.as_str()), e))
        .collect();
    let mut lookups = Lookups::default();
    let mut done: HashMap<i64, Outcome> = HashMap::new();
    let mut audits = Vec::new();
    for (i, payload) in wanted.iter().enumerate() {
        let Some(payload) = payload else { continue };
        let Some(event) = by_key.get(&(payload.provider.as_str(), payload.delivery_id.as_str()))
        else {
            results[i] = Err(JobError::permanent(format!(
                "no stored {} delivery {}",
                payload.provider, payload.delivery_id
            )));
            continue;
        };
        if event.processing_state == "processed" || done.contains_key(&event.id) {
            continue;
        }
        let parsed = match events::parse(&event.event_name, &event.payload) {
            Ok(parsed) => parsed,
            Err(e) => {
                results[i] = Err(JobError::permanent(e));
                continue;
            }
        };
        let outcome = decide_and_carry(&mut tx, event, &parsed, deps, &mut lookups).await?;
        audits.push(FlowEvent {
            correlation_id: event.delivery_id.as_str(),
            run_id: None,
            actor: Actor::System,
            event_type: "webhook.processed",
            payload: json!({
                "webhook_event_id": event.id,
                "event": event.event_name,
                "outcome": outcome.0,
                "reason": outcome.1,
            }),
        });
        done.insert(event.id, outcome);
    }
    audit::append_many(&mut tx, &audits).await?;
    let outcomes: Vec<(i64, &str, Option<&str>)> = done
        .iter()
        .map(|(id, (outcome, reason))| (*id, *outcome, reason.as_deref()))
        .collect();
    store::record_outcomes(&mut tx, &outcomes).await?;
    tx.commit().await.map_err(map_sqlx_error)?;
    Ok(results)
}

/// Applies the label policy to one parsed event and carries its decision out in `tx`.
async fn decide_and_carry(
    tx: &mut sqlx::PgConnection,
    event: &store::StoredEvent,
    parsed: &events::ParsedEvent,
    deps: &ControlDeps,
    lookups: &mut Lookups,
) -> Result<Outcome, JobError> {
    let Some(policy_event) = &parsed.policy_event else {
        return Ok(("ignored", Some("not_a_trigger".to_owned())));
    };
    let repository = match parsed.repository_external_id {
        Some(id) => lookups.repository(tx, &event.provider, id).await?,
        None => None,
    };
    let user = match (&repository, &parsed.sender_login) {
        (Some(repo), Some(login)) => lookups.user(tx, login, repo.project_id).await?,
        _ => None,
    };
    let settings: ProjectSettings = repository
        .as_ref()
        .and_then(|r| serde_json::from_value(r.project_settings.clone()).ok())
        .unwrap_or_default();
    let context = PolicyContext {
        repository_connected: repository.is_some(),
        sender: Sender {
            login: parsed.sender_login.clone().unwrap_or_default(),
            is_human: parsed.sender_is_user,
            access: access_of(user.as_ref()),
        },
        project: ProjectPolicy {
            runtime_overrides: overrides(&settings),
        },
    };
    let decision = policy::decide(policy_event, &context);
    let sender = parsed.sender_login.clone().unwrap_or_default();
    match (decision, repository) {
        (Decision::Ignore(reason), _) => Ok(("ignored", Some(reason.code().to_owned()))),
        (decision, Some(repo)) => {
            let carried = Carry {
                tx,
                correlation: &event.delivery_id,
                sender: &sender,
                repo: &repo,
            };
            carried
                .out(decision, &settings, user.as_ref(), &deps.defaults)
                .await
        }
        (_, None) => Ok(("ignored", Some("repository_not_connected".to_owned()))),
    }
}

fn overrides(settings: &ProjectSettings) -> std::collections::HashMap<Stage, RuntimeMode> {
    settings
        .runtime_overrides
        .iter()
        .filter_map(|(stage, mode)| Some((Stage::by_name(stage)?, RuntimeMode::parse(mode)?)))
        .collect()
}

/// Carries a decision out inside the processing transaction.
struct Carry<'a> {
    tx: &'a mut sqlx::PgConnection,
    correlation: &'a str,
    sender: &'a str,
    repo: &'a store::ConnectedRepository,
}

impl Carry<'_> {
    /// Audits an effect of the sender's action, correlated with the delivery.
    async fn audit(
        &mut self,
        run_id: Option<Uuid>,
        event_type: &str,
        payload: serde_json::Value,
    ) -> Result<(), JobError> {
        let event = FlowEvent {
            correlation_id: self.correlation,
            run_id,
            actor: Actor::Human(self.sender.to_owned()),
            event_type,
            payload,
        };
        Ok(audit::append(self.tx, event).await?)
    }

    async fn out(
        mut self,
        decision: Decision,
        settings: &ProjectSettings,
        user: Option<&store::UserAccess>,
        defaults: &AgentDefaults,
    ) -> Result<Outcome, JobError> {
        match decision {
            Decision::Start(plan) => {
                let learning = user
                    .and_then(|u| u.learning_mode_override)
                    .or(settings.learning_mode_default)
                    .unwrap_or(defaults.learning_mode);
                let model = plan
                    .model
                    .clone()
                    .or_else(|| settings.model.clone())
                    .unwrap_or_else(|| defaults.model.clone());
                let reasoning = plan
                    .reasoning
                    .map(|r| r.key().to_owned())
                    .or_else(|| settings.reasoning.clone())
                    .unwrap_or_else(|| defaults.reasoning.clone());
                self.start(&plan, &model, &reasoning, learning).await
            }
            Decision::Refuse {
                target,
                kind,
                comment,
                add_need_input,
            } => {
                let (target_kind, number) = target_parts(target);
                let labels: Vec<&str> = if add_need_input {
                    vec![crate::domain::labels::NEED_INPUT]
                } else {
                    vec![]
                };
                let job = NewJob::new(json!({
                    "repository_id": self.repo.repository_id,
                    "target_kind": target_kind,
                    "target_number": number,
                    "body": comment,
                    "add_labels": labels,
                }))
                .correlation_id(
                    Uuid::parse_str(self.correlation).unwrap_or_else(|_| Uuid::now_v7()),
                );
                queue::enqueue(&mut *self.tx, &GITHUB_COMMENT, job).await?;
                self.audit(None, "policy.refused", json!({ "reason": kind.code(), "target_kind": target_kind, "target_number": number, "comment": comment })).await?;
                Ok(("refused", Some(kind.code().to_owned())))
            }
            Decision::CancelActiveRuns { target } => {
                let n = self
                    .cancel(target, None, "the issue or pull request was closed")
                    .await?;
                Ok(("canceled", Some(format!("{n} active run(s)"))))
            }
            Decision::EndDiscussion { target } => {
                let n = self
                    .cancel(target, Some("discussion"), "mode:discussion was removed")
                    .await?;
                Ok(("discussion_ended", Some(format!("{n} active run(s)"))))
            }
            Decision::Ignore(reason) => Ok(("ignored", Some(reason.code().to_owned()))),
        }
    }

    async fn start(
        &mut self,
        plan: &RunPlan,
        model: &str,
        reasoning: &str,
        learning: bool,
    ) -> Result<Outcome, JobError> {
        let (target_kind, number) = target_parts(plan.target);
        let (trigger_kind, stage, revise) = match plan.kind {
            RunKind::Stage { stage, revise } => ("stage", Some(stage.name()), revise),
            RunKind::Discussion => ("discussion", None, false),
            RunKind::Reviewer => ("reviewer", None, false),
        };
        let dedupe_key = plan.kind.dedupe_key();
        let run = NewRun {
            id: Uuid::now_v7(),
            project_id: self.repo.project_id,
            repository_id: self.repo.repository_id,
            agent_key: plan.role.key(),
            trigger_label: &plan.trigger_label,
            trigger_kind,
            stage,
            revise,
            target_kind,
            target_number: number,
            dedupe_key: &dedupe_key,
            runtime_mode: plan.mode.key(),
            model,
            reasoning,
            learning_mode: learning,
            payload: json!({ "sender": self.sender }),
            correlation_id: self.correlation,
        };
        let Some(run_id) = store::insert_pending_run(self.tx, &run).await? else {
            self.audit(
                None,
                "run.already_active",
                json!({ "target_kind": target_kind, "target_number": number, "slot": dedupe_key }),
            )
            .await?;
            return Ok(("ignored", Some("run_already_active".to_owned())));
        };
        let job = crate::worker::launch_job(run_id, 1, self.correlation);
        queue::enqueue(&mut *self.tx, &LAUNCH_RUN, job).await?;
        // Tell the people on the issue that the label was seen.
        let ack = NewJob::new(json!({
            "repository_id": self.repo.repository_id,
            "target_number": number,
        }))
        .unique_key(format!("ack:{run_id}"))
        .correlation_id(Uuid::parse_str(self.correlation).unwrap_or(run_id));
        queue::enqueue(&mut *self.tx, &GITHUB_ACKNOWLEDGE, ack).await?;
        let status = crate::worker::status_comment_job(run_id, "pending", self.correlation);
        queue::enqueue(&mut *self.tx, &GITHUB_STATUS_COMMENT, status).await?;
        self.audit(
            Some(run_id),
            "run.created",
            json!({
                "agent": plan.role.key(),
                "trigger_label": plan.trigger_label,
                "stage": stage,
                "revise": revise,
                "runtime_mode": plan.mode.key(),
                "target_kind": target_kind,
                "target_number": number,
                "model": model,
                "reasoning": reasoning,
            }),
        )
        .await?;
        Ok(("run_created", Some(run_id.to_string())))
    }

    /// Cancels the target's active runs (of one slot, if given); returns how many.
    async fn cancel(
        &mut self,
        target: Target,
        slot: Option<&str>,
        why: &str,
    ) -> Result<usize, JobError> {
        let (target_kind, number) = target_parts(target);
        let runs =
            store::lock_active_runs(self.tx, self.repo.repository_id, target_kind, number, slot)
                .await?;
        for run in &runs {
            let from = RunStatus::parse(&run.status)
                .ok_or_else(|| JobError::permanent(format!("unknown run status {}", run.status)))?;
            if !from.can_become(RunStatus::Canceled) {
                continue;
            }
            crate::store::runs::set_status(self.tx, run.id, RunStatus::Canceled, Some(why)).await?;
            let status = crate::worker::status_comment_job(run.id, "canceled", self.correlation);
            queue::enqueue(&mut *self.tx, &GITHUB_STATUS_COMMENT, status).await?;
            // A pending run has no workload yet; its launch job finds it canceled and stops.
            if from != RunStatus::Pending {
                let job = NewJob::new(json!({ "run_id": run.id })).unique_key(run.id.to_string());
                queue::enqueue(&mut *self.tx, &CANCEL_RUN, job).await?;
            }
            self.audit(
                Some(run.id),
                "run.canceled",
                json!({ "from": from.key(), "reason": why, "slot": run.dedupe_key }),
            )
            .await?;
        }
        Ok(runs.len())
    }
}
