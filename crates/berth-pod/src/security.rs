//! A pod's `securityContext` turned into what the runtime applies, as the
//! kubelet's `determineEffectiveSecurityContext` (containers) and
//! `generatePodSandboxLinuxConfig` (the sandbox) compute it. What berth
//! cannot honour is refused here, never dropped.

use std::path::{Component, Path, PathBuf};

use berth_api::security_context::{self as rules, ImageUser, Seccomp};
use berth_runtime::{
    ContainerSecurity, ImageInfo, NamespaceOptions, PidNamespace, SandboxSecurity, SeccompProfile,
};
use k8s_openapi::api::core::v1::{Container, Pod, PodSecurityContext, PodSpec};

/// Node settings the security context is read with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SecurityDefaults<'a> {
    /// The kubelet's seccomp root, `<root-dir>/seccomp`: where Localhost
    /// profiles are.
    pub seccomp_root: &'a Path,
    /// The kubelet's `seccompDefault`: RuntimeDefault for pods that name no
    /// profile.
    pub seccomp_default: bool,
    /// SELinux is enforcing or permissive on this host.
    pub selinux_enabled: bool,
}

/// What a container runs as and under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContainerSettings {
    /// The user string for the runtime (`uid[:gid]` or `name[:gid]`).
    pub user: String,
    pub security: ContainerSecurity,
}

fn pod_security(pod: &Pod) -> Option<&PodSecurityContext> {
    pod.spec.as_ref().and_then(|s| s.security_context.as_ref())
}

/// `pid` and `hostIPC` of the pod (the kubelet's `NamespacesForPod`).
fn namespaces(spec: Option<&PodSpec>) -> NamespaceOptions {
    let pid = match spec {
        Some(s) if s.host_pid == Some(true) => PidNamespace::Node,
        Some(s) if s.share_process_namespace == Some(true) => PidNamespace::Pod,
        _ => PidNamespace::Container,
    };
    NamespaceOptions {
        pid,
        host_ipc: spec.and_then(|s| s.host_ipc).unwrap_or(false),
    }
}

/// A user or group id from the spec; the API server allows 0..=2^31-1.
fn id(value: i64, field: &str) -> Result<u32, String> {
    u32::try_from(value)
        .ok()
        .filter(|v| i32::try_from(*v).is_ok())
        .ok_or_else(|| format!("{field} {value} must be between 0 and 2147483647, inclusive"))
}

/// fsGroup, then supplementalGroups (the order the kubelet passes them).
fn supplemental_groups(pod_sc: Option<&PodSecurityContext>) -> Result<Vec<u32>, String> {
    let Some(sc) = pod_sc else {
        return Ok(Vec::new());
    };
    let fs_group = sc.fs_group.map(|g| id(g, "fsGroup")).transpose()?;
    let mut groups: Vec<u32> = fs_group.into_iter().collect();
    for g in sc.supplemental_groups.iter().flatten() {
        groups.push(id(*g, "supplementalGroups")?);
    }
    Ok(groups)
}

/// `<seccomp root>/<localhostProfile>`; the name must stay inside the root.
fn localhost_profile(root: &Path, name: &str) -> Result<PathBuf, String> {
    let relative = Path::new(name);
    let inside = !name.is_empty()
        && relative
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !inside {
        return Err(format!(
            "seccomp localhostProfile {name:?} must be a relative path inside {} without '..'",
            root.display()
        ));
    }
    Ok(root.join(relative))
}

fn seccomp_profile(profile: Seccomp, root: &Path) -> Result<SeccompProfile, String> {
    Ok(match profile {
        Seccomp::Unconfined => SeccompProfile::Unconfined,
        Seccomp::RuntimeDefault => SeccompProfile::RuntimeDefault,
        Seccomp::Localhost(name) => SeccompProfile::Localhost(localhost_profile(root, &name)?),
    })
}

