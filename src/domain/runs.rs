//! The agent run state machine (SPEC §3): every status write goes through [`RunStatus::can_become`].

/// `pending → starting → running → succeeded | failed | canceled`, with `waiting` beside `running`
/// (waiting for input or approval) and before `starting` (waiting for a free project slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunStatus {
    Pending,
    Starting,
    Running,
    Waiting,
    Succeeded,
    Failed,
    Canceled,
}

impl RunStatus {
    pub fn key(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Waiting => "waiting",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "starting" => Self::Starting,
            "running" => Self::Running,
            "waiting" => Self::Waiting,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "canceled" => Self::Canceled,
            _ => return None,
        })
    }

    /// Active runs occupy their dedupe slot and a project slot.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            Self::Pending | Self::Starting | Self::Running | Self::Waiting
        )
    }

    /// Whether a run in this status may move to `next`.
    pub fn can_become(self, next: RunStatus) -> bool {
        use RunStatus::*;
        match (self, next) {
            (Pending, Starting) => true,
            // No free slot: the run waits (backpressure) and starts when one frees.
            (Pending, Waiting) | (Waiting, Starting) => true,
            (Starting, Running) => true,
            (Running, Waiting) | (Waiting, Running) => true,
            // A run may fail or be canceled from any active status.
            (from, Failed | Canceled) => from.is_active(),
            (Running, Succeeded) => true,
            _ => false,
        }
    }

    /// Whether a lost workload may be replaced by a new attempt (the run stays `starting`).
    pub fn can_relaunch(self) -> bool {
        matches!(self, Self::Starting | Self::Running)
    }
}

#[cfg(test)]
mod tests {
    use super::RunStatus::{self, *};

    const ALL: [RunStatus; 7] = [
        Pending, Starting, Running, Waiting, Succeeded, Failed, Canceled,
    ];

    #[test]
    fn only_the_documented_transitions_are_legal() {
        let legal = [
            (Pending, Starting),
            (Pending, Waiting),
            (Waiting, Starting),
            (Starting, Running),
            (Running, Waiting),
            (Waiting, Running),
            (Running, Succeeded),
            (Pending, Failed),
            (Starting, Failed),
            (Running, Failed),
            (Waiting, Failed),
            (Pending, Canceled),
            (Starting, Canceled),
            (Running, Canceled),
            (Waiting, Canceled),
        ];
        for from in ALL {
            for to in ALL {
                assert_eq!(
                    from.can_become(to),
                    legal.contains(&(from, to)),
                    "{from:?} → {to:?}"
                );
            }
        }
    }

    #[test]
    fn keys_round_trip() {
        for s in ALL {
            assert_eq!(RunStatus::parse(s.key()), Some(s));
        }
    }
}
