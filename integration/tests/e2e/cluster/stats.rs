//! `/stats/summary` and `/metrics/resource` through the API server's node
//! proxy, as metrics-server reads them, for a pod that burns CPU and holds
//! memory; and the kubelet API's `stats` and `metrics` subresources.

use super::*;

/// What the pod's shell holds: a 64 MiB string.
const HELD_BYTES: u64 = 64 << 20;
/// The pod's CPU limit, in nanocores (250m).
const CPU_LIMIT_NANO_CORES: u64 = 250_000_000;

fn container<'a>(summary: &'a Value, pod: &str, container: &str) -> Option<&'a Value> {
    let pod = summary["pods"]
        .as_array()?
        .iter()
        .find(|p| p["podRef"]["name"] == pod)?;
    pod["containers"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == container)
}

/// The value of the one sample of `name{labels}` in a text exposition.
fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    let rest = text
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))?;
    rest.split(' ').next()?.parse().ok()
}

#[tokio::test]
async fn stats_summary_and_resource_metrics_show_a_busy_pods_cpu_and_memory() {
    // The API server proxies only to a node address that is not loopback
    // (`address not allowed`): the node takes its default route's.
    let Some(cp) = ControlPlane::start_or_skip().await else {
        return;
    };
    let kubeconfig = cp.node_kubeconfig("berth-node-stats");
    let Some(c) = join_at(cp, "berth-node-stats", &kubeconfig, None).await else {
        return;
    };
    let pod = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "burn", "namespace": "default"},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "burn",
                "image": TEST_IMAGE,
                "imagePullPolicy": "Never",
                "command": ["sh", "-c", &format!(
                    "x=$(head -c {HELD_BYTES} /dev/zero | tr '\\000' a); echo held ${{#x}}; \
                     while :; do :; done")],
                "resources": {"limits": {"cpu": "250m", "memory": "256Mi"}},
            }],
        },
    });
    let dir = c.agent.work_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("burn.json");
    std::fs::write(&file, pod.to_string()).unwrap();
    c.kubectl_ok(&["create", "-f", &file.display().to_string()]);
    c.wait_pod_phase("burn", "Running").await;
    c.wait_for("the pod to hold its memory", |c| {
        stdout(&c.kubectl(&["logs", "burn"]))
            .contains(&format!("held {HELD_BYTES}"))
            .then_some(())
    })
    .await;

    let summary_path = format!("/api/v1/nodes/{}/proxy/stats/summary", c.node);
    let summary = |c: &Cluster| -> Option<Value> {
        serde_json::from_str(&stdout(&c.kubectl(&["get", "--raw", &summary_path]))).ok()
    };
    // Two reads a second or more apart give a CPU rate.
    let summary = c
        .wait_for("the container's CPU rate", |c| {
            let summary = summary(c)?;
            container(&summary, "burn", "burn")?["cpu"]["usageNanoCores"].as_u64()?;
            Some(summary)
        })
        .await;
    let node = &summary["node"];
    assert_eq!(node["nodeName"], c.node);
    assert!(
        node["cpu"]["usageCoreNanoSeconds"].as_u64().unwrap() > 0,
        "{node}"
    );
    let node_working_set = node["memory"]["workingSetBytes"].as_u64().unwrap();
    assert!(node_working_set > HELD_BYTES, "{node}");
    // Every memory figure is there: the e2e framework's resource monitor
    // dereferences usage, working set and RSS without checking.
    for field in ["usageBytes", "workingSetBytes", "rssBytes"] {
        assert!(
            node["memory"][field].as_u64().unwrap() > 0,
            "{field}: {node}"
        );
    }
    assert!(node["fs"]["capacityBytes"].as_u64().unwrap() > 0, "{node}");

    let burn = container(&summary, "burn", "burn").unwrap();
    let rate = burn["cpu"]["usageNanoCores"].as_u64().unwrap();
    // The busy loop runs at its CFS quota; the window is short and the
    // machine busy, so only the order of magnitude is checked.
    assert!(
        rate > CPU_LIMIT_NANO_CORES / 5 && rate < CPU_LIMIT_NANO_CORES * 2,
        "usageNanoCores {rate}"
    );
    assert!(
        burn["cpu"]["usageCoreNanoSeconds"].as_u64().unwrap() > 0,
        "{burn}"
    );
    let working_set = burn["memory"]["workingSetBytes"].as_u64().unwrap();
    assert!(
        (HELD_BYTES..HELD_BYTES * 3).contains(&working_set),
        "workingSetBytes {working_set}"
    );
    let pod = summary["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["podRef"]["name"] == "burn")
        .unwrap();
    assert_eq!(pod["podRef"]["namespace"], "default");
    let api_pod = c.json(&["get", "pod", "burn"]).unwrap();
    assert_eq!(pod["podRef"]["uid"], api_pod["metadata"]["uid"]);
    assert_eq!(
        burn["startTime"],
        api_pod["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]
    );
    // The pod's cgroup is read just after the container's; memory charges
    // move in per-CPU batches (64 pages) between two reads, CPU time only up.
    assert!(
        pod["memory"]["workingSetBytes"].as_u64().unwrap() + (64 << 12) >= working_set,
        "{pod}"
    );
    assert!(
        pod["cpu"]["usageCoreNanoSeconds"].as_u64().unwrap()
            >= burn["cpu"]["usageCoreNanoSeconds"].as_u64().unwrap(),
        "{pod}"
    );

    // The same numbers as metrics-server scrapes them.
    let metrics = c.kubectl_ok(&[
        "get",
        "--raw",
        &format!("/api/v1/nodes/{}/proxy/metrics/resource", c.node),
    ]);
    let labels = r#"{container="burn",namespace="default",pod="burn"}"#;
    let cpu = sample(
        &metrics,
        &format!("container_cpu_usage_seconds_total{labels}"),
    );
    assert!(cpu.is_some_and(|s| s > 0.0), "{metrics}");
    let memory = sample(
        &metrics,
        &format!("container_memory_working_set_bytes{labels}"),
    );
    assert!(
        memory.is_some_and(|b| (HELD_BYTES as f64..3.0 * HELD_BYTES as f64).contains(&b)),
        "{metrics}"
    );
    let started = jiff::Timestamp::from_second(
        sample(&metrics, &format!("container_start_time_seconds{labels}")).unwrap() as i64,
    )
    .unwrap();
    assert_eq!(
        started.to_string(),
        api_pod["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]
            .as_str()
            .unwrap()
    );
    let pod_labels = r#"{namespace="default",pod="burn"}"#;
    assert!(sample(
        &metrics,
        &format!("pod_cpu_usage_seconds_total{pod_labels}")
    )
    .is_some_and(|s| s > 0.0));
    assert!(sample(
        &metrics,
        &format!("pod_memory_working_set_bytes{pod_labels}")
    )
    .is_some_and(|b| b >= HELD_BYTES as f64));
    assert!(sample(&metrics, "node_cpu_usage_seconds_total").is_some_and(|s| s > 0.0));
    assert!(sample(&metrics, "node_memory_working_set_bytes").is_some_and(|b| b > 0.0));
    assert_eq!(
        sample(&metrics, "resource_scrape_error"),
        Some(0.0),
        "{metrics}"
    );

    // A caller allowed nodes/stats but not nodes/metrics or nodes/proxy:
    // the kubelet API authorizes each path's own subresource.
    c.kubectl_ok(&[
        "create",
        "clusterrole",
        "stats-reader",
        "--verb=get",
        "--resource=nodes/stats",
    ]);
    c.kubectl_ok(&[
        "create",
        "clusterrolebinding",
        "stats-reader",
        "--clusterrole=stats-reader",
        "--serviceaccount=default:default",
    ]);
    c.wait_allowed("stats", "system:serviceaccount:default:default")
        .await;
    let token = c.kubectl_ok(&["create", "token", "default", "-n", "default"]);
    let header = format!("Authorization: Bearer {}", token.trim());
    let port = c.json(&["get", "node", &c.node]).unwrap()["status"]["daemonEndpoints"]
        ["kubeletEndpoint"]["Port"]
        .as_u64()
        .expect("the kubelet port");
    let status = |path: &str| {
        let out = std::process::Command::new("curl")
            .args([
                "-sk",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-H",
                &header,
            ])
            .arg(format!("https://127.0.0.1:{port}{path}"))
            .output()
            .expect("run curl");
        stdout(&out)
    };
    assert_eq!(status("/stats/summary"), "200");
    assert_eq!(status("/metrics/resource"), "403");
    assert_eq!(status("/pods"), "403");
    // Without nodes/proxy the API server refuses before the node is asked.
    let out = c.kubectl(&[
        "get",
        "--raw",
        &summary_path,
        "--as=system:serviceaccount:default:default",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Forbidden")
            || String::from_utf8_lossy(&out.stderr).contains("forbidden"),
        "{out:?}"
    );
}
