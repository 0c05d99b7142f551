//! What one pass of the pod worker does, decided in one pure function over a
//! read-only view of what the worker knows, as the kubelet's
//! `computePodActions` (`pkg/kubelet/kuberuntime/kuberuntime_manager.go`)
//! returns its `podActions`. The worker's `execute` carries a [`Plan`] out in
//! the kubelet's `SyncPod` order; nothing here awaits or touches the runtime.
//!
//! The rules, each in its submodule: `restart` (restartPolicy, CrashLoopBackOff
//! and failed starts, for one container), `order` (init containers one at a
//! time, sidecars before them, regular containers once initialized, sidecars
//! stopped when the main containers are done), `terminate` (the order
//! containers stop in, and what a deleted pod leaves to remove). The active
//! deadline and image changes are short enough to live here.

mod order;
pub(crate) mod resize;
mod restart;
mod restart_all;
mod terminate;

#[cfg(test)]
mod tests;

use berth_runtime::PodRef;
use k8s_openapi::api::core::v1::{Container, PodSpec};
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::record::{ContainerRecord, Waiting};
use crate::restart_policy::PodPhase;
use crate::stage::Stage;

pub(crate) use restart_all::Reset;
pub(crate) use terminate::{stop, SandboxRemoval, Stop, TerminationPlan};

/// What the worker knows of its pod, borrowed for one plan.
pub(crate) struct PodView<'a> {
    pub spec: &'a PodSpec,
    pub pod: &'a PodRef,
    /// Init containers first, then the main ones, then the ephemeral ones,
    /// in spec order.
    pub records: &'a [ContainerRecord],
    /// The ephemeral containers behind the last records, as containers.
    pub ephemeral: &'a [Container],
    /// `(started, ready)` of each record as its probes say.
    pub probed: Vec<(bool, bool)>,
    pub stage: Stage,
    pub sandbox: SandboxView,
    pub backoff: &'a Backoff,
    /// When `activeDeadlineSeconds` runs out, if the spec sets it.
    pub deadline: Option<Instant>,
    /// The node evicts the pod, with this message.
    pub eviction: Option<&'a str>,
}

impl PodView<'_> {
    /// The spec of the container behind record `i`.
    pub(crate) fn container(&self, i: usize) -> Option<&Container> {
        spec_container(self.spec, self.ephemeral, i)
    }
}

/// The spec of the container behind record `i` (init containers first, the
/// ephemeral ones, as the worker keeps them, last).
pub(crate) fn spec_container<'a>(
    spec: &'a PodSpec,
    ephemeral: &'a [Container],
    i: usize,
) -> Option<&'a Container> {
    let inits = spec.init_containers.as_deref().unwrap_or_default();
    let regular = inits.len() + spec.containers.len();
    if i < inits.len() {
        inits.get(i)
    } else if i < regular {
        spec.containers.get(i - inits.len())
    } else {
        ephemeral.get(i - regular)
    }
}

/// The pod's sandbox as the worker last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SandboxView {
    Ready,
    Absent,
    /// Found dead at adoption (its pause process or its pins gone).
    Dead,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SandboxWork {
    Create,
    /// Kill what is left of the dead one (`SandboxChanged`), then create.
    Recreate,
}

/// Why a container is killed; it decides the Killing event's message, the
/// grace period and whether the kill stops the whole pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KillReason {
    Liveness,
    Startup,
    PostStartFailed,
    DefinitionChanged,
    /// An accepted resize changes a resource its `resizePolicy` restarts for.
    ResizeRestart,
    SidecarsAfterMainDone,
    DeadlineExceeded,
    Evicted,
    PodDeleted,
    /// A restart of all the pod's containers, without a grace period.
    RestartAllContainers,
}

impl KillReason {
    /// Stops every running container of the pod, the main and init ones
    /// first and the sidecars last in reverse order (the kubelet's
    /// `killContainersWithSyncResult`); the others kill one container.
    pub(crate) fn whole_pod(self) -> bool {
        matches!(
            self,
            Self::SidecarsAfterMainDone | Self::DeadlineExceeded | Self::Evicted | Self::PodDeleted
        )
    }

