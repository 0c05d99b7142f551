//! Mount points a test left behind under its own directory.

use std::path::{Path, PathBuf};

use nix::mount::{umount2, MntFlags};

/// Every mount point at or under `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = berth_runtime::mount_points()
        .into_iter()
        .filter(|point| point.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// Lazily unmounts everything under `dir` (overlay rootfs, netns pins); a
/// mount that is already gone is fine.
pub fn unmount_all_under(dir: &Path) {
    // A point can be mounted more than once: repeat until nothing is left, with
    // a bound in case the kernel refuses.
    for _ in 0..8 {
        let points = mounts_under(dir);
        if points.is_empty() {
            return;
        }
        for point in points {
            let _ = umount2(&point, MntFlags::MNT_DETACH);
        }
    }
}
