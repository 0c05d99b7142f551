//! A container's exit whose matching rule says `RestartAllContainers`
//! (RestartAllContainersOnContainerExits, beta and on by default since
//! v1.36) restarts the whole pod in place: every container is killed
//! without a grace period and removed, the sandbox stays, and the pod runs
//! again from its first init container (the kubelet's `computePodActions`
//! with `restartAllContainers`, and its `getContainersToReset`).

use berth_api::restart_rules::{matching_action, RESTART_ALL_CONTAINERS};
use berth_runtime::ContainerKind;

use super::PodView;
use crate::record::Instance;

/// One container the restart removes, with its instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reset {
    pub index: usize,
    /// It is running: it is killed before it is removed.
    pub kill: bool,
}

/// The containers a restart of all containers removes, in the kubelet's
/// order: the regular containers, then the init containers (sidecars
/// included), and last the ones whose exit asked for it, so that until
/// the very end the exit that started the restart is still there to be
/// seen. `None` when no exit asks for it.
pub(super) fn resets(view: &PodView<'_>) -> Option<Vec<Reset>> {
    let sources: Vec<bool> = (0..view.records.len())
        .map(|i| asks_for_restart_all(view, i))
        .collect();
    if !sources.contains(&true) {
        return None;
    }
    let mut resets = Vec::new();
    for source in [false, true] {
        for init in [false, true] {
            for (index, rec) in view.records.iter().enumerate() {
                let is_init = rec.kind != ContainerKind::Regular;
                let has_instance = rec.current.is_some() || rec.previous.is_some();
                if sources[index] == source && is_init == init && has_instance {
                    let kill = rec.current.as_ref().is_some_and(|c| !c.is_exited());
                    resets.push(Reset { index, kill });
                }
            }
        }
    }
    Some(resets)
}

/// Container `i` exited with a code its `RestartAllContainers` rule matches
/// (the kubelet's `ShouldAllContainersRestart`).
fn asks_for_restart_all(view: &PodView<'_>, i: usize) -> bool {
    let Some(exit) = view.records[i].current.as_ref().and_then(Instance::exit) else {
        return false;
    };
    view.container(i)
        .and_then(|c| matching_action(c, exit.exit_code))
        == Some(RESTART_ALL_CONTAINERS)
}
