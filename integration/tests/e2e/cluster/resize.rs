//! In-place resize through the API server's `pods/resize` subresource: the
//! running container's cgroup takes the new CPU and memory without a
//! restart, the status reports them, and a resize the node has no room for
//! stays pending.

use super::*;

/// The container's cgroup file, read inside it (v1 first, then v2), as the
/// upstream resize specs read it: its first field.
fn cgroup_value(c: &Cluster, pod: &str, v1: &str, v2: &str) -> Option<String> {
    let script = format!("cat /sys/fs/cgroup/{v1} 2>/dev/null || cat /sys/fs/cgroup/{v2}");
    let out = c.kubectl(&["exec", pod, "--", "sh", "-c", &script]);
    out.status
        .success()
        .then(|| stdout(&out).split_whitespace().next().map(String::from))
        .flatten()
}

fn memory_limit(c: &Cluster, pod: &str) -> Option<String> {
    cgroup_value(c, pod, "memory/memory.limit_in_bytes", "memory.max")
}

fn cpu_quota(c: &Cluster, pod: &str) -> Option<String> {
    cgroup_value(c, pod, "cpu/cpu.cfs_quota_us", "cpu.max")
}

fn has_resize_condition(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "PodResizePending" || c["type"] == "PodResizeInProgress")
}

#[tokio::test]
async fn a_resize_changes_the_running_containers_cgroup_without_a_restart() {
    let Some(c) = cluster("berth-node-resize").await else {
        return;
    };
    let pod = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "r", "namespace": "default"},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "app",
                "image": TEST_IMAGE,
                "imagePullPolicy": "Never",
                "command": ["sleep", "3600"],
                "resources": {
                    "requests": {"cpu": "100m", "memory": "64Mi"},
                    "limits": {"cpu": "200m", "memory": "128Mi"},
                },
            }],
        },
    });
    let dir = c.agent.work_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("r.json");
    std::fs::write(&file, pod.to_string()).unwrap();
    c.kubectl_ok(&["create", "-f", &file.display().to_string()]);
    let running = c.wait_pod_phase("r", "Running").await;
    let status = &running["status"]["containerStatuses"][0];
    assert_eq!(
        status["allocatedResources"],
        serde_json::json!({"cpu": "100m", "memory": "64Mi"})
    );
    assert_eq!(
        status["resources"]["limits"],
        serde_json::json!({"cpu": "200m", "memory": "128Mi"})
    );
    assert_eq!(memory_limit(&c, "r").as_deref(), Some("134217728"));
    assert_eq!(cpu_quota(&c, "r").as_deref(), Some("20000"));

    c.kubectl_ok(&[
        "patch", "pod", "r", "--subresource", "resize", "-p",
        r#"{"spec":{"containers":[{"name":"app","resources":{"requests":{"cpu":"150m","memory":"96Mi"},"limits":{"cpu":"300m","memory":"192Mi"}}}]}}"#,
    ]);
    let resized = c
        .wait_for("the resize to be applied", |c| {
            let pod = c.json(&["get", "pod", "r"])?;
            let done = pod["status"]["observedGeneration"].as_i64()
                >= pod["metadata"]["generation"].as_i64()
                && !has_resize_condition(&pod)
                && pod["status"]["containerStatuses"][0]["resources"]["limits"]["memory"]
                    == "192Mi";
            done.then_some(pod)
        })
        .await;
    let status = &resized["status"]["containerStatuses"][0];
    assert_eq!(
        status["allocatedResources"],
        serde_json::json!({"cpu": "150m", "memory": "96Mi"})
    );
    assert_eq!(
        status["resources"],
        serde_json::json!({
            "requests": {"cpu": "150m", "memory": "96Mi"},
            "limits": {"cpu": "300m", "memory": "192Mi"},
        })
    );
    assert_eq!(status["restartCount"], 0, "resized in place");
    assert_eq!(memory_limit(&c, "r").as_deref(), Some("201326592"));
    assert_eq!(cpu_quota(&c, "r").as_deref(), Some("30000"));
    c.wait_for("the ResizeStarted and ResizeCompleted events", |c| {
        let events =
            stdout(&c.kubectl(&["get", "events", "--field-selector", "involvedObject.name=r"]));
        (events.contains(reasons::RESIZE_STARTED) && events.contains(reasons::RESIZE_COMPLETED))
            .then_some(())
    })
    .await;

    // More CPU than the node has left beside another pod: pending, the
    // cgroup left as it is, until that pod goes.
    let node = c.json(&["get", "node", &c.node]).expect("the node");
    let allocatable = berth_api::quantity::milli_value(
        node["status"]["allocatable"]["cpu"]
            .as_str()
            .expect("allocatable cpu"),
    )
    .expect("a quantity");
    let hog = allocatable - 500;
    let hog_pod = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "hog", "namespace": "default"},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": "hog",
                "image": TEST_IMAGE,
                "imagePullPolicy": "Never",
                "command": ["sleep", "3600"],
                "resources": {"requests": {"cpu": format!("{hog}m")}},
            }],
        },
    });
    let file = dir.join("hog.json");
    std::fs::write(&file, hog_pod.to_string()).unwrap();
    c.kubectl_ok(&["create", "-f", &file.display().to_string()]);
    c.wait_pod_phase("hog", "Running").await;
    c.kubectl_ok(&[
        "patch", "pod", "r", "--subresource", "resize", "-p",
        r#"{"spec":{"containers":[{"name":"app","resources":{"requests":{"cpu":"600m"},"limits":{"cpu":"600m"}}}]}}"#,
    ]);
    let pending = c
        .wait_for("the resize to be deferred", |c| {
            let pod = c.json(&["get", "pod", "r"])?;
            pod["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "PodResizePending")
                .cloned()
        })
        .await;
    assert_eq!(pending["reason"], "Deferred");
    assert_eq!(
        pending["message"],
        format!(
            "Node didn't have enough resource: cpu, requested: 600, used: {hog}, capacity: {allocatable}"
        )
    );
    assert_eq!(cpu_quota(&c, "r").as_deref(), Some("30000"));

    c.kubectl_ok(&["delete", "pod", "hog", "--wait=false"]);
    let resized = c
        .wait_for("the deferred resize to be applied", |c| {
            let pod = c.json(&["get", "pod", "r"])?;
            (!has_resize_condition(&pod)
                && pod["status"]["containerStatuses"][0]["resources"]["limits"]["cpu"] == "600m")
                .then_some(pod)
        })
        .await;
    assert_eq!(resized["status"]["containerStatuses"][0]["restartCount"], 0);
    assert_eq!(cpu_quota(&c, "r").as_deref(), Some("60000"));
}
