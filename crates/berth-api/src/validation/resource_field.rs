//! `validateContainerResourceFieldSelector` for an env var's
//! `resourceFieldRef`.

use k8s_openapi::api::core::v1::ResourceFieldSelector;

use super::errors::{s, FieldError};
use crate::quantity;

/// The resources a selector may name, as the API server lists them.
const RESOURCES: [&str; 6] = [
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
];

const HUGEPAGES_PREFIXES: [&str; 2] = ["requests.hugepages-", "limits.hugepages-"];

const BYTE_DIVISORS: [&str; 13] = [
    "1", "1k", "1M", "1G", "1T", "1P", "1E", "1Ki", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei",
];

pub(super) fn selector(fs: &ResourceFieldSelector, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let resource = fs.resource.as_str();
    if resource.is_empty() {
        errs.push(FieldError::required(format!("{path}.resource"), ""));
    } else if !RESOURCES.contains(&resource)
        && !HUGEPAGES_PREFIXES.iter().any(|p| resource.starts_with(p))
    {
        errs.push(FieldError::not_supported(
            format!("{path}.resource"),
            s(resource),
            &RESOURCES,
        ));
    }
    errs.extend(divisor(fs, path));
    errs
}

/// `validateContainerResourceDivisor`: cpu counts in cores or millicores,
/// the byte resources in whole units of a suffix. The API server compares
/// the quantity's canonical form; berth takes the divisor as written, and
/// for cpu by value.
fn divisor(fs: &ResourceFieldSelector, path: &str) -> Option<FieldError> {
    let text = fs.divisor.as_ref()?.0.trim();
    let path = format!("{path}.divisor");
    let parsed = match quantity::parse(text) {
        Ok(q) => q,
        Err(e) => return Some(FieldError::invalid(path, s(text), e.to_string())),
    };
    if parsed == quantity::parse("0").expect("zero parses") {
        return None;
    }
    let resource = fs.resource.as_str();
    let what = match resource {
        "limits.cpu" | "requests.cpu" => {
            let milli = parsed.milli_value();
            let whole = !text.contains(['e', 'E', 'i']);
            return (!(whole && (milli == 1 || milli == 1000) && !parsed.is_negative())).then(
                || {
                    FieldError::invalid(
                        path,
                        s(resource),
                        "only divisor's values 1m and 1 are supported with the cpu resource",
                    )
                },
            );
        }
        "limits.memory" | "requests.memory" => "memory",
        "limits.ephemeral-storage" | "requests.ephemeral-storage" => "local ephemeral storage",
        _ if HUGEPAGES_PREFIXES.iter().any(|p| resource.starts_with(p)) => "hugepages",
        _ => return None,
    };
    (!BYTE_DIVISORS.contains(&text)).then(|| {
        FieldError::invalid(
            path,
            s(resource),
            format!(
                "only divisor's values {} are supported with the {what} resource",
                BYTE_DIVISORS.join(", ")
            ),
        )
    })
}
