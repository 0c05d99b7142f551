//! `ValidatePodUpdate`: what may change in a running pod's spec.

use k8s_openapi::api::core::v1::{Pod, PodSpec};
use serde_json::Value;

use super::errors::{s, BadValue, FieldError, ValidationErrors};
use super::pod_errors;

const UPDATABLE: &str = "pod updates may not change fields other than \
`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,\
`spec.tolerations` (only additions to existing tolerations),\
`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// Validates `new` as a replacement of `old` (both defaulted): `new` must be
/// a valid pod, keep its identity, and change only the updatable fields.
pub fn validate_update(old: &Pod, new: &Pod) -> Result<(), ValidationErrors> {
    let mut errs = pod_errors(new);
    errs.extend(identity_errors(old, new));
    let nm = &new.metadata;
    let empty = PodSpec::default();
    let old_spec = old.spec.as_ref().unwrap_or(&empty);
    let new_spec = new.spec.as_ref().unwrap_or(&empty);
    errs.extend(spec_update_errors(old_spec, new_spec));
    ValidationErrors::check("Pod", nm.name.as_deref().unwrap_or_default(), errs)
}

/// `ValidateObjectMetaUpdate`'s immutable identity.
pub(super) fn identity_errors(old: &Pod, new: &Pod) -> Vec<FieldError> {
    let (om, nm) = (&old.metadata, &new.metadata);
    let identity = [
        ("metadata.name", &om.name, &nm.name),
        ("metadata.namespace", &om.namespace, &nm.namespace),
        ("metadata.uid", &om.uid, &nm.uid),
    ];
    identity
        .into_iter()
        .filter(|(_, before, after)| before != after)
        .map(|(field, _, after)| {
            FieldError::invalid(
                field,
                s(after.as_deref().unwrap_or_default()),
                "field is immutable",
            )
        })
        .collect()
}

fn spec_update_errors(old: &PodSpec, new: &PodSpec) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match (old.active_deadline_seconds, new.active_deadline_seconds) {
        (_, Some(n)) if !(0..=i64::from(i32::MAX)).contains(&n) => {
            errs.push(FieldError::invalid(
                "spec.activeDeadlineSeconds",
                BadValue::Int(n),
                "must be between 0 and 2147483647, inclusive",
            ));
            return errs;
        }
        (Some(o), Some(n)) if o < n => {
            errs.push(FieldError::invalid(
                "spec.activeDeadlineSeconds",
                BadValue::Int(n),
                "must be less than or equal to previous value",
            ));
            return errs;
        }
        (Some(_), None) => errs.push(FieldError::invalid(
            "spec.activeDeadlineSeconds",
            BadValue::Null,
            "must not update from a positive integer to nil value",
        )),
        _ => {}
    }
    let new_tolerations = new.tolerations.as_deref().unwrap_or_default();
    for (i, t) in old.tolerations.iter().flatten().enumerate() {
        // tolerationSeconds of an existing NoExecute toleration may change.
        let kept = new_tolerations.iter().any(|n| {
            n == t
                || (n.toleration_seconds.is_some() && t.toleration_seconds.is_some() && {
                    let (mut a, mut b) = (n.clone(), t.clone());
                    a.toleration_seconds = None;
                    b.toleration_seconds = None;
                    a == b
                })
        });
        if !kept {
            errs.push(FieldError::forbidden(
                format!("spec.tolerations[{i}]"),
                "existing toleration can not be modified except its tolerationSeconds",
            ));
        }
    }

    // Undo the allowed changes; whatever differs then is forbidden.
    let mut munged = new.clone();
    copy_images(&mut munged.containers, &old.containers);
    if let (Some(m), Some(o)) = (
        munged.init_containers.as_mut(),
        old.init_containers.as_ref(),
    ) {
        copy_images(m, o);
    }
    munged.active_deadline_seconds = old.active_deadline_seconds;
    munged.tolerations = old.tolerations.clone();
    if old.termination_grace_period_seconds.is_some_and(|g| g < 0)
        && munged.termination_grace_period_seconds == Some(1)
    {
        munged.termination_grace_period_seconds = old.termination_grace_period_seconds;
    }
    let (before, after) = (normalized(old), normalized(&munged));
    if before != after {
        let mut changed = Vec::new();
        diff_paths("spec", &before, &after, &mut changed);
        let detail = format!("{UPDATABLE}\n  changed: {}", changed.join(", "));
        errs.push(FieldError::forbidden("spec", detail));
    }
    errs
}

fn copy_images(
    target: &mut [k8s_openapi::api::core::v1::Container],
    from: &[k8s_openapi::api::core::v1::Container],
) {
    for (t, f) in target.iter_mut().zip(from) {
        t.image = f.image.clone();
    }
}

/// The spec as JSON with nulls and empty lists dropped: like the API
/// server's semantic equality, `[]` and unset are the same.
fn normalized(spec: &PodSpec) -> Value {
    fn clean(v: Value) -> Option<Value> {
        match v {
            Value::Null => None,
            Value::Array(items) if items.is_empty() => None,
            Value::Array(items) => {
                Some(Value::Array(items.into_iter().filter_map(clean).collect()))
            }
            Value::Object(fields) => Some(Value::Object(
                fields
                    .into_iter()
                    .filter_map(|(k, v)| clean(v).map(|v| (k, v)))
                    .collect(),
            )),
            other => Some(other),
        }
    }
    clean(serde_json::to_value(spec).unwrap_or(Value::Null)).unwrap_or(Value::Null)
}

/// Where two JSON values differ (at most a handful of paths).
fn diff_paths(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    const MAX: usize = 5;
    if a == b || out.len() >= MAX {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let (va, vb) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                diff_paths(&format!("{path}.{k}"), va, vb, out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                diff_paths(&format!("{path}[{i}]"), va, vb, out);
            }
        }
        _ => out.push(path.to_string()),
    }
}