/// The settings of one container; an error is the kubelet's
/// `CreateContainerConfigError` message.
pub(crate) fn container(
    pod: &Pod,
    pod_name: &str,
    container: &Container,
    image: &ImageInfo,
    defaults: SecurityDefaults<'_>,
) -> Result<ContainerSettings, String> {
    let sc = rules::effective(pod, container);
    let pod_sc = pod_security(pod);
    if let Some(profile) = rules::app_armor_profile(pod, container) {
        // Only reached where AppArmor is enabled (elsewhere the pod is
        // rejected at admission): berth loads no AppArmor profiles.
        return Err(format!(
            "AppArmor profile {profile:?} of container {} cannot be applied: berth does not support AppArmor",
            container.name
        ));
    }
    if sc.se_linux_options.is_some() && defaults.selinux_enabled {
        // Without SELinux the labels mean nothing (containerd ignores them
        // too); with it, berth cannot apply them.
        return Err(format!(
            "seLinuxOptions of container {} cannot be applied: berth does not support SELinux labels",
            container.name
        ));
    }
    let image_user = ImageUser::of(image.config.user.as_deref());
    rules::verify_run_as_non_root(&sc, &image_user, pod_name, &container.name)?;
    if let Some(uid) = sc.run_as_user {
        id(uid, "runAsUser")?;
    }
    if let Some(gid) = sc.run_as_group {
        id(gid, "runAsGroup")?;
    }
    let seccomp = rules::seccomp(
        pod_sc,
        container.security_context.as_ref(),
        defaults.seccomp_default,
    )?;
    let capabilities = sc.capabilities.clone().unwrap_or_default();
    let spec = pod.spec.as_ref();
    Ok(ContainerSettings {
        user: rules::user_string(&sc, &image_user),
        security: ContainerSecurity {
            add_capabilities: capabilities.add.unwrap_or_default(),
            drop_capabilities: capabilities.drop.unwrap_or_default(),
            no_new_privileges: rules::no_new_privileges(&sc),
            seccomp: seccomp_profile(seccomp, defaults.seccomp_root)?,
            supplemental_groups: supplemental_groups(pod_sc)?,
            strict_supplemental_groups: pod_sc
                .and_then(|s| s.supplemental_groups_policy.as_deref())
                == Some("Strict"),
            unmasked_proc: sc.proc_mount.as_deref() == Some("Unmasked"),
            namespaces: namespaces(spec),
            // Set by the worker for an ephemeral container with a target.
            pid_target: None,
        },
    })
}

/// The sandbox's settings; an error is why the sandbox cannot be made.
pub(crate) fn sandbox(pod: &Pod) -> Result<SandboxSecurity, String> {
    let spec = pod.spec.as_ref();
    if spec.and_then(|s| s.host_users) == Some(false) {
        // berth runs no user namespaces; the kubelet says this of a runtime
        // handler without them.
        return Err("RuntimeClass handler \"\" does not support user namespaces".into());
    }
    let pod_sc = pod_security(pod);
    let privileged = spec.is_some_and(|s| {
        s.init_containers
            .iter()
            .flatten()
            .chain(&s.containers)
            .any(|c| {
                c.security_context
                    .as_ref()
                    .and_then(|sc| sc.privileged)
                    .unwrap_or(false)
            })
    });
    let sysctls = pod_sc
        .and_then(|sc| sc.sysctls.as_ref())
        .into_iter()
        .flatten()
        .map(|s| (berth_api::sysctl::normalize_name(&s.name), s.value.clone()))
        .collect();
    Ok(SandboxSecurity {
        namespaces: namespaces(spec),
        sysctls,
        // The kubelet always asks for RuntimeDefault here, so that pods may
        // use tighter profiles of their own.
        seccomp: SeccompProfile::RuntimeDefault,
        privileged,
        run_as_user: pod_sc
            .and_then(|sc| sc.run_as_user)
            .map(|u| id(u, "runAsUser"))
            .transpose()?,
        run_as_group: pod_sc
            .and_then(|sc| sc.run_as_group)
            .map(|g| id(g, "runAsGroup"))
            .transpose()?,
        supplemental_groups: supplemental_groups(pod_sc)?,
    })
}

