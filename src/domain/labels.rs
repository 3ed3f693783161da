//! The label catalogue (SPEC §4) as data: which labels exist, which of them trigger an agent, and the
//! stage → role and stage → runtime-mode maps. Nothing else in the code spells a label name.

use std::fmt;

/// The eight system agent roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AgentRole {
    Pm,
    Sa,
    Em,
    Dev,
    Reviewer,
    Qa,
    Sre,
    Km,
}

impl AgentRole {
    pub const ALL: [AgentRole; 8] = [
        AgentRole::Pm,
        AgentRole::Sa,
        AgentRole::Em,
        AgentRole::Dev,
        AgentRole::Reviewer,
        AgentRole::Qa,
        AgentRole::Sre,
        AgentRole::Km,
    ];

    /// The role's key as stored in the `agents` table.
    pub fn key(self) -> &'static str {
        match self {
            Self::Pm => "pm",
            Self::Sa => "sa",
            Self::Em => "em",
            Self::Dev => "dev",
            Self::Reviewer => "reviewer",
            Self::Qa => "qa",
            Self::Sre => "sre",
            Self::Km => "km",
        }
    }
}

/// Where an agent runs: alone with the code, or in a full namespace of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuntimeMode {
    CodeOnly,
    FullEnv,
}

impl RuntimeMode {
    pub fn key(self) -> &'static str {
        match self {
            Self::CodeOnly => "code-only",
            Self::FullEnv => "full-env",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "code-only" => Some(Self::CodeOnly),
            "full-env" => Some(Self::FullEnv),
            _ => None,
        }
    }
}

/// A stage of the delivery pipeline, named by `run:<stage>` labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    Intake,
    Vision,
    Prd,
    Arch,
    Design,
    Plan,
    Dev,
    DocAudit,
    Qa,
    Release,
    Postdeploy,
    Ops,
    SelfImprove,
    Rethink,
    AiRepair,
}

/// One row of the stage table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageSpec {
    pub stage: Stage,
    /// The `<stage>` in `run:<stage>`.
    pub name: &'static str,
    pub role: AgentRole,
    pub mode: RuntimeMode,
    /// Whether `run:<stage>:revise` exists.
    pub revisable: bool,
}

const fn stage(
    stage: Stage,
    name: &'static str,
    role: AgentRole,
    mode: RuntimeMode,
    revisable: bool,
) -> StageSpec {
    StageSpec {
        stage,
        name,
        role,
        mode,
        revisable,
    }
}

use AgentRole as R;
use RuntimeMode::{CodeOnly, FullEnv};

/// Every stage, its role and its default runtime mode.
pub const STAGES: [StageSpec; 15] = [
    stage(Stage::Intake, "intake", R::Pm, CodeOnly, true),
    stage(Stage::Vision, "vision", R::Pm, CodeOnly, true),
    stage(Stage::Prd, "prd", R::Pm, CodeOnly, true),
    stage(Stage::Arch, "arch", R::Sa, FullEnv, true),
    stage(Stage::Design, "design", R::Sa, FullEnv, true),
    stage(Stage::Plan, "plan", R::Em, FullEnv, true),
    stage(Stage::Dev, "dev", R::Dev, FullEnv, true),
    stage(Stage::DocAudit, "doc-audit", R::Km, FullEnv, true),
    stage(Stage::Qa, "qa", R::Qa, FullEnv, true),
    stage(Stage::Release, "release", R::Em, FullEnv, true),
    stage(Stage::Postdeploy, "postdeploy", R::Sre, FullEnv, true),
    stage(Stage::Ops, "ops", R::Sre, FullEnv, true),
    stage(Stage::SelfImprove, "self-improve", R::Km, CodeOnly, true),
    stage(Stage::Rethink, "rethink", R::Em, FullEnv, false),
    stage(Stage::AiRepair, "ai-repair", R::Sre, CodeOnly, false),
];

