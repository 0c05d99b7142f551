//! subPath volume mounts, and the CVE-2017-1002101 class of escapes: a pod
//! that makes a symlink in its volume must not get the host through a
//! subPath. berth opens the subPath inside the volume without following a
//! symlink out of it and bind-mounts what it opened onto a staging path of
//! its own, as the kubelet does; an escape is a CreateContainerConfigError
//! that leaves the host untouched.

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_api::reasons;
use berth_integration::*;
use serde_json::{json, Value};
use tokio::time::Instant;

/// A name no other test run uses, for files the escape would make on the host.
fn unique(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("berth-subpath-{what}-{}-{nanos}", std::process::id())
}

/// Removes `path` when dropped, so that a failing run leaves no trace on the
/// host either.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// A pod whose init container runs `prepare` in the emptyDir `data`
/// (mounted at /data) and whose main container runs `script` with `mounts`.
fn pod_with_prepared_volume(name: &str, prepare: &str, script: &str, mounts: Value) -> Value {
    let mut init = sh_container("prepare", prepare);
    init["volumeMounts"] = json!([{ "name": "data", "mountPath": "/data" }]);
    let mut main = sh_container("main", script);
    main["volumeMounts"] = mounts;
    let mut spec = pod(name, "Always", vec![main]);
    spec["spec"]["initContainers"] = json!([init]);
    spec["spec"]["volumes"] = json!([{ "name": "data", "emptyDir": {} }]);
    spec
}

/// Waits for `main` to be held in CreateContainerConfigError, checks it stays
/// so (never started) and returns its waiting message.
async fn config_error(agent: &AgentProcess, name: &str) -> String {
    let held = |p: &Value| waiting_reason(p, "main") == Some("CreateContainerConfigError");
    let pod = agent
        .wait_for(
            "default",
            name,
            "CreateContainerConfigError",
            START_TIMEOUT,
            held,
        )
        .await;
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        let pod = agent.get_pod_json("default", name).await;
        assert!(held(&pod), "main left CreateContainerConfigError: {pod:#}");
        assert!(container_id(&pod, "main").is_none(), "main ran: {pod:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let message = container_status(&pod, "main").unwrap()["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (_, events) = pod_events(agent, "default", name).await;
    let failed = find_event(&events, reasons::FAILED, "spec.containers{main}")
        .unwrap_or_else(|| panic!("no Failed event: {events:#?}"));
    assert_eq!(failed["message"], format!("Error: {message}"));
    assert_eq!(failed["type"], "Warning");
    message
}

/// The subPath staging mounts of pod `uid` in the host's mount table.
fn staging_mounts(uid: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|point| point.contains(uid) && point.contains("/volume-subpaths/"))
        .map(str::to_owned)
        .collect()
}

fn empty_dir(agent: &AgentProcess, uid: &str) -> PathBuf {
    agent
        .root_dir()
        .join("pods")
        .join(uid)
        .join("volumes/kubernetes.io~empty-dir/data")
}

#[tokio::test]
async fn a_symlink_to_the_host_root_gives_a_config_error_not_the_host() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let marker = Path::new("/tmp").join(unique("escape"));
    let _cleanup = RemoveOnDrop(marker.clone());
    let script = format!(
        "touch /host{0} && echo ESCAPED-TOUCH; \
         cat /host/etc/shadow >/dev/null && echo ESCAPED-SHADOW; exec sleep 3600",
        marker.display()
    );
    let spec = pod_with_prepared_volume(
        "escape",
        "ln -s / /data/escape",
        &script,
        json!([{ "name": "data", "mountPath": "/host", "subPath": "escape" }]),
    );
    agent.apply_yaml(&manifest(&spec)).await;

    let message = config_error(&agent, "escape").await;
    assert_eq!(
        message,
        "failed to prepare subPath for volumeMount \"data\" of container \"main\": \
         subPath \"escape\": it leads out of the volume through a symbolic link"
    );
    assert!(!marker.exists(), "the pod wrote {}", marker.display());
    let pod = agent.get_pod_json("default", "escape").await;
    assert!(staging_mounts(uid(&pod)).is_empty(), "a staging mount of /");
}

