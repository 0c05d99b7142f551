//! What berth leaves on a host for its pods, counted where a leak would show:
//! containerd's records, the host's network and mounts, processes, and the
//! agent's directories. With no pod left, every counter is back to what it
//! was before the first pod.

use std::path::Path;
use std::time::Duration;

use berth_testkit::mounts::mounts_under;
use tokio::time::Instant;

use crate::{
    active_snapshots, allocated_ips, ctr_list, leases, loggers, sandboxes_pinned, shims, veths,
    AgentProcess,
};

/// One reading of every counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Residue {
    pub containers: usize,
    pub tasks: usize,
    /// Active snapshots (writable layers); committed image layers stay.
    pub snapshots: usize,
    pub leases: usize,
    /// Sandboxes with namespace pins under `<root>/ns`.
    pub netns_pins: usize,
    /// Mount points under the agent's root (pins, shm, volumes).
    pub mounts: usize,
    pub veths: usize,
    /// host-local's address files.
    pub ips: usize,
    pub shims: usize,
    pub loggers: usize,
    /// `<root>/sandboxes/*`.
    pub sandbox_dirs: usize,
    /// `<root>/pods/*`: volumes and per-pod state.
    pub pod_dirs: usize,
    /// `<log dir>/*`: the pods' CRI log directories.
    pub log_dirs: usize,
}

impl Residue {
    /// Counts everything now.
    pub fn of(agent: &AgentProcess) -> Self {
        let root = agent.root_dir();
        Self {
            containers: ctr_list(agent, "containers").len(),
            tasks: ctr_list(agent, "tasks").len(),
            snapshots: active_snapshots(agent).len(),
            leases: leases(agent).len(),
            netns_pins: sandboxes_pinned(agent),
            mounts: mounts_under(&root).len(),
            veths: veths(agent),
            ips: allocated_ips(agent).len(),
            shims: shims(agent.namespace()),
            loggers: loggers(agent.namespace()),
            sandbox_dirs: entries(&root.join("sandboxes")),
            pod_dirs: entries(&root.join("pods")),
            log_dirs: entries(&agent.log_dir()),
        }
    }

    /// Every counter by name, in a fixed order.
    pub fn counters(&self) -> [(&'static str, usize); 13] {
        [
            ("containerd containers", self.containers),
            ("containerd tasks", self.tasks),
            ("active snapshots", self.snapshots),
            ("leases", self.leases),
            ("netns pins", self.netns_pins),
            ("mounts under root", self.mounts),
            ("veths on bridge", self.veths),
            ("host-local IPs", self.ips),
            ("shims", self.shims),
            ("loggers", self.loggers),
            ("sandbox dirs", self.sandbox_dirs),
            ("pod dirs", self.pod_dirs),
            ("pod log dirs", self.log_dirs),
        ]
    }

    /// The counters above `baseline`, by how much (only those above it).
    pub fn excess_over(&self, baseline: &Residue) -> Vec<(&'static str, usize)> {
        self.counters()
            .into_iter()
            .zip(baseline.counters())
            .filter(|((_, now), (_, before))| now > before)
            .map(|((name, now), (_, before))| (name, now - before))
            .collect()
    }

    /// Polls until nothing is above `baseline` or `timeout` passes, and
    /// returns the last reading: shims, loggers and deferred removals go a
    /// moment after the pods do.
    pub async fn settled(agent: &AgentProcess, baseline: &Residue, timeout: Duration) -> Self {
        let deadline = Instant::now() + timeout;
        loop {
            let now = Self::of(agent);
            if now.excess_over(baseline).is_empty() || Instant::now() >= deadline {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// Open file descriptors of a process.
pub fn fd_count(pid: i32) -> usize {
    entries(Path::new(&format!("/proc/{pid}/fd")))
}

/// Resident memory of a process in KiB (`VmRSS`), 0 when it is gone.
pub fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
