//! The label policy (SPEC §4) as one pure function: given what happened on GitHub and who did it,
//! decide whether an agent run starts, and if not, why. No I/O: the caller gathers the facts
//! (labels, sender's access) and carries out the decision.

use std::collections::HashMap;

use super::labels::{self, AgentRole, LabelMeaning, Reasoning, RuntimeMode, Stage};

/// A member's role in a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProjectRole {
    Read,
    ReadWrite,
    Admin,
}

/// What codex-k8s knows of the person who sent the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenderAccess {
    PlatformOwner,
    PlatformAdmin,
    Member(ProjectRole),
    /// A known user who is not a member of the repository's project.
    NotMember,
    /// No user with this GitHub login exists.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    pub login: String,
    /// `sender.type == "User"`; bots and organisations never trigger.
    pub is_human: bool,
    pub access: SenderAccess,
}

/// The issue or pull request an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    Issue(u64),
    PullRequest(u64),
}

/// A review's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewState {
    Approved,
    ChangesRequested,
    Commented,
}

/// The facts of one GitHub event, as the policy needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyEvent {
    /// `label` was added to `target`; `labels` are all labels on it now (including `label`);
    /// `issue_labels` are the labels of the linked issue when the target is a pull request.
    Labeled {
        target: Target,
        label: String,
        labels: Vec<String>,
        issue_labels: Vec<String>,
    },
    Unlabeled {
        target: Target,
        label: String,
    },
    Closed {
        target: Target,
    },
    ReviewSubmitted {
        pr: u64,
        state: ReviewState,
        pr_labels: Vec<String>,
        issue_labels: Vec<String>,
    },
}

/// Per-project settings the policy honours.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectPolicy {
    /// Runtime mode per stage, overriding the catalogue's default.
    pub runtime_overrides: HashMap<Stage, RuntimeMode>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyContext {
    pub repository_connected: bool,
    pub sender: Sender,
    pub project: ProjectPolicy,
}

/// What kind of run to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunKind {
    Stage { stage: Stage, revise: bool },
    Discussion,
    Reviewer,
}

impl RunKind {
    /// The key of the dedupe slot: at most one active run per (repository, target, this).
    pub fn dedupe_key(self) -> String {
        match self {
            Self::Stage { stage, .. } => stage.name().to_owned(),
            Self::Discussion => "discussion".to_owned(),
            Self::Reviewer => "reviewer".to_owned(),
        }
    }
}

/// A run the policy decided to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPlan {
    pub kind: RunKind,
    pub role: AgentRole,
    pub mode: RuntimeMode,
    pub target: Target,
    pub trigger_label: String,
    /// From an `[ai-model-…]` label; `None` means the project default.
    pub model: Option<String>,
    /// From an `[ai-reasoning-…]` label; `None` means the project default.
    pub reasoning: Option<Reasoning>,
}

/// Why an event starts nothing (recorded on the event and in the audit trail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IgnoreReason {
    NotATrigger,
    NeedReviewerOnIssue,
    RepositoryNotConnected,
    SenderNotHuman,
    SenderNotAllowed,
    SenderRoleReadNotPermitted,
    ReviewNotChangesRequested,
}

impl IgnoreReason {
    pub fn code(self) -> &'static str {
        match self {
            Self::NotATrigger => "not_a_trigger",
            Self::NeedReviewerOnIssue => "need_reviewer_on_issue",
            Self::RepositoryNotConnected => "repository_not_connected",
            Self::SenderNotHuman => "sender_not_human",
            Self::SenderNotAllowed => "sender_not_allowed",
            Self::SenderRoleReadNotPermitted => "sender_role_read_not_permitted",
            Self::ReviewNotChangesRequested => "review_not_changes_requested",
        }
    }
}

/// A trigger that cannot be honoured as it stands; a human is told why in a comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictKind {
    TriggerConflict,
    ModelConflict,
    ReasoningConflict,
    AmbiguousRevise,
}

