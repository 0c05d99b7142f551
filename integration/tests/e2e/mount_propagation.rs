//! hostPath volumes as containerd's CRI plugin binds them: a missing path
//! (no type) is made a directory, and `mountPropagation` decides which
//! mounts made later cross between the node and the container (None: none,
//! HostToContainer: the node's reach the container, Bidirectional: both
//! ways), on a node mount that propagates them.

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_integration::*;
use serde_json::{json, Value};

#[tokio::test]
async fn a_host_path_without_type_on_a_missing_path_is_made_a_directory() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let missing = agent.work_dir().join("made").join("by-runtime");
    let mut app = sh_container("app", "test -d /mnt/x && echo dir");
    app["volumeMounts"] = json!([{ "name": "x", "mountPath": "/mnt/x" }]);
    let mut spec = pod("untyped", "Never", vec![app]);
    spec["spec"]["volumes"] = json!([{ "name": "x", "hostPath": { "path": missing } }]);
    agent.apply_yaml(&manifest(&spec)).await;

    let done = wait_terminal(&agent, "untyped").await;
    assert_eq!(phase(&done), "Succeeded", "{done:#}");
    assert!(missing.is_dir(), "{} not made", missing.display());
}

#[tokio::test]
async fn mounts_propagate_within_their_scopes() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    // Dropped before the agent, which removes its work directory.
    let shared = HostMount::bind(&agent.work_dir().join("shared"), "--make-shared");
    let dir = shared.0.clone();
    let scopes = [
        ("master", Some("Bidirectional")),
        ("slave", Some("HostToContainer")),
        ("private", Some("None")),
        ("default", None),
    ];
    for (name, propagation) in scopes {
        let spec = propagation_pod(name, &dir, &[("cntr", propagation)]);
        agent.apply_yaml(&manifest(&spec)).await;
    }
    for (name, _) in scopes {
        wait_running(&agent, name).await;
    }
    // Each pod mounts a tmpfs under the volume, the node one more.
    for (name, _) in scopes {
        let script = format!(
            "mount -t tmpfs e2e-{name} /mnt/test/{name} && echo {name} > /mnt/test/{name}/file"
        );
        agent
            .cli_ok(&["exec", name, "--", "sh", "-c", &script])
            .await;
    }
    std::fs::create_dir(dir.join("host")).unwrap();
    run(Command::new("mount")
        .args(["-t", "tmpfs", "e2e-host"])
        .arg(dir.join("host")));
    std::fs::write(dir.join("host/file"), "host\n").unwrap();

    let expected: [(&str, &[&str]); 4] = [
        ("master", &["master", "host"]),
        ("slave", &["master", "slave", "host"]),
        ("private", &["private"]),
        ("default", &["default"]),
    ];
    for (pod_name, visible) in expected {
        for dir_name in ["master", "slave", "private", "default", "host"] {
            let out = agent
                .cli(&[
                    "exec",
                    pod_name,
                    "--",
                    "cat",
                    &format!("/mnt/test/{dir_name}/file"),
                ])
                .await;
            let stdout = String::from_utf8_lossy(&out.stdout);
            if visible.contains(&dir_name) {
                assert!(
                    out.status.success(),
                    "{pod_name} does not see {dir_name}'s mount"
                );
                assert_eq!(stdout.trim(), dir_name, "{pod_name} reading {dir_name}");
            } else {
                assert!(
                    !out.status.success(),
                    "{pod_name} sees {dir_name}'s mount: {stdout}"
                );
            }
        }
    }
    // The node sees the Bidirectional pod's mount and its own, no other.
    for (dir_name, visible) in [
        ("master", true),
        ("host", true),
        ("slave", false),
        ("private", false),
        ("default", false),
    ] {
        let file = dir.join(dir_name).join("file");
        assert_eq!(file.exists(), visible, "the node and {}", file.display());
    }
}

#[tokio::test]
async fn propagation_from_a_private_node_mount_is_a_create_container_error() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let private = HostMount::bind(&agent.work_dir().join("private"), "--make-private");
    let dir = private.0.clone();
    let spec = propagation_pod(
        "refused",
        &dir,
        &[
            ("slave", Some("HostToContainer")),
            ("master", Some("Bidirectional")),
        ],
    );
    agent.apply_yaml(&manifest(&spec)).await;

    let source = dir.display().to_string();
    let cases = [
        (
            "slave",
            format!(
                "path {source:?} is mounted on {source:?} but it is not a shared or slave mount"
            ),
        ),
        (
            "master",
            format!("path {source:?} is mounted on {source:?} but it is not a shared mount"),
        ),
    ];
    for (container, message) in cases {
        let failed = |p: &Value| {
            waiting_reason(p, container) == Some("CreateContainerError")
                && container_status(p, container)
                    .and_then(|s| s["state"]["waiting"]["message"].as_str())
                    .is_some_and(|m| m.contains(&message))
        };
        agent
            .wait_for(
                "default",
                "refused",
                "CreateContainerError",
                START_TIMEOUT,
                failed,
            )
            .await;
    }
}

/// A pod of privileged containers that bind `dir` at /mnt/test with the
/// propagation given (unset for `None`), each making /mnt/test/<pod name>.
fn propagation_pod(name: &str, dir: &Path, containers: &[(&str, Option<&str>)]) -> Value {
    let containers = containers
        .iter()
        .map(|(container, propagation)| {
            let mut c = sh_container(
                container,
                &format!("mkdir -p /mnt/test/{name}; exec sleep 3600"),
            );
            let mut mount = json!({ "name": "host", "mountPath": "/mnt/test" });
            if let Some(propagation) = propagation {
                mount["mountPropagation"] = json!(propagation);
            }
            c["volumeMounts"] = json!([mount]);
            c["securityContext"] = json!({ "privileged": true });
            c
        })
        .collect();
    let mut spec = pod(name, "Always", containers);
    spec["spec"]["terminationGracePeriodSeconds"] = json!(1);
    spec["spec"]["volumes"] = json!([{ "name": "host", "hostPath": { "path": dir } }]);
    spec
}

/// A directory bound onto itself on the node with the propagation given
/// (`--make-shared`, `--make-private`); unmounted with what is under it.
struct HostMount(PathBuf);

impl HostMount {
    fn bind(dir: &Path, propagation: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        run(Command::new("mount").arg("--bind").arg(dir).arg(dir));
        let mount = HostMount(dir.to_path_buf());
        run(Command::new("mount").arg(propagation).arg(dir));
        mount
    }
}

impl Drop for HostMount {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .args(["-R", "-l"])
            .arg(&self.0)
            .status();
    }
}

fn run(command: &mut Command) {
    let status = command.status().expect("run mount");
    assert!(status.success(), "{command:?}: {status}");
}
