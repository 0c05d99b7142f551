//! Local storage limits, as the kubelet's eviction manager enforces them: a
//! pod whose containers write past their `ephemeral-storage` limits, or an
//! emptyDir past its `sizeLimit`, is evicted (Failed, reason `Evicted`, the
//! kubelet's message, a Warning event) and not restarted.

use std::time::Duration;

use berth_integration::*;
use serde_json::{json, Value};

/// One monitoring period (10 s) after the write, plus the pod's start and
/// its stop; a slow machine gets a generous margin.
const EVICTION_TIMEOUT: Duration = Duration::from_secs(90);

fn limited(name: &str, script: &str, limit: &str) -> Value {
    let mut container = sh_container(name, script);
    container["resources"] = json!({ "limits": { "ephemeral-storage": limit } });
    container
}

/// Waits until the pod is evicted and every container of it has stopped.
async fn wait_evicted(agent: &AgentProcess, name: &str) -> Value {
    agent
        .wait_for("default", name, "Evicted", EVICTION_TIMEOUT, |p| {
            phase(p) == "Failed"
                && p["status"]["reason"] == "Evicted"
                && terminated(p, p["spec"]["containers"][0]["name"].as_str().unwrap_or(""))
                    .is_some()
        })
        .await
}

async fn metrics_text(agent: &AgentProcess) -> String {
    let (_, body) = berth_testkit::agent::api_get(&agent.socket(), "/metrics")
        .await
        .expect("GET /metrics answers");
    String::from_utf8_lossy(&body).into_owned()
}

/// The upstream spec "evicted pods should be terminal": its pod, a 10 MiB
/// write into the root filesystem against a 5Mi limit; and beside it a pod
/// that stays within its limit.
#[tokio::test]
async fn a_pod_over_its_ephemeral_storage_limit_is_evicted_and_stays_failed() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let within = limited(
        "bar",
        "dd if=/dev/zero of=file bs=1M count=1; exec sleep 10000",
        "5Mi",
    );
    agent
        .apply_yaml(&manifest(&pod("within-limit", "OnFailure", vec![within])))
        .await;
    let hog = limited(
        "bar",
        "sleep 1; dd if=/dev/zero of=file bs=1M count=10; exec sleep 10000",
        "5Mi",
    );
    agent
        .apply_yaml(&manifest(&pod("should-be-evicted", "OnFailure", vec![hog])))
        .await;

    let evicted = wait_evicted(&agent, "should-be-evicted").await;
    assert_eq!(
        evicted["status"]["message"],
        "Pod ephemeral local storage usage exceeds the total limit of containers 5Mi. ",
        "{evicted:#}"
    );
    assert_eq!(restart_count(&evicted, "bar"), 0, "{evicted:#}");
    let (_, events) = pod_events(&agent, "default", "should-be-evicted").await;
    let event = events
        .iter()
        .find(|e| e["reason"] == "Evicted")
        .unwrap_or_else(|| panic!("no Evicted event: {events:#?}"));
    assert_eq!(event["type"], "Warning", "{event:#}");
    assert_eq!(event["message"], evicted["status"]["message"], "{event:#}");
    let metrics = metrics_text(&agent).await;
    assert!(
        metrics.contains("kubelet_evictions_total{eviction_signal=\"ephemeralpodfs.limit\"} 1"),
        "{metrics}"
    );

    // A monitoring pass ran after both writes: the pod within its limit
    // runs on. The evicted one is not restarted over the next pass either.
    let kept = agent.get_pod_json("default", "within-limit").await;
    assert_eq!(phase(&kept), "Running", "{kept:#}");
    assert!(is_running(&kept, "bar"), "{kept:#}");
    tokio::time::sleep(Duration::from_secs(11)).await; // one more period, to see nothing happen
    let later = agent.get_pod_json("default", "should-be-evicted").await;
    assert_eq!(phase(&later), "Failed", "{later:#}");
    assert_eq!(restart_count(&later, "bar"), 0, "{later:#}");
    let kept = agent.get_pod_json("default", "within-limit").await;
    assert_eq!(phase(&kept), "Running", "{kept:#}");
}

/// Evicted for good: not even an agent restart (which adopts the pod's
/// exited container) runs it again under `restartPolicy: Always`.
#[tokio::test]
async fn an_empty_dir_over_its_size_limit_evicts_the_pod_for_good() {
    let Some((_containerd, mut agent)) = setup().await else {
        return;
    };
    let mut writer = sh_container(
        "writer",
        "dd if=/dev/zero of=/scratch/blob bs=1M count=2; exec sleep 10000",
    );
    writer["volumeMounts"] = json!([{ "name": "scratch", "mountPath": "/scratch" }]);
    let mut spec = pod("sized-scratch", "Always", vec![writer]);
    spec["spec"]["volumes"] = json!([{ "name": "scratch", "emptyDir": { "sizeLimit": "1Mi" } }]);
    agent.apply_yaml(&manifest(&spec)).await;

    let evicted = wait_evicted(&agent, "sized-scratch").await;
    assert_eq!(
        evicted["status"]["message"],
        "Usage of EmptyDir volume \"scratch\" exceeds the limit \"1Mi\". ",
        "{evicted:#}"
    );
    let metrics = metrics_text(&agent).await;
    assert!(
        metrics.contains("kubelet_evictions_total{eviction_signal=\"emptydirfs.limit\"} 1"),
        "{metrics}"
    );

    agent.stop().await;
    agent.launch().await;
    let adopted = agent
        .wait_for("default", "sized-scratch", "adopted", START_TIMEOUT, |p| {
            terminated(p, "writer").is_some()
        })
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await; // time for a wrong restart to show
    let later = agent.get_pod_json("default", "sized-scratch").await;
    for pod in [&adopted, &later] {
        assert_eq!(phase(pod), "Failed", "{pod:#}");
        assert_eq!(pod["status"]["reason"], "Evicted", "{pod:#}");
        assert_eq!(
            pod["status"]["message"], evicted["status"]["message"],
            "{pod:#}"
        );
        assert_eq!(restart_count(pod, "writer"), 0, "{pod:#}");
    }
}

#[tokio::test]
async fn a_container_over_its_own_limit_evicts_the_pod() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let small = limited(
        "small",
        "dd if=/dev/zero of=/blob bs=1M count=3; exec sleep 10000",
        "2Mi",
    );
    let big = limited("big", "exec sleep 10000", "100Mi");
    agent
        .apply_yaml(&manifest(&pod("one-over", "Always", vec![small, big])))
        .await;

    let evicted = wait_evicted(&agent, "one-over").await;
    assert_eq!(
        evicted["status"]["message"],
        "Container small exceeded its local ephemeral storage limit \"2Mi\". ",
        "{evicted:#}"
    );
    assert!(terminated(&evicted, "big").is_some(), "{evicted:#}");
}
