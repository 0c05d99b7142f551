//! How the kubelet reads a pod's security contexts before it asks the runtime
//! for a container: the pod's fields under the container's
//! (`pkg/securitycontext` `DetermineEffectiveSecurityContext`), the image
//! user as CRI reports it, the `runAsNonRoot` check
//! (`pkg/kubelet/kuberuntime` `verifyRunAsNonRoot`), the user string CRI
//! gives containerd (`generateUserString`) and the seccomp profile that
//! applies (`getSeccompProfile`).

use k8s_openapi::api::core::v1::{Container, Pod, PodSecurityContext, SecurityContext};

/// The container's security context with the pod-level `seLinuxOptions`,
/// `windowsOptions`, `runAsUser`, `runAsGroup` and `runAsNonRoot` filled in
/// where the container leaves them unset.
pub fn effective(pod: &Pod, container: &Container) -> SecurityContext {
    let mut sc = container.security_context.clone().unwrap_or_default();
    let Some(pod_sc) = pod.spec.as_ref().and_then(|s| s.security_context.as_ref()) else {
        return sc;
    };
    if sc.se_linux_options.is_none() {
        sc.se_linux_options = pod_sc.se_linux_options.clone();
    }
    if sc.windows_options.is_none() {
        sc.windows_options = pod_sc.windows_options.clone();
    }
    sc.run_as_user = sc.run_as_user.or(pod_sc.run_as_user);
    sc.run_as_group = sc.run_as_group.or(pod_sc.run_as_group);
    sc.run_as_non_root = sc.run_as_non_root.or(pod_sc.run_as_non_root);
    sc
}

/// The image's `USER` as containerd's CRI reports it: a numeric user part is
/// a uid, anything else a name; the group part is dropped. An image without
/// a user runs as root (kubelet `getImageUser`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageUser {
    Uid(i64),
    Name(String),
}

impl ImageUser {
    pub fn of(user: Option<&str>) -> ImageUser {
        let user = user.unwrap_or_default();
        let user_part = user.split(':').next().unwrap_or_default();
        if user_part.is_empty() {
            return ImageUser::Uid(0);
        }
        match user_part.parse::<i64>() {
            Ok(uid) => ImageUser::Uid(uid),
            Err(_) => ImageUser::Name(user_part.to_string()),
        }
    }
}

/// The kubelet's `verifyRunAsNonRoot`; `pod` is the pod as the kubelet's
/// `format.Pod` prints it.
pub fn verify_run_as_non_root(
    sc: &SecurityContext,
    image: &ImageUser,
    pod: &str,
    container: &str,
) -> Result<(), String> {
    if sc.run_as_non_root != Some(true) {
        return Ok(());
    }
    if let Some(uid) = sc.run_as_user {
        if uid == 0 {
            return Err(format!(
                "container's runAsUser breaks non-root policy (pod: {pod:?}, container: {container})"
            ));
        }
        return Ok(());
    }
    match image {
        ImageUser::Name(name) => Err(format!(
            "container has runAsNonRoot and image has non-numeric user ({name}), cannot verify user is non-root (pod: {pod:?}, container: {container})"
        )),
        ImageUser::Uid(0) => Err(format!(
            "container has runAsNonRoot and image will run as root (pod: {pod:?}, container: {container})"
        )),
        ImageUser::Uid(uid) if !(0..=i64::from(i32::MAX)).contains(uid) => Err(format!(
            "container has runAsNonRoot and image has an invalid user id ({uid}). (Must be 1-({})): must be between 0 and 2147483647, inclusive (pod: {pod:?}, container: {container})",
            i32::MAX
        )),
        ImageUser::Uid(_) => Ok(()),
    }
}