    /// The Killing event's message for container `name`, which `restarts`
    /// after a kill or not (its own `restartPolicy`, else the pod's).
    pub(crate) fn message(self, name: &str, restarts: bool) -> String {
        let probe = |kind: &str| {
            let mut message = format!("Container {name} failed {kind} probe");
            if restarts {
                message.push_str(", will be restarted");
            }
            message
        };
        match self {
            Self::Liveness => probe("liveness"),
            Self::Startup => probe("startup"),
            Self::PostStartFailed => crate::reasons::FAILED_POST_START_HOOK.into(),
            Self::DefinitionChanged => {
                format!("Container {name} definition changed, will be restarted")
            }
            Self::ResizeRestart => format!("Container {name} resize requires restart"),
            // The kubelet's `SyncPod` passes this literal message.
            Self::RestartAllContainers => "killing".into(),
            Self::SidecarsAfterMainDone
            | Self::DeadlineExceeded
            | Self::Evicted
            | Self::PodDeleted => format!("Stopping container {name}"),
        }
    }

    /// The grace period override of a whole-pod stop: the eviction
    /// manager's `immediateEvictionGracePeriodSeconds` (1 s) for an eviction;
    /// otherwise the pod's own.
    pub(crate) fn grace_override(self) -> Option<std::time::Duration> {
        match self {
            Self::Evicted => Some(std::time::Duration::from_secs(1)),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Kill {
    pub index: usize,
    pub reason: KillReason,
}

/// A container instance to create and start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Start {
    pub index: usize,
    /// A restart after a crash counts in the back-off: the key and when the
    /// instance before finished.
    pub backoff: Option<((String, String), Instant)>,
}

/// Why the pod as a whole failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PodFailure {
    DeadlineExceeded,
    /// The node evicted it, with the eviction manager's message.
    Evicted(String),
}

impl PodFailure {
    /// The pod's `reason` and `message` (the kubelet's `activeDeadlineHandler`,
    /// or its eviction manager's `evictPod`).
    pub(crate) fn reason_and_message(&self) -> (&'static str, String) {
        match self {
            Self::DeadlineExceeded => (
                crate::reasons::DEADLINE_EXCEEDED,
                "Pod was active on the node longer than the specified deadline".into(),
            ),
            Self::Evicted(message) => (crate::reasons::EVICTED, message.clone()),
        }
    }
}

/// What one pass does, in the order `execute` does it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// The pod failed as a whole: it goes Failed before its kills.
    pub failure: Option<PodFailure>,
    pub kills: Vec<Kill>,
    pub prepare_volumes: bool,
    pub sandbox: Option<SandboxWork>,
    /// The next (non-restartable) init container.
    pub init: Option<Start>,
    pub sidecars: Vec<Start>,
    pub regular: Vec<Start>,
    /// Ephemeral containers never started yet.
    pub ephemeral: Vec<Start>,
    /// Running containers whose cgroup takes an accepted resize in place.
    pub resizes: Vec<usize>,
    /// Containers held back by CrashLoopBackOff, with why.
    pub waiting: Vec<(usize, Waiting)>,
    /// The phase the pod ends in, once nothing is left to do.
    pub finish: Option<PodPhase>,
    /// When the pod needs another pass, if nothing else comes first.
    pub wake_at: Option<Instant>,
    /// The pod is being deleted: how it stops and what goes. Nothing else
    /// is planned then.
    pub terminate: Option<TerminationPlan>,
    /// A container's exit restarts all containers: these are killed and
    /// removed, in this order. Nothing else is planned then.
    pub restart_all: Option<Vec<Reset>>,
}

impl Plan {
    fn wake_no_later_than(&mut self, at: Instant) {
        self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
    }

    /// The plan starts or kills containers.
    pub(crate) fn touches_containers(&self) -> bool {
        !self.kills.is_empty()
            || self.init.is_some()
            || !self.sidecars.is_empty()
            || !self.regular.is_empty()
            || !self.ephemeral.is_empty()
    }

    pub(crate) fn starts(&self) -> impl Iterator<Item = &Start> {
        self.ephemeral
            .iter()
            .chain(&self.init)
            .chain(&self.sidecars)
            .chain(&self.regular)
    }
}

