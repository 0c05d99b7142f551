//! Pod sysctls as the kubelet admits them (`pkg/kubelet/sysctl`): the safe
//! set, plus the node's `allowedUnsafeSysctls` patterns, each known to be
//! namespaced; anything else rejects the pod with `SysctlForbidden`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

/// The kubelet's admission reason for a pod with a sysctl it does not allow.
pub const FORBIDDEN_REASON: &str = "SysctlForbidden";

/// The kernel namespace a sysctl belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Namespace {
    Ipc,
    Net,
}

impl Namespace {
    fn as_str(self) -> &'static str {
        match self {
            Namespace::Ipc => "ipc",
            Namespace::Net => "net",
        }
    }
}

/// The sysctls isolated per pod (`safe_sysctls.go`), with the kernel
/// version (major, minor) that namespaced each, where it is recent.
const SAFE_SYSCTLS: [(&str, Option<(u32, u32)>); 12] = [
    ("kernel.shm_rmid_forced", None),
    ("net.ipv4.ip_local_port_range", None),
    ("net.ipv4.tcp_syncookies", None),
    ("net.ipv4.ping_group_range", None),
    ("net.ipv4.ip_unprivileged_port_start", None),
    ("net.ipv4.ip_local_reserved_ports", Some((3, 16))),
    ("net.ipv4.tcp_keepalive_time", Some((4, 5))),
    ("net.ipv4.tcp_fin_timeout", Some((4, 6))),
    ("net.ipv4.tcp_keepalive_intvl", Some((4, 5))),
    ("net.ipv4.tcp_keepalive_probes", Some((4, 5))),
    ("net.ipv4.tcp_rmem", None),
    ("net.ipv4.tcp_wmem", None),
];

/// Which namespace a sysctl (or a pattern's prefix) lives in, if it is known
/// to be namespaced at all.
pub fn namespace_of(name: &str) -> Option<Namespace> {
    if name == "kernel.sem" {
        return Some(Namespace::Ipc);
    }
    let prefixes = [
        ("kernel.shm", Namespace::Ipc),
        ("kernel.msg", Namespace::Ipc),
        ("fs.mqueue.", Namespace::Ipc),
        ("net.", Namespace::Net),
    ];
    prefixes
        .into_iter()
        .find(|(prefix, _)| name.starts_with(prefix))
        .map(|(_, ns)| ns)
}

/// A sysctl name with `/` separators in the dotted form (`sysctl.d(5)`:
/// when the first separator is `/`, the two separators swap roles).
pub fn normalize_name(name: &str) -> String {
    match name.find(['.', '/']) {
        Some(i) if name.as_bytes()[i] == b'/' => name
            .chars()
            .map(|c| match c {
                '/' => '.',
                '.' => '/',
                c => c,
            })
            .collect(),
        _ => name.to_string(),
    }
}

/// The API server's sysctl name rule: dot- or slash-separated segments of
/// `[a-z0-9]([-_a-z0-9]*[a-z0-9])?`, at most 253 characters.
pub fn is_valid_name(name: &str) -> bool {
    name.len() <= 253 && segments_valid(name, false)
}

/// The kubelet's allow-list pattern rule: a name whose last segment may end
/// in `*`.
pub fn is_valid_pattern(pattern: &str) -> bool {
    pattern.len() <= 253 && segments_valid(pattern, true)
}

fn segments_valid(name: &str, star_last: bool) -> bool {
    let segments: Vec<&str> = name.split(['.', '/']).collect();
    let last = segments.len() - 1;
    segments.iter().enumerate().all(|(i, segment)| {
        let segment = match segment.strip_suffix('*') {
            Some(head) if star_last && i == last => {
                // `*` alone, or a segment prefix ending in `*`.
                if head.is_empty() {
                    return true;
                }
                return head.bytes().next().is_some_and(alnum)
                    && head.bytes().all(|b| alnum(b) || b == b'-' || b == b'_');
            }
            _ => *segment,
        };
        let bytes = segment.as_bytes();
        !bytes.is_empty()
            && alnum(bytes[0])
            && alnum(bytes[bytes.len() - 1])
            && bytes.iter().all(|&b| alnum(b) || b == b'-' || b == b'_')
    })
}

