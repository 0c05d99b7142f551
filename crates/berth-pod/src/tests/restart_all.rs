//! The `RestartAllContainers` rule action: a matching exit restarts every
//! container of the pod in its sandbox, and an agent restart in the middle
//! of it neither loses nor duplicates a container.

use super::*;
use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition};

/// The upstream e2e's first pod: an init container, a sidecar, the
/// container whose exit 42 restarts everything, and one more.
const RESTART_ALL: &str = "
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  restartPolicy: Never
  initContainers:
  - {name: init, image: busybox}
  - {name: sidecar, image: busybox, restartPolicy: Always}
  containers:
  - name: source
    image: busybox
    restartPolicy: Never
    restartPolicyRules:
    - {action: RestartAllContainers, exitCodes: {operator: In, values: [42]}}
  - {name: regular, image: busybox}
";

const NAMES: [&str; 4] = ["init", "sidecar", "source", "regular"];

fn statuses(s: &PodStatus) -> impl Iterator<Item = &ContainerStatus> {
    s.init_container_statuses
        .iter()
        .flatten()
        .chain(s.container_statuses.iter().flatten())
}

fn condition<'a>(s: &'a PodStatus, type_: &str) -> Option<&'a PodCondition> {
    s.conditions.iter().flatten().find(|c| c.type_ == type_)
}

fn is_running(s: &PodStatus, name: &str) -> bool {
    statuses(s)
        .find(|c| c.name == name)
        .and_then(|c| c.state.as_ref())
        .is_some_and(|st| st.running.is_some())
}

/// Every container restarted once, and the regular ones run again.
fn all_restarted_once(s: &PodStatus) -> bool {
    statuses(s).all(|c| c.restart_count == 1) && is_running(s, "source") && is_running(s, "regular")
}

/// The pod of [`RESTART_ALL`] running, its init container done.
async fn running_pod(h: &Harness) -> PodWorkerHandle {
    h.rt.script("init", Script::exits(0, Duration::from_secs(1)));
    let w = h.spawn(pod(RESTART_ALL));
    h.sink
        .wait_for("running", |s| {
            is_running(s, "source") && is_running(s, "regular")
        })
        .await;
    w
}

