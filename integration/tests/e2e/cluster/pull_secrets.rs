//! imagePullSecrets in cluster mode: the node reads the pod's pull secret
//! from the API server and pulls with its credentials from a registry that
//! wants them (a basic-auth registry on loopback).

use berth_testkit::registry::LocalRegistry;
use berth_testkit::write_busybox_archive;

use super::*;

/// The events of pod `name` with `reason`: their messages.
fn pod_events(c: &Cluster, name: &str, reason: &str) -> Vec<String> {
    let selector = format!("involvedObject.name={name},reason={reason}");
    c.json(&["get", "events", "--field-selector", &selector])
        .and_then(|list| list["items"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e["message"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn a_pod_pulls_from_a_private_registry_with_its_pull_secret() {
    let Some(registry) = LocalRegistry::start_or_skip(Some(("puller", "s3cret"))).await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = write_busybox_archive(dir.path(), "registry.test/busybox:1");
    registry.push(&archive, "busybox:1").await;
    let Some(c) = cluster("berth-node-pull-secret").await else {
        return;
    };
    let pod = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "private", "namespace": "default"},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "imagePullSecrets": [{"name": "regcred"}],
            "containers": [{
                "name": "main",
                "image": registry.reference("busybox:1"),
                "command": ["sleep", "3600"],
            }],
        },
    });
    let file = c.agent.work_dir().join("private.json");
    std::fs::create_dir_all(c.agent.work_dir()).unwrap();
    std::fs::write(&file, pod.to_string()).unwrap();
    c.kubectl_ok(&["create", "-f", &file.display().to_string()]);

    // No secret yet: a Warning, and the anonymous pull is refused.
    let failed = c
        .wait_for("the anonymous pull to fail", |c| {
            let failed = pod_events(c, "private", reasons::FAILED);
            failed
                .into_iter()
                .find(|m| m.starts_with("Failed to pull image"))
        })
        .await;
    assert!(failed.contains("unauthorized"), "{failed}");
    assert_eq!(
        pod_events(&c, "private", reasons::FAILED_TO_RETRIEVE_IMAGE_PULL_SECRET)[0],
        "Unable to retrieve some image pull secrets (regcred); attempting to pull the image may not succeed."
    );
    let pod = c.json(&["get", "pod", "private"]).expect("the pod");
    let reason = pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        reason == "ErrImagePull" || reason == "ImagePullBackOff",
        "{reason}"
    );

    // The secret, created now, serves the next try.
    c.kubectl_ok(&[
        "create",
        "secret",
        "docker-registry",
        "regcred",
        &format!("--docker-server={}", registry.host()),
        "--docker-username=puller",
        "--docker-password=s3cret",
    ]);
    c.wait_pod_phase("private", "Running").await;
    assert!(!c.agent.agent_log().contains("s3cret"));
}
