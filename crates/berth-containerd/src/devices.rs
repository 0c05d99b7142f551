//! The host's device nodes, which a privileged container gets (containerd's
//! `WithHostDevices`): every character and block device under `/dev`,
//! without following symlinks, skipping the directories runc mounts itself.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use serde_json::{json, Value};

/// Directories under `/dev` that are not device trees of the host's own.
const SKIPPED_DIRS: [&str; 7] = ["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];

/// `linux.devices` entries for every device node under `root` (`/dev`).
/// Unreadable entries are skipped: a privileged container gets what can be
/// seen.
pub(crate) fn host_devices(root: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    collect(root, &mut out);
    out
}

fn collect(dir: &Path, out: &mut Vec<Value>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let path = entry.path();
        // lstat: a symlink is not followed, so it is neither a dir nor a device.
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let kind = meta.file_type();
        if kind.is_dir() {
            if !SKIPPED_DIRS.iter().any(|s| name == *s) {
                collect(&path, out);
            }
            continue;
        }
        if name == "console" {
            continue;
        }
        let device_type = if kind.is_char_device() {
            "c"
        } else if kind.is_block_device() {
            "b"
        } else {
            continue;
        };
        let rdev = meta.rdev();
        out.push(json!({
            "path": path,
            "type": device_type,
            "major": nix::sys::stat::major(rdev),
            "minor": nix::sys::stat::minor(rdev),
            "fileMode": meta.permissions().mode() & 0o7777,
            "uid": meta.uid(),
            "gid": meta.gid(),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hosts_devices_are_listed_without_runc_managed_ones() {
        let devices = host_devices(Path::new("/dev"));
        let null = devices
            .iter()
            .find(|d| d["path"] == "/dev/null")
            .expect("/dev/null listed");
        assert_eq!(null["type"], "c");
        assert_eq!(
            (null["major"].as_u64(), null["minor"].as_u64()),
            (Some(1), Some(3))
        );
        assert!(devices.iter().all(|d| {
            let path = d["path"].as_str().unwrap();
            !path.starts_with("/dev/pts/") && path != "/dev/console"
        }));
    }
}
