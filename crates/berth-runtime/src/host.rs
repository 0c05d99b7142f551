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

/// The running kernel's version (major, minor), from `/proc/sys/kernel/osrelease`.
pub fn kernel_version() -> Option<(u32, u32)> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    parse_kernel_version(&release)
}

/// The version (major, minor) of a release such as `6.1.0-18-amd64`.
pub fn parse_kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions_parse_from_releases() {
        assert_eq!(parse_kernel_version("6.18.44-fc-v1300\n"), Some((6, 18)));
        assert_eq!(parse_kernel_version("4.4"), Some((4, 4)));
        assert_eq!(parse_kernel_version("x"), None);
        assert!(kernel_version().is_some());
    }
}
