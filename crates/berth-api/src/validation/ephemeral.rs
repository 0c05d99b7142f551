//! Ephemeral containers (`validateEphemeralContainers`) and the
//! `ephemeralcontainers` subresource's update
//! (`ValidatePodEphemeralContainersUpdate`): they can only be added, never
//! changed or removed.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{EphemeralContainer, Pod, PodSpec, ResourceRequirements};

use super::container::{self, Ctx};
use super::errors::{s, FieldError, ValidationErrors};
use super::update::identity_errors;
use crate::pod::{ephemeral_as_container, ephemeral_containers};

const NOT_FOR_EPHEMERAL: &str = "cannot be set for an Ephemeral Container";

/// `spec.ephemeralContainers`: each as a container, with a name unique
/// across all containers, an existing non-ephemeral target, and none of the
/// fields ephemeral containers may not have.
pub(super) fn containers(spec: &PodSpec, ctx: &Ctx) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let inits = spec.init_containers.iter().flatten();
    let others: HashSet<&str> = spec
        .containers
        .iter()
        .chain(inits)
        .map(|c| c.name.as_str())
        .collect();
    let mut all = others.clone();
    for (i, ec) in ephemeral_containers(spec).iter().enumerate() {
        let path = format!("spec.ephemeralContainers[{i}]");
        let c = ephemeral_as_container(ec);
        errs.extend(container::common(&c, &path, ctx));
        errs.extend(container::image_whitespace(
            std::slice::from_ref(&c),
            "spec.ephemeralContainers",
        ));
        if !all.insert(ec.name.as_str()) {
            errs.push(FieldError::duplicate(format!("{path}.name"), s(&ec.name)));
        }
        if let Some(target) = ec.target_container_name.as_deref() {
            if !target.is_empty() && !others.contains(target) {
                errs.push(FieldError::not_found(
                    format!("{path}.targetContainerName"),
                    s(target),
                ));
            }
        }
        errs.extend(
            disallowed_fields(ec)
                .into_iter()
                .map(|field| FieldError::forbidden(format!("{path}.{field}"), NOT_FOR_EPHEMERAL)),
        );
        for (m, mount) in ec.volume_mounts.iter().flatten().enumerate() {
            let fields = [
                ("subPath", &mount.sub_path),
                ("subPathExpr", &mount.sub_path_expr),
            ];
            for (field, value) in fields {
                if value.as_deref().is_some_and(|v| !v.is_empty()) {
                    errs.push(FieldError::forbidden(
                        format!("{path}.volumeMounts[{m}].{field}"),
                        NOT_FOR_EPHEMERAL,
                    ));
                }
            }
        }
    }
    errs
}

/// The set fields outside `allowedEphemeralContainerFields`, in the Go
/// struct's field order.
fn disallowed_fields(ec: &EphemeralContainer) -> Vec<&'static str> {
    let listed = |v: &Option<Vec<_>>| v.as_ref().is_some_and(|v: &Vec<_>| !v.is_empty());
    let resources = ec
        .resources
        .as_ref()
        .is_some_and(|r| *r != ResourceRequirements::default());
    let set = [
        ("ports", listed(&ec.ports)),
        ("resources", resources),
        (
            "resizePolicy",
            ec.resize_policy.as_ref().is_some_and(|v| !v.is_empty()),
        ),
        (
            "restartPolicy",
            ec.restart_policy.as_deref().is_some_and(|p| !p.is_empty()),
        ),
        (
            "restartPolicyRules",
            ec.restart_policy_rules
                .as_ref()
                .is_some_and(|v| !v.is_empty()),
        ),
        ("livenessProbe", ec.liveness_probe.is_some()),
        ("readinessProbe", ec.readiness_probe.is_some()),
        ("startupProbe", ec.startup_probe.is_some()),
        ("lifecycle", ec.lifecycle.is_some()),
    ];
    set.into_iter()
        .filter_map(|(field, set)| set.then_some(field))
        .collect()
}

/// Validates `new` as `old` with its ephemeral containers replaced through
/// the `ephemeralcontainers` subresource (both defaulted); `static_pod`: the
/// node runs `old` from a manifest file.
pub fn validate_ephemeral_update(
    old: &Pod,
    new: &Pod,
    static_pod: bool,
) -> Result<(), ValidationErrors> {
    let name = new.metadata.name.as_deref().unwrap_or_default();
    let mirror = static_pod
        || old
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
    if mirror {
        let static_pod =
            FieldError::forbidden("", "static pods do not support ephemeral containers");
        return ValidationErrors::check("Pod", name, vec![static_pod]);
    }
    let mut errs = identity_errors(old, new);
    errs.extend(super::pod_errors(new));
    let empty = PodSpec::default();
    let old_spec = old.spec.as_ref().unwrap_or(&empty);
    let new_spec = new.spec.as_ref().unwrap_or(&empty);
    let new_ones = ephemeral_containers(new_spec);
    for before in ephemeral_containers(old_spec) {
        let detail = match new_ones.iter().find(|ec| ec.name == before.name) {
            None => format!(
                "existing ephemeral containers {:?} may not be removed\n",
                before.name
            ),
            Some(after) if after != before => format!(
                "existing ephemeral containers {:?} may not be changed\n",
                before.name
            ),
            Some(_) => continue,
        };
        errs.push(FieldError::forbidden("spec.ephemeralContainers", detail));
    }
    ValidationErrors::check("Pod", name, errs)
}
