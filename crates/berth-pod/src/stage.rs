//! Where a pod is in its life, one value instead of flags: the worker moves
//! it on, the planner reads it. The sandbox is tracked apart (`sandbox`), as
//! it can be absent, ready or dead in more than one stage.

use std::time::Duration;

use crate::restart_policy::PodPhase;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// The pod's volume directories are not set up yet (a new pod, or one
    /// whose setup failed and is tried again).
    Preparing,
    /// Set up: the planner runs its containers.
    Running,
    /// Succeeded or Failed: nothing runs again, and the phase never changes.
    Finished { phase: PodPhase },
    /// Being deleted: every container stops within `grace`, then everything
    /// of the pod is removed. `phase` is the one it finished in, if any.
    Terminating {
        grace: Duration,
        phase: Option<PodPhase>,
    },
}

impl Stage {
    /// The terminal phase the pod reached, if it did.
    pub(crate) fn phase(self) -> Option<PodPhase> {
        match self {
            Self::Finished { phase } => Some(phase),
            Self::Terminating { phase, .. } => phase,
            Self::Preparing | Self::Running => None,
        }
    }

    /// The stage once a deletion with `grace` comes.
    pub(crate) fn terminating(self, grace: Duration) -> Self {
        Self::Terminating {
            grace,
            phase: self.phase(),
        }
    }
}