fn starts_of(calls: &[Call], name: &str) -> Vec<u32> {
    calls
        .iter()
        .filter_map(|c| match c {
            Call::Start { name: n, attempt } if n == name => Some(*attempt),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_matching_exit_restarts_every_container_in_the_same_sandbox() {
    let h = Harness::new();
    h.rt.script("regular", ignores_stop());
    let _w = running_pod(&h).await;
    let calls_before = h.rt.calls().len();
    let killed_at = Instant::now();
    h.rt.exit("source", 42);
    let s = h.sink.wait_for("all restarted", all_restarted_once).await;

    for c in statuses(&s) {
        let last = c.last_state.clone().and_then(|l| l.terminated);
        let last = last.unwrap_or_else(|| panic!("{} has a last state", c.name));
        assert_eq!(last.exit_code, 137, "{}", c.name);
        assert_eq!(last.reason.as_deref(), Some("RestartingAllContainers"));
        assert_eq!(
            last.message.as_deref(),
            Some("The container is removed because RestartAllContainers in place")
        );
    }
    let calls = h.rt.calls()[calls_before..].to_vec();
    // The regular containers, the init ones, the exit that asked last.
    let removed: Vec<String> = calls
        .iter()
        .filter_map(|c| match c {
            Call::RemoveContainer { name } => Some(name.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(removed, ["regular", "init", "sidecar", "source"]);
    // Run again from the first init container, as attempt 1, in the sandbox.
    assert_eq!(start_order(calls.clone()), NAMES);
    for name in NAMES {
        assert_eq!(starts_of(&calls, name), [1], "{name}");
    }
    assert_eq!(h.rt.sandbox_count(), 1);
    assert!(!calls
        .iter()
        .any(|c| matches!(c, Call::CreateSandbox { .. })));
    // No grace period: SIGKILL 2 s after the stop signal (the kubelet's
    // minimum), and the Killing events say "killing".
    assert_eq!(signals(&calls), [Signal::TERM, Signal::TERM, Signal::KILL]);
    let restarted_at = Instant::now();
    assert!(restarted_at - killed_at >= Duration::from_secs(2));
    assert!(restarted_at - killed_at < Duration::from_secs(5));
    let events = h.sink.events.lock().unwrap().clone();
    let killing: Vec<(Option<String>, String)> = events
        .iter()
        .filter(|e| e.reason == "Killing")
        .map(|e| (e.field_path.clone(), e.message.clone()))
        .collect();
    assert_eq!(
        killing,
        [
            (Some("spec.containers{regular}".into()), "killing".into()),
            (
                Some("spec.initContainers{sidecar}".into()),
                "killing".into()
            ),
        ]
    );

    // AllContainersRestarting was True while they went, False after; the pod
    // never ended, and stayed Initialized (its phase is Pending while its
    // init container runs again, as the kubelet's getPhase counts it).
    let all = h.sink.statuses.lock().unwrap().clone();
    let after_exit = all.iter().skip_while(|s| !is_running(s, "source"));
    let restarting: Vec<&str> = after_exit
        .filter_map(|s| condition(s, "AllContainersRestarting"))
        .map(|c| c.status.as_str())
        .collect();
    assert!(restarting.contains(&"True"), "{restarting:?}");
    assert_eq!(restarting.last(), Some(&"False"));
    let true_condition = all
        .iter()
        .filter_map(|s| condition(s, "AllContainersRestarting"))
        .find(|c| c.status == "True")
        .unwrap();
    assert_eq!(
        true_condition.reason.as_deref(),
        Some("RestartAllContainersStarted")
    );
    assert_eq!(
        true_condition.message.as_deref(),
        Some("container exited with restart policy rule")
    );
    let initialized = all
        .iter()
        .skip_while(|s| condition(s, "Initialized").is_none_or(|c| c.status != "True"));
    for s in initialized {
        assert!(["Running", "Pending"].contains(&phase(s)), "{}", phase(s));
        assert_eq!(condition(s, "Initialized").unwrap().status, "True");
    }
    // While removed, they wait with the kubelet's reason.
    let waiting_reason = |s: &PodStatus, n: &str| {
        statuses(s)
            .find(|c| c.name == n)
            .and_then(|c| c.state.clone())
            .and_then(|st| st.waiting)
            .and_then(|w| w.reason)
    };
    let reset_at = all.iter().position(|s| {
        NAMES
            .iter()
            .all(|n| waiting_reason(s, n).as_deref() == Some("RestartingAllContainers"))
    });
    let reset_at = reset_at.expect("every container waited as RestartingAllContainers");
    // Once: while the init container runs again, the rest wait as usual.
    let rerun = all[reset_at..]
        .iter()
        .find(|s| is_running(s, "init"))
        .expect("init ran again");
    assert_eq!(
        waiting_reason(rerun, "regular").as_deref(),
        Some("PodInitializing")
    );

    // The exit that asked was not the last word: the pod goes on, and an
    // exit no rule matches ends it as the container's policy says.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(starts_of(&h.rt.calls(), "source"), [0, 1]);
    h.rt.exit("source", 1);
    h.rt.exit("regular", 0);
    let s = h.sink.wait_for("Failed", |s| phase(s) == "Failed").await;
    let restarting = condition(&s, "AllContainersRestarting").unwrap();
    assert_eq!(
        (restarting.status.as_str(), restarting.reason.as_deref()),
        ("False", Some("PodFailed"))
    );
}

#[tokio::test(start_paused = true)]
async fn a_restart_of_all_containers_survives_an_agent_restart_in_its_middle() {
    let h = Harness::new();
    h.rt.script("regular", ignores_stop());
    let w = running_pod(&h).await;
    h.rt.exit("source", 42);
    // The agent stops while it waits for `regular` to die: nothing is
    // removed yet, `regular` still runs.
    h.rt.wait_for_calls(|calls| {
        calls
            .iter()
            .any(|c| matches!(c, Call::Signal { name, .. } if name == "regular"))
    })
    .await;
    w.detach().await;
    assert_eq!(h.rt.containers().len(), 4);

    let (sink, _w) = h.adopt(pod(RESTART_ALL), None).await;
    let s = sink.wait_for("all restarted", all_restarted_once).await;
    for c in statuses(&s) {
        let last = c.last_state.clone().and_then(|l| l.terminated).unwrap();
        assert_eq!(last.reason.as_deref(), Some("RestartingAllContainers"));
    }
    tokio::time::sleep(Duration::from_secs(60)).await;
    // Each container once more, as attempt 1, and one instance of each left.
    let calls = h.rt.calls();
    for name in NAMES {
        assert_eq!(starts_of(&calls, name), [0, 1], "{name}");
    }
    let mut left: Vec<String> = h.rt.containers().into_iter().map(|(n, _)| n).collect();
    left.sort();
    assert_eq!(left, ["init", "regular", "sidecar", "source"]);
}

#[tokio::test(start_paused = true)]
async fn an_agent_restart_after_the_removal_keeps_what_ran_since() {
    let h = Harness::new();
    let w = running_pod(&h).await;
    h.rt.exit("source", 42);
    // The agent stops once the init container runs again (attempt 1).
    h.rt.wait_for_calls(|calls| starts_of(calls, "init").len() == 2)
        .await;
    w.detach().await;

    let (sink, _w) = h.adopt(pod(RESTART_ALL), None).await;
    sink.wait_for("all restarted", all_restarted_once).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    let calls = h.rt.calls();
    // The init container that ran after the removal was kept, not run again.
    assert_eq!(starts_of(&calls, "init"), [0, 1]);
    for name in ["sidecar", "source", "regular"] {
        assert_eq!(starts_of(&calls, name), [0, 1], "{name}");
    }
    assert_eq!(h.rt.containers().len(), 4);
    let s = sink.latest();
    assert!(statuses(&s).all(|c| c.restart_count == 1));
}