/// Decides what the pod needs now: the kubelet's `computePodActions`, with
/// its `activeDeadlineHandler` and the pod phase that ends a pod; for a
/// deleted pod, its `killPodWithSyncResult`.
pub(crate) fn plan(view: &PodView<'_>, now: Instant) -> Plan {
    let mut plan = Plan::default();
    match view.stage {
        Stage::Finished { .. } => return plan,
        Stage::Terminating { grace, .. } => {
            plan.terminate = Some(terminate::terminate(view, grace));
            return plan;
        }
        Stage::Preparing | Stage::Running => {}
    }
    if let Some(message) = view.eviction {
        plan.failure = Some(PodFailure::Evicted(message.into()));
        plan.finish = Some(PodPhase::Failed);
        plan.kills = kill_running(view, KillReason::Evicted);
        return plan;
    }
    if let Some(deadline) = view.deadline {
        if now >= deadline {
            plan.failure = Some(PodFailure::DeadlineExceeded);
            plan.finish = Some(PodPhase::Failed);
            plan.kills = kill_running(view, KillReason::DeadlineExceeded);
            return plan;
        }
        plan.wake_no_later_than(deadline);
    }
    if let Some(resets) = restart_all::resets(view) {
        plan.restart_all = Some(resets);
        return plan;
    }
    plan.prepare_volumes = view.stage == Stage::Preparing;
    if view.sandbox == SandboxView::Dead && !restarts_after_a_dead_sandbox(view) {
        // As the kubelet: no new sandbox for a pod that must not restart
        // and has run; it ends as its containers' exits say.
        let phase = phase(view);
        plan.finish = phase.is_terminal().then_some(phase);
        return plan;
    }
    plan.sandbox = match view.sandbox {
        SandboxView::Ready => None,
        SandboxView::Absent => Some(SandboxWork::Create),
        SandboxView::Dead => Some(SandboxWork::Recreate),
    };
    plan.kills = failed_checks(view);
    plan.resizes = (0..view.records.len())
        .filter(|&i| resize::action(view, i) == Some(resize::ResizeAction::InPlace))
        .filter(|&i| !plan.kills.iter().any(|k| k.index == i))
        .collect();
    if plan.sandbox.is_none() {
        plan.ephemeral = order::ephemeral_containers(view, now, &mut plan);
    }
    let initialized = order::init_containers(view, now, &mut plan);
    if !initialized {
        return plan;
    }
    if order::main_containers_done(view) {
        plan.kills
            .extend(kill_running(view, KillReason::SidecarsAfterMainDone));
    } else {
        order::regular_containers(view, now, &mut plan);
    }
    let idle = !plan.touches_containers()
        && plan.resizes.is_empty()
        && !plan.prepare_volumes
        && plan.sandbox.is_none();
    if idle {
        let phase = phase(view);
        plan.finish = phase.is_terminal().then_some(phase);
    }
    plan
}

/// Whether a pod whose sandbox died gets a new one: unless its policy is
/// `Never` and one of its containers has run (the kubelet's
/// `computePodActions`, `shouldRestartOnFailure`).
fn restarts_after_a_dead_sandbox(view: &PodView<'_>) -> bool {
    let never = view.spec.restart_policy.as_deref() == Some("Never");
    let ran = view
        .records
        .iter()
        .any(|r| r.current.is_some() || r.previous.is_some());
    !never || !ran
}

/// Every running container, for a kill of the whole pod.
fn kill_running(view: &PodView<'_>, reason: KillReason) -> Vec<Kill> {
    (0..view.records.len())
        .filter(|&i| view.records[i].is_running())
        .map(|index| Kill { index, reason })
        .collect()
}

/// Running containers to kill (the kubelet's `computePodActions` loop over
/// running containers): a failed liveness or startup probe or postStart
/// hook; a spec's image that is no longer the one the container was made
/// from (`containerChanged`), which starts it again whatever the policy.
fn failed_checks(view: &PodView<'_>) -> Vec<Kill> {
    let reason = |i: usize| {
        let rec = &view.records[i];
        if !rec.is_running() {
            return None;
        }
        rec.kill_pending
            .or_else(|| {
                restart::definition_changed(view, i).then_some(KillReason::DefinitionChanged)
            })
            .or_else(|| {
                (resize::action(view, i) == Some(resize::ResizeAction::Restart))
                    .then_some(KillReason::ResizeRestart)
            })
    };
    (0..view.records.len())
        .filter_map(|index| {
            Some(Kill {
                index,
                reason: reason(index)?,
            })
        })
        .collect()
}

/// The pod's phase from its container states (the kubelet's `getPhase`).
pub(crate) fn phase(view: &PodView<'_>) -> PodPhase {
    let statuses =
        crate::status::container_statuses_of(view.records, view.spec, view.ephemeral, |i| {
            view.probed[i]
        });
    PodPhase::parse(&berth_api::status::pod_phase(
        view.spec,
        &statuses.init,
        &statuses.regular,
        false,
    ))
}
