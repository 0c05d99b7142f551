//! Pod and container security contexts: `ValidatePodSecurityContext`,
//! `ValidateSecurityContext`, the seccomp and AppArmor profile fields and
//! `validateSysctls`.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{
    AppArmorProfile, PodSecurityContext, PodSpec, SeccompProfile, SecurityContext,
};

use super::errors::{s, BadValue, FieldError};
use crate::sysctl;

const ID_RANGE: &str = "must be between 0 and 2147483647, inclusive";

fn id(value: Option<i64>, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(v) = value.filter(|v| !(0..=i64::from(i32::MAX)).contains(v)) {
        errs.push(FieldError::invalid(path, BadValue::Int(v), ID_RANGE));
    }
}

fn one_of(value: Option<&str>, path: &str, supported: &[&str], errs: &mut Vec<FieldError>) {
    if let Some(v) = value.filter(|v| !supported.contains(v)) {
        errs.push(FieldError::not_supported(path, s(v), supported));
    }
}

/// `spec.securityContext` and the pod-level rules it takes part in.
pub(super) fn pod(spec: &PodSpec) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(sc) = &spec.security_context else {
        return errs;
    };
    let path = "spec.securityContext";
    id(sc.fs_group, &format!("{path}.fsGroup"), &mut errs);
    id(sc.run_as_user, &format!("{path}.runAsUser"), &mut errs);
    id(sc.run_as_group, &format!("{path}.runAsGroup"), &mut errs);
    for (i, gid) in sc.supplemental_groups.iter().flatten().enumerate() {
        id(
            Some(*gid),
            &format!("{path}.supplementalGroups[{i}]"),
            &mut errs,
        );
    }
    if spec.share_process_namespace == Some(true) && spec.host_pid == Some(true) {
        // The API server's path: its internal type keeps the field here.
        errs.push(FieldError::invalid(
            "spec.securityContext.shareProcessNamespace",
            BadValue::Bool(true),
            "ShareProcessNamespace and HostPID cannot both be enabled",
        ));
    }
    one_of(
        sc.fs_group_change_policy.as_deref(),
        &format!("{path}.fsGroupChangePolicy"),
        &["OnRootMismatch", "Always"],
        &mut errs,
    );
    one_of(
        sc.supplemental_groups_policy.as_deref(),
        &format!("{path}.supplementalGroupsPolicy"),
        &["Merge", "Strict"],
        &mut errs,
    );
    one_of(
        sc.se_linux_change_policy.as_deref(),
        &format!("{path}.seLinuxChangePolicy"),
        &["MountOption", "Recursive"],
        &mut errs,
    );
    if let Some(profile) = &sc.seccomp_profile {
        errs.extend(seccomp(profile, &format!("{path}.seccompProfile")));
    }
    if let Some(profile) = &sc.app_armor_profile {
        errs.extend(app_armor(profile, &format!("{path}.appArmorProfile")));
    }
    errs.extend(sysctls(sc, spec, &format!("{path}.sysctls")));
    errs
}

/// `validateSysctls`: valid, unique names, none for a namespace the pod
/// shares with the node.
fn sysctls(sc: &PodSecurityContext, spec: &PodSpec, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut names = HashSet::new();
    for (i, sysctl) in sc.sysctls.iter().flatten().enumerate() {
        let name_path = format!("{path}[{i}].name");
        let name = sysctl.name.as_str();
        if name.is_empty() {
            errs.push(FieldError::required(&name_path, ""));
        } else if !sysctl::is_valid_name(name) {
            errs.push(FieldError::invalid(
                &name_path,
                s(name),
                r"must have at most 253 characters and match regex ^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$",
            ));
        } else if names.contains(name) {
            errs.push(FieldError::duplicate(&name_path, s(name)));
        }
        match sysctl::namespace_of(&sysctl::normalize_name(name)) {
            Some(sysctl::Namespace::Net) if spec.host_network == Some(true) => {
                errs.push(FieldError::invalid(
                    &name_path,
                    s(name),
                    "may not be specified when 'hostNetwork' is true",
                ))
            }
            Some(sysctl::Namespace::Ipc) if spec.host_ipc == Some(true) => {
                errs.push(FieldError::invalid(
                    &name_path,
                    s(name),
                    "may not be specified when 'hostIPC' is true",
                ))
            }
            _ => {}
        }
        names.insert(name);
    }
    errs
}

