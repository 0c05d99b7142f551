//! A standalone container's environment from the downward API's
//! `resourceFieldRef` and `fieldRef`, and `envFrom` without an API server.

use berth_integration::*;
use serde_json::{json, Value};

/// The host's allocatable as berth's Node would report it: MemTotal less
/// the kubelet's 100Mi hard eviction threshold, in KiB, and the CPUs.
fn host_allocatable() -> (u64, usize) {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let total: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    let cpus = cpuinfo
        .lines()
        .filter(|l| l.split(':').next().is_some_and(|k| k.trim() == "processor"))
        .count();
    (total - 100 * 1024, cpus)
}

fn resource(name: &str, resource: &str, divisor: &str, container: Option<&str>) -> Value {
    let mut selector = json!({ "resource": resource, "divisor": divisor });
    if let Some(container) = container {
        selector["containerName"] = json!(container);
    }
    json!({ "name": name, "valueFrom": { "resourceFieldRef": selector } })
}

#[tokio::test]
async fn resource_field_refs_read_limits_requests_and_the_node_allocatable() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let mut sized = sh_container("sized", "echo $CPU $CPU_REQ $MEM $SIDE_MEM $SIDE_CPU");
    sized["resources"] = json!({
        "limits": { "cpu": "250m", "memory": "64Mi" },
        "requests": { "cpu": "100m" },
    });
    sized["env"] = json!([
        resource("CPU", "limits.cpu", "1m", None),
        resource("CPU_REQ", "requests.cpu", "1m", None),
        resource("MEM", "limits.memory", "1Mi", None),
        resource("SIDE_MEM", "limits.memory", "1Ki", Some("side")),
        resource("SIDE_CPU", "limits.cpu", "1", Some("side")),
    ]);
    let side = sh_container("side", "true");
    agent
        .apply_yaml(&manifest(&pod("resources", "Never", vec![sized, side])))
        .await;
    let done = wait_terminal(&agent, "resources").await;
    assert_eq!(phase(&done), "Succeeded", "{done:#}");

    let (memory_ki, cpus) = host_allocatable();
    let log = logs(&agent, "resources", "sized").await;
    assert_eq!(log.trim_end(), format!("250 100 64 {memory_ki} {cpus}"));
}

#[tokio::test]
async fn env_from_without_an_api_server_finds_no_objects() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let mut optional = sh_container("optional", "echo ok=$OK; sleep 3600");
    optional["envFrom"] = json!([{ "configMapRef": { "name": "settings", "optional": true } }]);
    optional["env"] = json!([{ "name": "OK", "value": "yes" }]);
    let mut required = sh_container("required", "sleep 3600");
    required["envFrom"] = json!([{ "secretRef": { "name": "creds" } }]);
    let mut spec = pod("envfrom", "Always", vec![optional, required]);
    spec["spec"]["terminationGracePeriodSeconds"] = json!(1);
    agent.apply_yaml(&manifest(&spec)).await;

    let pod = agent
        .wait_for(
            "default",
            "envfrom",
            "the missing secret reported",
            START_TIMEOUT,
            |p| {
                is_running(p, "optional")
                    && waiting_reason(p, "required") == Some("CreateContainerConfigError")
            },
        )
        .await;
    let waiting = &container_status(&pod, "required").unwrap()["state"]["waiting"];
    assert_eq!(waiting["message"], r#"secrets "creds" not found"#);
    let log = logs(&agent, "envfrom", "optional").await;
    assert_eq!(log.trim_end(), "ok=yes");
}

fn field(name: &str, path: &str) -> Value {
    json!({ "name": name, "valueFrom": { "fieldRef": { "fieldPath": path } } })
}

#[tokio::test]
async fn ip_field_refs_read_the_pods_and_the_nodes_ips() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let mut ips = sh_container("ips", "echo $POD_IP $POD_IPS $HOST_IP $HOST_IPS");
    ips["env"] = json!([
        field("POD_IP", "status.podIP"),
        field("POD_IPS", "status.podIPs"),
        field("HOST_IP", "status.hostIP"),
        field("HOST_IPS", "status.hostIPs"),
    ]);
    agent
        .apply_yaml(&manifest(&pod("ips", "Never", vec![ips])))
        .await;
    let done = wait_terminal(&agent, "ips").await;
    assert_eq!(phase(&done), "Succeeded", "{done:#}");

    // The values the status reports.
    let status = &done["status"];
    let pod_ip = status["podIP"].as_str().expect("a pod IP");
    assert!(pod_ip.parse::<std::net::IpAddr>().is_ok(), "{status:#}");
    let host_ip = status["hostIP"].as_str().expect("a host IP");
    assert_ne!(pod_ip, host_ip, "the pod has its own network");
    let log = logs(&agent, "ips", "ips").await;
    assert_eq!(
        log.trim_end(),
        format!("{pod_ip} {pod_ip} {host_ip} {host_ip}")
    );
}

fn file_key(name: &str, key: &str, optional: bool) -> Value {
    json!({
        "name": name,
        "valueFrom": { "fileKeyRef": {
            "volumeName": "config", "path": "vars/app.env", "key": key, "optional": optional
        } }
    })
}

#[tokio::test]
async fn file_key_refs_read_an_env_file_an_init_container_wrote() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let mount = json!([{ "name": "config", "mountPath": "/config" }]);
    let mut writer = sh_container(
        "writer",
        "mkdir -p /config/vars && printf \"# written at init\\nGREETING='hello world' # inline\\nMULTI='a\\nb'\\n\" > /config/vars/app.env",
    );
    writer["volumeMounts"] = mount.clone();
    let mut app = sh_container(
        "app",
        "echo \"[$GREETING] [$MULTI] [${OPT-unset}]\"; sleep 3600",
    );
    app["env"] = json!([
        file_key("GREETING", "GREETING", false),
        file_key("MULTI", "MULTI", false),
        file_key("OPT", "ABSENT", true),
    ]);
    let mut missing = sh_container("missing", "sleep 3600");
    missing["env"] = json!([file_key("NOPE", "NOPE", false)]);
    let mut spec = pod("env-files", "Always", vec![app, missing]);
    spec["spec"]["initContainers"] = json!([writer]);
    spec["spec"]["volumes"] = json!([{ "name": "config", "emptyDir": {} }]);
    spec["spec"]["terminationGracePeriodSeconds"] = json!(1);
    agent.apply_yaml(&manifest(&spec)).await;

    let pod = agent
        .wait_for(
            "default",
            "env-files",
            "app running, the missing key reported",
            START_TIMEOUT,
            |p| {
                is_running(p, "app")
                    && waiting_reason(p, "missing") == Some("CreateContainerConfigError")
            },
        )
        .await;
    let message = container_status(&pod, "missing").unwrap()["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let file = format!(
        "/pods/{}/volumes/kubernetes.io~empty-dir/config/vars/app.env\"",
        uid(&pod)
    );
    assert!(
        message.starts_with("environment variable key \"NOPE\" not found in file \"")
            && message.ends_with(&file),
        "{message}"
    );
    let log = wait_log_contains(&agent, "env-files", "app", "unset]").await;
    assert_eq!(log.trim_end(), "[hello world] [a\nb] [unset]");
}
