//! The runtime boundary: what the pod worker asks of a container runtime.
//!
//! The pod worker speaks in sandboxes, containers, images and exits. containerd is
//! the one real implementation (`berth-containerd`); the test kit has an in-memory
//! one that runs under tokio's paused clock. No gRPC or protobuf type crosses here.
//!
//! # Layout
//!
//! - `ContainerRuntime` and `ImageService` (this file): the verbs.
//! - `types`, `error`: what crosses the boundary.
//! - `fake` (feature `fake`): the in-memory runtime of the worker's tests.
//! - `contract` (feature `contract`): the checks every runtime passes.
//! - `files`: berth's private records on disk; `host`: node facts.
//! - `cgroup_layout`: where pods and containers sit in the cgroup tree.

pub mod cgroup_layout;
#[cfg(feature = "contract")]
pub mod contract;
mod error;
#[cfg(feature = "fake")]
pub mod fake;
pub mod files;
mod host;
mod types;

use std::future::Future;
use std::time::Duration;

pub use error::{RuntimeError, RuntimeErrorKind};
pub use host::{
    kernel_version, mount_points, node_hostname, parse_kernel_version, unescape_mount_field,
};
pub use types::*;

/// A container runtime as the pod worker sees it.
///
/// Removal verbs are idempotent: removing what is already gone succeeds, so the
/// termination path can be retried blindly.
pub trait ContainerRuntime: Send + Sync + 'static {
    /// The image as present in the runtime, or `None` when it is absent.
    fn image_status(
        &self,
        image: &str,
    ) -> impl Future<Output = Result<Option<ImageInfo>, RuntimeError>> + Send;

    /// Pulls `image` from its registry (or a mirror) into the runtime and
    /// returns it, present and unpacked. A tag is always resolved again, so a
    /// moved tag updates the image (the `Always` policy); blobs present
    /// already are not fetched again. Concurrent pulls of one reference share
    /// one fetch. Per-blob progress goes to `progress` when given.
    fn pull_image(
        &self,
        image: &str,
        progress: Option<tokio::sync::mpsc::UnboundedSender<PullProgress>>,
    ) -> impl Future<Output = Result<ImageInfo, RuntimeError>> + Send {
        self.pull_image_with_credentials(image, progress, None)
    }

    /// `pull_image` with `credentials` for the image's own registry (a
    /// mirror keeps its configured auth), as the CRI's `PullImage` with an
    /// `AuthConfig`; `None` is `pull_image`. Concurrent pulls share one
    /// fetch only when their credentials are the same.
    fn pull_image_with_credentials(
        &self,
        image: &str,
        progress: Option<tokio::sync::mpsc::UnboundedSender<PullProgress>>,
        credentials: Option<&RegistryCredentials>,
    ) -> impl Future<Output = Result<ImageInfo, RuntimeError>> + Send;

    /// Mounts the root filesystem of `image` (present) read-only at
    /// `target`, as containerd's CRI mounts an image volume: a view
    /// snapshot of the image's top layer, named `key`, that survives
    /// restarts of the runtime. A `target` mounted already is kept as it is,
    /// so an agent that restarts adopts its pods' image volumes.
    fn mount_image_volume(
        &self,
        image: &ImageInfo,
        key: &str,
        target: &std::path::Path,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Unmounts `target` and removes the snapshot `key`; either being gone
    /// already is fine.
    fn unmount_image_volume(
        &self,
        key: &str,
        target: &std::path::Path,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Creates the pod's sandbox: its network (CNI, unless host network), IPC
    /// and UTS namespaces, a pause process when the pod shares its process
    /// namespace, the pod cgroup.
    fn create_sandbox(
        &self,
        config: &SandboxConfig,
    ) -> impl Future<Output = Result<SandboxInfo, RuntimeError>> + Send;

    /// Stops the sandbox, as CRI's StopPodSandbox: the pod network is torn
    /// down (CNI DEL) and the pause process, if any, stopped. Idempotent; it
    /// need not wait for the pod's containers to be removed (their
    /// processes must have exited).
    fn stop_sandbox(
        &self,
        sandbox: &SandboxInfo,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Arms a waiter for the exit of the sandbox's pause process, the PID 1
    /// of a pod that shares its process namespace; `None` for a sandbox
    /// without one (pinned namespaces, which nothing in the pod can end).
    /// A pause already gone is an exit at once.
    fn wait_sandbox(
        &self,
        sandbox: &SandboxInfo,
    ) -> impl Future<Output = Result<Option<ExitWaiter>, RuntimeError>> + Send;

    /// Tears the sandbox down: what [`Self::stop_sandbox`] does unless it
    /// was done, then the namespaces, `/dev/shm`, the pod cgroup and the
    /// record. The pod's containers must be removed first.
    fn remove_sandbox(
        &self,
        sandbox: &SandboxInfo,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Sets up the network of a sandbox created with
    /// [`SandboxConfig::defer_network`] (`config` is the one it was created
    /// with). On failure whatever was added is removed again; the sandbox
    /// stays, for the caller to remove.
    fn attach_network(
        &self,
        sandbox: &SandboxInfo,
        config: &SandboxConfig,
    ) -> impl Future<Output = Result<PodNetwork, RuntimeError>> + Send;
    /// Creates a container in the sandbox (not started).
    fn create_container(
        &self,
        sandbox: &SandboxInfo,
        config: &ContainerConfig,
    ) -> impl Future<Output = Result<ContainerId, RuntimeError>> + Send;

    /// Arms a waiter for the container's exit. Call it before `start_container`,
    /// so that an exit that comes at once is never missed; it may also be armed for
    /// a container found running after an agent restart.
    fn wait_container(
        &self,
        id: &ContainerId,
    ) -> impl Future<Output = Result<ExitWaiter, RuntimeError>> + Send;

    /// Does what can be done of a created container's start before the
    /// pod's network is up (containerd: the task, with its shim and runc's
    /// create), so that [`Self::start_container`] only has what is left.
    /// On failure nothing is kept: `start_container` tries it all again
    /// and reports what fails.
    fn prepare_start(
        &self,
        id: &ContainerId,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// Starts a created container; returns when its process runs.
    fn start_container(
        &self,
        id: &ContainerId,
    ) -> impl Future<Output = Result<Started, RuntimeError>> + Send;

    /// Sends a signal to every process of the container. A container that is
    /// already gone is not an error.
    fn signal_container(
        &self,
        id: &ContainerId,
        signal: Signal,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Removes the container's task, record and snapshot.
    fn remove_container(
        &self,
        id: &ContainerId,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// The last resort when the runtime stops answering for a pod (a verb
    /// gave a `Timeout` error): ends every process of the sandbox's pod by
    /// force, the runtime's own helpers for it included (containerd: the
    /// pod's shim), so that the removal verbs answer again. The containers
    /// are left exited, to be removed as usual.
    fn force_stop_sandbox(
        &self,
        sandbox: &SandboxInfo,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Runs a command in a running container and collects its output.
    fn exec(
        &self,
        id: &ContainerId,
        command: &[String],
        timeout: Option<Duration>,
    ) -> impl Future<Output = Result<ExecOutput, RuntimeError>> + Send;

    /// Starts a command in a running container with its streams attached
    /// (stdin, a terminal), for interactive exec. The process is removed
    /// from the runtime once it exited, or killed when the session's
    /// `control` is dropped first.
    fn exec_stream(
        &self,
        id: &ContainerId,
        request: &ExecStreamRequest,
    ) -> impl Future<Output = Result<ExecSession, RuntimeError>> + Send {
        let _ = request;
        let message = format!("container {id}: this runtime cannot stream an exec");
        async move { Err(RuntimeError::other(message)) }
    }

    /// Opens the stdin a running container kept open (`stdin: true`) for an
    /// attach session to write into. Closing the writer leaves the
    /// container's stdin open; [`ContainerRuntime::close_stdin`] ends it.
    fn attach_stdin(
        &self,
        id: &ContainerId,
    ) -> impl Future<Output = Result<ExecWriter, RuntimeError>> + Send {
        let message = format!("container {id}: this runtime cannot attach to stdin");
        async move { Err(RuntimeError::other(message)) }
    }

    /// Closes a running container's stdin for good: the process reads its
    /// end (`stdinOnce`, after the first attach session).
    fn close_stdin(
        &self,
        id: &ContainerId,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send {
        let message = format!("container {id}: this runtime cannot close stdin");
        async move { Err(RuntimeError::other(message)) }
    }

    /// Resizes a running container's terminal (`tty: true`).
    fn resize_terminal(
        &self,
        id: &ContainerId,
        width: u16,
        height: u16,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send {
        let _ = (width, height);
        let message = format!("container {id}: this runtime cannot resize a terminal");
        async move { Err(RuntimeError::other(message)) }
    }

    /// The network namespace a running container's process is in (its
    /// pod's), for port-forward.
    fn network_namespace(
        &self,
        id: &ContainerId,
    ) -> impl Future<Output = Result<std::path::PathBuf, RuntimeError>> + Send {
        let message = format!("container {id}: this runtime cannot name its network namespace");
        async move { Err(RuntimeError::other(message)) }
    }

    /// Gives a running container's cgroup new settings, without a restart
    /// (the CRI's `UpdateContainerResources`).
    fn update_container_resources(
        &self,
        id: &ContainerId,
        resources: &Resources,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// The memory a running container uses now, in bytes (its cgroup's
    /// usage), as the kubelet reads it before lowering a memory limit.
    fn container_memory_usage(
        &self,
        id: &ContainerId,
    ) -> impl Future<Output = Result<u64, RuntimeError>> + Send;

    /// Bytes the container's writable layer takes on disk (the CRI's
    /// `ContainerStats.writable_layer`): what the container wrote to its
    /// root filesystem, for the eviction manager's local storage limits.
    fn writable_layer_usage(
        &self,
        id: &ContainerId,
    ) -> impl Future<Output = Result<u64, RuntimeError>> + Send {
        let message = format!("container {id}: this runtime cannot measure its writable layer");
        async move { Err(RuntimeError::other(message)) }
    }

    /// Everything the runtime holds that carries berth's labels, for adoption
    /// after an agent restart and for cleanup of orphans.
    fn list(&self) -> impl Future<Output = Result<Observed, RuntimeError>> + Send;

    /// The image of every container the runtime holds, running or not, as
    /// their records name it. No task is asked, so a runtime that does not
    /// answer for one pod (a wedged shim) cannot hold this up: for passes
    /// that run periodically (image GC).
    fn container_images(&self) -> impl Future<Output = Result<Vec<String>, RuntimeError>> + Send;

    /// Releases what no sandbox or container of the runtime owns: the
    /// leftovers of a start the agent died in (network attachments,
    /// namespace pins, mounts, leases, helper processes). Call it before any
    /// pod starts.
    fn reclaim(&self) -> impl Future<Output = Result<Reclaimed, RuntimeError>> + Send;

    /// The runtime's name and version (the CRI's `Version`): the node
    /// reports them, and an answer is the runtime's sign of life.
    fn version(&self) -> impl Future<Output = Result<RuntimeVersion, RuntimeError>> + Send;
}

/// What [`ContainerRuntime::version`] answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeVersion {
    /// `containerd`, as the node's `containerRuntimeVersion` prefixes it.
    pub name: String,
    pub version: String,
}

/// The images a runtime holds, for `berth image` (the CRI's image service).
pub trait ImageService: Send + Sync + 'static {
    /// Every image present.
    fn list_images(&self) -> impl Future<Output = Result<Vec<ImageInfo>, RuntimeError>> + Send;

    /// Imports an image archive (OCI image layout or docker-archive tar).
    fn import_image(
        &self,
        path: &std::path::Path,
    ) -> impl Future<Output = Result<Vec<ImageInfo>, RuntimeError>> + Send;

    /// Removes the image record `reference` (normalized as pulls name it);
    /// `NotFound` when there is none. Content and snapshots no other image
    /// uses are then garbage-collected by the runtime.
    fn remove_image(
        &self,
        reference: &str,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;
}