/// A container's `securityContext`; `host_users` is the pod's `hostUsers`
/// (true unless set false).
pub(super) fn container(sc: &SecurityContext, path: &str, host_users: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    id(sc.run_as_user, &format!("{path}.runAsUser"), &mut errs);
    id(sc.run_as_group, &format!("{path}.runAsGroup"), &mut errs);
    if let Some(proc_mount) = sc.proc_mount.as_deref() {
        let proc_path = format!("{path}.procMount");
        one_of(
            Some(proc_mount),
            &proc_path,
            &["Default", "Unmasked"],
            &mut errs,
        );
        if host_users && proc_mount == "Unmasked" {
            errs.push(FieldError::invalid(
                proc_path,
                s(proc_mount),
                "`hostUsers` must be false to use `Unmasked`",
            ));
        }
    }
    if let Some(profile) = &sc.seccomp_profile {
        errs.extend(seccomp(profile, &format!("{path}.seccompProfile")));
    }
    if let Some(profile) = &sc.app_armor_profile {
        errs.extend(app_armor(profile, &format!("{path}.appArmorProfile")));
    }
    if sc.allow_privilege_escalation == Some(false) {
        if sc.privileged == Some(true) {
            errs.push(FieldError::invalid(
                path,
                BadValue::Omitted,
                "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
            ));
        }
        let adds = sc.capabilities.as_ref().and_then(|c| c.add.as_ref());
        if adds.is_some_and(|add| add.iter().any(|c| c == "CAP_SYS_ADMIN")) {
            errs.push(FieldError::invalid(
                path,
                BadValue::Omitted,
                "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN",
            ));
        }
    }
    errs
}

/// `validateSeccompProfileField`.
fn seccomp(profile: &SeccompProfile, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let type_path = format!("{path}.type");
    let local_path = format!("{path}.localhostProfile");
    match profile.type_.as_str() {
        "" => errs.push(FieldError::required(
            type_path,
            "type is required when seccompProfile is set",
        )),
        "Localhost" | "RuntimeDefault" | "Unconfined" => {}
        other => errs.push(FieldError::not_supported(
            type_path,
            s(other),
            &["Localhost", "RuntimeDefault", "Unconfined"],
        )),
    }
    match (profile.type_.as_str(), &profile.localhost_profile) {
        ("Localhost", None) => errs.push(FieldError::required(
            local_path,
            "must be set when seccomp type is Localhost",
        )),
        ("Localhost", Some(local)) => {
            errs.extend(super::container::local_descending_path(local, &local_path))
        }
        (_, Some(_)) => errs.push(FieldError::invalid(
            local_path,
            BadValue::Omitted,
            "can only be set when seccomp type is Localhost",
        )),
        (_, None) => {}
    }
    errs
}

/// `validateAppArmorProfileField`.
fn app_armor(profile: &AppArmorProfile, path: &str) -> Vec<FieldError> {
    let local_path = format!("{path}.localhostProfile");
    let local = profile.localhost_profile.as_deref();
    match profile.type_.as_str() {
        "Localhost" => match local {
            None => vec![FieldError::required(
                local_path,
                "must be set when AppArmor type is Localhost",
            )],
            Some(l) if l.trim() != l => vec![FieldError::invalid(
                local_path,
                s(l),
                "must not be padded with whitespace",
            )],
            Some("") => vec![FieldError::required(
                local_path,
                "must be set when AppArmor type is Localhost",
            )],
            Some(_) => Vec::new(),
        },
        "RuntimeDefault" | "Unconfined" => local
            .map(|l| {
                FieldError::invalid(
                    local_path,
                    s(l),
                    "can only be set when AppArmor type is Localhost",
                )
            })
            .into_iter()
            .collect(),
        "" => vec![FieldError::required(
            format!("{path}.type"),
            "type is required when appArmorProfile is set",
        )],
        other => vec![FieldError::not_supported(
            format!("{path}.type"),
            s(other),
            &["Localhost", "RuntimeDefault", "Unconfined"],
        )],
    }
}

#[cfg(test)]
mod tests {
    use crate::validation::pod_errors;

