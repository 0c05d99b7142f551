//! Ephemeral containers (`kubectl debug`): added to a running pod's spec,
//! started once, never restarted, outside the pod's phase and readiness,
//! and reported in `ephemeralContainerStatuses`.

use k8s_openapi::api::core::v1::ContainerStatus;

use super::*;

const WITH_DEBUGGER: &str = "
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - {name: app, image: busybox}
  ephemeralContainers:
  - {name: dbg, image: busybox, targetContainerName: app}
";

fn ephemeral<'a>(s: &'a PodStatus, name: &str) -> Option<&'a ContainerStatus> {
    s.ephemeral_container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == name)
}

fn ready(s: &PodStatus) -> bool {
    s.conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// The running pod `app`, then `dbg` added to it.
async fn debugged(h: &Harness) -> PodWorkerHandle {
    let w = h.spawn(pod(ONE));
    h.sink.wait_for("Running", |s| phase(s) == "Running").await;
    assert!(h.sink.latest().ephemeral_container_statuses.is_none());
    w.update(pod(WITH_DEBUGGER));
    w
}

#[tokio::test(start_paused = true)]
async fn an_added_ephemeral_container_runs_in_its_targets_pid_namespace() {
    let h = Harness::new();
    let _w = debugged(&h).await;
    let s = h
        .sink
        .wait_for("dbg running", |s| {
            ephemeral(s, "dbg").is_some_and(|c| c.state.as_ref().unwrap().running.is_some())
        })
        .await;
    let dbg = ephemeral(&s, "dbg").unwrap();
    // As the kubelet reports it: no readiness, no `started`, no restarts.
    assert!(!dbg.ready);
    assert_eq!(dbg.started, None);
    assert_eq!(dbg.restart_count, 0);
    assert_eq!(dbg.image, "busybox");
    assert!(dbg
        .container_id
        .as_deref()
        .unwrap()
        .starts_with("containerd://"));
    assert_eq!(h.rt.pid_target("dbg"), h.rt.id_of("app"));
    assert_eq!(h.rt.pid_target("app"), None);
    assert_eq!(s.container_statuses.as_ref().unwrap().len(), 1);
    assert_eq!(phase(&s), "Running");
    let events = h.sink.events.lock().unwrap().clone();
    let dbg_events: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e.field_path.as_deref() == Some("spec.ephemeralContainers{dbg}"))
        .filter(|e| e.reason == reasons::CREATED || e.reason == reasons::STARTED)
        .map(|e| (e.reason, e.message.as_str()))
        .collect();
    assert_eq!(
        dbg_events,
        vec![
            (reasons::CREATED, "Container created"),
            (reasons::STARTED, "Container started")
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn an_exited_ephemeral_container_is_never_restarted_and_leaves_the_pod_ready() {
    let h = Harness::new();
    let _w = debugged(&h).await;
    h.rt.wait_for_calls(|calls| {
        calls
            .iter()
            .any(|c| matches!(c, Call::Start { name, .. } if name == "dbg"))
    })
    .await;
    h.sink
        .wait_for("dbg running", |s| {
            ephemeral(s, "dbg").is_some_and(|c| c.state.as_ref().unwrap().running.is_some())
        })
        .await;
    h.rt.exit("dbg", 1);
    let s = h
        .sink
        .wait_for("dbg terminated", |s| {
            ephemeral(s, "dbg").is_some_and(|c| c.state.as_ref().unwrap().terminated.is_some())
        })
        .await;
    let terminated = ephemeral(&s, "dbg").unwrap().state.clone().unwrap();
    assert_eq!(terminated.terminated.unwrap().exit_code, 1);
    tokio::time::sleep(Duration::from_secs(600)).await;
    let s = h.sink.latest();
    assert_eq!(
        h.starts("dbg"),
        1,
        "restartPolicy Always does not restart it"
    );
    assert_eq!(ephemeral(&s, "dbg").unwrap().restart_count, 0);
    assert_eq!(phase(&s), "Running");
    assert!(ready(&s), "the pod stays Ready: {:?}", s.conditions);
}

#[tokio::test(start_paused = true)]
async fn an_adopted_ephemeral_container_is_not_started_again() {
    let h = Harness::new();
    let w = debugged(&h).await;
    h.sink
        .wait_for("dbg running", |s| {
            ephemeral(s, "dbg").is_some_and(|c| c.state.as_ref().unwrap().running.is_some())
        })
        .await;
    h.rt.exit("dbg", 0);
    h.sink
        .wait_for("dbg terminated", |s| {
            ephemeral(s, "dbg").is_some_and(|c| c.state.as_ref().unwrap().terminated.is_some())
        })
        .await;
    drop(w);
    // The agent restarts: a new worker for the same pod adopts.
    let (sink, _w) = h.adopt(pod(WITH_DEBUGGER), None).await;
    let s = sink
        .wait_for("adopted", |s| {
            ephemeral(s, "dbg").is_some_and(|c| c.state.as_ref().unwrap().terminated.is_some())
        })
        .await;
    assert_eq!(phase(&s), "Running");
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(h.starts("dbg"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_missing_target_is_a_create_container_config_error() {
    let h = Harness::new();
    let w = h.spawn(pod(ONE));
    h.sink.wait_for("Running", |s| phase(s) == "Running").await;
    w.update(pod(&WITH_DEBUGGER.replace(
        "targetContainerName: app",
        "targetContainerName: nope",
    )));
    let s = h
        .sink
        .wait_for("dbg waiting", |s| {
            ephemeral(s, "dbg").and_then(|c| c.state.as_ref()?.waiting.as_ref()?.reason.as_deref())
                == Some("CreateContainerConfigError")
        })
        .await;
    let waiting = ephemeral(&s, "dbg")
        .unwrap()
        .state
        .clone()
        .unwrap()
        .waiting
        .unwrap();
    assert_eq!(
        waiting.message.as_deref(),
        Some("unable to find target container nope")
    );
    assert_eq!(h.starts("dbg"), 0);
    assert!(h
        .sink
        .events
        .lock()
        .unwrap()
        .iter()
        .any(|e| e.reason == reasons::FAILED
            && e.message == "Error: unable to find target container nope"));
    assert_eq!(phase(&s), "Running");
}
