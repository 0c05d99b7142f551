//! The agent's directories on the host and their modes: the kubelet's where
//! the kubelet has the same directory (`setupDataDirs` and `makePodDataDirs`
//! make the root, pods and pod directories 0750; the pod and container log
//! directories are 0755 and log files 0640), 0700 for directories only
//! berth uses, and 0600 for every record (a pod record holds the pod's env
//! values). What an older berth left more open is tightened at start.

use std::io;
use std::path::Path;

use berth_runtime::files::{create_dir, restrict_mode, PRIVATE_DIR_MODE, PRIVATE_FILE_MODE};
use tracing::debug;

use crate::config::AgentConfig;

/// The kubelet's mode for its root, pods and pod directories.
const KUBELET_DATA_DIR_MODE: u32 = 0o750;
/// The kubelet's mode for `/var/log/pods` and the directories in it.
const LOG_DIR_MODE: u32 = 0o755;
/// Container log files, as containerd's CRI plugin opens them.
const LOG_FILE_MODE: u32 = 0o640;

/// Directories under the root only berth enters: API pod records, sandbox
/// files (the pods' /dev/shm), namespace pins, CNI results and IPAM state,
/// exec FIFOs.
const PRIVATE_DIRS: [&str; 5] = ["api-pods", "sandboxes", "ns", "cni", "exec"];

/// Creates the root, log and manifest directories with their modes and
/// takes back what an older installation left open.
pub fn prepare(config: &AgentConfig) -> io::Result<()> {
    let root = &config.root_dir;
    dir(root, KUBELET_DATA_DIR_MODE)?;
    dir(&root.join("pods"), KUBELET_DATA_DIR_MODE)?;
    for name in PRIVATE_DIRS {
        dir(&root.join(name), PRIVATE_DIR_MODE)?;
    }
    for records in [
        root.to_owned(),
        root.join("api-pods"),
        root.join("cni/results"),
    ] {
        for entry in entries(&records) {
            if entry.is_file() {
                restrict(&entry, PRIVATE_FILE_MODE);
            }
        }
    }
    for pod in entries(&root.join("pods")) {
        restrict(&pod, KUBELET_DATA_DIR_MODE);
        restrict(&pod.join("volumes"), KUBELET_DATA_DIR_MODE);
    }

    dir(&config.log_dir, LOG_DIR_MODE)?;
    for pod in entries(&config.log_dir) {
        restrict(&pod, LOG_DIR_MODE);
        for container in entries(&pod) {
            restrict(&container, LOG_DIR_MODE);
            for file in entries(&container) {
                restrict(&file, LOG_FILE_MODE);
            }
        }
    }
    std::fs::create_dir_all(&config.manifest_dir)
}

/// Creates `path` with `mode`, or tightens the one there.
fn dir(path: &Path, mode: u32) -> io::Result<()> {
    create_dir(path, mode)
        .map_err(|e| io::Error::new(e.kind(), format!("create {}: {e}", path.display())))?;
    restrict(path, mode);
    Ok(())
}

fn restrict(path: &Path, mode: u32) {
    match restrict_mode(path, mode) {
        Ok(Some(old)) => {
            debug!(path = %path.display(), "mode {old:o} tightened to {:o}", old & mode)
        }
        Ok(None) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %path.display(), "cannot tighten the mode: {e}"),
    }
}

/// The directory's entries (none when it cannot be read).
fn entries(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::fs::{self, Permissions};
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
    }

    fn set_mode(path: &Path, mode: u32) {
        fs::set_permissions(path, Permissions::from_mode(mode)).unwrap();
    }

    fn config(dir: &Path) -> AgentConfig {
        AgentConfig {
            root_dir: dir.join("lib/berth"),
            log_dir: dir.join("log/pods"),
            manifest_dir: dir.join("manifests"),
            ..AgentConfig::default()
        }
    }

    #[test]
    fn a_fresh_installation_gets_the_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let config = config(tmp.path());
        prepare(&config).unwrap();
        let root = &config.root_dir;
        assert_eq!(mode(root), 0o750);
        assert_eq!(mode(&root.join("pods")), 0o750);
        for name in PRIVATE_DIRS {
            assert_eq!(mode(&root.join(name)), 0o700, "{name}");
        }
        assert_eq!(mode(&config.log_dir), 0o755);
        assert!(config.manifest_dir.is_dir());
    }

    #[test]
    fn an_open_installation_is_tightened_and_kubelet_modes_are_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let config = config(tmp.path());
        let root = &config.root_dir;
        let pod = root.join("pods/uid-1");
        let empty_dir = pod.join("volumes/kubernetes.io~empty-dir/data");
        let message = pod.join("containers/app/1a2b3c4d");
        let container_logs = config.log_dir.join("default_web_uid-1/app");
        for d in [
            &empty_dir,
            &message.parent().unwrap().to_owned(),
            &root.join("api-pods"),
            &root.join("cni/results"),
            &container_logs,
        ] {
            fs::create_dir_all(d).unwrap();
        }
        let record = root.join("api-pods/uid-1.json");
        let events = root.join("events.json");
        let cni_result = root.join("cni/results/sb-1-berth.json");
        let log = container_logs.join("0.log");
        for f in [&record, &events, &cni_result, &message, &log] {
            fs::write(f, "{}").unwrap();
            set_mode(f, 0o644);
        }
        set_mode(&message, 0o666);
        set_mode(&log, 0o666);
        for d in [
            root,
            &root.join("pods"),
            &pod,
            &pod.join("volumes"),
            &root.join("api-pods"),
            &config.log_dir,
            &container_logs,
        ] {
            set_mode(d, 0o777);
        }
        set_mode(&empty_dir, 0o777);

        prepare(&config).unwrap();
        assert_eq!(mode(root), 0o750);
        assert_eq!(mode(&root.join("pods")), 0o750);
        assert_eq!(mode(&pod), 0o750);
        assert_eq!(mode(&pod.join("volumes")), 0o750);
        assert_eq!(mode(&root.join("api-pods")), 0o700);
        for f in [&record, &events, &cni_result] {
            assert_eq!(mode(f), 0o600, "{}", f.display());
        }
        assert_eq!(mode(&config.log_dir), 0o755);
        assert_eq!(mode(&container_logs), 0o755);
        assert_eq!(mode(&log), 0o640);
        // The kubelet's own modes inside a pod stay.
        assert_eq!(mode(&empty_dir), 0o777);
        assert_eq!(mode(&message), 0o666);
    }
}
