//! Memory limits: the cgroup settings the kubelet derives from `resources`,
//! and a container the kernel OOM-kills reported as OOMKilled (from
//! containerd's OOM event; docs/kubelet-semantics.md §4).

use berth_integration::*;
use serde_json::{json, Value};

/// dd's 64 MiB block buffer is filled from /dev/zero: far above 16Mi. As
/// the container's main process it is the one the OOM killer picks.
const HOG: &str = "echo allocating; exec dd if=/dev/zero of=/dev/null bs=64M count=1";

fn limited(name: &str, script: &str, memory: &str) -> Value {
    let mut container = sh_container(name, script);
    container["resources"] = json!({
        "limits": { "memory": memory, "cpu": "500m" },
        "requests": { "memory": memory, "cpu": "250m" },
    });
    container
}

#[tokio::test]
async fn limits_and_requests_become_cgroup_settings() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let script = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes \
                  /sys/fs/cgroup/cpu/cpu.cfs_quota_us \
                  /sys/fs/cgroup/cpu/cpu.cfs_period_us \
                  /sys/fs/cgroup/cpu/cpu.shares";
    agent
        .apply_yaml(&manifest(&pod(
            "limits",
            "Never",
            vec![limited("main", script, "16Mi")],
        )))
        .await;
    let done = wait_terminal(&agent, "limits").await;
    let log = logs(&agent, "limits", "main").await;
    assert_eq!(phase(&done), "Succeeded", "{log}\n{done:#}");
    let values: Vec<&str> = log.lines().collect();
    // 16Mi; 500m of a 100 ms period; 250m as 1024 shares per CPU.
    assert_eq!(values, ["16777216", "50000", "100000", "256"], "{log}");
}

#[tokio::test]
async fn a_container_over_its_memory_limit_is_oom_killed() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    agent
        .apply_yaml(&manifest(&pod(
            "hog",
            "Never",
            vec![limited("main", HOG, "16Mi")],
        )))
        .await;
    let done = wait_terminal(&agent, "hog").await;
    assert_eq!(phase(&done), "Failed", "{done:#}");
    let term = terminated(&done, "main").expect("terminated");
    assert_eq!(term["reason"], "OOMKilled", "{done:#}");
    // The kernel's SIGKILL: 128 + 9.
    assert_eq!(term["exitCode"], 137, "{done:#}");
    let row = get_pods_row(&agent, "hog").await.expect("row");
    assert_eq!(row[2], "OOMKilled", "{row:?}");
    let log = logs(&agent, "hog", "main").await;
    assert_eq!(log.trim_end(), "allocating", "{log}");
}

#[tokio::test]
async fn an_oom_killed_run_shows_in_last_state_after_restart() {
    let Some((_containerd, agent)) = setup_with_back_off(1, 2).await else {
        return;
    };
    // The first run blows its limit; later runs stay small and keep running.
    let script = format!("if [ -f /data/ran ]; then exec sleep 3600; fi; touch /data/ran; {HOG}");
    let mut container = limited("main", &script, "16Mi");
    container["volumeMounts"] = json!([{ "name": "data", "mountPath": "/data" }]);
    let mut spec = pod("hog-restart", "Always", vec![container]);
    spec["spec"]["volumes"] = json!([{ "name": "data", "emptyDir": {} }]);
    agent.apply_yaml(&manifest(&spec)).await;

    let pod = agent
        .wait_for(
            "default",
            "hog-restart",
            "restarted after the OOM kill",
            START_TIMEOUT,
            |p| restart_count(p, "main") >= 1 && is_running(p, "main"),
        )
        .await;
    let last = &container_status(&pod, "main").unwrap()["lastState"]["terminated"];
    assert_eq!(last["reason"], "OOMKilled", "{pod:#}");
    assert_eq!(last["exitCode"], 137, "{pod:#}");
    assert_eq!(phase(&pod), "Running", "{pod:#}");
}
