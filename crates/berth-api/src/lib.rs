//! berth-api: the Kubernetes Pod as berth reads it, and the pure rules the
//! kubelet and the API server apply to it. No I/O, no async.
//!
//! Pod types are k8s-openapi's `core/v1` (feature `v1_37`, the API berth's kubelet version speaks), so manifests read
//! exactly as kubectl reads them. Every function here is deterministic: time
//! comes in as a parameter.
//!
//! # Layout
//!
//! - `manifest` (with its `nesting` bound): YAML/JSON text to Pods; start here
//!   for anything a user types.
//! - `defaults`, `validation/`: what the API server fills in and refuses.
//! - `status/`: the kubelet's phase, conditions and container-state rules.
//! - `kubectl/`: the `get pods` columns; `cri_log`: the CRI log format.
//! - `command`, `env`, `expansion`: a container's argv and environment.
//! - `quantity`, `empty_dir`, `security_context`, `sysctl`: one rule each;
//!   `resource_fit`: whether a pod's requests fit the node.
//! - `restart_rules`: a container's own restart policy and rules.
//! - `reasons`: the kubelet's event reasons, for the worker, describe and
//!   the tests.

pub mod command;
pub mod cri_log;
pub mod defaults;
pub mod empty_dir;
pub mod env;
pub mod env_file;
pub mod expansion;
#[doc(hidden)]
pub mod fuzzing;
pub mod kubectl;
pub mod manifest;
pub mod pod;
pub mod quantity;
pub mod reasons;
pub mod resource_field;
pub mod resource_fit;
pub mod restart_rules;
pub mod security_context;
pub mod status;
pub mod sysctl;
pub mod validation;

#[cfg(test)]
pub(crate) mod testutil;

pub use k8s_openapi;
pub use k8s_openapi::api::core::v1::{Pod, PodSpec};
pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
