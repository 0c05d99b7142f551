//! The connection to containerd: one channel, a namespace interceptor, and the
//! one place where gRPC status codes become [`RuntimeError`]s.

use std::path::PathBuf;

use berth_runtime::{RuntimeError, RuntimeErrorKind};
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::Channel;

/// Settings of the containerd adapter.
#[derive(Debug, Clone)]
pub struct ContainerdConfig {
    pub socket: PathBuf,
    pub namespace: String,
    /// berth's state directory (`--root-dir`): CNI results, netns pins, pod dirs.
    pub root_dir: PathBuf,
    /// Where CNI plugins are looked for, in order.
    pub cni_bin_dirs: Vec<PathBuf>,
    pub cni_conf_dir: PathBuf,
    /// The pause image; `None` means the built-in one.
    pub pod_infra_image: Option<String>,
    /// The `berth` binary, spawned by the shim as the container log writer.
    pub logger_binary: PathBuf,
    /// How long a call a task's shim must answer on the way to removing it
    /// (kill, wait for a kill, delete) may take before the shim is taken
    /// for wedged ([`DEFAULT_SHIM_TIMEOUT`]).
    pub shim_timeout: std::time::Duration,
}

/// Far more than a shim that works takes (milliseconds), short enough that a
/// delete does not hang on one that stopped answering.
pub const DEFAULT_SHIM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A connected containerd, in one namespace.
#[derive(Clone)]
pub struct Containerd {
    pub(crate) channel: Channel,
    pub(crate) config: std::sync::Arc<ContainerdConfig>,
    /// Registry settings and clients for pulls.
    pub(crate) registries: std::sync::Arc<crate::image::Registries>,
    /// Pulls under way, shared by clones.
    pub(crate) pulls: crate::image::Flights,
    /// What this connection keeps between calls, shared by clones.
    pub(crate) state: std::sync::Arc<AdapterState>,
}

/// The adapter's memory of one containerd and namespace: waiters for task
/// starts, sandboxes stopped, resolved images, the OOM event watcher.
/// It lives on the instance (and its clones), never in a global, so two
/// instances never see each other's; its background tasks stop once the
/// last clone is dropped.
#[derive(Default)]
pub(crate) struct AdapterState {
    /// When this instance connected: what was made before, an agent that
    /// ran before made.
    pub(crate) connected_at: std::sync::OnceLock<jiff::Timestamp>,
    pub(crate) starts: crate::task::Starts,
    pub(crate) stopped_sandboxes: crate::sandbox::Stopped,
    pub(crate) prepared: crate::container::Prepared,
    pub(crate) resolved: crate::image::Resolutions,
    pub(crate) oom_watcher: tokio::sync::Mutex<Option<std::sync::Arc<crate::events::OomWatcher>>>,
    /// Cancelled on drop: stops the event watcher.
    pub(crate) dropped: tokio_util::sync::CancellationToken,
}

impl Drop for AdapterState {
    fn drop(&mut self) {
        self.dropped.cancel();
    }
}

/// Locks a mutex whose holder may have panicked: no state here is left
/// half-written by a panic.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Adds the `containerd-namespace` header to every request.
#[derive(Clone)]
pub(crate) struct NamespaceInterceptor {
    namespace: MetadataValue<tonic::metadata::Ascii>,
    lease: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl Interceptor for NamespaceInterceptor {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut()
            .insert("containerd-namespace", self.namespace.clone());
        if let Some(lease) = &self.lease {
            req.metadata_mut().insert("containerd-lease", lease.clone());
        }
        Ok(req)
    }
}

pub(crate) type Svc = InterceptedService<Channel, NamespaceInterceptor>;

impl Containerd {
    /// Connects to containerd's socket. The connection is lazy in tonic; a
    /// version call proves it is up.
    pub async fn connect(config: ContainerdConfig) -> Result<Self, RuntimeError> {
        let channel = containerd_client::connect(&config.socket)
            .await
            .map_err(|e| {
                RuntimeError::new(
                    RuntimeErrorKind::Unavailable,
                    format!("connect to containerd at {}: {e}", config.socket.display()),
                )
            })?;
        let this = Self {
            channel,
            config: std::sync::Arc::new(config),
            registries: Default::default(),
            pulls: Default::default(),
            state: Default::default(),
        };
        let _ = this.state.connected_at.set(jiff::Timestamp::now());
        this.version().await?;
        Ok(this)
    }

    /// containerd's version (its Version service).
    pub async fn version(&self) -> Result<berth_runtime::RuntimeVersion, RuntimeError> {
        let mut client = containerd_client::services::v1::version_client::VersionClient::new(
            self.channel.clone(),
        );
        let reply = client.version(()).await.map_err(status_error)?.into_inner();
        Ok(berth_runtime::RuntimeVersion {
            name: "containerd".into(),
            version: reply.version,
        })
    }

    /// Uses `registries` (credentials, plain-HTTP and insecure hosts,
    /// mirrors) for pulls from now on; the default reaches every registry
    /// over verified HTTPS, anonymously.
    pub fn with_registries(mut self, registries: crate::RegistryConfig) -> Self {
        self.registries = std::sync::Arc::new(crate::image::Registries::new(registries));
        self
    }

    pub fn config(&self) -> &ContainerdConfig {
        &self.config
    }

    pub(crate) fn interceptor(&self, lease: Option<&str>) -> NamespaceInterceptor {
        NamespaceInterceptor {
            namespace: self
                .config
                .namespace
                .parse()
                .expect("namespace was validated as a header value"),
            lease: lease.map(|l| l.parse().expect("lease ids are ascii")),
        }
    }

    /// The intercepted channel every typed client is built on.
    pub(crate) fn svc(&self) -> Svc {
        InterceptedService::new(self.channel.clone(), self.interceptor(None))
    }

    /// The same, with requests inside a lease (protects new objects from GC).
    pub(crate) fn svc_leased(&self, lease: &str) -> Svc {
        InterceptedService::new(self.channel.clone(), self.interceptor(Some(lease)))
    }
}

/// Maps a gRPC status to a runtime error. Only NotFound and AlreadyExists are
/// reliably typed by containerd; state conflicts arrive as `Unknown` text.
pub(crate) fn status_error(status: tonic::Status) -> RuntimeError {
    use tonic::Code;
    let kind = match status.code() {
        _ if is_unavailable(&status) => RuntimeErrorKind::Unavailable,
        Code::NotFound => RuntimeErrorKind::NotFound,
        Code::AlreadyExists => RuntimeErrorKind::AlreadyExists,
        Code::DeadlineExceeded => RuntimeErrorKind::Timeout,
        Code::InvalidArgument => RuntimeErrorKind::InvalidSpec,
        _ => RuntimeErrorKind::Other,
    };
    RuntimeError::new(kind, status.message().to_string())
}

/// Whether a call failed because containerd could not be reached or the
/// connection broke, rather than because containerd answered.
pub(crate) fn is_unavailable(status: &tonic::Status) -> bool {
    use tonic::Code;
    match status.code() {
        Code::Unavailable | Code::Cancelled => true,
        // A connection torn mid-call surfaces as a transport error.
        Code::Unknown | Code::Internal => {
            let text = status.message().to_ascii_lowercase();
            [
                "transport error",
                "connection",
                "broken pipe",
                "h2 protocol error",
            ]
            .iter()
            .any(|t| text.contains(t))
        }
        _ => false,
    }
}
