//! `spec.volumes`: names, exactly one source, and berth's supported sources
//! (emptyDir, hostPath, image).

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{HostPathVolumeSource, ImageVolumeSource, Volume};

use super::errors::{s, FieldError};
use super::{names, resources};

/// The API server's order of volume sources (validateVolumeSource); the
/// first one set is the volume's source, any further one is an error.
const SOURCES: [&str; 30] = [
    "hostPath",
    "emptyDir",
    "gitRepo",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "flocker",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "quobyte",
    "downwardAPI",
    "fc",
    "azureFile",
    "vsphereVolume",
    "photonPersistentDisk",
    "portworxVolume",
    "azureDisk",
    "storageos",
    "configMap",
    "scaleIO",
    "projected",
    "csi",
    "ephemeral",
    "image",
];

const SUPPORTED: [&str; 3] = ["emptyDir", "hostPath", "image"];

/// Sources whose content comes from the API server: berth runs them in
/// cluster mode only.
pub const API_OBJECT_SOURCES: [&str; 4] = ["configMap", "secret", "downwardAPI", "projected"];

const HOST_PATH_TYPES: [&str; 8] = [
    "",
    "BlockDevice",
    "CharDevice",
    "Directory",
    "DirectoryOrCreate",
    "File",
    "FileOrCreate",
    "Socket",
];

/// Validates the volumes; returns the names mounts may refer to (volumes
/// without API errors, as the API server registers them).
pub(super) fn volumes(volumes: &[Volume]) -> (HashSet<String>, Vec<FieldError>) {
    let mut known = HashSet::new();
    let mut errs = Vec::new();
    for (i, vol) in volumes.iter().enumerate() {
        let path = format!("spec.volumes[{i}]");
        let (mut el, unsupported) = source_errors(vol, &path);
        let name_path = format!("{path}.name");
        if vol.name.is_empty() {
            el.push(FieldError::required(&name_path, ""));
        } else {
            el.extend(
                names::dns1123_label(&vol.name)
                    .into_iter()
                    .map(|m| FieldError::invalid(&name_path, s(&vol.name), m)),
            );
        }
        if known.contains(&vol.name) {
            el.push(FieldError::duplicate(&name_path, s(&vol.name)));
        }
        if el.is_empty() {
            known.insert(vol.name.clone());
        }
        errs.extend(el);
        errs.extend(unsupported);
    }
    (known, errs)
}

/// The sources set on `vol`, in the API server's order.
fn sources(vol: &Volume) -> Vec<&'static str> {
    let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(vol) else {
        return vec![];
    };
    SOURCES
        .into_iter()
        .filter(|src| fields.get(*src).is_some_and(|v| !v.is_null()))
        .collect()
}

/// (API-server errors, berth's unsupported-source error).
fn source_errors(vol: &Volume, path: &str) -> (Vec<FieldError>, Option<FieldError>) {
    let set = sources(vol);
    let mut errs = Vec::new();
    let Some(first) = set.first() else {
        errs.push(FieldError::required(path, "must specify a volume type"));
        return (errs, None);
    };
    for extra in &set[1..] {
        errs.push(FieldError::forbidden(
            format!("{path}.{extra}"),
            "may not specify more than 1 volume type",
        ));
    }
    if let Some(host_path) = vol.host_path.as_ref().filter(|_| *first == "hostPath") {
        errs.extend(host_path_errors(host_path, &format!("{path}.hostPath")));
    }
    if let Some(image) = vol.image.as_ref().filter(|_| *first == "image") {
        errs.extend(image_errors(image, &format!("{path}.image")));
    }
    let size_limit = vol.empty_dir.as_ref().and_then(|e| e.size_limit.as_ref());
    if let Some(limit) = size_limit.filter(|_| *first == "emptyDir") {
        let limit_path = format!("{path}.emptyDir.sizeLimit");
        errs.extend(resources::size_limit(limit, &limit_path));
    }
    let unsupported = (!SUPPORTED.contains(first))
        .then(|| FieldError::not_supported(format!("{path}.{first}"), s(first), &SUPPORTED));
    (errs, unsupported)
}

/// `validateImageVolumeSource`: a reference, and a pull policy (which
/// defaulting fills in) of the container image's values.
fn image_errors(image: &ImageVolumeSource, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if image.reference.as_deref().unwrap_or_default().is_empty() {
        errs.push(FieldError::required(format!("{path}.reference"), ""));
    }
    let policy_path = format!("{path}.pullPolicy");
    match image.pull_policy.as_deref().unwrap_or_default() {
        "Always" | "IfNotPresent" | "Never" => {}
        "" => errs.push(FieldError::required(policy_path, "")),
        other => errs.push(FieldError::not_supported(
            policy_path,
            s(other),
            &PULL_POLICIES,
        )),
    }
    errs
}

/// `supportedPullPolicies`, sorted as the API server lists them.
const PULL_POLICIES: [&str; 3] = ["Always", "IfNotPresent", "Never"];

fn host_path_errors(hp: &HostPathVolumeSource, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let path_field = format!("{path}.path");
    if hp.path.is_empty() {
        errs.push(FieldError::required(&path_field, ""));
        return errs;
    }
    if hp.path.split('/').any(|part| part == "..") {
        errs.push(FieldError::invalid(
            &path_field,
            s(&hp.path),
            "must not contain '..'",
        ));
    }
    // berth's own rule: the kubelet would fail the mount later.
    if !hp.path.starts_with('/') {
        errs.push(FieldError::invalid(
            &path_field,
            s(&hp.path),
            "must be an absolute path",
        ));
    }
    if let Some(t) = hp.type_.as_deref().filter(|t| !HOST_PATH_TYPES.contains(t)) {
        errs.push(FieldError::not_supported(
            format!("{path}.type"),
            s(t),
            &HOST_PATH_TYPES,
        ));
    }
    errs
}
