//! Containers and init containers: names, image, policies, ports, env,
//! volume mounts, resources, probes and hooks.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{Container, EnvFromSource, EnvVar};

use super::errors::{s, BadValue, FieldError};
use super::{handler, names, one_of, resources, restart_rules};

/// Pod-wide facts containers are checked against.
pub(super) struct Ctx<'a> {
    /// Volume names mounts may refer to.
    pub volumes: &'a HashSet<String>,
    /// The pod's terminationGracePeriodSeconds (bounds sleep hooks).
    pub grace: Option<i64>,
    /// The pod's `hostUsers` (true unless set false).
    pub host_users: bool,
}

const NOT_FOR_INIT: &str = "may not be set for init containers without restartPolicy=Always";

pub(super) fn containers(containers: &[Container], ctx: &Ctx) -> Vec<FieldError> {
    if containers.is_empty() {
        return vec![FieldError::required("spec.containers", "")];
    }
    let mut errs = Vec::new();
    let mut seen = HashSet::new();
    for (i, c) in containers.iter().enumerate() {
        let path = format!("spec.containers[{i}]");
        errs.extend(common(c, &path, ctx));
        if !seen.insert(c.name.as_str()) {
            errs.push(FieldError::duplicate(format!("{path}.name"), s(&c.name)));
        }
        errs.extend(hooks_and_probes(c, &path, ctx));
        errs.extend(restart_rules::container(c, &path));
    }
    errs.extend(host_port_conflicts(containers, "spec.containers"));
    errs
}

/// Init containers; names must also differ from the regular containers'.
pub(super) fn init_containers(
    inits: &[Container],
    regular: &HashSet<&str>,
    ctx: &Ctx,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut seen: HashSet<&str> = regular.clone();
    for (i, c) in inits.iter().enumerate() {
        let path = format!("spec.initContainers[{i}]");
        errs.extend(common(c, &path, ctx));
        let sidecar = c.restart_policy.as_deref() == Some("Always");
        errs.extend(restart_rules::init_container(c, &path));
        if seen.contains(c.name.as_str()) {
            errs.push(FieldError::duplicate(format!("{path}.name"), s(&c.name)));
        } else if !c.name.is_empty() {
            seen.insert(c.name.as_str());
        }
        // Init containers run one at a time: only their own ports can clash.
        errs.extend(host_port_conflicts(
            std::slice::from_ref(c),
            "spec.initContainers",
        ));
        if sidecar {
            errs.extend(hooks_and_probes(c, &path, ctx));
            continue;
        }
        let forbidden = [
            ("lifecycle", c.lifecycle.is_some()),
            ("livenessProbe", c.liveness_probe.is_some()),
            ("readinessProbe", c.readiness_probe.is_some()),
            ("startupProbe", c.startup_probe.is_some()),
        ];
        for (field, set) in forbidden {
            if set {
                errs.push(FieldError::forbidden(
                    format!("{path}.{field}"),
                    NOT_FOR_INIT,
                ));
            }
        }
    }
    errs
}

/// `validateContainersOnlyForPod`: no surrounding whitespace in images.
pub(super) fn image_whitespace(containers: &[Container], base: &str) -> Vec<FieldError> {
    containers
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let image = c.image.as_deref().unwrap_or_default();
            (image.trim() != image).then(|| {
                FieldError::invalid(
                    format!("{base}[{i}].image"),
                    s(image),
                    "must not have leading or trailing whitespace",
                )
            })
        })
        .collect()
}

