//! How containers stop and a deleted pod goes, as the kubelet's
//! `killPodWithSyncResult` (`pkg/kubelet/kuberuntime/kuberuntime_manager.go`):
//! its `killContainersWithSyncResult` stops every running container against
//! one grace period, each running its preStop hook first; with sidecars, the
//! termination ordering (`newTerminationOrdering`,
//! `kuberuntime_termination_order.go`) holds each sidecar's stop signal until
//! the regular containers and the sidecars started after it have exited.
//! Then the pod's containers and sandbox are removed.

use std::time::Duration;

use berth_runtime::ContainerKind;

use super::{PodView, SandboxView};
use crate::record::ContainerRecord;

/// Containers stopped together against one deadline.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Stop {
    /// The containers, in turns: a turn's stop signal waits until those of
    /// the turns before it have exited.
    pub turns: Vec<Vec<usize>>,
    pub grace: Duration,
    /// The containers whose preStop hook runs before their stop signal.
    pub pre_stop: Vec<usize>,
}

/// What is left of a deleted pod's sandbox to remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SandboxRemoval {
    Remove,
    /// Found dead at adoption and not replaced yet: the containers it held
    /// go with it.
    RemoveDead,
}

/// The end of a deleted pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TerminationPlan {
    pub stop: Stop,
    /// The containers whose instances (current and previous) are removed.
    pub remove: Vec<usize>,
    pub sandbox: Option<SandboxRemoval>,
}

/// The end of the pod in `view`, deleted with `grace`.
pub(super) fn terminate(view: &PodView<'_>, grace: Duration) -> TerminationPlan {
    let running = (0..view.records.len()).filter(|&i| view.records[i].is_running());
    TerminationPlan {
        stop: stop(view, running, grace),
        remove: (0..view.records.len())
            .filter(|&i| {
                let rec = &view.records[i];
                rec.current.is_some() || rec.previous.is_some()
            })
            .collect(),
        sandbox: match view.sandbox {
            SandboxView::Absent => None,
            SandboxView::Ready => Some(SandboxRemoval::Remove),
            SandboxView::Dead => Some(SandboxRemoval::RemoveDead),
        },
    }
}

/// Stops `containers` within `grace`: in the kubelet's order, each with its
/// preStop hook unless the grace period is zero (SIGKILL at once).
pub(crate) fn stop(
    view: &PodView<'_>,
    containers: impl IntoIterator<Item = usize>,
    grace: Duration,
) -> Stop {
    let containers: Vec<usize> = containers.into_iter().collect();
    let pre_stop = if grace.is_zero() {
        Vec::new()
    } else {
        containers
            .iter()
            .copied()
            .filter(|&i| {
                view.container(i)
                    .and_then(|c| c.lifecycle.as_ref())
                    .is_some_and(|l| l.pre_stop.is_some())
            })
            .collect()
    };
    Stop {
        turns: turns(view.records, containers),
        grace,
        pre_stop,
    }
}

/// The regular and init containers in one turn, then each sidecar alone, the
/// last started first.
fn turns(records: &[ContainerRecord], containers: Vec<usize>) -> Vec<Vec<usize>> {
    let (sidecars, first): (Vec<usize>, Vec<usize>) = containers
        .into_iter()
        .partition(|&i| records[i].kind == ContainerKind::Sidecar);
    let mut turns = Vec::new();
    if !first.is_empty() {
        turns.push(first);
    }
    turns.extend(sidecars.into_iter().rev().map(|i| vec![i]));
    turns
}
