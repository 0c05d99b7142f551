//! Writing a pod's sysctls into its own network and IPC namespaces. The
//! kubelet admitted them; this refuses anything that would reach the host's
//! namespaces or leave `/proc/sys`, whatever the caller passed.

use std::io;
use std::path::PathBuf;

/// Every sysctl must belong to a namespace the pod owns: `net.*` to its
/// network namespace, `kernel.shm*`, `kernel.msg*`, `kernel.sem` and
/// `fs.mqueue.*` to its IPC namespace.
pub(crate) fn check_namespaced(
    sysctls: &[(String, String)],
    own_net: bool,
    own_ipc: bool,
) -> Result<(), String> {
    for (name, _) in sysctls {
        let ipc = name == "kernel.sem"
            || ["kernel.shm", "kernel.msg", "fs.mqueue."]
                .iter()
                .any(|p| name.starts_with(p));
        let net = name.starts_with("net.");
        let allowed = (net && own_net) || (ipc && own_ipc);
        if !allowed {
            let reason = match (net, ipc) {
                (true, _) => "the pod uses the host's network namespace",
                (_, true) => "the pod uses the host's IPC namespace",
                _ => "it is not namespaced",
            };
            return Err(format!("sysctl {name:?} not allowed: {reason}"));
        }
        proc_path(name)?;
    }
    Ok(())
}

/// `/proc/sys/...` of a dotted name (`net.ipv4.conf.eth0/100.forwarding` is
/// `net/ipv4/conf/eth0.100/forwarding`); each part must be a plain segment.
fn proc_path(name: &str) -> Result<PathBuf, String> {
    let mut path = PathBuf::from("/proc/sys");
    for component in name.split('.') {
        let plain = component.split('/').all(|part| {
            let b = part.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_'
                })
        });
        if !plain {
            return Err(format!("invalid sysctl name {name:?}"));
        }
        path.push(component.replace('/', "."));
    }
    Ok(path)
}

/// Writes each sysctl as the calling thread's namespaces see it.
pub(crate) fn write_all(sysctls: &[(String, String)]) -> io::Result<()> {
    for (name, value) in sysctls {
        let path = proc_path(name).map_err(io::Error::other)?;
        std::fs::write(&path, value.as_bytes())
            .map_err(|e| io::Error::new(e.kind(), format!("write sysctl {name}={value:?}: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(name: &str) -> Vec<(String, String)> {
        vec![(name.to_string(), "1".to_string())]
    }

    #[test]
    fn sysctls_must_be_the_pods_own() {
        check_namespaced(&one("net.ipv4.tcp_syncookies"), true, false).unwrap();
        check_namespaced(&one("kernel.shm_rmid_forced"), false, true).unwrap();
        check_namespaced(&one("fs.mqueue.msg_max"), false, true).unwrap();
        let err = check_namespaced(&one("net.ipv4.tcp_syncookies"), false, true).unwrap_err();
        assert!(err.contains("host's network namespace"), "{err}");
        assert!(check_namespaced(&one("kernel.msgmax"), true, false).is_err());
        assert!(check_namespaced(&one("vm.swappiness"), true, true)
            .unwrap_err()
            .contains("not namespaced"));
    }

    #[test]
    fn names_map_to_paths_under_proc_sys_only() {
        assert_eq!(
            proc_path("net.ipv4.conf.eth0/100.forwarding").unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/conf/eth0.100/forwarding")
        );
        for bad in [
            "net.//.x",
            "net...x",
            "net.ipv4.",
            "net.ipv4/../x",
            "net.a b",
            "net.X",
        ] {
            assert!(proc_path(bad).is_err(), "{bad}");
            assert!(check_namespaced(&one(bad), true, true).is_err(), "{bad}");
        }
    }
}
