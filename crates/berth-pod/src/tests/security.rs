//! securityContext refusals the worker reports as the kubelet does.

use super::*;

#[tokio::test(start_paused = true)]
async fn run_as_non_root_on_a_root_image_is_a_create_container_config_error() {
    let h = Harness::new();
    let _w = h.spawn(pod("
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  securityContext: {runAsNonRoot: true}
  containers:
  - {name: app, image: busybox}
"));
    let s = h
        .sink
        .wait_for("CreateContainerConfigError", |s| {
            s.container_statuses.is_some()
                && waiting_reason(s, "app") == Some("CreateContainerConfigError")
        })
        .await;
    let waiting = container(&s, "app").state.clone().unwrap().waiting.unwrap();
    assert_eq!(
        waiting.message.as_deref(),
        Some(
            r#"container has runAsNonRoot and image will run as root (pod: "web_default(uid-1)", container: app)"#
        )
    );
    assert!(!h
        .rt
        .calls()
        .iter()
        .any(|c| matches!(c, Call::CreateContainer { .. })));
}

#[tokio::test(start_paused = true)]
async fn a_pod_asking_for_a_user_namespace_gets_no_sandbox() {
    let h = Harness::new();
    let _w = h.spawn(pod("
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  hostUsers: false
  containers:
  - {name: app, image: busybox}
"));
    h.sink.wait_for("a status", |s| phase(s) == "Pending").await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(h.rt.sandbox_count(), 0);
    let events = h.sink.events.lock().unwrap().clone();
    let failed: Vec<_> = events
        .iter()
        .filter(|e| e.reason == reasons::FAILED_CREATE_POD_SANDBOX)
        .collect();
    assert!(failed.len() >= 2, "retried: {events:#?}");
    assert_eq!(
        failed[0].message,
        r#"Failed to create pod sandbox: RuntimeClass handler "" does not support user namespaces"#
    );
}
