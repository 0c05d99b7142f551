//! The API server's Pod validation (pkg/apis/core/validation) for the parts
//! berth supports, with the API server's field paths and messages, plus
//! berth's own limits (volume types, absolute paths).
//!
//! Validate after `defaults::apply_defaults`, as the API server does; fields
//! the defaults fill in are accepted when unset.

mod container;
mod env_files;
mod ephemeral;
mod errors;
mod handler;
mod log_options;
pub mod names;
mod resource_field;
mod resources;
mod restart_rules;
mod security;
mod unhonoured;
mod update;
mod volume;

// berth's own rules, beyond the API server's.
mod capacity;
mod uid;

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{Pod, PodSpec};

pub use ephemeral::validate_ephemeral_update;
pub use errors::{BadValue, ErrorKind, FieldError, ValidationErrors};
pub use log_options::{validate_log_options, PodLogOptions};
pub use update::validate_update;

pub use capacity::MAX_CONTAINERS_PER_POD;
pub use uid::validate_uid;

use errors::s;

/// Validates a pod for creation (`ValidatePodCreate`).
pub fn validate_pod(pod: &Pod) -> Result<(), ValidationErrors> {
    let mut errors = pod_errors(pod);
    let ephemeral = pod
        .spec
        .as_ref()
        .and_then(|s| s.ephemeral_containers.as_ref());
    if ephemeral.is_some_and(|e| !e.is_empty()) {
        // Added later, through the `ephemeralcontainers` subresource only.
        errors.push(FieldError::forbidden(
            "spec.ephemeralContainers",
            "cannot be set on create",
        ));
    }
    ValidationErrors::check(
        "Pod",
        pod.metadata.name.as_deref().unwrap_or_default(),
        errors,
    )
}

/// Validates a pod the API server bound to this node: as
/// [`validate_pod`], and volumes of API data (configMap, secret,
/// downwardAPI, projected) are allowed, since cluster mode writes them.
pub fn validate_cluster_pod(pod: &Pod) -> Result<(), ValidationErrors> {
    let errors = pod_errors(pod)
        .into_iter()
        .filter(|e| {
            let api_data = volume::API_OBJECT_SOURCES
                .iter()
                .any(|source| e.field.ends_with(&format!("].{source}")));
            !(e.kind == ErrorKind::NotSupported && e.field.starts_with("spec.volumes[") && api_data)
        })
        .collect();
    ValidationErrors::check(
        "Pod",
        pod.metadata.name.as_deref().unwrap_or_default(),
        errors,
    )
}

/// Every error of the pod's metadata and spec, in the API server's order
/// (`validatePodMetadataAndSpec`, with berth's limits).
pub(crate) fn pod_errors(pod: &Pod) -> Vec<FieldError> {
    let mut errs = metadata_errors(pod);
    let Some(spec) = &pod.spec else {
        errs.push(FieldError::required("spec.containers", ""));
        return errs;
    };
    errs.extend(spec_errors(spec));
    errs.extend(capacity::container_count(spec));
    errs.extend(container::image_whitespace(
        &spec.containers,
        "spec.containers",
    ));
    let inits = spec.init_containers.as_deref().unwrap_or_default();
    errs.extend(container::image_whitespace(inits, "spec.initContainers"));
    errs
}

/// `TotalAnnotationSizeLimitB`: keys and values of all annotations together.
pub const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;

fn metadata_errors(pod: &Pod) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match pod.metadata.name.as_deref().unwrap_or_default() {
        "" => errs.push(FieldError::required(
            "metadata.name",
            "name or generateName is required",
        )),
        name => errs.extend(
            names::dns1123_subdomain(name)
                .into_iter()
                .map(|m| FieldError::invalid("metadata.name", s(name), m)),
        ),
    }
    match pod.metadata.namespace.as_deref().unwrap_or_default() {
        "" => errs.push(FieldError::required("metadata.namespace", "")),
        ns => errs.extend(
            names::dns1123_label(ns)
                .into_iter()
                .map(|m| FieldError::invalid("metadata.namespace", s(ns), m)),
        ),
    }
    let annotations = pod.metadata.annotations.iter().flatten();
    let size: usize = annotations.map(|(k, v)| k.len() + v.len()).sum();
    if size > MAX_ANNOTATIONS_BYTES {
        errs.push(FieldError::too_long(
            "metadata.annotations",
            MAX_ANNOTATIONS_BYTES,
        ));
    }
    errs
}

