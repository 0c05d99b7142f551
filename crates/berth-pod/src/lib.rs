//! The pod worker: one task per pod UID that owns the pod, as the kubelet's
//! `podWorkers` do. It creates the sandbox, runs init containers one after
//! another, starts and restarts the main containers by `restartPolicy` with
//! CrashLoopBackOff, and on deletion stops everything within the grace period.
//!
//! The worker drives a [`ContainerRuntime`](berth_runtime::ContainerRuntime) and
//! reports through a [`PodSink`]; it is unit-tested against the in-memory runtime
//! under tokio's paused clock.
//!
//! # Layout
//!
//! Start with `worker`: its `run` loop owns the pod and calls `sync` once per
//! turn, and `terminate` once it is deleted. Where the pod is in its life is
//! one value, `stage::Stage` (preparing, running, finished in a phase,
//! terminating). A pod's life is decided in `plan/`: one pure function,
//! `plan(view, now) -> Plan`, over a read-only `PodView` of what the worker
//! knows (stage, spec, container records, sandbox, back-off, deadline), as
//! the kubelet's `computePodActions` and, for a deleted pod, its
//! `killPodWithSyncResult`; its rules and their table test live there. It is
//! carried out in `execute`: `sync` plans, executes the plan in the kubelet's
//! `SyncPod` order (the pod's failure, kills, volumes and sandbox, the next
//! init container, sidecars, regular containers), and plans again while the
//! last plan changed what the next one sees; `terminate` plans the pod's end
//! once (which containers stop, in what order, with which grace period and
//! preStop hooks; what is removed) and carries it out. `kill` is the one
//! kill path, taking a `KillReason` (a pod's deletion, the deadline, an
//! eviction, sidecars after the main containers, a failed probe or hook, a
//! changed container, a restart of all containers). `restart_all` carries
//! out a `RestartAllContainers` rule's restart and keeps it across an
//! agent restart.
//! The rest are the steps they call:
//!
//! - `start` (with `image_pull`, `container_config`, `env_files`, `subpath`,
//!   `security`):
//!   one container instance from spec to running.
//! - `sandbox`: the pod's sandbox (absent, ready, or found dead), made
//!   and replaced; `teardown`: a deleted pod's removal.
//! - `record`: what the worker knows of each container; `status`: the API
//!   status built from it; `backoff`: CrashLoopBackOff; `restart_policy`:
//!   the pod phase as an enum.
//! - `probe/`, `hooks`, `http_get`: probes and lifecycle hooks, whose
//!   failures the next plan turns into kills.
//! - `dirs`, `mount_table`, `volume_ownership`: the pod's files on the host;
//!   `saved_conditions`, `saved_failure`: what outlives an agent restart.
//! - `handle`: the supervisor's side (newest spec wins, grace only shrinks,
//!   an eviction is asked once);
//!   `sink`, `timeline`, `reasons`: what the worker reports.
//!
//! The rules behind them are in `docs/kubelet-semantics.md`.

mod backoff;
mod container_config;
mod dirs;
mod dns;
mod env_files;
mod execute;
mod handle;
mod hooks;
mod hostname;
mod http_get;
mod image_pull;
mod image_volume;
mod keyring;
mod kill;
mod mount_table;
mod plan;
mod probe;
mod record;
mod resize;
mod resources;
mod restart_all;
mod restart_policy;
mod sandbox;
mod saved_conditions;
mod saved_failure;
mod security;
mod sink;
mod stage;
mod start;
mod status;
mod subpath;
mod teardown;
mod termination_message;
mod timeline;
mod volume_ownership;
mod worker;

pub use backoff::BackoffPolicy;
pub use berth_api::reasons;
pub use dirs::{remove_orphaned_pod_dirs, PodDirs, DATA_LINK};
pub use dns::ClusterDns;
pub use handle::{spawn, Adopted, PodWorkerHandle, Termination};
pub use image_volume::remove_orphaned_image_volumes;
pub use keyring::PullSecret;
pub use resize::NodeAllocations;
pub use sink::{EventType, PodEvent, PodSink, ProbeAttempt, ProbeResult};
pub use timeline::{TimelineEntry, TimelineStep};
pub use worker::WorkerConfig;

/// The pull secrets read for a pod, each a secret or its name and why it
/// could not be read.
pub type PullSecretsRead<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Vec<Result<PullSecret, (String, String)>>> + Send + 'a>,
>;

/// What cluster mode tells a container's environment: the service
/// variables of its namespace, and the configMaps and secrets its env
/// references name.
pub trait ClusterData: Send + Sync + berth_api::env::EnvObjects {
    /// The variables for a container of a pod in `namespace`;
    /// `service_links` is the pod's `enableServiceLinks` (the `kubernetes`
    /// service's are given either way). An error (the services were never
    /// read, and `pod` is not a static pod) fails the container's start
    /// with `CreateContainerConfigError`.
    fn service_env(
        &self,
        pod: &k8s_openapi::api::core::v1::Pod,
        namespace: &str,
        service_links: bool,
    ) -> Result<Vec<(String, String)>, String>;

    /// The secrets `names` in `namespace`, read now (the kubelet's secret
    /// manager), each with its name; a secret that cannot be read is an
    /// `Err` with its name and why.
    fn pull_secrets<'a>(&'a self, namespace: &'a str, names: &'a [String]) -> PullSecretsRead<'a>;
}

/// A shared [`ClusterData`].
#[derive(Clone)]
pub struct ClusterDataSource(pub std::sync::Arc<dyn ClusterData>);

impl std::fmt::Debug for ClusterDataSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterDataSource")
    }
}

#[cfg(test)]
mod tests;