impl Stage {
    pub fn spec(self) -> &'static StageSpec {
        STAGES
            .iter()
            .find(|s| s.stage == self)
            .expect("every stage has a row in STAGES")
    }

    pub fn name(self) -> &'static str {
        self.spec().name
    }

    pub fn by_name(name: &str) -> Option<Stage> {
        STAGES.iter().find(|s| s.name == name).map(|s| s.stage)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Reasoning effort chosen by `[ai-reasoning-…]` labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reasoning {
    Low,
    Medium,
    High,
    ExtraHigh,
}

impl Reasoning {
    pub fn key(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::ExtraHigh => "extra-high",
        }
    }
}

impl fmt::Display for Reasoning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// `state:*` labels: they describe, never trigger.
pub const STATE_LABELS: [&str; 5] = [
    "state:blocked",
    "state:in-review",
    "state:approved",
    "state:superseded",
    "state:abandoned",
];
/// `need:*` labels other than `need:reviewer`: they describe, never trigger.
pub const NEED_LABELS: [&str; 7] = [
    "need:input",
    "need:pm",
    "need:sa",
    "need:qa",
    "need:sre",
    "need:em",
    "need:km",
];
pub const MODE_DISCUSSION: &str = "mode:discussion";
pub const NEED_REVIEWER: &str = "need:reviewer";
pub const NEED_INPUT: &str = "need:input";
pub const STATE_IN_REVIEW: &str = "state:in-review";

/// What a label means to codex-k8s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelMeaning {
    /// `run:<stage>` or `run:<stage>:revise`.
    Trigger { stage: Stage, revise: bool },
    /// `mode:discussion`: a comment-only discussion agent.
    Discussion,
    /// `need:reviewer`: a reviewer run when on a pull request.
    NeedReviewer,
    /// `state:*`: never triggers.
    State,
    /// `need:*` other than reviewer: never triggers.
    Need,
    /// `[ai-model-<name>]`: chooses the model.
    Model(String),
    /// `[ai-reasoning-<effort>]`: chooses the reasoning effort.
    Reasoning(Reasoning),
    /// Anything else: not ours.
    Foreign,
}

/// Classifies a label by name.
pub fn classify(label: &str) -> LabelMeaning {
    if let Some(rest) = label.strip_prefix("run:") {
        let (name, revise) = match rest.strip_suffix(":revise") {
            Some(name) => (name, true),
            None => (rest, false),
        };
        return match Stage::by_name(name) {
            Some(stage) if !revise || stage.spec().revisable => {
                LabelMeaning::Trigger { stage, revise }
            }
            _ => LabelMeaning::Foreign,
        };
    }
    if label == MODE_DISCUSSION {
        return LabelMeaning::Discussion;
    }
    if label == NEED_REVIEWER {
        return LabelMeaning::NeedReviewer;
    }
    if STATE_LABELS.contains(&label) {
        return LabelMeaning::State;
    }
    if NEED_LABELS.contains(&label) {
        return LabelMeaning::Need;
    }
    if let Some(inner) = label.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
        if let Some(model) = inner.strip_prefix("ai-model-").filter(|m| !m.is_empty()) {
            return LabelMeaning::Model(model.to_owned());
        }
        if let Some(effort) = inner.strip_prefix("ai-reasoning-") {
            let reasoning = match effort {
                "low" => Some(Reasoning::Low),
                "medium" => Some(Reasoning::Medium),
                "high" => Some(Reasoning::High),
                "extra-high" => Some(Reasoning::ExtraHigh),
                _ => None,
            };
            if let Some(r) = reasoning {
                return LabelMeaning::Reasoning(r);
            }
        }
    }
    LabelMeaning::Foreign
}

/// Every label codex-k8s manages, with its name: what a connected repository must have.
pub fn managed_labels() -> Vec<String> {
    let mut labels = Vec::new();
    for spec in &STAGES {
        labels.push(format!("run:{}", spec.name));
        if spec.revisable {
            labels.push(format!("run:{}:revise", spec.name));
        }
    }
    labels.push(MODE_DISCUSSION.to_owned());
    labels.push(NEED_REVIEWER.to_owned());
    labels.extend(STATE_LABELS.iter().map(|l| l.to_string()));
    labels.extend(NEED_LABELS.iter().map(|l| l.to_string()));
    for r in ["low", "medium", "high", "extra-high"] {
        labels.push(format!("[ai-reasoning-{r}]"));
    }
    labels
}
