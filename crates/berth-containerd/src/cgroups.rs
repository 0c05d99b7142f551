//! Pod-level cgroups (cgroupfs layout). runc creates `/berth/pod<uid>/<ctr>`
//! in every hierarchy but removes only the leaf, so the pod level is ours to
//! remove when the sandbox goes.

use std::io;
use std::path::{Path, PathBuf};

pub(crate) use berth_runtime::cgroup_layout::{container_cgroup, pod_cgroup};

/// Mount points of every cgroup hierarchy (v1 and v2), from a mountinfo text.
/// Only mounts of the hierarchy root count: a bind of a sub-cgroup is not a
/// place where `/berth/...` lives.
pub(crate) fn hierarchies(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fstype = right.split_whitespace().next()?;
            let mut fields = left.split_whitespace();
            let root = fields.nth(3)?;
            let mount_point = fields.next()?;
            (matches!(fstype, "cgroup" | "cgroup2") && root == "/")
                .then(|| PathBuf::from(mount_point.replace("\\040", " ")))
        })
        .collect()
}

/// How many processes the kernel's OOM killer killed in `cgroup` (an
/// absolute cgroupfs path): `oom_kill` of memory.oom_control (v1) or
/// memory.events (v2). `None` when the cgroup is gone or has no such count.
pub(crate) fn oom_kills(cgroup: &str) -> Option<u64> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    hierarchies(&mountinfo).into_iter().find_map(|hierarchy| {
        let dir = hierarchy.join(cgroup.trim_start_matches('/'));
        ["memory.oom_control", "memory.events"]
            .into_iter()
            .find_map(|file| oom_kill_count(&std::fs::read_to_string(dir.join(file)).ok()?))
    })
}

/// The memory `cgroup` (an absolute cgroupfs path) uses now, in bytes:
/// memory.usage_in_bytes (v1) or memory.current (v2).
pub(crate) fn memory_usage(cgroup: &str) -> Option<u64> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    hierarchies(&mountinfo).into_iter().find_map(|hierarchy| {
        let dir = hierarchy.join(cgroup.trim_start_matches('/'));
        ["memory.usage_in_bytes", "memory.current"]
            .into_iter()
            .find_map(|file| {
                std::fs::read_to_string(dir.join(file))
                    .ok()?
                    .trim()
                    .parse()
                    .ok()
            })
    })
}

/// The `oom_kill N` line of a memory controller's key-value file.
fn oom_kill_count(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("oom_kill ")?.trim().parse().ok())
}

/// Removes the pod's cgroup in every hierarchy, children first.
pub(crate) fn remove_pod_cgroup(pod_uid: &str) -> io::Result<()> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    let relative = pod_cgroup(pod_uid);
    let mut first_error = None;
    for hierarchy in hierarchies(&mountinfo) {
        let dir = hierarchy.join(relative.trim_start_matches('/'));
        match remove_tree(&dir) {
            Ok(()) => {}
            // Still in use: another sandbox of the same pod (a re-created one)
            // has containers there. Its own removal takes the pod level.
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                tracing::debug!(cgroup = %dir.display(), "pod cgroup still in use");
            }
            Err(e) => {
                tracing::warn!(cgroup = %dir.display(), error = %e, "remove pod cgroup");
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// rmdir of a cgroup directory tree, depth first (cgroupfs files go with their dir).
fn remove_tree(dir: &Path) -> io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_tree(&entry.path())?;
        }
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_kill_counts_are_read_from_v1_and_v2_files() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        let v2 = "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(oom_kill_count(v1), Some(2));
        assert_eq!(oom_kill_count(v2), Some(1));
        assert_eq!(oom_kill_count("oom_kill_disable 0\n"), None);
    }

    #[test]
    fn hierarchies_are_read_from_mountinfo() {
        let mountinfo = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 31 0:32 /kubepods /mnt/sub rw,relatime - cgroup cgroup rw,memory
60 23 0:40 / /proc rw - proc proc rw";
        assert_eq!(
            hierarchies(mountinfo),
            vec![
                PathBuf::from("/sys/fs/cgroup/cpu"),
                PathBuf::from("/sys/fs/cgroup/memory"),
                PathBuf::from("/sys/fs/cgroup/unified"),
            ]
        );
    }

    #[test]
    fn remove_tree_removes_children_first_and_tolerates_absence() {
        let tmp = tempfile::tempdir().unwrap();
        let pod = tmp.path().join("pod");
        std::fs::create_dir_all(pod.join("c1/sub")).unwrap();
        std::fs::create_dir_all(pod.join("c2")).unwrap();
        remove_tree(&pod).unwrap();
        assert!(!pod.exists());
        remove_tree(&pod).unwrap();
    }
}
