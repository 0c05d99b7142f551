//! The pod network is set up while the pod's first container is made: its
//! start, and a container whose environment reads the pod IP, wait for it.

use berth_runtime::RuntimeError;

use super::*;

/// The calls that show the order of a pod's start.
fn start_steps(calls: Vec<Call>) -> Vec<String> {
    calls
        .into_iter()
        .filter_map(|c| match c {
            Call::CreateSandbox { .. } => Some("sandbox".into()),
            Call::NetworkReady { .. } => Some("network".into()),
            Call::CreateContainer { name, .. } => Some(format!("create {name}")),
            Call::Start { name, .. } => Some(format!("start {name}")),
            Call::RemoveContainer { name } => Some(format!("remove {name}")),
            Call::RemoveSandbox { .. } => Some("remove sandbox".into()),
            _ => None,
        })
        .collect()
}

/// The pod's `/etc/hosts` as container `name` has it mounted.
fn etc_hosts(h: &Harness, name: &str) -> String {
    let mounts = h.rt.mounts(name).expect("the container was created");
    let hosts = mounts
        .iter()
        .find(|m| m.container_path == "/etc/hosts")
        .expect("/etc/hosts is mounted");
    std::fs::read_to_string(&hosts.host_path).unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_first_container_is_made_while_the_network_is_set_up_and_starts_after_it() {
    let h = Harness::new();
    h.rt.network_delay(Duration::from_millis(50));
    let _w = h.spawn(pod(ONE));
    let running = h.sink.wait_for("Running", |s| phase(s) == "Running").await;
    assert_eq!(
        start_steps(h.rt.calls()),
        ["sandbox", "create app", "network", "start app"]
    );
    let ip = running.pod_ip.expect("a Running pod has its IP");
    // Bind-mounted when the container was made, rewritten in place since.
    let hosts = etc_hosts(&h, "app");
    assert!(hosts.contains(&format!("\n{ip}\tweb\n")), "{hosts}");
    let timeline = h.sink.timeline.lock().unwrap().clone();
    let network = timeline
        .iter()
        .find(|e| e.step == TimelineStep::NetworkReady);
    assert_eq!(network.map(|e| e.detail.as_str()), Some(ip.as_str()));
}

#[tokio::test(start_paused = true)]
async fn a_container_whose_environment_reads_the_pod_ip_is_made_once_the_network_is_up() {
    let h = Harness::new();
    h.rt.network_delay(Duration::from_millis(50));
    let _w = h.spawn(pod("
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: app
    image: busybox
    env:
    - name: POD_IP
      valueFrom: {fieldRef: {fieldPath: status.podIP}}
"));
    let running = h.sink.wait_for("Running", |s| phase(s) == "Running").await;
    assert_eq!(
        start_steps(h.rt.calls()),
        ["sandbox", "network", "create app", "start app"]
    );
    let ip = running.pod_ip.expect("a Running pod has its IP");
    let env = h.rt.env("app").unwrap();
    assert!(env.contains(&("POD_IP".into(), ip)), "{env:?}");
}

#[tokio::test(start_paused = true)]
async fn a_network_that_fails_removes_the_container_made_meanwhile_and_the_sandbox() {
    let h = Harness::new();
    h.rt.fail_network(Some(RuntimeError::other(
        "create sandbox for pod default/web: plugin bridge failed",
    )));
    let _w = h.spawn(pod(ONE));
    let failed = h
        .sink
        .wait_for("the sandbox removed", |_| {
            h.rt.calls()
                .iter()
                .any(|c| matches!(c, Call::RemoveSandbox { .. }))
        })
        .await;
    assert_eq!(
        start_steps(h.rt.calls()),
        ["sandbox", "create app", "remove app", "remove sandbox"]
    );
    assert_eq!(failed.pod_ip, None);
    assert_eq!(waiting_reason(&failed, "app"), Some("ContainerCreating"));
    let events = h.sink.events.lock().unwrap().clone();
    let sandbox_failed: Vec<&str> = events
        .iter()
        .filter(|e| e.reason == "FailedCreatePodSandBox")
        .map(|e| e.message.as_str())
        .collect();
    assert_eq!(
        sandbox_failed,
        ["Failed to create pod sandbox: create sandbox for pod default/web: plugin bridge failed"]
    );
    assert!(!h.sink.reasons().contains(&"Created"), "{events:?}");
    assert_eq!(h.rt.sandbox_count(), 0);

    // The next try, in a new sandbox, works.
    h.rt.fail_network(None);
    let running = h.sink.wait_for("Running", |s| phase(s) == "Running").await;
    assert!(running.pod_ip.is_some());
    let sandboxes =
        h.rt.calls()
            .into_iter()
            .filter(|c| matches!(c, Call::CreateSandbox { .. }));
    assert_eq!(sandboxes.count(), 2);
}
