//! Container-level status vocabulary (docs/kubelet-semantics.md §3.2, §4).

use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerState, ContainerStateWaiting};

use super::go_duration;

pub const CONTAINER_CREATING: &str = "ContainerCreating";
pub const POD_INITIALIZING: &str = "PodInitializing";
pub const CRASH_LOOP_BACK_OFF: &str = "CrashLoopBackOff";

/// The state of a container before any instance of it exists:
/// Waiting `ContainerCreating`, or `PodInitializing` when the pod has init
/// containers (applied to init and regular statuses alike).
pub fn default_waiting_state(has_init: bool) -> ContainerState {
    let reason = if has_init {
        POD_INITIALIZING
    } else {
        CONTAINER_CREATING
    };
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.into()),
            message: None,
        }),
        ..Default::default()
    }
}

/// `terminated.reason` as containerd's CRI reports it.
pub fn terminated_reason(exit_code: i32, oom_killed: bool) -> &'static str {
    match (oom_killed, exit_code) {
        (true, _) => "OOMKilled",
        (false, 0) => "Completed",
        (false, _) => "Error",
    }
}

/// The Waiting message while a container is in crash-loop back-off;
/// `pod_display` is `name_namespace(uid)` (see `pod::format_pod`).
pub fn crash_loop_message(delay: Duration, container: &str, pod_display: &str) -> String {
    format!(
        "back-off {} restarting failed container={container} pod={pod_display}",
        go_duration(delay)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_waiting_reason_depends_on_init_containers() {
        let reason = |s: ContainerState| s.waiting.unwrap().reason.unwrap();
        assert_eq!(reason(default_waiting_state(false)), "ContainerCreating");
        assert_eq!(reason(default_waiting_state(true)), "PodInitializing");
        assert!(default_waiting_state(true).running.is_none());
    }

    #[test]
    fn terminated_reasons() {
        let cases = [
            (0, false, "Completed"),
            (1, false, "Error"),
            (137, false, "Error"),
            (143, false, "Error"),
            (-1, false, "Error"),
            (137, true, "OOMKilled"),
            (0, true, "OOMKilled"),
        ];
        for (code, oom, want) in cases {
            assert_eq!(terminated_reason(code, oom), want, "exit {code} oom {oom}");
        }
    }

    #[test]
    fn crash_loop_messages() {
        let cases = [
            (
                10,
                "back-off 10s restarting failed container=app pod=web_default(u1)",
            ),
            (
                80,
                "back-off 1m20s restarting failed container=app pod=web_default(u1)",
            ),
            (
                300,
                "back-off 5m0s restarting failed container=app pod=web_default(u1)",
            ),
        ];
        for (secs, want) in cases {
            let got = crash_loop_message(Duration::from_secs(secs), "app", "web_default(u1)");
            assert_eq!(got, want);
        }
    }
}
