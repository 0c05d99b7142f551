//! `valueFrom.fileKeyRef` (EnvFiles, beta and on by default since v1.35), as
//! the API server's `validateFileKeySelector` and
//! `validateFileKeyRefVolumes` check it.

use k8s_openapi::api::core::v1::{FileKeySelector, PodSpec};

use super::errors::{s, FieldError};
use super::names;

/// The selector itself: a key, a volume name and a path without `..`.
pub(super) fn selector(sel: &FileKeySelector, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let key = format!("{path}.key");
    if sel.key.is_empty() {
        errs.push(FieldError::required(key, ""));
    } else {
        let problems = names::env_var_name(&sel.key);
        errs.extend(
            problems
                .into_iter()
                .map(|m| FieldError::invalid(&key, s(&sel.key), m)),
        );
    }
    let volume = format!("{path}.volumeName");
    if sel.volume_name.is_empty() {
        errs.push(FieldError::required(volume, ""));
    } else {
        let problems = names::dns1123_label(&sel.volume_name);
        errs.extend(
            problems
                .into_iter()
                .map(|m| FieldError::invalid(&volume, s(&sel.volume_name), m)),
        );
    }
    let file = format!("{path}.path");
    if sel.path.is_empty() {
        errs.push(FieldError::required(file, ""));
    } else if sel.path.split('/').any(|part| part == "..") {
        errs.push(FieldError::invalid(
            file,
            s(&sel.path),
            "must not contain '..'",
        ));
    }
    errs
}

/// Every `fileKeyRef` names one of the pod's emptyDir volumes.
pub(super) fn volumes(spec: &PodSpec) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let volumes = spec.volumes.as_deref().unwrap_or_default();
    let ephemeral: Vec<_> = crate::pod::ephemeral_containers(spec)
        .iter()
        .map(crate::pod::ephemeral_as_container)
        .collect();
    let groups = [
        (
            "spec.initContainers",
            spec.init_containers.as_deref().unwrap_or_default(),
        ),
        ("spec.containers", spec.containers.as_slice()),
        ("spec.ephemeralContainers", ephemeral.as_slice()),
    ];
    for (group, containers) in groups {
        for (i, c) in containers.iter().enumerate() {
            for (j, var) in c.env.iter().flatten().enumerate() {
                let Some(sel) = var
                    .value_from
                    .as_ref()
                    .and_then(|v| v.file_key_ref.as_ref())
                else {
                    continue;
                };
                let field = format!("{group}[{i}].env[{j}].valueFrom.fileKeyRef.volumeName");
                let name = &sel.volume_name;
                match volumes.iter().find(|v| v.name == *name) {
                    None => errs.push(FieldError::not_found(field, s(name))),
                    Some(v) if v.empty_dir.is_none() => errs.push(FieldError::invalid(
                        field,
                        s(name),
                        "referenced volume must be of type emptyDir",
                    )),
                    Some(_) => {}
                }
            }
        }
    }
    errs
}
