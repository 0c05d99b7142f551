//! hostPath volumes: DirectoryOrCreate makes the directory; a failed type
//! check holds the pod in ContainerCreating, as the kubelet's FailedMount does.
//! emptyDir volumes of medium Memory are a tmpfs of the kubelet's size.

use std::time::Duration;

use berth_api::reasons;
use berth_integration::*;
use serde_json::json;
use tokio::time::Instant;

#[tokio::test]
async fn host_path_directory_or_create_makes_the_directory() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let host_dir = agent.work_dir().join("hostpath").join("made-by-berth");
    assert!(!host_dir.exists());
    let mut writer = sh_container("writer", "echo written > /mnt/hp/file && exit 0");
    writer["volumeMounts"] = json!([{ "name": "hp", "mountPath": "/mnt/hp" }]);
    let mut spec = pod("hostpath-dir", "Never", vec![writer]);
    spec["spec"]["volumes"] = json!([{
        "name": "hp",
        "hostPath": { "path": host_dir, "type": "DirectoryOrCreate" }
    }]);
    agent.apply_yaml(&manifest(&spec)).await;

    let done = wait_terminal(&agent, "hostpath-dir").await;
    assert_eq!(phase(&done), "Succeeded", "{done:#}");
    assert!(host_dir.is_dir(), "{} not created", host_dir.display());
    let written =
        std::fs::read_to_string(host_dir.join("file")).expect("file written through the mount");
    assert_eq!(written, "written\n");
}

#[tokio::test]
async fn host_path_file_type_on_a_missing_path_keeps_the_pod_creating() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let missing = agent.work_dir().join("no-such-file");
    let mut app = sh_container("app", "exec sleep 3600");
    app["volumeMounts"] = json!([{ "name": "f", "mountPath": "/etc/app.conf" }]);
    let mut spec = pod("hostpath-file", "Always", vec![app]);
    spec["spec"]["volumes"] = json!([{
        "name": "f",
        "hostPath": { "path": missing, "type": "File" }
    }]);
    agent.apply_yaml(&manifest(&spec)).await;

    let creating = |p: &serde_json::Value| {
        phase(p) == "Pending" && waiting_reason(p, "app") == Some("ContainerCreating")
    };
    agent
        .wait_for(
            "default",
            "hostpath-file",
            "ContainerCreating",
            START_TIMEOUT,
            creating,
        )
        .await;
    // It must stay so: watch it for a while (the kubelet retries the mount
    // forever, it never starts the container).
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let pod = agent.get_pod_json("default", "hostpath-file").await;
        assert!(creating(&pod), "left ContainerCreating: {pod:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // No app container was made (at most the sandbox's pause container).
    assert!(
        ctr_list(&agent, "tasks").len() <= 1,
        "{:?}",
        ctr_list(&agent, "tasks")
    );
    let describe = agent.cli_ok(&["describe", "pod", "hostpath-file"]).await;
    assert!(
        describe.contains(reasons::FAILED_MOUNT),
        "no FailedMount event:\n{describe}"
    );
    assert!(!missing.exists(), "type File must not create the path");
}

#[tokio::test]
async fn a_memory_empty_dir_is_a_tmpfs_of_its_size_limit_gone_with_the_pod() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let script = "grep ' /cache ' /proc/mounts; \
                  dd if=/dev/zero of=/cache/fill bs=1M count=5 2>&1 | grep -o 'No space left on device'; \
                  trap 'exit 0' TERM; while true; do sleep 0.1; done";
    let mut app = sh_container("app", script);
    app["volumeMounts"] = json!([{ "name": "cache", "mountPath": "/cache" }]);
    let mut spec = pod("memory-cache", "Always", vec![app]);
    spec["spec"]["volumes"] = json!([{
        "name": "cache",
        "emptyDir": { "medium": "Memory", "sizeLimit": "4Mi" }
    }]);
    agent.apply_yaml(&manifest(&spec)).await;

    let running = wait_running(&agent, "memory-cache").await;
    let log = wait_log_contains(&agent, "memory-cache", "app", "No space left").await;
    let mount = log.lines().next().unwrap_or_default();
    assert!(
        mount.starts_with("tmpfs /cache tmpfs ") && mount.contains("size=4096k"),
        "{log}"
    );
    let pod_uid = uid(&running).to_owned();
    let host_mounts = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.contains(&pod_uid) && l.contains("tmpfs"))
            .count()
    };
    assert_eq!(host_mounts(), 1, "the volume's tmpfs on the host");

    agent.cli_ok(&["delete", "pod", "memory-cache"]).await;
    agent
        .wait_gone("default", "memory-cache", START_TIMEOUT)
        .await;
    assert_eq!(host_mounts(), 0, "the tmpfs outlived its pod");
}
