//! Type URLs and the few conversions between protobuf wrappers and our types.
//!
//! containerd stores OCI specs and exec processes as `Any`s whose value is the
//! JSON of the runtime-spec object (not protobuf), under runtime-spec type URLs.

use berth_runtime::{RuntimeError, RuntimeErrorKind};
use jiff::Timestamp;
use oci_spec::runtime::{Process, Spec};
use prost_types::Any;

pub(crate) const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
pub(crate) const PROCESS_TYPE_URL: &str =
    "types.containerd.io/opencontainers/runtime-spec/1/Process";

pub(crate) const RESOURCES_TYPE_URL: &str =
    "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources";

/// A running task's new resources, as Tasks.Update takes them.
pub(crate) fn resources_any(resources: &serde_json::Value) -> Result<Any, RuntimeError> {
    json_any(RESOURCES_TYPE_URL, resources)
}

/// The container spec as containerd stores it.
pub(crate) fn spec_any(spec: &Spec) -> Result<Any, RuntimeError> {
    json_any(SPEC_TYPE_URL, spec)
}

/// An exec process as Tasks.Exec takes it.
pub(crate) fn process_any(process: &Process) -> Result<Any, RuntimeError> {
    json_any(PROCESS_TYPE_URL, process)
}

fn json_any<T: serde::Serialize>(type_url: &str, value: &T) -> Result<Any, RuntimeError> {
    let value = serde_json::to_vec(value).map_err(|e| {
        RuntimeError::new(
            RuntimeErrorKind::InvalidSpec,
            format!("encode {type_url}: {e}"),
        )
    })?;
    Ok(Any {
        type_url: type_url.to_string(),
        value,
    })
}

/// Reads a stored container spec back.
pub(crate) fn spec_from_any(any: &Any) -> Result<Spec, RuntimeError> {
    serde_json::from_slice(&any.value)
        .map_err(|e| RuntimeError::other(format!("decode stored container spec: {e}")))
}

pub(crate) fn timestamp(ts: Option<&prost_types::Timestamp>) -> Option<Timestamp> {
    let ts = ts?;
    // containerd reports the zero time (0001-01-01) for "never"; jiff rejects it.
    Timestamp::new(ts.seconds, ts.nanos).ok()
}
