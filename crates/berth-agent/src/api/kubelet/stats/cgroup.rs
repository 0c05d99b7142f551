//! CPU and memory usage of one cgroup, read from cgroupfs (v1 `cpuacct` and
//! `memory` hierarchies, or the v2 unified one), as cadvisor reads them for
//! the kubelet.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Where the hierarchies the stats come from are mounted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Hierarchies {
    cpuacct: Option<PathBuf>,
    memory: Option<PathBuf>,
    unified: Option<PathBuf>,
}

impl Hierarchies {
    /// The root mounts of the `cpuacct`, `memory` and cgroup2 hierarchies,
    /// from a mountinfo text.
    pub fn from_mountinfo(mountinfo: &str) -> Self {
        let mut found = Self::default();
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let mut right = right.split_whitespace();
            let (Some(fstype), Some(options)) = (right.next(), right.nth(1)) else {
                continue;
            };
            let mut left = left.split_whitespace();
            let (Some(root), Some(mount_point)) = (left.nth(3), left.next()) else {
                continue;
            };
            if root != "/" {
                continue;
            }
            let mount_point = PathBuf::from(mount_point.replace("\\040", " "));
            let has = |controller| options.split(',').any(|o| o == controller);
            match fstype {
                "cgroup" if has("cpuacct") => found.cpuacct.get_or_insert(mount_point),
                "cgroup" if has("memory") => found.memory.get_or_insert(mount_point),
                "cgroup2" => found.unified.get_or_insert(mount_point),
                _ => continue,
            };
        }
        found
    }

    /// The mounts of this host.
    pub fn of_host() -> Self {
        Self::from_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
    }

    /// The hierarchies [`Self::usage`] reads: the v1 ones when both are
    /// mounted, else the unified one.
    #[cfg(test)]
    pub fn read_from(&self) -> Vec<&Path> {
        match (&self.cpuacct, &self.memory) {
            (Some(cpuacct), Some(memory)) => vec![cpuacct, memory],
            _ => self.unified.iter().map(PathBuf::as_path).collect(),
        }
    }

    /// The usage of `cgroup` (an absolute cgroupfs path); `None` when the
    /// cgroup does not exist. runc puts containers in the v1 hierarchies
    /// whenever they are mounted (hybrid hosts), else in the unified one.
    pub fn usage(&self, cgroup: &str) -> Option<Usage> {
        let relative = cgroup.trim_start_matches('/');
        let read =
            |base: &Path, file: &str| std::fs::read_to_string(base.join(relative).join(file)).ok();
        if let (Some(cpuacct), Some(memory)) = (&self.cpuacct, &self.memory) {
            let cpu_ns = read(cpuacct, "cpuacct.usage")?.trim().parse().ok();
            let memory = match (
                read(memory, "memory.usage_in_bytes"),
                read(memory, "memory.stat"),
            ) {
                (Some(usage), Some(stat)) => Memory::v1(usage.trim().parse().ok()?, &stat),
                _ => None,
            };
            return Some(Usage { cpu_ns, memory });
        }
        let unified = self.unified.as_ref()?;
        let cpu_ns = cpu_ns_v2(&read(unified, "cpu.stat")?);
        let memory = match (
            read(unified, "memory.current"),
            read(unified, "memory.stat"),
        ) {
            (Some(current), Some(stat)) => Memory::v2(current.trim().parse().ok()?, &stat),
            _ => None,
        };
        Some(Usage { cpu_ns, memory })
    }
}

/// What a cgroup has used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Cumulative CPU time, in nanoseconds.
    pub cpu_ns: Option<u64>,
    pub memory: Option<Memory>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    pub usage: u64,
    pub working_set: u64,
    pub rss: u64,
    pub page_faults: u64,
    pub major_page_faults: u64,
}

impl Memory {
    /// From v1's `memory.usage_in_bytes` and `memory.stat` (hierarchical totals).
    fn v1(usage: u64, stat: &str) -> Option<Self> {
        let stat = flat_keyed(stat);
        Some(Self {
            usage,
            working_set: working_set(usage, stat.get("total_inactive_file").copied()),
            rss: *stat.get("total_rss")?,
            page_faults: stat.get("total_pgfault").copied().unwrap_or(0),
            major_page_faults: stat.get("total_pgmajfault").copied().unwrap_or(0),
        })
    }

