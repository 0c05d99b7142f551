//! The node's resources at admission: a pod whose requests do not fit
//! beside those already admitted is rejected as the kubelet rejects it
//! (`OutOfcpu` and the like), and a finished pod's requests are freed.

use berth_integration::*;
use serde_json::{json, Value};

/// A pod that sleeps, requesting `milli_cpu` millicores.
fn requesting(name: &str, milli_cpu: u64) -> Value {
    let mut c = sh_container("app", "exec sleep 3600");
    c["resources"] = json!({ "requests": { "cpu": format!("{milli_cpu}m") } });
    let mut pod = pod(name, "Always", vec![c]);
    pod["spec"]["terminationGracePeriodSeconds"] = 0.into();
    pod
}

#[tokio::test]
async fn pods_whose_requests_do_not_fit_the_node_are_rejected_out_of_cpu() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let capacity = cores * 1000;

    agent
        .apply_yaml(&manifest(&requesting("greedy", 1_000_000_000)))
        .await;
    let greedy = wait_terminal(&agent, "greedy").await;
    assert_eq!(phase(&greedy), "Failed", "{greedy:#}");
    assert_eq!(greedy["status"]["reason"], "OutOfcpu", "{greedy:#}");
    assert_eq!(
        greedy["status"]["message"],
        format!("Pod was rejected: Node didn't have enough resource: cpu, requested: 1000000000, used: 0, capacity: {capacity}")
    );
    let (_, events) = pod_events(&agent, "default", "greedy").await;
    assert!(
        events
            .iter()
            .any(|e| e["reason"] == "OutOfcpu" && e["type"] == "Warning"),
        "{events:#?}"
    );

    // Most of the node, then as much again: the second does not fit.
    let most = capacity * 6 / 10;
    agent
        .apply_yaml(&manifest(&requesting("first", most)))
        .await;
    wait_running(&agent, "first").await;
    agent
        .apply_yaml(&manifest(&requesting("second", most)))
        .await;
    let second = wait_terminal(&agent, "second").await;
    assert_eq!(second["status"]["reason"], "OutOfcpu", "{second:#}");
    assert_eq!(
        second["status"]["message"],
        format!("Pod was rejected: Node didn't have enough resource: cpu, requested: {most}, used: {most}, capacity: {capacity}")
    );

    // Once the first is gone, the same request fits.
    timed_delete(&agent, "first", &[]).await;
    agent
        .apply_yaml(&manifest(&requesting("third", most)))
        .await;
    wait_running(&agent, "third").await;
}

/// A pod its source removed (here: its manifest file) no longer holds the
/// node's resources while it still terminates, as the kubelet's pod manager
/// forgets it at once: the scheduler has already placed the next pod.
#[tokio::test]
async fn a_removed_pod_still_terminating_frees_its_requests() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let most = cores * 1000 * 6 / 10;
    // It ignores SIGTERM: it terminates for its whole 30 s grace period.
    let mut held = requesting("held", most);
    held["spec"]["containers"][0]["command"] =
        json!(["sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"]);
    held["spec"]["terminationGracePeriodSeconds"] = 30.into();
    let file = agent.manifest_dir().join("held.yaml");
    std::fs::write(&file, manifest(&held)).unwrap();
    let running = wait_static_pod(&agent, "held-", "Running", all_running).await;
    let name = running["metadata"]["name"].as_str().unwrap().to_owned();

    std::fs::remove_file(&file).unwrap();
    wait_static_pod(&agent, "held-", "terminating", |p| {
        !p["metadata"]["deletionTimestamp"].is_null()
    })
    .await;
    agent.apply_yaml(&manifest(&requesting("next", most))).await;
    let next = wait_running(&agent, "next").await;
    assert_eq!(phase(&next), "Running", "{next:#}");
    let still = agent.get_pod_json("default", &name).await;
    assert!(
        !still["metadata"]["deletionTimestamp"].is_null(),
        "the removed pod was still terminating when the next was admitted: {still:#}"
    );
}