impl ConflictKind {
    pub fn code(self) -> &'static str {
        match self {
            Self::TriggerConflict => "trigger_conflict",
            Self::ModelConflict => "model_conflict",
            Self::ReasoningConflict => "reasoning_conflict",
            Self::AmbiguousRevise => "ambiguous_revise",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Start(RunPlan),
    Ignore(IgnoreReason),
    /// No run; post `comment` on the target. `add_need_input` also puts `need:input` on it.
    Refuse {
        target: Target,
        kind: ConflictKind,
        comment: String,
        add_need_input: bool,
    },
    /// The issue or PR was closed: cancel its active runs and schedule namespace cleanup.
    CancelActiveRuns {
        target: Target,
    },
    /// `mode:discussion` was removed: end the discussion run.
    EndDiscussion {
        target: Target,
    },
}

/// Applies the label policy to one event.
pub fn decide(event: &PolicyEvent, ctx: &PolicyContext) -> Decision {
    // Closing needs no trigger rights: whoever may close an issue on GitHub may stop its agents.
    match event {
        PolicyEvent::Closed { target } => {
            return if ctx.repository_connected {
                Decision::CancelActiveRuns { target: *target }
            } else {
                Decision::Ignore(IgnoreReason::RepositoryNotConnected)
            };
        }
        PolicyEvent::Unlabeled { target, label } => {
            return match (labels::classify(label), ctx.repository_connected) {
                (LabelMeaning::Discussion, true) => Decision::EndDiscussion { target: *target },
                (LabelMeaning::Discussion, false) => {
                    Decision::Ignore(IgnoreReason::RepositoryNotConnected)
                }
                _ => Decision::Ignore(IgnoreReason::NotATrigger),
            };
        }
        PolicyEvent::Labeled { .. } | PolicyEvent::ReviewSubmitted { .. } => {}
    }
    // Decide first whether the event would trigger anything, so a bot moving `state:*` labels is
    // recorded as "not a trigger", not as a refused sender.
    let intent = match intent_of(event) {
        Ok(intent) => intent,
        Err(reason) => return Decision::Ignore(reason),
    };
    if !ctx.repository_connected {
        return Decision::Ignore(IgnoreReason::RepositoryNotConnected);
    }
    if let Some(reason) = sender_guard(&ctx.sender) {
        return Decision::Ignore(reason);
    }
    match intent {
        Intent::Label {
            target,
            label,
            labels,
            issue_labels,
        } => plan_from_label(target, label, labels, issue_labels, ctx),
        Intent::Revise {
            pr,
            pr_labels,
            issue_labels,
        } => plan_revise(pr, pr_labels, issue_labels, ctx),
    }
}

enum Intent<'a> {
    Label {
        target: Target,
        label: &'a str,
        labels: &'a [String],
        issue_labels: &'a [String],
    },
    Revise {
        pr: u64,
        pr_labels: &'a [String],
        issue_labels: &'a [String],
    },
}

fn intent_of(event: &PolicyEvent) -> Result<Intent<'_>, IgnoreReason> {
    match event {
        PolicyEvent::Labeled {
            target,
            label,
            labels,
            issue_labels,
        } => {
            match (labels::classify(label), target) {
                (LabelMeaning::Trigger { .. } | LabelMeaning::Discussion, _) => {}
                (LabelMeaning::NeedReviewer, Target::PullRequest(_)) => {}
                (LabelMeaning::NeedReviewer, Target::Issue(_)) => {
                    return Err(IgnoreReason::NeedReviewerOnIssue);
                }
                _ => return Err(IgnoreReason::NotATrigger),
            }
            Ok(Intent::Label {
                target: *target,
                label,
                labels,
                issue_labels,
            })
        }
        PolicyEvent::ReviewSubmitted {
            pr,
            state,
            pr_labels,
            issue_labels,
        } => {
            if *state != ReviewState::ChangesRequested {
                return Err(IgnoreReason::ReviewNotChangesRequested);
            }
            Ok(Intent::Revise {
                pr: *pr,
                pr_labels,
                issue_labels,
            })
        }
        PolicyEvent::Closed { .. } | PolicyEvent::Unlabeled { .. } => {
            Err(IgnoreReason::NotATrigger)
        }
    }
}

/// Who may trigger: a human known by login who is platform owner/admin or a writing member.
fn sender_guard(sender: &Sender) -> Option<IgnoreReason> {
    if !sender.is_human {
        return Some(IgnoreReason::SenderNotHuman);
    }
    match sender.access {
        SenderAccess::PlatformOwner | SenderAccess::PlatformAdmin => None,
        SenderAccess::Member(ProjectRole::ReadWrite | ProjectRole::Admin) => None,
        SenderAccess::Member(ProjectRole::Read) => Some(IgnoreReason::SenderRoleReadNotPermitted),
        SenderAccess::NotMember | SenderAccess::Unknown => Some(IgnoreReason::SenderNotAllowed),
    }
}

fn refuse(target: Target, kind: ConflictKind, comment: String) -> Decision {
    Decision::Refuse {
        target,
        kind,
        comment,
        add_need_input: false,
    }
}

fn plan_from_label(
    target: Target,
    label: &str,
    labels: &[String],
    issue_labels: &[String],
    ctx: &PolicyContext,
) -> Decision {
    let (kind, role, default_mode) = match labels::classify(label) {
        LabelMeaning::Trigger { stage, revise } => {
            let triggers: Vec<&String> = labels
                .iter()
                .filter(|l| matches!(labels::classify(l), LabelMeaning::Trigger { .. }))
                .collect();
            if triggers.len() > 1 {
                let names: Vec<&str> = triggers.iter().map(|l| l.as_str()).collect();
                return refuse(
                    target,
                    ConflictKind::TriggerConflict,
                    format!(
                        "codex-k8s started nothing: more than one `run:*` label is set ({}). Keep exactly one and add it again.",
                        names.join(", ")
                    ),
                );
            }
            let spec = stage.spec();
            (
                RunKind::Stage { stage, revise },
                spec.role,
                ctx.project
                    .runtime_overrides
                    .get(&stage)
                    .copied()
                    .unwrap_or(spec.mode),
            )
        }
        // The discussion agent is a product manager answering in comments.
        LabelMeaning::Discussion => (RunKind::Discussion, AgentRole::Pm, RuntimeMode::CodeOnly),
        LabelMeaning::NeedReviewer => (
            RunKind::Reviewer,
            AgentRole::Reviewer,
            RuntimeMode::CodeOnly,
        ),
        _ => return Decision::Ignore(IgnoreReason::NotATrigger),
    };
    // The issue's own labels come first; for a pull request, its linked issue's labels.
    let (first, second) = match target {
        Target::Issue(_) => (labels, &[][..]),
        Target::PullRequest(_) => (issue_labels, labels),
    };
    match model_and_reasoning(first, second) {
        Ok((model, reasoning)) => Decision::Start(RunPlan {
            kind,
            role,
            mode: default_mode,
            target,
            trigger_label: label.to_owned(),
            model,
            reasoning,
        }),
        Err((kind, comment)) => refuse(target, kind, comment),
    }
}

