//! Image volumes (`volumes[].image`) on real containerd, the image in a
//! registry on loopback: pulled by their `pullPolicy` with the pull events
//! on the pod, the image's files mounted read-only (whole or a `subPath` of
//! it), the kubelet's failures, and nothing left once the pod is gone; an
//! agent restart adopts the mount and a containerd restart keeps it.

use std::path::{Path, PathBuf};

use berth_api::reasons;
use berth_integration::*;
use berth_testkit::mounts::mounts_under;
use berth_testkit::registry::LocalRegistry;
use berth_testkit::write_busybox_archive;
use serde_json::{json, Value};
use tempfile::TempDir;

/// A registry holding the test kit's busybox as `kitten:1` (its `/etc`
/// has `passwd` and `group`), and the registry config the agent uses.
async fn registry() -> Option<(LocalRegistry, TempDir, PathBuf)> {
    let registry = LocalRegistry::start_or_skip(None).await?;
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = write_busybox_archive(dir.path(), "registry.test/kitten:1");
    registry.push(&archive, "kitten:1").await;
    let config = json!({ "registries": { registry.host(): { "plainHttp": true } } });
    let path = dir.path().join("registries.yaml");
    std::fs::write(&path, config.to_string()).expect("write registry config");
    Some((registry, dir, path))
}

async fn agent_with(
    registry_config: &Path,
    extra: &[&str],
) -> Option<(PrivateContainerd, AgentProcess)> {
    let mut args = vec!["--registry-config", registry_config.to_str().unwrap()];
    args.extend_from_slice(extra);
    setup_with(&args).await
}

/// A pod whose `main` runs `script` with `mounts`, and an image volume
/// `img` of `reference`.
fn image_volume_pod(
    name: &str,
    reference: &str,
    policy: &str,
    mounts: Value,
    script: &str,
) -> Value {
    let mut main = sh_container("main", script);
    main["volumeMounts"] = mounts;
    let mut pod = pod(name, "Always", vec![main]);
    // `sleep` as PID 1 ignores SIGTERM: no need to wait 30 s at deletion.
    pod["spec"]["terminationGracePeriodSeconds"] = json!(1);
    pod["spec"]["volumes"] = json!([
        { "name": "img", "image": { "reference": reference, "pullPolicy": policy } }
    ]);
    pod
}

fn messages(events: &[Value], reason: &str, field_path: Option<&str>) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["reason"] == reason)
        .filter(|e| e["involvedObject"]["fieldPath"].as_str() == field_path)
        .filter_map(|e| e["message"].as_str().map(str::to_owned))
        .collect()
}

fn volume_dir(agent: &AgentProcess, pod: &Value) -> PathBuf {
    agent
        .root_dir()
        .join("pods")
        .join(uid(pod))
        .join("volumes/kubernetes.io~image/img")
}

/// How many mounts sit at `dir` exactly (a double mount counts twice).
fn mounts_at(dir: &Path) -> usize {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let table = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let points = table.lines().filter_map(|line| line.split(' ').nth(4));
    points.filter(|p| Path::new(p) == dir).count()
}

fn snapshot_key(pod: &Value) -> String {
    format!("berth/image-volume/{}/img", uid(pod))
}