/// The user string CRI hands containerd's `WithUser`: `runAsUser` (else the
/// image's uid or user name), with `:runAsGroup` when that is set.
pub fn user_string(sc: &SecurityContext, image: &ImageUser) -> String {
    let user = match (sc.run_as_user, image) {
        (Some(uid), _) => uid.to_string(),
        (None, ImageUser::Uid(uid)) => uid.to_string(),
        (None, ImageUser::Name(name)) => name.clone(),
    };
    match sc.run_as_group {
        Some(gid) => format!("{user}:{gid}"),
        None => user,
    }
}

/// `allowPrivilegeEscalation: false` sets no_new_privs; unset leaves it off
/// (`securitycontext.AddNoNewPrivileges`).
pub fn no_new_privileges(sc: &SecurityContext) -> bool {
    sc.allow_privilege_escalation == Some(false)
}

/// A seccomp profile as the kubelet resolves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seccomp {
    Unconfined,
    RuntimeDefault,
    /// `localhostProfile`: a path relative to the kubelet's seccomp root.
    Localhost(String),
}

/// The container's `seccompProfile`, else the pod's, else RuntimeDefault when
/// the kubelet's `seccompDefault` is on and Unconfined otherwise.
pub fn seccomp(
    pod_sc: Option<&PodSecurityContext>,
    container_sc: Option<&SecurityContext>,
    seccomp_default: bool,
) -> Result<Seccomp, String> {
    let field = container_sc
        .and_then(|sc| sc.seccomp_profile.as_ref())
        .or_else(|| pod_sc.and_then(|sc| sc.seccomp_profile.as_ref()));
    let Some(profile) = field else {
        return Ok(if seccomp_default {
            Seccomp::RuntimeDefault
        } else {
            Seccomp::Unconfined
        });
    };
    match profile.type_.as_str() {
        "Unconfined" => Ok(Seccomp::Unconfined),
        "RuntimeDefault" => Ok(Seccomp::RuntimeDefault),
        "Localhost" => profile
            .localhost_profile
            .clone()
            .map(Seccomp::Localhost)
            .ok_or_else(|| {
                "localhostProfile must be set if seccompProfile type is Localhost.".to_string()
            }),
        other => Err(format!("invalid seccomp profile type: {other}")),
    }
}

/// The container's AppArmor profile type (its field, else the pod's, else the
/// deprecated annotation), when one other than Unconfined is asked for.
pub fn app_armor_profile(pod: &Pod, container: &Container) -> Option<String> {
    const ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";
    let field = container
        .security_context
        .as_ref()
        .and_then(|sc| sc.app_armor_profile.as_ref())
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.security_context.as_ref())
                .and_then(|sc| sc.app_armor_profile.as_ref())
        });
    let profile = match field {
        Some(profile) => profile.type_.clone(),
        None => pod
            .metadata
            .annotations
            .as_ref()?
            .get(&format!("{ANNOTATION_PREFIX}{}", container.name))?
            .clone(),
    };
    (profile != "Unconfined" && profile != "unconfined").then_some(profile)
}