fn alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// The sysctls a node allows: the safe set and the admin's unsafe patterns
/// (the kubelet's `patternAllowlist`).
#[derive(Debug, Clone, Default)]
pub struct Allowlist {
    names: BTreeMap<String, Namespace>,
    prefixes: BTreeMap<String, Namespace>,
}

impl Allowlist {
    /// The safe set for this kernel (`None`: unknown, only the ungated
    /// ones) plus `unsafe_patterns`; a pattern that is malformed or not known
    /// to be namespaced is an error, as it stops the kubelet.
    pub fn new(unsafe_patterns: &[String], kernel: Option<(u32, u32)>) -> Result<Self, String> {
        let safe = SAFE_SYSCTLS
            .iter()
            .filter(|(_, min)| min.is_none_or(|min| kernel.is_some_and(|k| k >= min)))
            .map(|(name, _)| name.to_string());
        let mut list = Allowlist::default();
        for pattern in safe.chain(unsafe_patterns.iter().cloned()) {
            if !is_valid_pattern(&pattern) {
                return Err(format!(
                    "sysctl {pattern:?} must have at most 253 characters and match regex {}",
                    PATTERN_REGEX
                ));
            }
            let pattern = normalize_name(&pattern);
            match pattern.strip_suffix('*') {
                Some(prefix) => {
                    let ns = namespace_of(prefix).ok_or_else(|| {
                        format!("the sysctls {pattern:?} are not known to be namespaced")
                    })?;
                    list.prefixes.insert(prefix.to_string(), ns);
                }
                None => {
                    let ns = namespace_of(&pattern).ok_or_else(|| {
                        format!("the sysctl {pattern:?} are not known to be namespaced")
                    })?;
                    list.names.insert(pattern, ns);
                }
            }
        }
        Ok(list)
    }

    /// Admits the pod's sysctls or says which one is forbidden, in the
    /// kubelet's words (the rejection's message).
    pub fn admit(&self, pod: &Pod) -> Result<(), String> {
        let Some(spec) = &pod.spec else {
            return Ok(());
        };
        let sysctls = spec
            .security_context
            .as_ref()
            .and_then(|sc| sc.sysctls.as_ref());
        let host_net = spec.host_network.unwrap_or(false);
        let host_ipc = spec.host_ipc.unwrap_or(false);
        for sysctl in sysctls.into_iter().flatten() {
            self.check(&normalize_name(&sysctl.name), host_net, host_ipc)
                .map_err(|e| format!("forbidden sysctl: {e}"))?;
        }
        Ok(())
    }

    fn check(&self, name: &str, host_net: bool, host_ipc: bool) -> Result<(), String> {
        let ns = self.names.get(name).copied().or_else(|| {
            self.prefixes
                .iter()
                .find(|(prefix, _)| name.starts_with(prefix.as_str()))
                .map(|(_, ns)| *ns)
        });
        match ns {
            None => Err(format!("{name:?} not allowlisted")),
            Some(ns @ Namespace::Ipc) if host_ipc => Err(format!(
                "{name:?} not allowed with host {} enabled",
                ns.as_str()
            )),
            Some(ns @ Namespace::Net) if host_net => Err(format!(
                "{name:?} not allowed with host {} enabled",
                ns.as_str()
            )),
            Some(_) => Ok(()),
        }
    }
}

