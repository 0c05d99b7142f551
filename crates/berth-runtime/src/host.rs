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

/// Every mount point of this process's mount namespace, in the order of
/// `/proc/self/mountinfo` (a mount after the mounts it sits on), with the
/// table's octal escapes decoded.
pub fn mount_points() -> Vec<std::path::PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| std::path::PathBuf::from(unescape_mount_field(field)))
        .collect()
}

/// The mount table writes space, tab, newline and backslash as `\ooo`.
pub fn unescape_mount_field(field: &str) -> String {
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
    fn mount_fields_unescape_octal() {
        assert_eq!(unescape_mount_field(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape_mount_field("/plain"), "/plain");
        assert_eq!(unescape_mount_field(r"/end\"), r"/end\");
        assert!(mount_points().contains(&std::path::PathBuf::from("/")));
    }

    #[test]
    fn kernel_versions_parse_from_releases() {
        assert_eq!(parse_kernel_version("6.18.44-fc-v1300\n"), Some((6, 18)));
        assert_eq!(parse_kernel_version("4.4"), Some((4, 4)));
        assert_eq!(parse_kernel_version("x"), None);
        assert!(kernel_version().is_some());
    }
}
