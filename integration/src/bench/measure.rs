//! Small statistics and /proc readings for the benchmarks.

use std::time::Duration;

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Nearest-rank percentile.
pub fn percentile(samples: &[Duration], p: usize) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

/// A process's RSS, with how much of it is anonymous (heap, stacks) and
/// how much is mapped from files (mostly the binary's code).
pub fn vm_rss(pid: i32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
            .unwrap_or_else(|| "unknown".into())
    };
    format!(
        "{} (anonymous {}, file {})",
        field("VmRSS:"),
        field("RssAnon:"),
        field("RssFile:")
    )
}

/// Linux reports CPU times in USER_HZ ticks, 100 per second on every
/// architecture berth runs on.
const TICKS_PER_SECOND: f64 = 100.0;

/// The CPU time (user + system) a process has used so far.
pub fn cpu_time(pid: i32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces) start at ") ".
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the state.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    Duration::from_secs_f64(ticks as f64 / TICKS_PER_SECOND)
}

/// The CPU time the whole machine has been busy (all but idle and iowait).
pub fn machine_busy_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let values: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = values.iter().take(8).sum();
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    Duration::from_secs_f64(total.saturating_sub(idle) as f64 / TICKS_PER_SECOND)
}
