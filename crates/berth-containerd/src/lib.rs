//! berth's [`ContainerRuntime`](berth_runtime::ContainerRuntime) over containerd's
//! native gRPC API (containerd 1.6; no CRI, no server-side pull or import).
//!
//! Nothing prost- or tonic-typed leaves this crate.
//!
//! # Layout
//!
//! - `runtime`: the trait, each verb handed to the module that owns it;
//!   start there.
//! - `client`: the connection and the per-instance `AdapterState`.
//! - `sandbox`, `netns`, `cni`, `cgroups`, `sysctl`: a pod's sandbox.
//! - `container`, `task`, `init_exec`, `exec`, `events`: containers and their processes.
//! - `spec`, `capabilities`, `seccomp`, `devices`: the OCI runtime spec.
//! - `logger`: the CRI log writer the shim spawns; `stdio`: stdin and terminal.
//! - `list`, `reclaim`: what a restarted agent finds and what it releases.
//! - `image/`: pulls, imports, unpacking and the image cache.

pub mod archive;
mod client;
mod image;
mod image_service;
mod image_volume;

mod capabilities;
mod cgroups;
mod cni;
mod container;
mod devices;
mod events;
mod exec;
mod exec_stream;
mod host_mounts;
mod init_exec;
mod list;
pub mod logger;
mod netns;
mod reclaim;
mod runtime;
mod sandbox;
mod seccomp;
mod shim;
mod spec;
mod stdio;
mod sysctl;
mod task;
mod typeurl;

pub use client::{Containerd, ContainerdConfig, DEFAULT_SHIM_TIMEOUT};
pub use image::{
    normalize_reference, Credentials, RegistryConfig, RegistryConfigError, RegistryHost,
};

/// Entry points of the fuzz targets in `fuzz/` (cargo-fuzz), also run over
/// their seed corpus by the workspace's tests.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::image::registry_config::fuzzing::registry_config;
}

/// Label and annotation keys berth puts on every containerd object it owns, so a
/// restarted agent can find what it owns (the kubelet's keys where they exist).
pub mod labels {
    pub const POD_UID: &str = "io.kubernetes.pod.uid";
    pub const POD_NAME: &str = "io.kubernetes.pod.name";
    pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
    pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
    pub const CONTAINER_KIND: &str = "io.berth.container.kind";
    pub const ATTEMPT: &str = "io.kubernetes.container.restartCount";
    pub const SANDBOX_ID: &str = "io.berth.sandbox.id";
    /// Marks a sandbox's record (the kubelet's "POD" container).
    pub const SANDBOX: &str = "io.berth.sandbox";
    /// Marks every object berth made.
    pub const MANAGED: &str = "io.berth.managed";
    /// On a sandbox: the pod's creationTimestamp and startTime (RFC 3339).
    pub const POD_CREATED: &str = "io.berth.pod.created";
    pub const POD_STARTED: &str = "io.berth.pod.started";
}