#[tokio::test]
async fn a_missing_directory_behind_a_symlink_out_is_not_made_on_the_host() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let newdir = unique("newdir");
    let host_dir = Path::new("/tmp").join(&newdir);
    let _cleanup = RemoveOnDrop(host_dir.clone());
    let spec = pod_with_prepared_volume(
        "newdir",
        "ln -s /tmp /data/t",
        "exec sleep 3600",
        json!([{ "name": "data", "mountPath": "/made", "subPath": format!("t/{newdir}") }]),
    );
    agent.apply_yaml(&manifest(&spec)).await;

    // The kubelet words this "failed to create subPath directory" when the
    // host path is missing: that would tell the pod what the host has.
    let message = config_error(&agent, "newdir").await;
    assert_eq!(
        message,
        format!(
            "failed to prepare subPath for volumeMount \"data\" of container \"main\": \
             subPath \"t/{newdir}\": it leads out of the volume through a symbolic link"
        )
    );
    assert!(
        !host_dir.exists(),
        "{} made on the host",
        host_dir.display()
    );
}

#[tokio::test]
async fn sub_paths_inside_the_volume_work_and_their_mounts_go_with_the_pod() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let prepare = "mkdir /data/dir && echo inside > /data/dir/inside && \
                   echo file > /data/file.txt && ln -s dir /data/alias";
    let script = "cat /d/inside /f.txt /a/inside && echo made > /n/x && \
                  echo mine > /p/y && echo READY; exec sleep 3600";
    let mut spec = pod_with_prepared_volume(
        "legit",
        prepare,
        script,
        json!([
            { "name": "data", "mountPath": "/d", "subPath": "dir" },
            { "name": "data", "mountPath": "/f.txt", "subPath": "file.txt" },
            { "name": "data", "mountPath": "/n", "subPath": "new/nested" },
            { "name": "data", "mountPath": "/a", "subPath": "alias" },
            { "name": "data", "mountPath": "/p", "subPathExpr": "per-pod/$(POD_NAME)" },
        ]),
    );
    spec["spec"]["containers"][0]["env"] = json!([{
        "name": "POD_NAME",
        "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } }
    }]);
    agent.apply_yaml(&manifest(&spec)).await;

    let running = wait_running(&agent, "legit").await;
    let log = wait_log_contains(&agent, "legit", "main", "READY").await;
    assert_eq!(log, "inside\nfile\ninside\nREADY\n");
    let pod_uid = uid(&running).to_owned();
    let volume = empty_dir(&agent, &pod_uid);
    let read = |p: &str| std::fs::read_to_string(volume.join(p)).unwrap_or_default();
    assert_eq!(read("new/nested/x"), "made\n", "missing directories made");
    assert_eq!(read("per-pod/legit/y"), "mine\n", "subPathExpr expanded");
    let mode = |p: &str| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(volume.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("new/nested"), 0o777, "the emptyDir's mode");
    assert_eq!(staging_mounts(&pod_uid).len(), 5, "one staging mount each");

    agent.cli_ok(&["delete", "pod", "legit"]).await;
    agent.wait_gone("default", "legit", START_TIMEOUT).await;
    assert_eq!(staging_mounts(&pod_uid), Vec::<String>::new());
    assert!(!agent.root_dir().join("pods").join(&pod_uid).exists());
}

#[tokio::test]
async fn staging_mounts_of_a_pod_deleted_while_the_agent_was_down_are_removed() {
    let Some((_containerd, mut agent)) = setup().await else {
        return;
    };
    let mut main = sh_container("main", "exec sleep 3600");
    main["volumeMounts"] = json!([{ "name": "data", "mountPath": "/d", "subPath": "dir" }]);
    let mut spec = pod("orphan", "Always", vec![main]);
    spec["spec"]["volumes"] = json!([{ "name": "data", "emptyDir": {} }]);
    let file = agent.manifest_dir().join("orphan.yaml");
    std::fs::write(&file, manifest(&spec)).unwrap();
    let running = wait_static_pod(&agent, "orphan-", "Running", all_running).await;
    let pod_uid = uid(&running).to_owned();
    assert_eq!(staging_mounts(&pod_uid).len(), 1);

    agent.kill().await;
    std::fs::remove_file(&file).unwrap();
    agent.launch().await;

    let deadline = Instant::now() + START_TIMEOUT;
    while !staging_mounts(&pod_uid).is_empty() {
        assert!(Instant::now() < deadline, "{:?}", staging_mounts(&pod_uid));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pod_dir = agent.root_dir().join("pods").join(&pod_uid);
    while pod_dir.exists() {
        assert!(Instant::now() < deadline, "{} left", pod_dir.display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
