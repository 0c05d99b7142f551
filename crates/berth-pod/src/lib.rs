//! The pod worker: one task per pod UID that owns the pod, as the kubelet's
//! `podWorkers` do. It creates the sandbox, runs init containers one after
//! another, starts and restarts the main containers by `restartPolicy` with
//! CrashLoopBackOff, and on deletion stops everything within the grace period.
//!
//! The worker drives a [`ContainerRuntime`](berth_runtime::ContainerRuntime) and
//! reports through a [`PodSink`]; it is unit-tested against the in-memory runtime
//! under tokio's paused clock.

mod backoff;
mod container_config;
mod dirs;
mod handle;
mod hooks;
mod http_get;
mod image_pull;
mod mount_table;
mod probe;
pub mod reasons;
mod record;
mod security;
mod sink;
mod start;
mod status;
mod subpath;
mod terminate;
mod termination_message;
mod timeline;
mod volume_ownership;
mod worker;

pub use backoff::BackoffPolicy;
pub use dirs::{remove_orphaned_pod_dirs, PodDirs};
pub use handle::{spawn, Adopted, PodWorkerHandle, Termination};
pub use sink::{EventType, PodEvent, PodSink};
pub use timeline::{TimelineEntry, TimelineStep};
pub use worker::WorkerConfig;

#[cfg(test)]
mod tests;