/// SELinux is on when its filesystem is mounted with an enforce switch.
pub(crate) fn selinux_enabled() -> bool {
    Path::new("/sys/fs/selinux/enforce").exists()
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_runtime::ImageConfig;

    fn pod(yaml: &str) -> Pod {
        berth_api::manifest::parse_pods(yaml).unwrap().remove(0)
    }

    fn image(user: Option<&str>) -> ImageInfo {
        ImageInfo {
            reference: "app:1".into(),
            digest: "sha256:00".into(),
            size: 0,
            config: ImageConfig {
                user: user.map(Into::into),
                ..Default::default()
            },
        }
    }

    fn defaults() -> SecurityDefaults<'static> {
        SecurityDefaults {
            seccomp_root: Path::new("/var/lib/berth/seccomp"),
            seccomp_default: false,
            selinux_enabled: false,
        }
    }

    fn settings(yaml: &str, user: Option<&str>) -> Result<ContainerSettings, String> {
        let pod = pod(yaml);
        let c = pod.spec.as_ref().unwrap().containers[0].clone();
        container(&pod, "p_default(u1)", &c, &image(user), defaults())
    }

    #[test]
    fn the_fields_map_to_the_runtime_settings() {
        let s = settings(
            r#"
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  shareProcessNamespace: true
  securityContext:
    runAsUser: 1000
    runAsGroup: 3000
    fsGroup: 2000
    supplementalGroups: [4000, 5000]
    supplementalGroupsPolicy: Strict
    seccompProfile: {type: RuntimeDefault}
  containers:
  - name: app
    image: app:1
    securityContext:
      allowPrivilegeEscalation: false
      capabilities: {add: [NET_ADMIN], drop: [ALL]}
      seccompProfile: {type: Localhost, localhostProfile: profiles/audit.json}
"#,
            None,
        )
        .unwrap();
        assert_eq!(s.user, "1000:3000");
        let sec = s.security;
        assert_eq!(sec.add_capabilities, ["NET_ADMIN"]);
        assert_eq!(sec.drop_capabilities, ["ALL"]);
        assert!(sec.no_new_privileges);
        assert_eq!(
            sec.seccomp,
            SeccompProfile::Localhost("/var/lib/berth/seccomp/profiles/audit.json".into())
        );
        assert_eq!(sec.supplemental_groups, [2000, 4000, 5000]);
        assert!(sec.strict_supplemental_groups);
        assert!(!sec.unmasked_proc);
        assert_eq!(sec.namespaces.pid, PidNamespace::Pod);
    }

    #[test]
    fn run_as_non_root_refuses_a_root_image() {
        let yaml = r#"
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  securityContext: {runAsNonRoot: true}
  containers: [{name: app, image: app:1}]
"#;
        let err = settings(yaml, None).unwrap_err();
        assert_eq!(
            err,
            r#"container has runAsNonRoot and image will run as root (pod: "p_default(u1)", container: app)"#
        );
        assert!(settings(yaml, Some("nobody"))
            .unwrap_err()
            .contains("non-numeric user (nobody)"));
        assert_eq!(settings(yaml, Some("65534")).unwrap().user, "65534");
    }

    #[test]
    fn localhost_profiles_must_stay_in_the_seccomp_root() {
        for name in ["../../etc/shadow", "/etc/x.json", "a/../../b", ""] {
            let yaml = format!(
                r#"
apiVersion: v1
kind: Pod
metadata: {{name: p}}
spec:
  containers:
  - name: app
    image: app:1
    securityContext:
      seccompProfile: {{type: Localhost, localhostProfile: "{name}"}}
"#
            );
            let err = settings(&yaml, None).unwrap_err();
            assert!(
                err.contains("must be a relative path inside"),
                "{name}: {err}"
            );
        }
    }

    #[test]
    fn unsupported_confinement_is_refused_not_dropped() {
        let apparmor = r#"
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  containers:
  - name: app
    image: app:1
    securityContext: {appArmorProfile: {type: RuntimeDefault}}
"#;
        assert!(settings(apparmor, None).unwrap_err().contains("AppArmor"));
        let selinux = r#"
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  securityContext: {seLinuxOptions: {level: "s0:c1,c2"}}
  containers: [{name: app, image: app:1}]
"#;
        settings(selinux, None).unwrap();
        let pod = pod(selinux);
        let c = pod.spec.as_ref().unwrap().containers[0].clone();
        let on = SecurityDefaults {
            selinux_enabled: true,
            ..defaults()
        };
        assert!(container(&pod, "p", &c, &image(None), on)
            .unwrap_err()
            .contains("SELinux"));
    }

    #[test]
    fn the_sandbox_gets_sysctls_namespaces_and_the_pods_user() {
        let sandbox = sandbox(&pod(r#"
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  hostPID: true
  hostIPC: true
  securityContext:
    runAsUser: 1000
    fsGroup: 2000
    sysctls: [{name: net/ipv4/ip_local_port_range, value: "1024 2048"}]
  initContainers: [{name: init, image: app:1, securityContext: {privileged: true}}]
  containers: [{name: app, image: app:1}]
"#))
        .unwrap();
        assert_eq!(sandbox.namespaces.pid, PidNamespace::Node);
        assert!(sandbox.namespaces.host_ipc);
        assert_eq!(
            sandbox.sysctls,
            [(
                "net.ipv4.ip_local_port_range".to_string(),
                "1024 2048".to_string()
            )]
        );
        assert_eq!(sandbox.seccomp, SeccompProfile::RuntimeDefault);
        assert!(sandbox.privileged);
        assert_eq!(sandbox.run_as_user, Some(1000));
        assert_eq!(sandbox.supplemental_groups, [2000]);
    }

    #[test]
    fn user_namespaces_are_refused() {
        let err = sandbox(&pod(r#"
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  hostUsers: false
  containers: [{name: app, image: app:1}]
"#))
        .unwrap_err();
        assert_eq!(
            err,
            r#"RuntimeClass handler "" does not support user namespaces"#
        );
    }
}
