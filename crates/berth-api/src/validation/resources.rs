//! Resource quantities: container requests and limits, the pod's overhead
//! and pod-level resources, an emptyDir's size limit.
//!
//! The API server refuses a quantity that does not parse while decoding
//! the request, with `resource.ParseQuantity`'s message and no field. berth
//! gives the same message as a field error, so the answer names the field.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::errors::{s, FieldError};
use crate::quantity::{self, Quantity as Parsed};

const NEGATIVE: &str = "must be greater than or equal to 0";

/// `ValidateContainerResourceRequirements` (the quantity rules), at `path`
/// (`spec.containers[0].resources`).
pub(super) fn requirements(r: &ResourceRequirements, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let limits = r.limits.as_ref();
    for (name, q) in limits.into_iter().flatten() {
        errs.extend(nonnegative(q, &format!("{path}.limits[{name}]")).err());
    }
    for (name, q) in r.requests.iter().flatten() {
        let limit = limits.and_then(|l| l.get(name));
        let request = match nonnegative(q, &format!("{path}.requests[{name}]")) {
            Ok(request) => request,
            // A request defaulted from its limit: the limit's error says it.
            Err(_) if limit == Some(q) => continue,
            Err(e) => {
                errs.push(e);
                continue;
            }
        };
        let Some(limit) = limit else {
            continue;
        };
        if quantity::parse(&limit.0).is_ok_and(|limit| request > limit) {
            errs.push(FieldError::invalid(
                format!("{path}.requests"),
                s(&q.0),
                format!("must be less than or equal to {name} limit of {}", limit.0),
            ));
        }
    }
    errs
}

/// `validateOverhead`: each quantity parses and is not negative.
pub(super) fn overhead(overhead: &BTreeMap<String, Quantity>, path: &str) -> Vec<FieldError> {
    overhead
        .iter()
        .filter_map(|(name, q)| nonnegative(q, &format!("{path}[{name}]")).err())
        .collect()
}

/// An emptyDir's `sizeLimit`: it parses, and a negative one is forbidden.
pub(super) fn size_limit(q: &Quantity, path: &str) -> Option<FieldError> {
    match quantity::parse(&q.0) {
        Err(e) => Some(FieldError::invalid(path, s(&q.0), e.to_string())),
        Ok(parsed) if parsed.is_negative() => Some(FieldError::forbidden(
            path,
            "SizeLimit field must be a valid resource quantity",
        )),
        Ok(_) => None,
    }
}

/// `ValidateResourceQuantityValue`'s sign rule, after the quantity parses.
fn nonnegative(q: &Quantity, path: &str) -> Result<Parsed, FieldError> {
    match quantity::parse(&q.0) {
        Err(e) => Err(FieldError::invalid(path, s(&q.0), e.to_string())),
        Ok(parsed) if parsed.is_negative() => Err(FieldError::invalid(path, s(&q.0), NEGATIVE)),
        Ok(parsed) => Ok(parsed),
    }
}
