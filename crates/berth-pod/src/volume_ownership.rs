//! `fsGroup` ownership of a pod's emptyDir volumes, as the kubelet's
//! `SetVolumeOwnership` sets it when an emptyDir is set up: every file and
//! directory gets the group and group read/write (directories also execute
//! and setgid, so new files inherit the group), walking without following
//! symlinks.
//!
//! The kubelet does this once per volume (emptyDir passes no
//! `fsGroupChangePolicy`, so the walk is always recursive); a marker in the
//! pod's plugin directory remembers it across agent restarts. It runs before
//! any of the pod's containers, so nothing in the pod races the walk.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use tracing::warn;

use crate::dirs::PodDirs;

const RW: u32 = 0o660;
const EXEC: u32 = 0o110;
const SETGID: u32 = 0o2000;

/// Applies the pod's `fsGroup` to its emptyDir volumes (after
/// [`PodDirs::prepare`] made them).
pub(crate) fn apply(dirs: &PodDirs, pod: &Pod) {
    let Some(spec) = &pod.spec else {
        return;
    };
    let fs_group = spec
        .security_context
        .as_ref()
        .and_then(|sc| sc.fs_group)
        .and_then(|g| u32::try_from(g).ok());
    let Some(gid) = fs_group else {
        return;
    };
    for volume in spec.volumes.iter().flatten() {
        if volume.empty_dir.is_none() {
            continue;
        }
        let Some(dir) = dirs.volume_path(volume) else {
            continue;
        };
        let marker = ready_marker(dirs, &volume.name);
        if marker.exists() {
            // Set up before: only the volume's own directory, whose mode
            // preparing the volumes resets.
            change(&dir, gid);
            continue;
        }
        set_volume_ownership(&dir, gid);
        // The kubelet's modes (SetReady): 0750 directories.
        let written = marker
            .parent()
            .map_or(Ok(()), |dir| {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o750)
                    .create(dir)
            })
            .and_then(|()| fs::write(&marker, b""));
        if let Err(e) = written {
            warn!(path = %marker.display(), "mark volume ownership done: {e}");
        }
    }
}

/// The kubelet's plugin directory for the volume: `<pod>/plugins/kubernetes.io~empty-dir/<name>/ready`.
fn ready_marker(dirs: &PodDirs, volume: &str) -> PathBuf {
    dirs.pod
        .join("plugins/kubernetes.io~empty-dir")
        .join(volume)
        .join("ready")
}

/// Walks `root` (not following symlinks) and changes each entry. Failures
/// are logged and the walk goes on, as the kubelet's.
pub(crate) fn set_volume_ownership(root: &Path, gid: u32) {
    let mut pending = vec![root.to_path_buf()];
    while let Some(path) = pending.pop() {
        let is_dir = change(&path, gid);
        if !is_dir {
            continue;
        }
        match fs::read_dir(&path) {
            Ok(entries) => pending.extend(entries.flatten().map(|e| e.path())),
            Err(e) => warn!(path = %path.display(), "read volume directory: {e}"),
        }
    }
}

/// Group `gid` and the group bits on one entry; true for a real directory.
fn change(path: &Path, gid: u32) -> bool {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) => {
            warn!(path = %path.display(), "stat volume entry: {e}");
            return false;
        }
    };
    if let Err(e) = std::os::unix::fs::lchown(path, None, Some(gid)) {
        warn!(path = %path.display(), "chown volume entry: {e}");
    }
    // chmod follows symlinks: a symlink's own mode means nothing.
    if meta.file_type().is_symlink() {
        return false;
    }
    let is_dir = meta.is_dir();
    let mask = if is_dir { RW | EXEC | SETGID } else { RW };
    let mode = (meta.permissions().mode() & 0o7777) | mask;
    if let Err(e) = set_mode(path, mode) {
        warn!(path = %path.display(), "chmod volume entry: {e}");
    }
    is_dir
}

fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn stat(path: &Path) -> (u32, u32) {
        let meta = fs::symlink_metadata(path).unwrap();
        (meta.gid(), meta.mode() & 0o7777)
    }

    #[test]
    fn files_and_directories_get_the_group_without_following_symlinks() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: needs root (chown)");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        fs::write(&outside, "host").unwrap();
        fs::set_permissions(&outside, fs::Permissions::from_mode(0o600)).unwrap();
        let volume = tmp.path().join("volume");
        fs::create_dir_all(volume.join("sub")).unwrap();
        fs::set_permissions(&volume, fs::Permissions::from_mode(0o777)).unwrap();
        fs::set_permissions(volume.join("sub"), fs::Permissions::from_mode(0o700)).unwrap();
        fs::write(volume.join("sub/file"), "x").unwrap();
        fs::set_permissions(volume.join("sub/file"), fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink(&outside, volume.join("link")).unwrap();

        set_volume_ownership(&volume, 4242);
        assert_eq!(stat(&volume), (4242, 0o2777));
        assert_eq!(stat(&volume.join("sub")), (4242, 0o2770));
        assert_eq!(stat(&volume.join("sub/file")), (4242, 0o660));
        // The link itself is chowned; its target is untouched.
        assert_eq!(stat(&volume.join("link")).0, 4242);
        assert_eq!(stat(&outside), (0, 0o600));
    }

    #[test]
    fn apply_walks_once_and_then_only_restores_the_volume_directory() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: needs root (chown)");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dirs = PodDirs::new(tmp.path(), tmp.path(), "default", "p", "u1");
        let pod = berth_api::manifest::parse_pods(
            "
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  securityContext: {fsGroup: 4242}
  volumes: [{name: data, emptyDir: {}}]
  containers: [{name: app, image: app:1}]
",
        )
        .unwrap()
        .remove(0);
        dirs.prepare(&pod).unwrap();
        let volume = dirs
            .volume_path(&pod.spec.as_ref().unwrap().volumes.as_ref().unwrap()[0])
            .unwrap();
        apply(&dirs, &pod);
        assert_eq!(stat(&volume), (4242, 0o2777));
        // A file the pod made later, with its own group, is left alone...
        let later = volume.join("later");
        fs::write(&later, "x").unwrap();
        std::os::unix::fs::lchown(&later, None, Some(7)).unwrap();
        // ...when the volumes are prepared again (an agent restart).
        dirs.prepare(&pod).unwrap();
        assert_eq!(stat(&volume).1, 0o777);
        apply(&dirs, &pod);
        assert_eq!(stat(&volume), (4242, 0o2777));
        assert_eq!(stat(&later).0, 7);
    }
}
