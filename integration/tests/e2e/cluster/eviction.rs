//! The upstream spec "evicted pods should be terminal" in cluster mode: the
//! API server sees the pod Failed with reason `Evicted` and the Warning
//! event, and the pod can be deleted afterwards.

use super::*;

#[tokio::test]
async fn a_pod_over_its_ephemeral_storage_limit_is_evicted_as_the_api_server_sees_it() {
    let Some(c) = cluster("berth-node-ev").await else {
        return;
    };
    let pod = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "pod-should-be-evicted", "namespace": "default"},
        "spec": {
            "nodeName": c.node,
            "restartPolicy": "OnFailure",
            "containers": [{
                "name": "bar",
                "image": TEST_IMAGE,
                "command": ["/bin/sh", "-c", "sleep 1; dd if=/dev/zero of=file bs=1M count=10; sleep 10000"],
                "resources": {"limits": {"ephemeral-storage": "5Mi"}},
            }],
        },
    });
    let file = c.agent.work_dir().join("evicted.json");
    std::fs::create_dir_all(c.agent.work_dir()).unwrap();
    std::fs::write(&file, pod.to_string()).unwrap();
    c.kubectl_ok(&["create", "-f", &file.display().to_string()]);

    let failed = c.wait_pod_phase("pod-should-be-evicted", "Failed").await;
    assert_eq!(failed["status"]["reason"], "Evicted", "{failed:#}");
    assert_eq!(
        failed["status"]["message"],
        "Pod ephemeral local storage usage exceeds the total limit of containers 5Mi. ",
        "{failed:#}"
    );
    let events = c
        .wait_for("the Evicted event", |c| {
            let list = c.json(&["get", "events", "--field-selector", "reason=Evicted"])?;
            let items = list["items"].as_array()?.clone();
            (!items.is_empty()).then_some(items)
        })
        .await;
    assert_eq!(events[0]["type"], "Warning", "{events:#?}");
    assert_eq!(events[0]["involvedObject"]["name"], "pod-should-be-evicted");
    c.kubectl_ok(&["delete", "pod", "pod-should-be-evicted"]);
}
