//! Pod admission: what the kubelet's admit handlers refuse before a pod runs
//! at all. A rejected pod never gets a worker; it is Failed with the
//! handler's reason and `Pod was rejected: <message>`, with a Warning event
//! (kubelet `rejectPod`).

use std::path::Path;

use berth_api::resource_field::NodeAllocatable;
use berth_api::resource_fit;
use berth_api::sysctl::{self, Allowlist};
use k8s_openapi::api::core::v1::{Pod, PodSpec};

/// Why a pod may not run on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: &'static str,
    pub message: String,
}

/// What the node offers pods: its allocatable and how many pods it runs.
#[derive(Debug, Clone)]
pub struct NodeResources {
    pub allocatable: NodeAllocatable,
    pub max_pods: i64,
}

/// The node's admit handlers.
#[derive(Debug, Clone)]
pub struct Admission {
    sysctls: Allowlist,
    apparmor_enabled: bool,
    /// None: requests are not checked against the node.
    resources: Option<NodeResources>,
}

impl Admission {
    /// The safe sysctls of this kernel plus `allowed_unsafe_sysctls`; an
    /// error names the bad pattern (the kubelet refuses to start).
    pub fn new(allowed_unsafe_sysctls: &[String]) -> Result<Self, String> {
        Ok(Self {
            sysctls: Allowlist::new(allowed_unsafe_sysctls, berth_runtime::kernel_version())?,
            apparmor_enabled: apparmor_enabled(Path::new("/")),
            resources: None,
        })
    }

    /// Also checks pods' requests against what the node offers.
    pub fn with_resources(mut self, resources: NodeResources) -> Self {
        self.resources = Some(resources);
        self
    }

    /// In the kubelet's order: sysctls, the resources `pod` requests beside
    /// those the `admitted` pods do (unless `None`), then AppArmor.
    pub fn check(&self, pod: &Pod, admitted: Option<&[&PodSpec]>) -> Result<(), Rejection> {
        self.sysctls.admit(pod).map_err(|message| Rejection {
            reason: sysctl::FORBIDDEN_REASON,
            message,
        })?;
        os_matches(pod)?;
        if let (Some(node), Some(spec), Some(admitted)) = (&self.resources, &pod.spec, admitted) {
            resource_fit::fits(spec, admitted, &node.allocatable, node.max_pods).map_err(
                |lacking| Rejection {
                    reason: lacking.reason(),
                    message: lacking.message(),
                },
            )?;
        }
        // The kubelet checks the host only for pods that ask for a profile.
        if !self.apparmor_enabled && berth_api::security_context::app_armor_required(pod) {
            return Err(Rejection {
                reason: "AppArmor",
                message: "Cannot enforce AppArmor: AppArmor is not enabled on the host".into(),
            });
        }
        Ok(())
    }
}

impl Default for Admission {
    /// The safe sysctls only.
    fn default() -> Self {
        Self::new(&[]).expect("the safe sysctls are valid")
    }
}

/// The pod is for this node's OS (the kubelet's predicate admission, first
/// of its checks): by its `kubernetes.io/os` label, then `spec.os.name`.
fn os_matches(pod: &Pod) -> Result<(), Rejection> {
    const NODE_OS: &str = "linux";
    let label = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("kubernetes.io/os"));
    if label.is_some_and(|os| os != NODE_OS) {
        return Err(Rejection {
            reason: "PodOSSelectorNodeLabelDoesNotMatch",
            message: "Failed to admit pod as the `kubernetes.io/os` label doesn't match node label"
                .into(),
        });
    }
    let os = pod.spec.as_ref().and_then(|s| s.os.as_ref());
    if os.is_some_and(|os| os.name != NODE_OS) {
        return Err(Rejection {
            reason: "PodOSNotSupported",
            message: "Failed to admit pod as the OS field doesn't match node OS".into(),
        });
    }
    Ok(())
}