/// `validateContainerCommon`.
pub(super) fn common(c: &Container, path: &str, ctx: &Ctx) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name_path = format!("{path}.name");
    if c.name.is_empty() {
        errs.push(FieldError::required(&name_path, ""));
    } else {
        errs.extend(
            names::dns1123_label(&c.name)
                .into_iter()
                .map(|m| FieldError::invalid(&name_path, s(&c.name), m)),
        );
    }
    if c.image.as_deref().unwrap_or_default().is_empty() {
        errs.push(FieldError::required(format!("{path}.image"), ""));
    }
    if let Some(policy) = &c.termination_message_policy {
        errs.extend(one_of(
            &format!("{path}.terminationMessagePolicy"),
            policy,
            &["File", "FallbackToLogsOnError"],
        ));
    }
    errs.extend(ports(c, path));
    errs.extend(env(
        c.env.as_deref().unwrap_or_default(),
        &format!("{path}.env"),
    ));
    errs.extend(env_from(
        c.env_from.as_deref().unwrap_or_default(),
        &format!("{path}.envFrom"),
    ));
    errs.extend(volume_mounts(c, path, ctx));
    if let Some(sc) = &c.security_context {
        errs.extend(super::security::container(
            sc,
            &format!("{path}.securityContext"),
            ctx.host_users,
        ));
    }
    if let Some(policy) = &c.image_pull_policy {
        errs.extend(one_of(
            &format!("{path}.imagePullPolicy"),
            policy,
            &["Always", "IfNotPresent", "Never"],
        ));
    }
    if let Some(r) = &c.resources {
        errs.extend(resources::requirements(r, &format!("{path}.resources")));
    }
    errs
}

fn hooks_and_probes(c: &Container, path: &str, ctx: &Ctx) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(lifecycle) = &c.lifecycle {
        errs.extend(handler::lifecycle(
            lifecycle,
            &format!("{path}.lifecycle"),
            ctx.grace,
        ));
    }
    if let Some(probe) = &c.liveness_probe {
        errs.extend(handler::probe(
            probe,
            &format!("{path}.livenessProbe"),
            true,
        ));
    }
    if let Some(probe) = &c.readiness_probe {
        let probe_path = format!("{path}.readinessProbe");
        errs.extend(handler::probe(probe, &probe_path, false));
        if let Some(grace) = probe.termination_grace_period_seconds {
            errs.push(FieldError::invalid(
                format!("{probe_path}.terminationGracePeriodSeconds"),
                BadValue::Int(grace),
                "must not be set for readinessProbes",
            ));
        }
    }
    if let Some(probe) = &c.startup_probe {
        errs.extend(handler::probe(probe, &format!("{path}.startupProbe"), true));
    }
    errs
}

/// `validateContainerPorts`.
fn ports(c: &Container, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut seen = HashSet::new();
    for (i, port) in c.ports.iter().flatten().enumerate() {
        let pp = format!("{path}.ports[{i}]");
        if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            let msgs = names::port_name(name);
            if !msgs.is_empty() {
                errs.extend(
                    msgs.into_iter()
                        .map(|m| FieldError::invalid(format!("{pp}.name"), s(name), m)),
                );
            } else if !seen.insert(name) {
                errs.push(FieldError::duplicate(format!("{pp}.name"), s(name)));
            }
        }
        if port.container_port == 0 {
            errs.push(FieldError::required(format!("{pp}.containerPort"), ""));
        } else {
            let n = i64::from(port.container_port);
            errs.extend(
                names::port_number(n).into_iter().map(|m| {
                    FieldError::invalid(format!("{pp}.containerPort"), BadValue::Int(n), m)
                }),
            );
        }
        if let Some(host) = port.host_port.filter(|p| *p != 0) {
            let n = i64::from(host);
            errs.extend(
                names::port_number(n)
                    .into_iter()
                    .map(|m| FieldError::invalid(format!("{pp}.hostPort"), BadValue::Int(n), m)),
            );
        }
        if let Some(protocol) = &port.protocol {
            errs.extend(one_of(
                &format!("{pp}.protocol"),
                protocol,
                &["SCTP", "TCP", "UDP"],
            ));
        }
    }
    errs
}

/// `AccumulateUniqueHostPorts`: `hostIP/protocol/hostPort` used twice.
fn host_port_conflicts(containers: &[Container], base: &str) -> Vec<FieldError> {
    let mut seen = HashSet::new();
    let mut errs = Vec::new();
    for (ci, c) in containers.iter().enumerate() {
        for (pi, port) in c.ports.iter().flatten().enumerate() {
            let Some(host_port) = port.host_port.filter(|p| *p != 0) else {
                continue;
            };
            let key = format!(
                "{}/{}/{host_port}",
                port.host_ip.as_deref().unwrap_or_default(),
                port.protocol.as_deref().unwrap_or_default()
            );
            if !seen.insert(key.clone()) {
                errs.push(FieldError::duplicate(
                    format!("{base}[{ci}].ports[{pi}].hostPort"),
                    s(&key),
                ));
            }
        }
    }
    errs
}

