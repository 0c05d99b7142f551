//! One container's next step: restartPolicy (the kubelet's
//! `ShouldContainerBeRestarted`), CrashLoopBackOff, a failed start's retry,
//! and a changed definition.

use berth_api::status as rules;
use berth_runtime::{ContainerKind, ExitInfo};
use tokio::time::Instant;

use super::{Plan, PodView, Start};
use crate::record::{InstanceState, Waiting};
use crate::restart_policy::RestartPolicy;

/// Whether a container of `kind` that exited with `exit` runs again: sidecars
/// always, init containers after a failure unless the policy is Never,
/// regular containers as the policy says.
pub(crate) fn should_restart(kind: ContainerKind, policy: RestartPolicy, exit: &ExitInfo) -> bool {
    let failed = exit.exit_code != 0 || exit.oom_killed;
    match kind {
        ContainerKind::Sidecar => true,
        ContainerKind::Init => failed && policy != RestartPolicy::Never,
        ContainerKind::Regular => match policy {
            RestartPolicy::Never => false,
            RestartPolicy::OnFailure => failed,
            RestartPolicy::Always => true,
        },
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
            if !should_restart(rec.kind, view.restart_policy(), exit) {
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
