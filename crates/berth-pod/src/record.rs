//! What the worker knows of each container of its pod: the current instance,
//! the one before it (for `lastState`), and why it waits.

use berth_runtime::{ContainerId, ContainerKind, ExitInfo, ImageInfo};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::ResourceRequirements;
use tokio::time::Instant;

use crate::plan::KillReason;

/// A container instance's state as the worker tracks it.
#[derive(Debug, Clone)]
pub(crate) enum InstanceState {
    Created,
    Running {
        started_at: Timestamp,
    },
    Exited {
        started_at: Option<Timestamp>,
        exit: ExitInfo,
        /// `Completed`, `Error`, `OOMKilled`, `StartError`.
        reason: String,
        message: Option<String>,
        /// When the worker saw the exit, for back-off arithmetic.
        observed: Instant,
    },
}

/// One instance (attempt) of a container.
#[derive(Debug, Clone)]
pub(crate) struct Instance {
    pub id: ContainerId,
    pub attempt: u32,
    pub image: ImageInfo,
    pub state: InstanceState,
    /// The host file mounted at `terminationMessagePath`.
    pub termination_message_file: Option<std::path::PathBuf>,
    /// The spec's `image` this instance was made from; `None` for one
    /// adopted from before berth kept it.
    pub spec_image: Option<String>,
    /// The resources its cgroup was last given (the kubelet's actuated
    /// resources).
    pub actuated: ResourceRequirements,
}

impl Instance {
    pub(crate) fn is_running(&self) -> bool {
        matches!(self.state, InstanceState::Running { .. })
    }

    pub(crate) fn is_exited(&self) -> bool {
        matches!(self.state, InstanceState::Exited { .. })
    }

    pub(crate) fn exit(&self) -> Option<&ExitInfo> {
        match &self.state {
            InstanceState::Exited { exit, .. } => Some(exit),
            _ => None,
        }
    }
}

/// Why a container is waiting, when it is not simply being created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Waiting {
    pub reason: String,
    pub message: String,
}

/// Everything the worker knows about one container name.
#[derive(Debug, Clone)]
pub(crate) struct ContainerRecord {
    pub name: String,
    pub kind: ContainerKind,
    pub current: Option<Instance>,
    pub previous: Option<Instance>,
    pub waiting: Option<Waiting>,
    /// A failed start is tried again no earlier than this.
    pub retry_at: Option<Instant>,
    /// Killed because its definition changed: started again whatever the
    /// restart policy, without back-off.
    pub definition_changed: bool,
    /// The current instance is to be killed: a liveness or startup probe
    /// or its postStart hook failed. The next plan kills it.
    pub kill_pending: Option<KillReason>,
    /// The resources the node allocated to the container: the spec's at
    /// admission, a resize's once accepted. New instances get these.
    pub allocated: ResourceRequirements,
    /// A restart of all the pod's containers removed its instances: the
    /// attempt its next instance gets. It counts as a restart and shows as
    /// the last state until an instance of its own takes over.
    pub reset: Option<u32>,
}

impl ContainerRecord {
    pub(crate) fn new(name: &str, kind: ContainerKind, allocated: ResourceRequirements) -> Self {
        Self {
            name: name.to_string(),
            kind,
            current: None,
            previous: None,
            waiting: None,
            retry_at: None,
            definition_changed: false,
            kill_pending: None,
            allocated,
            reset: None,
        }
    }

    /// The attempt the next instance gets: one more than the newest, else
    /// the one a restart of all containers left.
    pub(crate) fn next_attempt(&self) -> u32 {
        self.current
            .as_ref()
            .or(self.previous.as_ref())
            .map_or(self.reset.unwrap_or(0), |i| i.attempt + 1)
    }

    pub(crate) fn restart_count(&self) -> u32 {
        self.current
            .as_ref()
            .map_or(self.reset.unwrap_or(0), |i| i.attempt)
    }

    pub(crate) fn is_running(&self) -> bool {
        self.current.as_ref().is_some_and(Instance::is_running)
    }

    /// The current instance exited with 0 (an init container is done).
    pub(crate) fn succeeded(&self) -> bool {
        self.current
            .as_ref()
            .and_then(Instance::exit)
            .is_some_and(|exit| exit.exit_code == 0 && !exit.oom_killed)
    }
}