#[tokio::test]
async fn an_image_volume_is_pulled_mounted_read_only_and_goes_with_its_pod() {
    let Some((registry, _dir, config)) = registry().await else {
        return;
    };
    let Some((_containerd, agent)) = agent_with(&config, &[]).await else {
        return;
    };
    let image = registry.reference("kitten:1");
    let mounts = json!([
        { "name": "img", "mountPath": "/volume", "readOnly": false },
        { "name": "img", "mountPath": "/sub", "subPath": "etc" },
    ]);
    let script = "cat /volume/etc/passwd /sub/group; \
                  touch /volume/x 2>/dev/null || echo RO-VOLUME; \
                  touch /sub/x 2>/dev/null || echo RO-SUB; \
                  echo READY; exec sleep 3600";
    agent
        .apply_yaml(&manifest(&image_volume_pod(
            "kitten",
            &image,
            "Always",
            mounts.clone(),
            script,
        )))
        .await;
    let running = wait_running(&agent, "kitten").await;
    wait_log_contains(&agent, "kitten", "main", "READY").await;
    let log = logs(&agent, "kitten", "main").await;
    for wanted in ["root:x:0:0:root", "nobody:x:65534:", "RO-VOLUME", "RO-SUB"] {
        assert!(log.contains(wanted), "{wanted:?} in {log}");
    }
    // The pull's events are the pod's own, as the kubelet sends them.
    let (_, events) = pod_events(&agent, "default", "kitten").await;
    assert_eq!(
        messages(&events, reasons::PULLING, None),
        vec![format!("Pulling image \"{image}\"")],
        "{events:#?}"
    );
    let volume = volume_dir(&agent, &running);
    assert_eq!(mounts_at(&volume), 1);
    assert!(active_snapshots(&agent).contains(&snapshot_key(&running)));

    // Always asks the registry again for the next pod; IfNotPresent does not.
    // This one has two volumes of the image, each mounted on its own.
    let asked = registry.manifest_requests();
    let mut two = mounts.clone();
    two.as_array_mut()
        .unwrap()
        .push(json!({ "name": "img2", "mountPath": "/volume2" }));
    let script2 = format!("cat /volume2/etc/group; {script}");
    let mut again = image_volume_pod("again", &image, "Always", two, &script2);
    let second = json!({ "name": "img2", "image": { "reference": image, "pullPolicy": "Always" } });
    again["spec"]["volumes"]
        .as_array_mut()
        .unwrap()
        .push(second);
    agent.apply_yaml(&manifest(&again)).await;
    let again = wait_running(&agent, "again").await;
    wait_log_contains(&agent, "again", "main", "READY").await;
    let log = logs(&agent, "again", "main").await;
    assert_eq!(log.matches("nobody:x:65534:\n").count(), 2, "{log}");
    let second = format!("berth/image-volume/{}/img2", uid(&again));
    let snapshots = active_snapshots(&agent);
    assert!(snapshots.contains(&snapshot_key(&again)) && snapshots.contains(&second));
    let asked_again = registry.manifest_requests();
    assert!(asked_again > asked, "{asked} then {asked_again}");
    agent
        .apply_yaml(&manifest(&image_volume_pod(
            "present",
            &image,
            "IfNotPresent",
            mounts,
            script,
        )))
        .await;
    wait_log_contains(&agent, "present", "main", "READY").await;
    assert_eq!(registry.manifest_requests(), asked_again);
    let (_, events) = pod_events(&agent, "default", "present").await;
    assert_eq!(
        messages(&events, reasons::PULLED, None),
        vec![format!(
            "Container image \"{image}\" already present on machine"
        )]
    );

    for name in ["kitten", "again", "present"] {
        agent.cli_ok(&["delete", "pod", name, "--wait"]).await;
    }
    assert_eq!(active_snapshots(&agent), Vec::<String>::new());
    assert_eq!(mounts_under(&agent.root_dir()), Vec::<PathBuf>::new());
    assert!(!volume.exists());
    assert!(agent.healthy().await);
}

#[tokio::test]
async fn a_missing_image_or_sub_path_fails_as_under_the_kubelet() {
    let Some((registry, _dir, config)) = registry().await else {
        return;
    };
    let back_off = ["--image-pull-back-off-initial-seconds", "1"];
    let Some((_containerd, agent)) = agent_with(&config, &back_off).await else {
        return;
    };
    let image = registry.reference("kitten:1");
    let missing = registry.reference("nope:1");
    let at_volume = json!([{ "name": "img", "mountPath": "/volume" }]);
    let sleep = "echo READY; exec sleep 3600";
    agent
        .apply_yaml(&manifest(&image_volume_pod(
            "missing",
            &missing,
            "IfNotPresent",
            at_volume.clone(),
            sleep,
        )))
        .await;
    // Not mounted: its failed pull holds no container.
    agent
        .apply_yaml(&manifest(&image_volume_pod(
            "unused",
            &missing,
            "IfNotPresent",
            json!([]),
            sleep,
        )))
        .await;
    let not_there = json!([{ "name": "img", "mountPath": "/volume", "subPath": "not-existing" }]);
    agent
        .apply_yaml(&manifest(&image_volume_pod(
            "no-sub-path",
            &image,
            "IfNotPresent",
            not_there,
            sleep,
        )))
        .await;

    let backing_off = agent
        .wait_for(
            "default",
            "missing",
            "ImagePullBackOff",
            START_TIMEOUT,
            |p| waiting_reason(p, "main") == Some("ImagePullBackOff"),
        )
        .await;
    let status = container_status(&backing_off, "main").unwrap();
    assert_eq!(
        status["state"]["waiting"]["message"],
        format!("Back-off pulling image \"{missing}\""),
    );
    let (_, events) = pod_events(&agent, "default", "missing").await;
    let main = Some("spec.containers{main}");
    assert!(messages(&events, reasons::FAILED, main).contains(&"Error: ErrImagePull".to_owned()));
    assert!(
        messages(&events, reasons::FAILED, None)
            .iter()
            .any(|m| m.starts_with(&format!("Failed to pull image \"{missing}\": "))),
        "{events:#?}"
    );

    wait_log_contains(&agent, "unused", "main", "READY").await;
    let unused = wait_running(&agent, "unused").await;
    assert!(!volume_dir(&agent, &unused).exists());

    let failed = agent
        .wait_for(
            "default",
            "no-sub-path",
            "CreateContainerError",
            START_TIMEOUT,
            |p| waiting_reason(p, "main") == Some("CreateContainerError"),
        )
        .await;
    let status = container_status(&failed, "main").unwrap();
    assert_eq!(
        status["state"]["waiting"]["message"],
        "failed to mount image volume: ImageVolumeMountFailed: failed to ensure image subpath \"not-existing\" in volume \"img\": No such file or directory"
    );

    // Refused as the API server would, naming the field.
    let mut no_reference = image_volume_pod("no-ref", "", "Always", json!([]), sleep);
    no_reference["spec"]["volumes"][0]["image"] = json!({ "pullPolicy": "Always" });
    let out = agent.apply_yaml_output(&manifest(&no_reference)).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("spec.volumes[0].image.reference: Required value"),
        "{stderr}"
    );

    for name in ["missing", "unused", "no-sub-path"] {
        agent.cli_ok(&["delete", "pod", name, "--wait"]).await;
    }
    assert_eq!(active_snapshots(&agent), Vec::<String>::new());
    assert_eq!(mounts_under(&agent.root_dir()), Vec::<PathBuf>::new());
}

