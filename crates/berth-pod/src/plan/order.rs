//! The order containers run in: init containers strictly one after another,
//! each restartable one (sidecar) started (running, its startup probe
//! passed) before the next; the
//! regular containers once the pod is initialized; and when every regular
//! container has exited for good, nothing starts any more and the sidecars
//! are stopped (the kubelet's `computeInitContainerActions` and its
//! Job-with-sidecars rule). Ephemeral containers start once each, whether
//! or not the pod is initialized, and never again (`computePodActions`'
//! `EphemeralContainersToStart`).

use berth_runtime::ContainerKind;
use tokio::time::Instant;

use super::restart::{self, next_start};
use super::{Plan, PodView, Start};
use crate::record::Instance;
use berth_api::restart_rules::restarts_after_kill;

/// Plans the init containers and sidecars; true once the pod is initialized,
/// so that its regular containers may run.
pub(super) fn init_containers(view: &PodView<'_>, now: Instant, plan: &mut Plan) -> bool {
    let any_regular_started = view
        .records
        .iter()
        .any(|r| r.kind == ContainerKind::Regular && (r.current.is_some() || r.previous.is_some()));
    if any_regular_started && main_containers_done(view) {
        return true;
    }
    for (i, rec) in view.records.iter().enumerate() {
        match rec.kind {
            ContainerKind::Regular | ContainerKind::Ephemeral => continue,
            ContainerKind::Sidecar => {
                let start = next_start(view, i, now, plan);
                let starting = start.is_some();
                plan.sidecars.extend(start);
                // The next init container waits until this one has
                // started: running, and its startup probe (if any)
                // succeeded. Once the regular containers started, nothing
                // waits for it.
                let started = rec.is_running() && view.probed[i].0;
                if (starting || !started) && !any_regular_started {
                    return false;
                }
            }
            ContainerKind::Init => {
                if any_regular_started || rec.succeeded() {
                    continue;
                }
                let changed = restart::definition_changed(view, i);
                if rec.is_running() && !changed {
                    return false;
                }
                let exit = rec.current.as_ref().and_then(Instance::exit);
                let gives_up = match exit {
                    Some(exit) => !restart::should_restart(view, i, exit),
                    None => changed && !restarts_after_kill(view.container(i), view.spec),
                };
                if gives_up {
                    return false; // the pod fails
                }
                plan.init = next_start(view, i, now, plan);
                return false;
            }
        }
    }
    true
}

/// The ephemeral containers to start: those that never had an instance
/// (a failed start is tried again after its retry delay).
pub(super) fn ephemeral_containers(
    view: &PodView<'_>,
    now: Instant,
    plan: &mut Plan,
) -> Vec<Start> {
    let mut starts = Vec::new();
    for (i, rec) in view.records.iter().enumerate() {
        if rec.kind != ContainerKind::Ephemeral || rec.current.is_some() || rec.previous.is_some() {
            continue;
        }
        match rec.retry_at.filter(|at| *at > now) {
            Some(at) => plan.wake_no_later_than(at),
            None => starts.push(Start {
                index: i,
                backoff: None,
            }),
        }
    }
    starts
}

/// Plans the regular containers of an initialized pod.
pub(super) fn regular_containers(view: &PodView<'_>, now: Instant, plan: &mut Plan) {
    for (i, rec) in view.records.iter().enumerate() {
        if rec.kind == ContainerKind::Regular {
            let start = next_start(view, i, now, plan);
            plan.regular.extend(start);
        }
    }
}

/// Every regular container has exited for good.
pub(super) fn main_containers_done(view: &PodView<'_>) -> bool {
    (0..view.records.len())
        .filter(|&i| view.records[i].kind == ContainerKind::Regular)
        .all(|i| {
            let r = &view.records[i];
            !r.definition_changed
                && r.current
                    .as_ref()
                    .and_then(Instance::exit)
                    .is_some_and(|exit| !restart::should_restart(view, i, exit))
        })
}
