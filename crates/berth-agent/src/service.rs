//! What the local API serves: the agent's pods, as the Kubernetes API would.
//! The API server and the CLI depend only on this trait, so they can be tested
//! against an in-memory implementation.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

/// A failure, as the Kubernetes API reports it: a `Status` with an HTTP code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 404 `NotFound`.
    #[error("{0}")]
    NotFound(String),
    /// 409 `AlreadyExists`.
    #[error("{0}")]
    AlreadyExists(String),
    /// 409 `Conflict`: the object is in use (an image a container runs on).
    #[error("{0}")]
    Conflict(String),
    /// 422 `Invalid`: the message names the field.
    #[error("{0}")]
    Invalid(String),
    /// 400 `BadRequest`: the body could not be read.
    #[error("{0}")]
    BadRequest(String),
    /// 500 `InternalError`.
    #[error("{0}")]
    Internal(String),
}

/// A change to a pod, for `get pods -w` (the Kubernetes watch event types).
/// The pod is shared: a broadcast channel keeps its last events, and a copy
/// in each of them (and per receiver) would be most of the agent's memory.
#[derive(Debug, Clone)]
pub enum WatchEvent {
    Added(Arc<Pod>),
    Modified(Arc<Pod>),
    Deleted(Arc<Pod>),
}

impl WatchEvent {
    pub fn pod(&self) -> &Pod {
        match self {
            WatchEvent::Added(pod) | WatchEvent::Modified(pod) | WatchEvent::Deleted(pod) => pod,
        }
    }
}

/// What `logs` asks for.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub container: Option<String>,
    pub previous: bool,
    pub follow: bool,
    pub tail_lines: Option<u64>,
}

/// Where a container's log is and whether more may come.
#[derive(Debug, Clone)]
pub struct LogTarget {
    pub path: PathBuf,
    /// The container instance writing to it is still running.
    pub running: bool,
}

/// An image a pull left in the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledImage {
    pub image: berth_runtime::ImageInfo,
    /// The runtime held this very image (same digest) before the pull.
    pub up_to_date: bool,
}

