//! Facts about the node that both the pod worker and the runtime need.

/// The node's host name, as containers on the host network see it (read at
/// each call: it can change while the agent runs).
pub fn node_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
