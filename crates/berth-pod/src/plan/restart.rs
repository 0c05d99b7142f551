//! One container's next step: its restart policy and rules (the kubelet's
//! `ShouldContainerBeRestarted`), CrashLoopBackOff, a failed start's retry,
//! and a changed definition.

use berth_api::restart_rules::container_should_restart;
use berth_api::status as rules;
use berth_runtime::{ContainerKind, ExitInfo};
use tokio::time::Instant;

use super::{Plan, PodView, Start};
use crate::record::{InstanceState, Waiting};

/// Whether container `i`, exited with `exit`, runs again: a sidecar always;
/// an init container after a failure, and a regular container, as the
/// first matching rule, else its own `restartPolicy`, else the pod's says.
pub(crate) fn should_restart(view: &PodView<'_>, i: usize, exit: &ExitInfo) -> bool {
    let kind = view.records[i].kind;
    // An OOM kill is a failure whatever code the runtime reported.
    let code = if exit.oom_killed && exit.exit_code == 0 {
        137
    } else {
        exit.exit_code
    };
    let restarts = || {
        let fallback = k8s_openapi::api::core::v1::Container::default();
        let container = view.container(i).unwrap_or(&fallback);
        container_should_restart(container, view.spec, code)
    };
    match kind {
        ContainerKind::Sidecar => true,
        ContainerKind::Init => code != 0 && restarts(),
        ContainerKind::Regular => restarts(),
        // Never restarted, whatever the restart policy.
        ContainerKind::Ephemeral => false,
    }
}

/// Container `i` runs from an image its spec no longer names (the kubelet's
/// `containerChanged`; an instance adopted from before berth kept its spec
/// image is left alone).
pub(super) fn definition_changed(view: &PodView<'_>, i: usize) -> bool {
    let Some(image) = view.container(i).and_then(|c| c.image.as_deref()) else {
        return false;
    };
    view.records[i]
        .current
        .as_ref()
        .is_some_and(|c| c.is_running() && c.spec_image.as_deref().is_some_and(|s| s != image))
}

/// The start container `i` needs now, if any; a container held back (a
/// failed start's retry, CrashLoopBackOff) gets its waiting reason and a
/// wake-up in `plan` instead.
pub(super) fn next_start(
    view: &PodView<'_>,
    i: usize,
    now: Instant,
    plan: &mut Plan,
) -> Option<Start> {
    let rec = &view.records[i];
    let fresh = Start {
        index: i,
        backoff: None,
    };
    if let Some(at) = rec.retry_at.filter(|at| *at > now) {
        plan.wake_no_later_than(at);
        return None;
    }
    let Some(current) = &rec.current else {
        return Some(fresh);
    };
    match &current.state {
        // Killed in this same plan, then started from the new definition.
        InstanceState::Running { .. }
            if definition_changed(view, i)
                || super::resize::action(view, i) == Some(super::resize::ResizeAction::Restart) =>
        {
            Some(fresh)
        }
        InstanceState::Running { .. } | InstanceState::Created => None,
        // Killed for its new definition: no back-off, whatever the policy.
        InstanceState::Exited { .. } if rec.definition_changed => Some(fresh),
        InstanceState::Exited { exit, observed, .. } => {
            if !should_restart(view, i, exit) {
                return None;
            }
            let image = view.container(i)?.image.clone()?;
            let key = (rec.name.clone(), image);
            if let Some((until, delay)) = view.backoff.held_until(&key, *observed, now) {
                let message = rules::crash_loop_message(delay, &rec.name, &view.pod.to_string());
                plan.waiting.push((
                    i,
                    Waiting {
                        reason: rules::CRASH_LOOP_BACK_OFF.into(),
                        message,
                    },
                ));
                plan.wake_no_later_than(until);
                return None;
            }
            Some(Start {
                index: i,
                backoff: Some((key, *observed)),
            })
        }
    }
}
