//! The agent's state on the host is root's: pod records (which hold the
//! pods' env values), events and CNI results are 0600 under a 0750 root
//! directory, so a local user reads none of them and cannot write into a
//! pod's /dev/shm or emptyDir from the host; an installation left open by
//! an older berth is tightened when the agent starts.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use berth_integration::*;
use serde_json::json;
use tokio::time::Instant;

const SECRET: &str = "wJalrXUtnFEMI-K7MDENG-berth-e2e";

fn mode(path: &Path) -> u32 {
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    meta.permissions().mode() & 0o7777
}

fn assert_mode(path: &Path, want: u32) {
    let have = mode(path);
    assert_eq!(
        have,
        want,
        "{}: mode {have:o}, want {want:o}",
        path.display()
    );
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// Runs `script` as uid/gid 65534 (nobody) with no supplementary groups.
fn as_nobody(script: &str) -> std::process::Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(["sh", "-c", script])
        .output()
        .expect("run setpriv")
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect()
}

/// The only entry of `dir`.
fn only_entry(dir: &Path) -> PathBuf {
    let entries = entries(dir);
    assert_eq!(entries.len(), 1, "{entries:?}");
    entries.into_iter().next().expect("one entry")
}

struct PodFiles {
    record: PathBuf,
    events: PathBuf,
    /// One per network (loopback and the pod network).
    cni_results: Vec<PathBuf>,
    shm: PathBuf,
    empty_dir: PathBuf,
}

/// Checks, as a local user, that no file can be read and no pod directory
/// written; and, as root, what the files hold and their modes.
async fn assert_private(agent: &berth_testkit::AgentProcess, files: &PodFiles) {
    let root = agent.root_dir();
    let records = [&files.record, &files.events].into_iter();
    let records: Vec<&PathBuf> = records.chain(&files.cni_results).collect();
    for file in &records {
        let out = as_nobody(&format!("cat '{}'", file.display()));
        assert!(!out.status.success(), "nobody read {}", file.display());
        assert!(!String::from_utf8_lossy(&out.stdout).contains(SECRET));
    }
    let out = as_nobody(&format!("ls '{}'", root.join("api-pods").display()));
    assert!(!out.status.success(), "nobody listed the pod records");
    for dir in [&files.shm, &files.empty_dir] {
        let out = as_nobody(&format!("echo planted > '{}/from-host'", dir.display()));
        assert!(!out.status.success(), "nobody wrote into {}", dir.display());
    }
    let seen = agent
        .cli_ok(&[
            "exec",
            "secret",
            "--",
            "sh",
            "-c",
            "ls -a /dev/shm /data; cat /dev/shm/from-host /data/from-host 2>&1; true",
        ])
        .await;
    assert!(
        !seen.contains("planted"),
        "a host file reached the pod: {seen}"
    );

    assert_mode(&root, 0o750);
    assert_mode(&root.join("pods"), 0o750);
    assert_mode(&root.join("api-pods"), 0o700);
    assert_mode(&root.join("sandboxes"), 0o700);
    for file in records {
        assert_mode(file, 0o600);
    }
    let record = std::fs::read_to_string(&files.record).expect("read the record as root");
    assert!(record.contains(SECRET), "the record holds the env value");
}

#[tokio::test]
async fn a_local_user_reads_no_record_and_writes_into_no_pod() {
    let Some((_containerd, mut agent)) = setup().await else {
        return;
    };
    // As on a node: the directories above the root are open to everyone
    // (the test kit's private directory is 0700, which would hide all).
    let base = agent.root_dir().parent().expect("a parent").to_owned();
    set_mode(&base, 0o755);

    let mut app = sh_container("app", "exec sleep 3600");
    app["env"] = json!([{ "name": "AWS_SECRET_ACCESS_KEY", "value": SECRET }]);
    app["volumeMounts"] = json!([{ "name": "data", "mountPath": "/data" }]);
    let mut spec = pod("secret", "Always", vec![app]);
    spec["spec"]["volumes"] = json!([{ "name": "data", "emptyDir": {} }]);
    agent.apply_yaml(&manifest(&spec)).await;
    let running = wait_running(&agent, "secret").await;

    let root = agent.root_dir();
    let pod_uid = uid(&running).to_owned();
    let files = PodFiles {
        record: root.join("api-pods").join(format!("{pod_uid}.json")),
        events: root.join("events.json"),
        cni_results: entries(&root.join("cni/results")),
        shm: only_entry(&root.join("sandboxes")).join("shm"),
        empty_dir: root
            .join("pods")
            .join(&pod_uid)
            .join("volumes/kubernetes.io~empty-dir/data"),
    };
    // Events are saved a few seconds after they change.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !files.events.exists() {
        assert!(Instant::now() < deadline, "events.json not written");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The pod's own directories keep the kubelet's modes.
    assert_mode(&files.empty_dir, 0o777);
    assert_mode(&files.shm, 0o1777);
    assert_private(&agent, &files).await;

    // An installation an older berth left open is tightened at start.
    agent.stop().await;
    for dir in [
        root.clone(),
        root.join("pods"),
        root.join("pods").join(&pod_uid),
        root.join("api-pods"),
        root.join("sandboxes"),
        root.join("cni"),
    ] {
        set_mode(&dir, 0o755);
    }
    let records = [&files.record, &files.events].into_iter();
    for file in records.chain(&files.cni_results) {
        set_mode(file, 0o644);
    }
    let out = as_nobody(&format!("cat '{}'", files.record.display()));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(SECRET),
        "the open installation is readable (the test's premise)"
    );
    agent.launch().await;
    assert_mode(&root.join("pods").join(&pod_uid), 0o750);
    assert_mode(&root.join("cni"), 0o700);
    assert_private(&agent, &files).await;
    let log = agent.agent_log();
    assert!(
        log.contains("mode 644 tightened to 600"),
        "no debug line says what was fixed:\n{log}"
    );
}