type Choice = (Option<String>, Option<Reasoning>);

/// The model and reasoning labels: from `first` if it has any, else from `second`. Two different
/// labels of one sort on the same item is a conflict.
fn model_and_reasoning(
    first: &[String],
    second: &[String],
) -> Result<Choice, (ConflictKind, String)> {
    let model = single(
        [first, second],
        ConflictKind::ModelConflict,
        "`[ai-model-…]`",
        |m| match m {
            LabelMeaning::Model(name) => Some(name),
            _ => None,
        },
    )?;
    let reasoning = single(
        [first, second],
        ConflictKind::ReasoningConflict,
        "`[ai-reasoning-…]`",
        |m| match m {
            LabelMeaning::Reasoning(r) => Some(r),
            _ => None,
        },
    )?;
    Ok((model, reasoning))
}

/// The one value `extract` finds in the first set that has any; several different ones conflict.
fn single<T: PartialEq + std::fmt::Display>(
    sets: [&[String]; 2],
    kind: ConflictKind,
    what: &str,
    extract: impl Fn(LabelMeaning) -> Option<T>,
) -> Result<Option<T>, (ConflictKind, String)> {
    for set in sets {
        let mut found: Vec<T> = Vec::new();
        for value in set.iter().filter_map(|l| extract(labels::classify(l))) {
            if !found.contains(&value) {
                found.push(value);
            }
        }
        match found.len() {
            0 => continue,
            1 => return Ok(found.pop()),
            _ => {
                let names: Vec<String> = found.iter().map(|v| v.to_string()).collect();
                return Err((
                    kind,
                    format!(
                        "codex-k8s started nothing: more than one {what} label is set ({}). Keep at most one.",
                        names.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(None)
}

/// `changes_requested` on a PR: revise the one stage its labels (else its issue's) name.
fn plan_revise(
    pr: u64,
    pr_labels: &[String],
    issue_labels: &[String],
    ctx: &PolicyContext,
) -> Decision {
    let stages_in = |set: &[String]| {
        let mut stages: Vec<Stage> = set
            .iter()
            .filter_map(|l| match labels::classify(l) {
                LabelMeaning::Trigger { stage, .. } => Some(stage),
                _ => None,
            })
            .collect();
        stages.sort();
        stages.dedup();
        stages
    };
    let on_pr = stages_in(pr_labels);
    let stages = if on_pr.is_empty() {
        stages_in(issue_labels)
    } else {
        on_pr
    };
    let target = Target::PullRequest(pr);
    let [stage] = stages[..] else {
        let comment = if stages.is_empty() {
            "codex-k8s cannot tell which stage to revise: neither this pull request nor its issue carries a `run:<stage>` label. Add the one to revise, e.g. `run:dev:revise`."
                .to_owned()
        } else {
            let names: Vec<&str> = stages.iter().map(|s| s.name()).collect();
            format!(
                "codex-k8s cannot tell which stage to revise: several stages are labelled ({}). Add the one to revise as `run:<stage>:revise`.",
                names.join(", ")
            )
        };
        return Decision::Refuse {
            target,
            kind: ConflictKind::AmbiguousRevise,
            comment,
            add_need_input: true,
        };
    };
    if !stage.spec().revisable {
        return Decision::Refuse {
            target,
            kind: ConflictKind::AmbiguousRevise,
            comment: format!("codex-k8s cannot revise stage `{stage}`: it has no revise run."),
            add_need_input: true,
        };
    }
    let label = format!("run:{}:revise", stage.name());
    match model_and_reasoning(issue_labels, pr_labels) {
        Ok((model, reasoning)) => Decision::Start(RunPlan {
            kind: RunKind::Stage {
                stage,
                revise: true,
            },
            role: stage.spec().role,
            mode: ctx
                .project
                .runtime_overrides
                .get(&stage)
                .copied()
                .unwrap_or(stage.spec().mode),
            target,
            trigger_label: label,
            model,
            reasoning,
        }),
        Err((kind, comment)) => refuse(target, kind, comment),
    }
}

#[cfg(test)]
mod tests;