    /// From v2's `memory.current` and `memory.stat`.
    fn v2(usage: u64, stat: &str) -> Option<Self> {
        let stat = flat_keyed(stat);
        Some(Self {
            usage,
            working_set: working_set(usage, stat.get("inactive_file").copied()),
            rss: *stat.get("anon")?,
            page_faults: stat.get("pgfault").copied().unwrap_or(0),
            major_page_faults: stat.get("pgmajfault").copied().unwrap_or(0),
        })
    }
}

/// cadvisor's working set: usage less the inactive file cache (which the
/// kernel reclaims first), never below zero.
pub fn working_set(usage: u64, inactive_file: Option<u64>) -> u64 {
    usage.saturating_sub(inactive_file.unwrap_or(0))
}

/// `usage_usec` of a v2 `cpu.stat`, in nanoseconds.
fn cpu_ns_v2(stat: &str) -> Option<u64> {
    flat_keyed(stat).get("usage_usec")?.checked_mul(1_000)
}

/// A cgroupfs "flat keyed" file: `key value` lines.
fn flat_keyed(text: &str) -> HashMap<&str, u64> {
    text.lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(' ')?;
            Some((key, value.trim().parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hierarchies_are_found_on_hybrid_and_unified_hosts() {
        let hybrid = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 31 0:32 /kubepods /mnt/sub rw,relatime - cgroup cgroup rw,memory";
        assert_eq!(
            Hierarchies::from_mountinfo(hybrid),
            Hierarchies {
                cpuacct: Some("/sys/fs/cgroup/cpu,cpuacct".into()),
                memory: Some("/sys/fs/cgroup/memory".into()),
                unified: Some("/sys/fs/cgroup/unified".into()),
            }
        );
        let unified = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate";
        assert_eq!(
            Hierarchies::from_mountinfo(unified),
            Hierarchies {
                unified: Some("/sys/fs/cgroup".into()),
                ..Default::default()
            }
        );
    }

    #[test]
    fn working_set_is_usage_less_inactive_file() {
        assert_eq!(working_set(100, Some(30)), 70);
        assert_eq!(working_set(100, None), 100);
        assert_eq!(working_set(10, Some(30)), 0);
    }

    #[test]
    fn v1_memory_uses_the_hierarchical_totals() {
        let stat = "cache 5\nrss 6\ntotal_cache 4096\ntotal_rss 8192\ntotal_inactive_file 1000\n\
                    total_pgfault 7\ntotal_pgmajfault 1\ninactive_file 9\n";
        assert_eq!(
            Memory::v1(20_000, stat),
            Some(Memory {
                usage: 20_000,
                working_set: 19_000,
                rss: 8192,
                page_faults: 7,
                major_page_faults: 1
            })
        );
    }

    #[test]
    fn v2_memory_and_cpu() {
        let stat = "anon 8192\nfile 4096\ninactive_file 1000\npgfault 7\npgmajfault 1\n";
        assert_eq!(
            Memory::v2(20_000, stat),
            Some(Memory {
                usage: 20_000,
                working_set: 19_000,
                rss: 8192,
                page_faults: 7,
                major_page_faults: 1
            })
        );
        assert_eq!(
            cpu_ns_v2("usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n"),
            Some(1_500_000)
        );
        assert_eq!(cpu_ns_v2("user_usec 1000\n"), None);
    }

    #[test]
    fn usage_reads_a_v2_cgroup_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("berth/podu/c");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cpu.stat"), "usage_usec 2000000\n").unwrap();
        std::fs::write(dir.join("memory.current"), "3000\n").unwrap();
        std::fs::write(dir.join("memory.stat"), "anon 2000\ninactive_file 500\n").unwrap();
        let hierarchies = Hierarchies {
            unified: Some(tmp.path().into()),
            ..Default::default()
        };
        let usage = hierarchies.usage("/berth/podu/c").unwrap();
        assert_eq!(usage.cpu_ns, Some(2_000_000_000));
        assert_eq!(usage.memory.unwrap().working_set, 2500);
        assert_eq!(hierarchies.usage("/berth/podu/gone"), None);
    }
}