    /// The errors of a pod with this spec (YAML lines under `spec:`).
    fn errors(spec: &str) -> Vec<String> {
        let yaml = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: p, namespace: default}}\nspec:\n{spec}"
        );
        let mut pod = crate::manifest::parse_pods(&yaml).unwrap().remove(0);
        crate::defaults::apply_defaults(&mut pod);
        pod_errors(&pod).iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn ids_must_be_in_range() {
        assert_eq!(
            errors("  securityContext: {runAsUser: -1, fsGroup: 2147483648, supplementalGroups: [1, -2]}\n  containers: [{name: a, image: b, securityContext: {runAsGroup: -3}}]\n"),
            [
                "spec.containers[0].securityContext.runAsGroup: Invalid value: -3: must be between 0 and 2147483647, inclusive",
                "spec.securityContext.fsGroup: Invalid value: 2147483648: must be between 0 and 2147483647, inclusive",
                "spec.securityContext.runAsUser: Invalid value: -1: must be between 0 and 2147483647, inclusive",
                "spec.securityContext.supplementalGroups[1]: Invalid value: -2: must be between 0 and 2147483647, inclusive",
            ]
        );
    }

    #[test]
    fn seccomp_and_apparmor_profiles_are_checked() {
        assert_eq!(
            errors("  securityContext:\n    seccompProfile: {type: Localhost, localhostProfile: ../x.json}\n    appArmorProfile: {type: Loose}\n  containers:\n  - name: a\n    image: b\n    securityContext:\n      seccompProfile: {type: RuntimeDefault, localhostProfile: x}\n      appArmorProfile: {type: Localhost}\n"),
            [
                "spec.containers[0].securityContext.seccompProfile.localhostProfile: Invalid value: can only be set when seccomp type is Localhost",
                "spec.containers[0].securityContext.appArmorProfile.localhostProfile: Required value: must be set when AppArmor type is Localhost",
                "spec.securityContext.seccompProfile.localhostProfile: Invalid value: \"../x.json\": must not contain '..'",
                "spec.securityContext.appArmorProfile.type: Unsupported value: \"Loose\": supported values: \"Localhost\", \"RuntimeDefault\", \"Unconfined\"",
            ]
        );
        assert_eq!(
            errors("  containers: [{name: a, image: b, securityContext: {seccompProfile: {type: Localhost, localhostProfile: /etc/x}}}]\n"),
            ["spec.containers[0].securityContext.seccompProfile.localhostProfile: Invalid value: \"/etc/x\": must be a relative path"]
        );
    }

    #[test]
    fn sysctls_need_valid_unique_names_in_namespaces_the_pod_owns() {
        assert_eq!(
            errors("  hostNetwork: true\n  securityContext:\n    sysctls: [{name: net.ipv4.tcp_syncookies, value: '1'}, {name: Bad.Name, value: x}, {name: kernel.shm_rmid_forced, value: '1'}, {name: kernel.shm_rmid_forced, value: '0'}]\n  containers: [{name: a, image: b}]\n"),
            [
                "spec.securityContext.sysctls[0].name: Invalid value: \"net.ipv4.tcp_syncookies\": may not be specified when 'hostNetwork' is true",
                r#"spec.securityContext.sysctls[1].name: Invalid value: "Bad.Name": must have at most 253 characters and match regex ^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$"#,
                "spec.securityContext.sysctls[3].name: Duplicate value: \"kernel.shm_rmid_forced\"",
            ]
        );
    }

    #[test]
    fn namespace_and_privilege_conflicts_are_refused() {
        assert_eq!(
            errors("  hostPID: true\n  shareProcessNamespace: true\n  securityContext: {fsGroupChangePolicy: Sometimes}\n  containers:\n  - name: a\n    image: b\n    securityContext: {allowPrivilegeEscalation: false, privileged: true, procMount: Unmasked, capabilities: {add: [CAP_SYS_ADMIN]}}\n"),
            [
                "spec.containers[0].securityContext.procMount: Invalid value: \"Unmasked\": `hostUsers` must be false to use `Unmasked`",
                "spec.containers[0].securityContext: Invalid value: cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
                "spec.containers[0].securityContext: Invalid value: cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN",
                "spec.securityContext.shareProcessNamespace: Invalid value: true: ShareProcessNamespace and HostPID cannot both be enabled",
                "spec.securityContext.fsGroupChangePolicy: Unsupported value: \"Sometimes\": supported values: \"OnRootMismatch\", \"Always\"",
            ]
        );
        assert!(errors("  hostUsers: false\n  containers: [{name: a, image: b, securityContext: {procMount: Unmasked}}]\n").is_empty());
        assert!(errors(
            "  containers: [{name: a, image: b, securityContext: {procMount: Sideways}}]\n"
        )[0]
        .contains("Unsupported value: \"Sideways\""));
    }
}