/// The agent's pods, as served by the local API.
pub trait PodService: Send + Sync + 'static {
    /// Creates a pod (POST). Defaults are applied and the pod validated; an
    /// existing name gives `AlreadyExists`.
    fn create(
        &self,
        namespace: &str,
        pod: Pod,
    ) -> impl Future<Output = Result<Pod, ApiError>> + Send;

    /// Replaces a pod's spec (PUT); only what the API server allows to change.
    fn replace(
        &self,
        namespace: &str,
        name: &str,
        pod: Pod,
    ) -> impl Future<Output = Result<Pod, ApiError>> + Send;

    /// Replaces a pod's ephemeral containers (the `ephemeralcontainers`
    /// subresource): everything else of `pod` is ignored, and they can only
    /// be added. Services that run no pods do not serve it.
    fn replace_ephemeral_containers(
        &self,
        namespace: &str,
        name: &str,
        pod: Pod,
    ) -> impl Future<Output = Result<Pod, ApiError>> + Send {
        let _ = (namespace, pod);
        let name = name.to_string();
        async move { Err(ApiError::NotFound(format!("pods \"{name}\" not found"))) }
    }

    fn get(&self, namespace: &str, name: &str) -> Result<Pod, ApiError>;

    /// All pods, or those of one namespace.
    fn list(&self, namespace: Option<&str>) -> Vec<Pod>;

    /// Starts a graceful delete; returns the pod as it is now (terminating).
    fn delete(
        &self,
        namespace: &str,
        name: &str,
        grace_period_seconds: Option<i64>,
    ) -> impl Future<Output = Result<Pod, ApiError>> + Send;

    /// Every change from now on.
    fn watch(&self) -> tokio::sync::broadcast::Receiver<WatchEvent>;

    /// Which log file `logs` reads.
    fn log_target(
        &self,
        namespace: &str,
        name: &str,
        options: &LogOptions,
    ) -> Result<LogTarget, ApiError>;

    /// Runs a command in a running container.
    fn exec(
        &self,
        namespace: &str,
        name: &str,
        container: Option<&str>,
        command: Vec<String>,
    ) -> impl Future<Output = Result<berth_runtime::ExecOutput, ApiError>> + Send;

    /// Starts a command in a running container with its streams attached
    /// (interactive exec). A container the pod does not have is `NotFound`.
    fn exec_stream(
        &self,
        namespace: &str,
        name: &str,
        container: Option<&str>,
        request: berth_runtime::ExecStreamRequest,
    ) -> impl Future<Output = Result<berth_runtime::ExecSession, ApiError>> + Send {
        let _ = (namespace, container, request);
        let message = format!("cannot exec into pod {name}: this agent does not stream");
        async move { Err(ApiError::Internal(message)) }
    }

    /// A running container's stdin and terminal, for attach: its stdin
    /// when `stdin` is asked for and the container has one (`stdin: true`;
    /// otherwise the input is dropped, as containerd's CRI does).
    fn attach_io(
        &self,
        namespace: &str,
        name: &str,
        container: Option<&str>,
        stdin: bool,
    ) -> impl Future<Output = Result<AttachIo, ApiError>> + Send {
        let _ = (namespace, container, stdin);
        let message = format!("cannot attach to pod {name}: this agent does not stream");
        async move { Err(ApiError::Internal(message)) }
    }

    /// The network namespace of a running pod, for port-forward.
    fn pod_network(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<PathBuf, ApiError>> + Send {
        let _ = namespace;
        let message = format!("cannot forward to pod {name}: this agent does not stream");
        async move { Err(ApiError::Internal(message)) }
    }

    /// Imports an image archive (OCI layout or docker-archive tar) that the
    /// agent can read at `path`.
    fn import_image(
        &self,
        path: PathBuf,
    ) -> impl Future<Output = Result<Vec<berth_runtime::ImageInfo>, ApiError>> + Send;

    /// The images in the runtime.
    fn list_images(
        &self,
    ) -> impl Future<Output = Result<Vec<berth_runtime::ImageInfo>, ApiError>> + Send;

    /// Pulls `reference` from its registry (tags are always resolved again),
    /// reporting per-blob progress to `progress`. Registry failures are
    /// `Internal` with the registry's message.
    fn pull_image(
        &self,
        reference: &str,
        progress: tokio::sync::mpsc::UnboundedSender<berth_runtime::PullProgress>,
    ) -> impl Future<Output = Result<PulledImage, ApiError>> + Send {
        let _ = progress;
        let message = format!("cannot pull {reference}: this agent has no image puller");
        async move { Err(ApiError::Internal(message)) }
    }

    /// Removes the image `reference` and returns its normalized reference:
    /// `NotFound` when absent, `Conflict` while a running or created
    /// container of a known pod uses it (as `docker rmi` refuses without
    /// `--force`).
    fn remove_image(
        &self,
        reference: &str,
    ) -> impl Future<Output = Result<String, ApiError>> + Send {
        let message = format!("image \"{reference}\" not found");
        async move { Err(ApiError::NotFound(message)) }
    }

    /// Events about pods of one namespace (all when `None`), oldest first.
    fn events(&self, namespace: Option<&str>) -> Vec<k8s_openapi::api::core::v1::Event> {
        let _ = namespace;
        Vec::new()
    }

    /// The node's metrics; services without any serve no `/metrics`.
    fn metrics(&self) -> Option<&crate::metrics::NodeMetrics> {
        None
    }

    /// A pod's lifecycle timeline, oldest first. Services that keep none
    /// know no pod to trace.
    fn timeline(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Vec<berth_pod::TimelineEntry>, ApiError> {
        let _ = namespace;
        Err(ApiError::NotFound(format!("pods \"{name}\" not found")))
    }
}

/// What attach reaches of a running container besides its output.
pub struct AttachIo {
    /// The container runs on a terminal (its spec's `tty`): its output is
    /// one stream, and resizes go to its terminal.
    pub tty: bool,
    /// The container's `stdinOnce`: its stdin is closed once a session
    /// that wrote to it ends.
    pub stdin_once: bool,
    /// The container's stdin, when asked for and there is one.
    pub stdin: Option<berth_runtime::ExecWriter>,
    /// Resizes, and `CloseStdin` for the end of a `stdinOnce` stdin.
    pub control: tokio::sync::mpsc::UnboundedSender<berth_runtime::ExecSignal>,
}