/// AppArmor is on when securityfs has it and the module says so (runc's
/// `apparmor.IsEnabled`); `root` is `/` but for tests.
fn apparmor_enabled(root: &Path) -> bool {
    root.join("sys/kernel/security/apparmor").exists()
        && std::fs::read(root.join("sys/module/apparmor/parameters/enabled"))
            .is_ok_and(|v| v.starts_with(b"Y"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> Pod {
        berth_api::manifest::parse_pods(yaml).unwrap().remove(0)
    }

    fn admission(apparmor_enabled: bool) -> Admission {
        Admission {
            sysctls: Allowlist::new(&["kernel.msg*".into()], Some((6, 1))).unwrap(),
            apparmor_enabled,
            resources: None,
        }
    }

    #[test]
    fn unsafe_sysctls_are_rejected_unless_allowed() {
        let allowed = pod("
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  securityContext:
    sysctls: [{name: kernel.msgmax, value: '9000'}, {name: net.ipv4.tcp_syncookies, value: '1'}]
  containers: [{name: app, image: app:1}]
");
        admission(false).check(&allowed, None).unwrap();
        let forbidden = pod("
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  securityContext:
    sysctls: [{name: net.core.somaxconn, value: '1024'}]
  containers: [{name: app, image: app:1}]
");
        assert_eq!(
            admission(false).check(&forbidden, None).unwrap_err(),
            Rejection {
                reason: "SysctlForbidden",
                message: r#"forbidden sysctl: "net.core.somaxconn" not allowlisted"#.into(),
            }
        );
    }

    #[test]
    fn apparmor_profiles_need_apparmor_on_the_host() {
        let confined = pod("
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  containers:
  - {name: app, image: app:1, securityContext: {appArmorProfile: {type: RuntimeDefault}}}
");
        let rejection = admission(false).check(&confined, None).unwrap_err();
        assert_eq!(rejection.reason, "AppArmor");
        assert_eq!(
            rejection.message,
            "Cannot enforce AppArmor: AppArmor is not enabled on the host"
        );
        admission(true).check(&confined, None).unwrap();
        let unconfined = pod("
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  securityContext: {appArmorProfile: {type: Unconfined}}
  containers: [{name: app, image: app:1}]
");
        admission(false).check(&unconfined, None).unwrap();
    }

    #[test]
    fn pods_for_another_os_are_rejected_by_label_then_by_field() {
        let windows = pod("
            apiVersion: v1
            kind: Pod
            metadata: {name: w}
            spec: {os: {name: windows}, containers: [{name: c, image: i}]}
            ");
        let rejection = admission(true).check(&windows, None).unwrap_err();
        assert_eq!(rejection.reason, "PodOSNotSupported");
        assert_eq!(
            rejection.message,
            "Failed to admit pod as the OS field doesn't match node OS"
        );
        let labelled = pod("
            apiVersion: v1
            kind: Pod
            metadata: {name: w, labels: {kubernetes.io/os: windows}}
            spec: {os: {name: windows}, containers: [{name: c, image: i}]}
            ");
        let rejection = admission(true).check(&labelled, None).unwrap_err();
        assert_eq!(rejection.reason, "PodOSSelectorNodeLabelDoesNotMatch");
        let linux = pod("
            apiVersion: v1
            kind: Pod
            metadata: {name: l, labels: {kubernetes.io/os: linux}}
            spec: {os: {name: linux}, containers: [{name: c, image: i}]}
            ");
        admission(true).check(&linux, None).unwrap();
    }

    #[test]
    fn apparmor_is_seen_through_securityfs_and_the_module() {
        let root = tempfile::tempdir().unwrap();
        assert!(!apparmor_enabled(root.path()));
        std::fs::create_dir_all(root.path().join("sys/kernel/security/apparmor")).unwrap();
        let params = root.path().join("sys/module/apparmor/parameters");
        std::fs::create_dir_all(&params).unwrap();
        std::fs::write(params.join("enabled"), "N\n").unwrap();
        assert!(!apparmor_enabled(root.path()));
        std::fs::write(params.join("enabled"), "Y\n").unwrap();
        assert!(apparmor_enabled(root.path()));
    }
}