/// Whether any container of the pod asks for AppArmor confinement (the
/// kubelet's apparmor `isRequired`).
pub fn app_armor_required(pod: &Pod) -> bool {
    let Some(spec) = &pod.spec else {
        return false;
    };
    spec.init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .any(|c| app_armor_profile(pod, c).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, SeccompProfile};

    fn pod(pod_sc: PodSecurityContext, container_sc: Option<SecurityContext>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                security_context: Some(pod_sc),
                containers: vec![Container {
                    name: "app".into(),
                    security_context: container_sc,
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_container_overrides_the_pod_field_by_field() {
        let p = pod(
            PodSecurityContext {
                run_as_user: Some(1),
                run_as_group: Some(2),
                run_as_non_root: Some(true),
                ..Default::default()
            },
            Some(SecurityContext {
                run_as_user: Some(7),
                privileged: Some(true),
                ..Default::default()
            }),
        );
        let sc = effective(&p, &p.spec.as_ref().unwrap().containers[0]);
        assert_eq!(sc.run_as_user, Some(7));
        assert_eq!(sc.run_as_group, Some(2));
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.privileged, Some(true));
    }

    #[test]
    fn image_users_are_uids_or_names_without_their_group() {
        assert_eq!(ImageUser::of(None), ImageUser::Uid(0));
        assert_eq!(ImageUser::of(Some("")), ImageUser::Uid(0));
        assert_eq!(ImageUser::of(Some("1000:50")), ImageUser::Uid(1000));
        assert_eq!(
            ImageUser::of(Some("www:www")),
            ImageUser::Name("www".into())
        );
        assert_eq!(ImageUser::of(Some(":50")), ImageUser::Uid(0));
    }

    #[test]
    fn run_as_non_root_refuses_root_and_unverifiable_users() {
        let non_root = SecurityContext {
            run_as_non_root: Some(true),
            ..Default::default()
        };
        let check = |sc: &SecurityContext, user: &str| {
            verify_run_as_non_root(sc, &ImageUser::of(Some(user)), "p_default(u1)", "app")
        };
        assert_eq!(
            check(&non_root, "").unwrap_err(),
            r#"container has runAsNonRoot and image will run as root (pod: "p_default(u1)", container: app)"#
        );
        assert_eq!(
            check(&non_root, "nobody").unwrap_err(),
            r#"container has runAsNonRoot and image has non-numeric user (nobody), cannot verify user is non-root (pod: "p_default(u1)", container: app)"#
        );
        assert!(check(&non_root, "4294967296")
            .unwrap_err()
            .contains("invalid user id (4294967296)"));
        check(&non_root, "65534").unwrap();
        let explicit = SecurityContext {
            run_as_user: Some(0),
            ..non_root.clone()
        };
        assert_eq!(
            check(&explicit, "65534").unwrap_err(),
            r#"container's runAsUser breaks non-root policy (pod: "p_default(u1)", container: app)"#
        );
        let numeric = SecurityContext {
            run_as_user: Some(5),
            ..non_root
        };
        check(&numeric, "root").unwrap();
        check(&SecurityContext::default(), "").unwrap();
    }

    #[test]
    fn the_user_string_prefers_run_as_user_and_adds_run_as_group() {
        let sc = |user, group| SecurityContext {
            run_as_user: user,
            run_as_group: group,
            ..Default::default()
        };
        let image = |u: &str| ImageUser::of(Some(u));
        assert_eq!(user_string(&sc(None, None), &image("")), "0");
        assert_eq!(user_string(&sc(None, None), &image("www:50")), "www");
        assert_eq!(user_string(&sc(None, Some(8)), &image("1000:50")), "1000:8");
        assert_eq!(user_string(&sc(Some(7), Some(8)), &image("www")), "7:8");
    }

    #[test]
    fn seccomp_takes_the_container_then_the_pod_then_the_default() {
        let profile = |t: &str, local: Option<&str>| SeccompProfile {
            type_: t.into(),
            localhost_profile: local.map(Into::into),
        };
        let pod_sc = PodSecurityContext {
            seccomp_profile: Some(profile("RuntimeDefault", None)),
            ..Default::default()
        };
        let container_sc = SecurityContext {
            seccomp_profile: Some(profile("Localhost", Some("p.json"))),
            ..Default::default()
        };
        assert_eq!(
            seccomp(Some(&pod_sc), Some(&container_sc), false),
            Ok(Seccomp::Localhost("p.json".into()))
        );
        assert_eq!(
            seccomp(Some(&pod_sc), None, false),
            Ok(Seccomp::RuntimeDefault)
        );
        assert_eq!(seccomp(None, None, false), Ok(Seccomp::Unconfined));
        assert_eq!(seccomp(None, None, true), Ok(Seccomp::RuntimeDefault));
        let bad = SecurityContext {
            seccomp_profile: Some(profile("Localhost", None)),
            ..Default::default()
        };
        assert!(seccomp(None, Some(&bad), false).is_err());
    }
}
