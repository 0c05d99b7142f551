//! What is mounted under a pod's directory, from `/proc/self/mountinfo`:
//! bind mounts of a directory on the same filesystem (subPath staging mounts)
//! have the same device as their parent, so only the mount table tells them.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{umount2, MntFlags};

/// Every mount point strictly below `dir`, the most recent first (children
/// before the mounts they sit on).
pub(crate) fn mount_points_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(dir) = fs::canonicalize(dir) else {
        return Vec::new();
    };
    let mut points: Vec<PathBuf> = berth_runtime::mount_points()
        .into_iter()
        .filter(|point| point.starts_with(&dir) && *point != dir)
        .collect();
    points.reverse();
    points
}

/// Whether something is mounted at `dir` itself.
pub(crate) fn is_mount_point(dir: &Path) -> bool {
    let Ok(dir) = fs::canonicalize(dir) else {
        return false;
    };
    berth_runtime::mount_points().contains(&dir)
}

/// Lazily unmounts everything below `dir`, and fails if anything is still
/// mounted there afterwards: removing the directory then would walk into a
/// volume and delete what it holds.
pub(crate) fn unmount_all_under(dir: &Path) -> io::Result<()> {
    // A point may carry stacked mounts: repeat, with a bound.
    for _ in 0..8 {
        let points = mount_points_under(dir);
        if points.is_empty() {
            return Ok(());
        }
        for point in points {
            unmount(&point)?;
        }
    }
    match mount_points_under(dir).first() {
        None => Ok(()),
        Some(point) => Err(io::Error::other(format!(
            "{} is still mounted",
            point.display()
        ))),
    }
}

/// Lazily unmounts whatever is mounted at `point` (every stacked mount);
/// nothing mounted there is fine.
pub(crate) fn unmount(point: &Path) -> io::Result<()> {
    for _ in 0..8 {
        match umount2(point, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW) {
            Ok(()) => continue,
            Err(Errno::EINVAL | Errno::ENOENT) => return Ok(()),
            Err(e) => {
                return Err(io::Error::other(format!(
                    "unmount {}: {e}",
                    point.display()
                )))
            }
        }
    }
    Ok(())
}
