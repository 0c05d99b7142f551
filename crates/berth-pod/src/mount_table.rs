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
    let table = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<PathBuf> = table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape(field)))
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
    let table = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|field| Path::new(&unescape(field)) == dir)
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

/// The mount table writes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let octal = std::str::from_utf8(&bytes[i + 1..i + 4]).ok();
            if let Some(value) = octal.and_then(|o| u8::from_str_radix(o, 8).ok()) {
                out.push(value);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_octal() {
        assert_eq!(unescape(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }
}