#[tokio::test]
async fn an_agent_restart_adopts_the_mount_and_a_containerd_restart_keeps_it() {
    let Some((registry, _dir, config)) = registry().await else {
        return;
    };
    let back_off = [
        "--crash-loop-back-off-initial-seconds",
        "1",
        "--crash-loop-back-off-max-seconds",
        "1",
    ];
    let Some((mut containerd, mut agent)) = agent_with(&config, &back_off).await else {
        return;
    };
    let image = registry.reference("kitten:1");
    let mounts = json!([{ "name": "img", "mountPath": "/volume" }]);
    // Runs until told to stop (a new instance starts with a fresh /tmp).
    let script = "cat /volume/etc/group; echo READY; \
                  while [ ! -e /tmp/stop ]; do sleep 0.1; done; exit 1";
    agent
        .apply_yaml(&manifest(&image_volume_pod(
            "kept",
            &image,
            "IfNotPresent",
            mounts,
            script,
        )))
        .await;
    let before = wait_running(&agent, "kept").await;
    wait_log_contains(&agent, "kept", "main", "READY").await;
    let volume = volume_dir(&agent, &before);
    assert_eq!(mounts_at(&volume), 1);

    agent.stop().await;
    agent.launch().await;
    wait_running(&agent, "kept").await;
    // The restarted container mounts the volume again: the agent adopts
    // the mount it finds instead of stacking a second one.
    agent
        .cli_ok(&["exec", "kept", "-c", "main", "--", "touch", "/tmp/stop"])
        .await;
    agent
        .wait_for(
            "default",
            "kept",
            "restarted and running",
            START_TIMEOUT,
            |p| restart_count(p, "main") >= 1 && is_running(p, "main"),
        )
        .await;
    assert_eq!(mounts_at(&volume), 1);

    containerd.restart().await;
    let group = agent
        .cli_ok(&[
            "exec",
            "kept",
            "-c",
            "main",
            "--",
            "cat",
            "/volume/etc/group",
        ])
        .await;
    assert!(group.contains("nobody:x:65534:"), "{group}");
    assert_eq!(mounts_at(&volume), 1);

    agent.cli_ok(&["delete", "pod", "kept", "--wait"]).await;
    assert_eq!(active_snapshots(&agent), Vec::<String>::new());
    assert_eq!(mounts_under(&agent.root_dir()), Vec::<PathBuf>::new());
}

#[tokio::test]
async fn the_image_volume_of_a_pod_deleted_while_the_agent_was_down_goes() {
    let Some((registry, _dir, config)) = registry().await else {
        return;
    };
    let Some((_containerd, mut agent)) = agent_with(&config, &[]).await else {
        return;
    };
    let image = registry.reference("kitten:1");
    let mounts = json!([{ "name": "img", "mountPath": "/volume" }]);
    let spec = image_volume_pod("gone", &image, "IfNotPresent", mounts, "exec sleep 3600");
    let file = agent.manifest_dir().join("gone.yaml");
    std::fs::write(&file, manifest(&spec)).unwrap();
    let running = wait_static_pod(&agent, "gone-", "Running", all_running).await;
    let volume = volume_dir(&agent, &running);
    assert_eq!(mounts_at(&volume), 1);
    assert!(active_snapshots(&agent).contains(&snapshot_key(&running)));

    agent.kill().await;
    std::fs::remove_file(&file).unwrap();
    agent.launch().await;

    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    while !active_snapshots(&agent).is_empty() || !mounts_under(&agent.root_dir()).is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "left: {:?} {:?}",
            active_snapshots(&agent),
            mounts_under(&agent.root_dir())
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