/// The pattern rule as the kubelet prints it.
const PATTERN_REGEX: &str =
    r"([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\./])*([a-z0-9][-_a-z0-9]*)?[a-z0-9*]";

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSecurityContext, PodSpec, Sysctl};

    fn pod(sysctls: &[&str], host_net: bool, host_ipc: bool) -> Pod {
        Pod {
            spec: Some(PodSpec {
                host_network: Some(host_net),
                host_ipc: Some(host_ipc),
                security_context: Some(PodSecurityContext {
                    sysctls: Some(
                        sysctls
                            .iter()
                            .map(|name| Sysctl {
                                name: name.to_string(),
                                value: "1".into(),
                            })
                            .collect(),
                    ),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_safe_set_is_allowed_and_the_rest_forbidden() {
        let list = Allowlist::new(&[], Some((6, 1))).unwrap();
        list.admit(&pod(
            &["kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range"],
            false,
            false,
        ))
        .unwrap();
        list.admit(&pod(&["net/ipv4/tcp_keepalive_time"], false, false))
            .unwrap();
        assert_eq!(
            list.admit(&pod(&["kernel.msgmax"], false, false))
                .unwrap_err(),
            r#"forbidden sysctl: "kernel.msgmax" not allowlisted"#
        );
        assert_eq!(
            list.admit(&pod(&["net.ipv4.tcp_syncookies"], true, false))
                .unwrap_err(),
            r#"forbidden sysctl: "net.ipv4.tcp_syncookies" not allowed with host net enabled"#
        );
        assert_eq!(
            list.admit(&pod(&["kernel.shm_rmid_forced"], false, true))
                .unwrap_err(),
            r#"forbidden sysctl: "kernel.shm_rmid_forced" not allowed with host ipc enabled"#
        );
    }

    #[test]
    fn kernel_gated_safe_sysctls_need_their_kernel() {
        let old = Allowlist::new(&[], Some((4, 4))).unwrap();
        assert!(old
            .admit(&pod(&["net.ipv4.tcp_keepalive_time"], false, false))
            .is_err());
        old.admit(&pod(&["net.ipv4.ip_local_reserved_ports"], false, false))
            .unwrap();
        assert!(Allowlist::new(&[], None)
            .unwrap()
            .admit(&pod(&["net.ipv4.tcp_fin_timeout"], false, false))
            .is_err());
    }

    #[test]
    fn unsafe_patterns_extend_the_list_if_namespaced() {
        let list = Allowlist::new(
            &["kernel.msg*".into(), "net.core.somaxconn".into()],
            Some((6, 1)),
        )
        .unwrap();
        list.admit(&pod(&["kernel.msgmax", "net.core.somaxconn"], false, false))
            .unwrap();
        assert!(list
            .admit(&pod(&["net.core.rmem_max"], false, false))
            .is_err());
        assert_eq!(
            Allowlist::new(&["vm.swappiness".into()], None).unwrap_err(),
            r#"the sysctl "vm.swappiness" are not known to be namespaced"#
        );
        assert_eq!(
            Allowlist::new(&["kernel.*".into()], None).unwrap_err(),
            r#"the sysctls "kernel.*" are not known to be namespaced"#
        );
        assert!(Allowlist::new(&["net..x".into()], None)
            .unwrap_err()
            .contains("must have at most 253 characters"));
    }

    #[test]
    fn names_and_patterns_follow_the_api_rules() {
        assert!(is_valid_name("net.ipv4.conf.eth0/100.forwarding"));
        assert!(!is_valid_name("net..x"));
        assert!(!is_valid_name("net.x*"));
        assert!(!is_valid_name("Net.x"));
        assert!(!is_valid_name("net.-x"));
        assert!(!is_valid_name(""));
        assert!(is_valid_pattern("net.*"));
        assert!(is_valid_pattern("kernel.shm*"));
        assert!(!is_valid_pattern("net.*.x"));
        assert!(is_valid_pattern("sh-*"));
        assert!(!is_valid_pattern("a*b"));
        assert_eq!(
            normalize_name("net/ipv4/conf/eth0.100/forwarding"),
            "net.ipv4.conf.eth0/100.forwarding"
        );
        assert_eq!(normalize_name("net.ipv4.tcp_rmem"), "net.ipv4.tcp_rmem");
    }
}