/// Field paths the downward API can convert, and those env may use.
const CONVERTIBLE_FIELDS: [&str; 14] = [
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.serviceAccountName",
    "spec.schedulerName",
    "status.phase",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];
const ENV_FIELDS: [&str; 9] = [
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

/// `ValidateEnv` with relaxed names (on by default since 1.32).
fn env(vars: &[EnvVar], base: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, var) in vars.iter().enumerate() {
        let path = format!("{base}[{i}]");
        if var.name.is_empty() {
            errs.push(FieldError::required(format!("{path}.name"), ""));
        } else {
            errs.extend(
                names::env_var_name(&var.name)
                    .into_iter()
                    .map(|m| FieldError::invalid(format!("{path}.name"), s(&var.name), m)),
            );
        }
        let Some(from) = &var.value_from else {
            continue;
        };
        let from_path = format!("{path}.valueFrom");
        let sources = [
            from.field_ref.is_some(),
            from.resource_field_ref.is_some(),
            from.config_map_key_ref.is_some(),
            from.secret_key_ref.is_some(),
            from.file_key_ref.is_some(),
        ]
        .into_iter()
        .filter(|set| *set)
        .count();
        if let Some(field_ref) = &from.field_ref {
            errs.extend(field_ref_errors(
                field_ref.api_version.as_deref(),
                &field_ref.field_path,
                &format!("{from_path}.fieldRef"),
            ));
        }
        if let Some(resource_ref) = &from.resource_field_ref {
            errs.extend(super::resource_field::selector(
                resource_ref,
                &format!("{from_path}.resourceFieldRef"),
            ));
        }
        if let Some(file_ref) = &from.file_key_ref {
            let at = format!("{from_path}.fileKeyRef");
            errs.extend(super::env_files::selector(file_ref, &at));
        }
        if sources == 0 {
            errs.push(FieldError::invalid(
                &from_path,
                s(""),
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef`, `secretKeyRef` or `fileKeyRef`",
            ));
        } else if !var.value.as_deref().unwrap_or_default().is_empty() {
            errs.push(FieldError::invalid(
                &from_path,
                s(""),
                "may not be specified when `value` is not empty",
            ));
        } else if sources > 1 {
            errs.push(FieldError::invalid(
                &from_path,
                s(""),
                "may not have more than one field specified at a time",
            ));
        }
    }
    errs
}

/// `ValidateEnvFrom` with relaxed names (on by default since 1.32).
fn env_from(sources: &[EnvFromSource], base: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, source) in sources.iter().enumerate() {
        let path = format!("{base}[{i}]");
        if let Some(prefix) = source.prefix.as_deref().filter(|p| !p.is_empty()) {
            errs.extend(
                names::env_var_name(prefix)
                    .into_iter()
                    .map(|m| FieldError::invalid(format!("{path}.prefix"), s(prefix), m)),
            );
        }
        let refs = [
            source
                .config_map_ref
                .as_ref()
                .map(|r| (&r.name, "configMapRef")),
            source.secret_ref.as_ref().map(|r| (&r.name, "secretRef")),
        ];
        for (name, field) in refs.iter().flatten() {
            let name_path = format!("{path}.{field}.name");
            if name.is_empty() {
                errs.push(FieldError::required(name_path, ""));
            } else {
                errs.extend(
                    names::dns1123_subdomain(name)
                        .into_iter()
                        .map(|m| FieldError::invalid(&name_path, s(name), m)),
                );
            }
        }
        // Upstream reports these at the list's path, not the entry's.
        match refs.iter().flatten().count() {
            0 => errs.push(FieldError::invalid(
                base,
                s(""),
                "must specify one of: `configMapRef` or `secretRef`",
            )),
            1 => {}
            _ => errs.push(FieldError::invalid(
                base,
                s(""),
                "may not have more than one field specified at a time",
            )),
        }
    }
    errs
}

/// `validateObjectFieldSelector` against the env expressions.
fn field_ref_errors(api_version: Option<&str>, field_path: &str, path: &str) -> Vec<FieldError> {
    let version = api_version.unwrap_or("v1");
    if version.is_empty() {
        return vec![FieldError::required(format!("{path}.apiVersion"), "")];
    }
    if field_path.is_empty() {
        return vec![FieldError::required(format!("{path}.fieldPath"), "")];
    }
    let fp = format!("{path}.fieldPath");
    if version != "v1" {
        let msg = format!("error converting fieldPath: unsupported pod version: {version}");
        return vec![FieldError::invalid(fp, s(field_path), msg)];
    }
    let (base, subscripted) = match field_path.split_once('[') {
        Some((base, rest)) if rest.ends_with(']') => (base, true),
        _ => (field_path, false),
    };
    if !CONVERTIBLE_FIELDS.contains(&base) {
        let msg = format!("error converting fieldPath: field label not supported: {field_path}");
        return vec![FieldError::invalid(fp, s(field_path), msg)];
    }
    if subscripted {
        if base != "metadata.labels" && base != "metadata.annotations" {
            return vec![FieldError::invalid(
                path,
                s(base),
                "does not support subscript",
            )];
        }
        return vec![];
    }
    if !ENV_FIELDS.contains(&base) {
        return vec![FieldError::not_supported(fp, s(base), &ENV_FIELDS)];
    }
    vec![]
}

/// `validateVolumeMounts`, plus berth's absolute mountPath rule.
fn volume_mounts(c: &Container, path: &str, ctx: &Ctx) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut mount_points = HashSet::new();
    let base = format!("{path}.volumeMounts");
    for (i, m) in c.volume_mounts.iter().flatten().enumerate() {
        let mp = format!("{base}[{i}]");
        if m.name.is_empty() {
            errs.push(FieldError::required(format!("{mp}.name"), ""));
        }
        if !ctx.volumes.contains(&m.name) {
            errs.push(FieldError::not_found(format!("{mp}.name"), s(&m.name)));
        }
        if m.mount_path.is_empty() {
            errs.push(FieldError::required(format!("{mp}.mountPath"), ""));
        } else if !m.mount_path.starts_with('/') {
            errs.push(FieldError::invalid(
                format!("{mp}.mountPath"),
                s(&m.mount_path),
                "must be an absolute path",
            ));
        }
        if !mount_points.insert(m.mount_path.as_str()) {
            errs.push(FieldError::invalid(
                format!("{mp}.mountPath"),
                s(&m.mount_path),
                "must be unique",
            ));
        }
        let sub_path = m.sub_path.as_deref().unwrap_or_default();
        if !sub_path.is_empty() {
            // The API server reports these against `volumeMounts.subPath` (no index).
            errs.extend(local_descending_path(sub_path, &format!("{base}.subPath")));
        }
        if let Some(expr) = m.sub_path_expr.as_deref().filter(|e| !e.is_empty()) {
            if !sub_path.is_empty() {
                errs.push(FieldError::invalid(
                    format!("{mp}.subPathExpr"),
                    s(expr),
                    "subPathExpr and subPath are mutually exclusive",
                ));
            }
            errs.extend(local_descending_path(expr, &format!("{base}.subPathExpr")));
        }
        if let Some(mode) = m.mount_propagation.as_deref() {
            errs.extend(mount_propagation(
                mode,
                c,
                &format!("{mp}.mountPropagation"),
            ));
        }
    }
    errs
}

/// The API server's `validateMountPropagation`: a known mode, and
/// Bidirectional only in a privileged container.
fn mount_propagation(mode: &str, c: &Container, path: &str) -> Vec<FieldError> {
    const MODES: [&str; 3] = ["Bidirectional", "HostToContainer", "None"];
    let mut errs = Vec::new();
    if !MODES.contains(&mode) {
        errs.push(FieldError::not_supported(path, s(mode), &MODES));
    }
    let privileged = c
        .security_context
        .as_ref()
        .and_then(|sc| sc.privileged)
        .unwrap_or(false);
    if mode == "Bidirectional" && !privileged {
        errs.push(FieldError::forbidden(
            path,
            "Bidirectional mount propagation is available only to privileged containers",
        ));
    }
    errs
}

pub(super) fn local_descending_path(target: &str, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if target.starts_with('/') {
        errs.push(FieldError::invalid(
            path,
            s(target),
            "must be a relative path",
        ));
    }
    if target.split('/').any(|p| p == "..") {
        errs.push(FieldError::invalid(
            path,
            s(target),
            "must not contain '..'",
        ));
    }
    errs
}
