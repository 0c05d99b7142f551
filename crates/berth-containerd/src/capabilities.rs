//! A container's capability set as containerd's CRI plugin computes it
//! (`WithCapabilities`, `WithPrivileged`): the 14 defaults, `ALL` in `add`
//! for every capability the host has, `ALL` in `drop` for none, then the
//! named ones added and dropped; privileged containers take the host's.

use berth_runtime::{ContainerSecurity, RuntimeError, RuntimeErrorKind};

/// Linux capabilities by bit number (`include/uapi/linux/capability.h`).
const KNOWN: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// containerd's (and Docker's) default capability set.
pub(crate) const DEFAULT: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The capabilities this host grants: the effective set of the agent
/// (containerd's `cap.Current`, which reads its own `CapEff`), so a
/// privileged container never asks runc for one the host's bounding set
/// lacks.
pub(crate) fn host() -> Vec<&'static str> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    from_status(&status)
}

fn from_status(status: &str) -> Vec<&'static str> {
    let bits = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    KNOWN
        .iter()
        .enumerate()
        .filter(|(bit, _)| bits & (1 << bit) != 0)
        .map(|(_, name)| *name)
        .collect()
}

/// `CAP_X` for a name the pod writes as `x`, `X` or `CAP_X`.
fn canonical(name: &str) -> Result<&'static str, RuntimeError> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    KNOWN
        .iter()
        .find(|known| &known[4..] == bare)
        .copied()
        .ok_or_else(|| {
            RuntimeError::new(
                RuntimeErrorKind::InvalidSpec,
                format!("unknown capability {name:?}"),
            )
        })
}

fn is_all(name: &str) -> bool {
    name.eq_ignore_ascii_case("ALL")
}

/// The bounding (= effective = permitted) set of a container; `host` is what
/// `ALL` and privileged mean on this node.
pub(crate) fn container_set(
    privileged: bool,
    security: &ContainerSecurity,
    host: &[&'static str],
) -> Result<Vec<&'static str>, RuntimeError> {
    let add = &security.add_capabilities;
    let drop = &security.drop_capabilities;
    // Names are checked even where privileged overrides them: a typo is an
    // error either way.
    let named_add: Vec<&'static str> = add
        .iter()
        .filter(|c| !is_all(c))
        .map(|c| canonical(c))
        .collect::<Result<_, _>>()?;
    let named_drop: Vec<&'static str> = drop
        .iter()
        .filter(|c| !is_all(c))
        .map(|c| canonical(c))
        .collect::<Result<_, _>>()?;
    let mut caps: Vec<&'static str> = DEFAULT.to_vec();
    if add.iter().any(|c| is_all(c)) {
        caps = host.to_vec();
    }
    if drop.iter().any(|c| is_all(c)) {
        caps.clear();
    }
    for cap in named_add {
        if !caps.contains(&cap) {
            caps.push(cap);
        }
    }
    caps.retain(|c| !named_drop.contains(c));
    // Privileged wins over add and drop (CRI applies WithPrivileged after
    // the security context's capabilities).
    if privileged {
        caps = host.to_vec();
    }
    Ok(caps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn security(add: &[&str], drop: &[&str]) -> ContainerSecurity {
        ContainerSecurity {
            add_capabilities: add.iter().map(|s| s.to_string()).collect(),
            drop_capabilities: drop.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    /// Every known capability but CAP_SYS_RESOURCE, as on the test hosts.
    const STATUS: &str = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001fffeffffff\n";

    #[test]
    fn the_host_set_comes_from_the_effective_capabilities() {
        let host = from_status(STATUS);
        assert_eq!(host.len(), 40);
        assert!(!host.contains(&"CAP_SYS_RESOURCE"));
        assert!(host.contains(&"CAP_CHECKPOINT_RESTORE"));
        assert!(from_status("CapEff:\t0000000000000001\n") == ["CAP_CHOWN"]);
    }

    #[test]
    fn add_and_drop_start_from_the_defaults() {
        let host = from_status(STATUS);
        let caps = container_set(false, &security(&[], &[]), &host).unwrap();
        assert_eq!(caps, DEFAULT);
        let caps = container_set(
            false,
            &security(&["NET_ADMIN", "cap_sys_time"], &["CHOWN"]),
            &host,
        )
        .unwrap();
        assert!(caps.contains(&"CAP_NET_ADMIN") && caps.contains(&"CAP_SYS_TIME"));
        assert!(!caps.contains(&"CAP_CHOWN"));
        assert_eq!(caps.len(), 15);
    }

    #[test]
    fn all_means_the_host_set_or_nothing() {
        let host = from_status(STATUS);
        let caps = container_set(false, &security(&["ALL"], &["CHOWN"]), &host).unwrap();
        assert_eq!(caps.len(), 39);
        assert!(!caps.contains(&"CAP_CHOWN"));
        let caps = container_set(false, &security(&[], &["all"]), &host).unwrap();
        assert!(caps.is_empty());
        let caps = container_set(false, &security(&["NET_BIND_SERVICE"], &["ALL"]), &host).unwrap();
        assert_eq!(caps, ["CAP_NET_BIND_SERVICE"]);
    }

    #[test]
    fn privileged_takes_what_the_host_has() {
        let host = from_status(STATUS);
        let caps = container_set(true, &security(&[], &["ALL"]), &host).unwrap();
        assert_eq!(caps, host);
        assert!(!caps.contains(&"CAP_SYS_RESOURCE"));
    }

    #[test]
    fn unknown_names_are_refused() {
        let err = container_set(false, &security(&["NET_ADMN"], &[]), &[]).unwrap_err();
        assert_eq!(err.kind, RuntimeErrorKind::InvalidSpec);
        assert_eq!(err.message, r#"unknown capability "NET_ADMN""#);
        assert!(container_set(false, &security(&[], &["CAP_"]), &[]).is_err());
    }
}