fn spec_errors(spec: &PodSpec) -> Vec<FieldError> {
    let (volumes, mut errs) = volume::volumes(spec.volumes.as_deref().unwrap_or_default());
    let grace = spec.termination_grace_period_seconds;
    let ctx = container::Ctx {
        volumes: &volumes,
        grace,
        host_users: spec.host_users != Some(false),
    };
    errs.extend(container::containers(&spec.containers, &ctx));
    let inits = spec.init_containers.as_deref().unwrap_or_default();
    let regular_names: HashSet<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    errs.extend(container::init_containers(inits, &regular_names, &ctx));
    errs.extend(ephemeral::containers(spec, &ctx));
    errs.extend(env_files::volumes(spec));
    errs.extend(security::pod(spec));
    if let Some(policy) = &spec.restart_policy {
        errs.extend(one_of(
            "spec.restartPolicy",
            policy,
            &["Always", "OnFailure", "Never"],
        ));
    }
    if let Some(policy) = &spec.dns_policy {
        let supported = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
        errs.extend(one_of("spec.dnsPolicy", policy, &supported));
    }
    if let Some(grace) = grace.filter(|g| *g < 0) {
        errs.push(FieldError::invalid(
            "spec.terminationGracePeriodSeconds",
            BadValue::Int(grace),
            "must be greater than or equal to 0",
        ));
    }
    if let Some(deadline) = spec
        .active_deadline_seconds
        .filter(|d| !(1..=i64::from(i32::MAX)).contains(d))
    {
        errs.push(FieldError::invalid(
            "spec.activeDeadlineSeconds",
            BadValue::Int(deadline),
            "must be between 1 and 2147483647, inclusive",
        ));
    }
    if let Some(overhead) = &spec.overhead {
        errs.extend(resources::overhead(overhead, "spec.overhead"));
    }
    if let Some(r) = &spec.resources {
        errs.extend(resources::requirements(r, "spec.resources"));
    }
    errs.extend(host_name(spec));
    errs.extend(unhonoured::spec(spec));
    errs
}

/// `hostname` and `subdomain` are DNS labels; `hostnameOverride` a DNS
/// subdomain that neither a FQDN host name nor the host's network goes
/// with (`validatePodHostName`).
fn host_name(spec: &PodSpec) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let labels = [
        ("spec.hostname", &spec.hostname),
        ("spec.subdomain", &spec.subdomain),
    ];
    for (field, value) in labels {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
            let problems = names::dns1123_label(value);
            errs.extend(
                problems
                    .into_iter()
                    .map(|m| FieldError::invalid(field, s(value), m)),
            );
        }
    }
    let Some(name) = &spec.hostname_override else {
        return errs;
    };
    let field = "spec.hostnameOverride";
    if spec.set_hostname_as_fqdn == Some(true) {
        errs.push(FieldError::forbidden(
            field,
            "may not be specified when setHostnameAsFQDN is true",
        ));
    }
    if spec.host_network == Some(true) {
        errs.push(FieldError::forbidden(
            field,
            "may not be specified when hostNetwork is true",
        ));
    }
    if name.len() > 64 {
        errs.push(FieldError::too_long(field, 64));
    }
    let problems = names::dns1123_subdomain(name);
    errs.extend(
        problems
            .into_iter()
            .map(|m| FieldError::invalid(field, s(name), m)),
    );
    errs
}

/// An enum field: empty is `Required`, anything else unknown `Unsupported`.
pub(crate) fn one_of(field: &str, value: &str, supported: &[&str]) -> Option<FieldError> {
    if value.is_empty() {
        return Some(FieldError::required(field, ""));
    }
    (!supported.contains(&value)).then(|| FieldError::not_supported(field, s(value), supported))
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod ephemeral_tests;
