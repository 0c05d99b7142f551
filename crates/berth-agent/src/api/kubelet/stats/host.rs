//! The node's own usage: CPU time and boot time from /proc/stat, memory from
//! /proc/meminfo, and the filesystem of berth's root directory (the
//! kubelet's "nodefs").

use std::path::Path;

/// /proc/stat counts in USER_HZ, which the kernel ABI fixes at 100 per second.
const USER_HZ: u64 = 100;

/// What /proc/stat says about the whole machine.
#[derive(Debug, PartialEq, Eq)]
pub struct CpuTimes {
    /// CPU time spent not idle, in nanoseconds.
    pub busy_ns: u64,
    /// Boot time, in seconds since the epoch.
    pub boot_time: i64,
}

/// The aggregate `cpu` line (user, nice, system, irq, softirq and steal;
/// guest time is already in user) and `btime`.
pub fn cpu_times(stat: &str) -> Option<CpuTimes> {
    let mut busy = None;
    let mut boot_time = None;
    for line in stat.lines() {
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("cpu") => {
                let ticks: Vec<u64> = fields.map_while(|f| f.parse().ok()).collect();
                // user nice system idle iowait irq softirq steal ...
                let at = |i: usize| ticks.get(i).copied().unwrap_or(0);
                if ticks.len() >= 4 {
                    busy = Some(at(0) + at(1) + at(2) + at(5) + at(6) + at(7));
                }
            }
            Some("btime") => boot_time = fields.next().and_then(|f| f.parse().ok()),
            _ => {}
        }
    }
    Some(CpuTimes {
        busy_ns: busy? * (1_000_000_000 / USER_HZ),
        boot_time: boot_time?,
    })
}

/// The node's memory, in bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct NodeMemory {
    pub capacity: u64,
    pub usage: u64,
    pub working_set: u64,
    pub rss: u64,
}

/// From /proc/meminfo: usage is what is not free, the working set that
/// less the inactive file cache, RSS the anonymous pages (cadvisor's root
/// container; every field is there, as clients dereference them unchecked).
pub fn node_memory(meminfo: &str) -> Option<NodeMemory> {
    let kib = |key: &str| -> Option<u64> {
        meminfo.lines().find_map(|line| {
            let value = line.strip_prefix(key)?.strip_prefix(':')?;
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
    };
    let capacity = kib("MemTotal")? * 1024;
    let usage = capacity.saturating_sub(kib("MemFree")? * 1024);
    let working_set = super::cgroup::working_set(usage, kib("Inactive(file)").map(|k| k * 1024));
    Some(NodeMemory {
        capacity,
        usage,
        working_set,
        rss: kib("AnonPages").unwrap_or(0) * 1024,
    })
}

/// A filesystem's size and use, in bytes and inodes.
#[derive(Debug, PartialEq, Eq)]
pub struct Filesystem {
    pub capacity: u64,
    pub available: u64,
    pub used: u64,
    pub inodes: u64,
    pub inodes_free: u64,
}

pub fn filesystem(dir: &Path) -> Option<Filesystem> {
    let stat = nix::sys::statvfs::statvfs(dir).ok()?;
    let block = stat.fragment_size() as u64;
    let blocks = stat.blocks() as u64;
    Some(Filesystem {
        capacity: blocks * block,
        available: stat.blocks_available() as u64 * block,
        used: blocks.saturating_sub(stat.blocks_free() as u64) * block,
        inodes: stat.files() as u64,
        inodes_free: stat.files_free() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_counts_every_busy_state() {
        let stat = "cpu  100 20 30 5000 40 5 6 7 50 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n\
                    intr 1 2 3\nbtime 1765000000\nprocesses 9\n";
        assert_eq!(
            cpu_times(stat),
            Some(CpuTimes {
                // (100 + 20 + 30 + 5 + 6 + 7) ticks of 10 ms
                busy_ns: 168 * 10_000_000,
                boot_time: 1_765_000_000
            })
        );
        assert_eq!(cpu_times("cpu  1 2\nbtime 5\n").map(|t| t.busy_ns), None);
        assert_eq!(cpu_times("intr 1\n"), None);
    }

    #[test]
    fn node_memory_is_what_is_not_free_less_inactive_file() {
        let meminfo = "MemTotal:        1000 kB\nMemFree:          300 kB\n\
                       MemAvailable:     600 kB\nInactive(file):   200 kB\n\
                       AnonPages:        150 kB\n";
        assert_eq!(
            node_memory(meminfo),
            Some(NodeMemory {
                capacity: 1_024_000,
                usage: 700 * 1024,
                working_set: 500 * 1024,
                rss: 150 * 1024,
            })
        );
        assert_eq!(node_memory("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn filesystem_of_a_directory() {
        let fs = filesystem(Path::new("/")).unwrap();
        assert!(fs.capacity > 0 && fs.used <= fs.capacity && fs.available <= fs.capacity);
        assert_eq!(filesystem(Path::new("/no/such/dir")), None);
    }
}
