//! Mount points a test left behind under its own directory.

use std::path::{Path, PathBuf};

use nix::mount::{umount2, MntFlags};

/// Every mount point at or under `dir`, deepest first, as /proc/self/mounts
/// lists them (octal escapes decoded).
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let table = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut found: Vec<PathBuf> = table
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1))
        .map(|field| PathBuf::from(unescape(field)))
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

/// /proc/mounts writes space, tab, newline and backslash as `\ooo`.
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
        assert_eq!(unescape(r"/end\"), r"/end\");
    }
}
