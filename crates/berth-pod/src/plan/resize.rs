//! A running container whose cgroup lags what the node allocated to it (an
//! accepted resize): updated in place, or restarted when its `resizePolicy`
//! says so for a resource that changed (the kubelet's
//! `computePodResizeAction`).

use super::PodView;
use crate::resources::Amounts;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResizeAction {
    InPlace,
    Restart,
}

/// What container `i` needs for its allocation, if anything: only running
/// containers are resized.
pub(crate) fn action(view: &PodView<'_>, i: usize) -> Option<ResizeAction> {
    let rec = &view.records[i];
    let current = rec.current.as_ref().filter(|c| c.is_running())?;
    let (now, want) = (Amounts::of(&current.actuated), Amounts::of(&rec.allocated));
    if now == want {
        return None;
    }
    let policies = view
        .container(i)
        .and_then(|c| c.resize_policy.as_deref())
        .unwrap_or_default();
    let restarts = |resource: &str| {
        policies
            .iter()
            .find(|p| p.resource_name == resource)
            .is_some_and(|p| p.restart_policy == "RestartContainer")
    };
    let cpu_changed = now.cpu_request != want.cpu_request || now.cpu_limit != want.cpu_limit;
    let memory_changed =
        now.memory_request != want.memory_request || now.memory_limit != want.memory_limit;
    if (cpu_changed && restarts("cpu")) || (memory_changed && restarts("memory")) {
        Some(ResizeAction::Restart)
    } else {
        Some(ResizeAction::InPlace)
    }
}
