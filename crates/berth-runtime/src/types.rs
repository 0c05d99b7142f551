use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use jiff::Timestamp;
use tokio::sync::oneshot;

use crate::RuntimeError;

/// Which pod an object belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodRef {
    pub uid: String,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for PodRef {
    /// The kubelet's `format.Pod`: `name_namespace(uid)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}({})", self.name, self.namespace, self.uid)
    }
}

/// A runtime container id (without the `containerd://` scheme).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerId(pub String);

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A runtime sandbox id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SandboxId(pub String);

impl fmt::Display for SandboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A POSIX signal number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signal(pub i32);

impl Signal {
    pub const TERM: Signal = Signal(15);
    pub const KILL: Signal = Signal(9);

    const NAMES: [(&'static str, i32); 31] = [
        ("HUP", 1),
        ("INT", 2),
        ("QUIT", 3),
        ("ILL", 4),
        ("TRAP", 5),
        ("ABRT", 6),
        ("BUS", 7),
        ("FPE", 8),
        ("KILL", 9),
        ("USR1", 10),
        ("SEGV", 11),
        ("USR2", 12),
        ("PIPE", 13),
        ("ALRM", 14),
        ("TERM", 15),
        ("STKFLT", 16),
        ("CHLD", 17),
        ("CONT", 18),
        ("STOP", 19),
        ("TSTP", 20),
        ("TTIN", 21),
        ("TTOU", 22),
        ("URG", 23),
        ("XCPU", 24),
        ("XFSZ", 25),
        ("VTALRM", 26),
        ("PROF", 27),
        ("WINCH", 28),
        ("IO", 29),
        ("PWR", 30),
        ("SYS", 31),
    ];

    /// Parses `SIGTERM`, `TERM`, `sigterm` or `15`, as image STOPSIGNALs are written.
    pub fn parse(text: &str) -> Option<Signal> {
        let text = text.trim();
        if let Ok(n) = text.parse::<i32>() {
            return (1..=64).contains(&n).then_some(Signal(n));
        }
        let upper = text.to_ascii_uppercase();
        let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
        Self::NAMES
            .iter()
            .find(|(name, _)| *name == bare)
            .map(|(_, n)| Signal(*n))
    }

    /// `SIGTERM`, or the number for signals without a name.
    pub fn name(self) -> String {
        Self::NAMES
            .iter()
            .find(|(_, n)| *n == self.0)
            .map(|(name, _)| format!("SIG{name}"))
            .unwrap_or_else(|| self.0.to_string())
    }
}

/// The parts of an image's config that shape a container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=value` strings.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub stop_signal: Option<String>,
}

/// An image present in the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// The normalized reference, e.g. `docker.io/library/busybox:latest`.
    pub reference: String,
    /// The manifest digest, `sha256:...`.
    pub digest: String,
    pub size: u64,
    pub config: ImageConfig,
}

impl ImageInfo {
    /// The kubelet's `imageID` as containerd reports it: `repo@sha256:...`.
    pub fn image_id(&self) -> String {
        let repo = match self.reference.rfind(['@', ':']) {
            Some(i) if !self.reference[i..].contains('/') => &self.reference[..i],
            _ => &self.reference,
        };
        format!("{repo}@{}", self.digest)
    }
}

/// How far a pull has fetched one blob (a layer, or the config), for
/// `berth image pull`'s progress display. Reports for a blob come in order;
/// the last one has `done == total`. A blob already present is reported once,
/// complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullProgress {
    /// The blob's digest, `sha256:...`.
    pub layer: String,
    pub done: u64,
    pub total: u64,
}

/// A user name and password for one pull from an image's registry (from
/// a pod's image pull secrets), as the CRI's `AuthConfig`. `Debug` shows
/// only the user name.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RegistryCredentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A host port published by the pod's network (CNI portmap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: String,
    pub host_ip: Option<String>,
}

/// What the runtime needs to make a sandbox.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    pub pod: PodRef,
    pub hostname: String,
    pub host_network: bool,
    /// The pod's log directory, `<log-dir>/<ns>_<name>_<uid>`.
    pub log_dir: PathBuf,
    pub port_mappings: Vec<PortMapping>,
    /// The pod's own labels.
    pub labels: BTreeMap<String, String>,
    /// Kept with the sandbox for a restarted agent.
    pub times: PodTimes,
    pub security: SandboxSecurity,
    /// The pod network is left to [`crate::ContainerRuntime::attach_network`]
    /// (its CNI ADD), so that the pod's first container can be made while
    /// it is set up. Ignored on host network.
    pub defer_network: bool,
}

/// The pod network of a sandbox, once set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNetwork {
    pub ips: Vec<IpAddr>,
    pub ready_at: Timestamp,
}

/// Whose PID namespace a pod's processes live in (CRI's `NamespaceMode` for PID).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum PidNamespace {
    /// Each container its own.
    #[default]
    Container,
    /// The sandbox's, shared by all of the pod's containers (`shareProcessNamespace`).
    Pod,
    /// The node's (`hostPID`).
    Node,
}

/// The pod's namespace choices besides the network, for its sandbox and its
/// containers alike.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct NamespaceOptions {
    pub pid: PidNamespace,
    /// `hostIPC`: the node's IPC namespace and `/dev/shm`.
    pub host_ipc: bool,
}

/// The seccomp filter a process runs under (CRI's `SecurityProfile`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum SeccompProfile {
    #[default]
    Unconfined,
    /// The runtime's default profile.
    RuntimeDefault,
    /// A profile file in the runtime spec's JSON form, by absolute path.
    Localhost(PathBuf),
}

/// The sandbox's share of the pod's `securityContext`, as the kubelet's
/// `LinuxPodSandboxConfig` carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxSecurity {
    pub namespaces: NamespaceOptions,
    /// Namespaced sysctls (names with dots) for the pod's network and IPC
    /// namespaces, set before any container starts.
    pub sysctls: Vec<(String, String)>,
    /// The pause process's seccomp profile.
    pub seccomp: SeccompProfile,
    /// A container of the pod is privileged (the pause then runs without
    /// seccomp).
    pub privileged: bool,
    /// The pod's `runAsUser` and `runAsGroup`, for the pause process.
    pub run_as_user: Option<u32>,
    pub run_as_group: Option<u32>,
    /// `fsGroup` and `supplementalGroups`.
    pub supplemental_groups: Vec<u32>,
}

/// When the pod was created and first started on this node: the API
/// server would keep these across a kubelet restart; the sandbox keeps them
/// across an agent restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodTimes {
    /// `metadata.creationTimestamp`.
    pub created: Timestamp,
    /// `status.startTime`.
    pub started: Timestamp,
}

/// A sandbox that exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxInfo {
    pub id: SandboxId,
    pub pod: PodRef,
    pub host_network: bool,
    /// The network namespace the pod's containers join (none on host network).
    pub netns: Option<PathBuf>,
    /// The pause process (it only holds the namespaces, which the agent
    /// pins itself, so nothing but a shared PID namespace waits for it).
    pub pause: PauseProcess,
    pub ips: Vec<IpAddr>,
    pub created_at: Timestamp,
    /// As the sandbox was created with them (`None` for sandboxes made
    /// before berth kept them).
    pub pod_times: Option<PodTimes>,
    /// When the pod's network was set up at create (`None` on host
    /// network and for a sandbox listed rather than created).
    pub network_ready_at: Option<Timestamp>,
}

/// A bind mount into a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub host_path: PathBuf,
    pub container_path: String,
    pub read_only: bool,
    pub propagation: MountPropagation,
}

/// Whether mounts made under a volume later reach the other side: the
/// volume mount's `mountPropagation`, as the kubelet's
/// `translateMountPropagation` hands it to the runtime.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MountPropagation {
    /// `None` or unset: neither way (`rprivate`).
    #[default]
    Private,
    /// `HostToContainer`: the node's new mounts reach the container
    /// (`rslave`).
    HostToContainer,
    /// `Bidirectional`: both ways (`rshared`); privileged containers only.
    Bidirectional,
}

/// How a container takes part in the pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContainerKind {
    Init,
    Sidecar,
    Regular,
    /// `spec.ephemeralContainers`: started once, never restarted.
    Ephemeral,
}

impl ContainerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerKind::Init => "init",
            ContainerKind::Sidecar => "sidecar",
            ContainerKind::Regular => "regular",
            ContainerKind::Ephemeral => "ephemeral",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "init" => Some(ContainerKind::Init),
            "sidecar" => Some(ContainerKind::Sidecar),
            "regular" => Some(ContainerKind::Regular),
            "ephemeral" => Some(ContainerKind::Ephemeral),
            _ => None,
        }
    }
}

/// cgroup settings, as the kubelet maps `resources`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub memory_limit_bytes: Option<i64>,
    pub cpu_shares: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
}

/// A container's Linux security settings, as the kubelet hands them to CRI
/// (`LinuxContainerSecurityContext`); the runtime applies them as
/// containerd's CRI plugin does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerSecurity {
    /// `capabilities.add` and `drop` as the pod writes them (`ALL` included).
    pub add_capabilities: Vec<String>,
    pub drop_capabilities: Vec<String>,
    /// `allowPrivilegeEscalation: false`.
    pub no_new_privileges: bool,
    pub seccomp: SeccompProfile,
    /// `fsGroup`, then `supplementalGroups`: extra groups of the process.
    pub supplemental_groups: Vec<u32>,
    /// `supplementalGroupsPolicy: Strict`: the image's `/etc/group`
    /// memberships of the user are not added.
    pub strict_supplemental_groups: bool,
    /// `procMount: Unmasked`: nothing in `/proc` is masked or read-only.
    pub unmasked_proc: bool,
    pub namespaces: NamespaceOptions,
    /// Join this running container's PID namespace instead (CRI's
    /// `NamespaceMode_TARGET`: an ephemeral container's
    /// `targetContainerName`).
    pub pid_target: Option<ContainerId>,
}

/// A fully resolved container: the worker has merged the image config with the
/// pod spec, so the runtime only builds it.
#[derive(Debug, Clone)]
pub struct ContainerConfig {
    pub pod: PodRef,
    pub name: String,
    pub kind: ContainerKind,
    /// The restart count this instance will carry.
    pub attempt: u32,
    pub image: ImageInfo,
    /// The final argv (command and args merged with the image's).
    pub args: Vec<String>,
    /// The final environment, in order.
    pub env: Vec<(String, String)>,
    pub working_dir: String,
    /// `uid[:gid]` or `name[:gid]`, resolved in the image as containerd's
    /// `WithUser` does; `None`: root.
    pub user: Option<String>,
    pub mounts: Vec<Mount>,
    /// Absolute path of this instance's CRI log file.
    pub log_path: PathBuf,
    pub read_only_root: bool,
    pub privileged: bool,
    pub security: ContainerSecurity,
    pub resources: Resources,
    /// Extra annotations kept with the container (e.g. the spec hash).
    pub annotations: BTreeMap<String, String>,
    pub stdio: ContainerStdio,
}

/// A container's stdin and terminal: core/v1 `stdin`, `stdinOnce` and `tty`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContainerStdio {
    /// stdin stays open for attach sessions to write into, until the
    /// container exits (or, with `stdin_once`, the first session ends).
    pub stdin: bool,
    pub stdin_once: bool,
    /// The process runs on a terminal; its output is logged as stdout.
    pub tty: bool,
}

/// A container's process has started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Started {
    pub pid: u32,
    pub started_at: Timestamp,
}

/// How a container's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitInfo {
    /// The exit code, or 128 + the signal number when a signal ended it.
    pub exit_code: i32,
    pub finished_at: Timestamp,
    pub oom_killed: bool,
}

/// Resolves once the container's process has exited.
pub struct ExitWaiter(oneshot::Receiver<Result<ExitInfo, RuntimeError>>);

impl ExitWaiter {
    /// A waiter and the sender the runtime completes it with.
    pub fn channel() -> (oneshot::Sender<Result<ExitInfo, RuntimeError>>, ExitWaiter) {
        let (tx, rx) = oneshot::channel();
        (tx, ExitWaiter(rx))
    }
}

impl Future for ExitWaiter {
    type Output = Result<ExitInfo, RuntimeError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|r| {
            r.unwrap_or_else(|_| Err(RuntimeError::other("exit waiter dropped by the runtime")))
        })
    }
}

/// The result of an exec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// What a streamed exec runs, and which streams it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecStreamRequest {
    pub command: Vec<String>,
    /// The process reads stdin from [`ExecSession::stdin`].
    pub stdin: bool,
    /// The process runs on a pseudo-terminal: stderr is merged into stdout.
    pub tty: bool,
}

/// What the holder of an [`ExecSession`] may ask of its process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecSignal {
    /// The terminal's new size, in characters.
    Resize { width: u16, height: u16 },
    /// stdin reached its end (after [`ExecSession::stdin`] was dropped).
    CloseStdin,
}

pub type ExecReader = Box<dyn tokio::io::AsyncRead + Send + Unpin>;
pub type ExecWriter = Box<dyn tokio::io::AsyncWrite + Send + Unpin>;

/// A process running in a container with its streams attached. Dropping
/// `control` before the process exits kills it: a client that went away
/// leaves nothing running.
pub struct ExecSession {
    pub stdin: Option<ExecWriter>,
    /// Ends once the process exited and its output was read.
    pub stdout: ExecReader,
    /// `None` with a terminal.
    pub stderr: Option<ExecReader>,
    pub control: tokio::sync::mpsc::UnboundedSender<ExecSignal>,
    /// The exit code.
    pub exit: tokio::sync::oneshot::Receiver<Result<i32, RuntimeError>>,
}

impl std::fmt::Debug for ExecSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecSession")
            .field("stdin", &self.stdin.is_some())
            .field("stderr", &self.stderr.is_some())
            .finish_non_exhaustive()
    }
}

/// A container's state as the runtime last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObservedState {
    Created,
    Running {
        started_at: Timestamp,
    },
    Exited {
        started_at: Option<Timestamp>,
        exit: ExitInfo,
    },
}

/// A container found in the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedContainer {
    pub id: ContainerId,
    pub sandbox: SandboxId,
    pub pod: PodRef,
    pub name: String,
    pub kind: ContainerKind,
    pub attempt: u32,
    pub image: String,
    pub state: ObservedState,
    pub annotations: BTreeMap<String, String>,
}

/// Everything of berth's in the runtime.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub sandboxes: Vec<SandboxInfo>,
    pub containers: Vec<ObservedContainer>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_as_images_write_them() {
        assert_eq!(Signal::parse("SIGINT"), Some(Signal(2)));
        assert_eq!(Signal::parse("TERM"), Some(Signal::TERM));
        assert_eq!(Signal::parse("sigquit"), Some(Signal(3)));
        assert_eq!(Signal::parse("9"), Some(Signal::KILL));
        assert_eq!(Signal::parse("SIGNOPE"), None);
        assert_eq!(Signal::parse("0"), None);
        assert_eq!(Signal(2).name(), "SIGINT");
    }

    #[test]
    fn image_id_is_repo_at_digest() {
        let image = ImageInfo {
            reference: "localhost:5000/team/app:v1".into(),
            digest: "sha256:abc".into(),
            size: 0,
            config: ImageConfig::default(),
        };
        assert_eq!(image.image_id(), "localhost:5000/team/app@sha256:abc");
        let image = ImageInfo {
            reference: "localhost:5000/app".into(),
            ..image
        };
        assert_eq!(image.image_id(), "localhost:5000/app@sha256:abc");
    }
}

/// What [`ContainerRuntime::reclaim`](crate::ContainerRuntime::reclaim) released.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reclaimed {
    /// Half-made sandboxes whose network, pins and mounts were released.
    pub sandboxes: usize,
    pub leases: usize,
    /// Shims and loggers killed.
    pub processes: usize,
}

/// A sandbox's pause process as the runtime last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseProcess {
    /// The sandbox has no pause process: the pod shares no process
    /// namespace, and its network, IPC and UTS namespaces are held by pins
    /// that are still in place.
    Pinned,
    /// The pod shares its process namespace, whose PID 1 this is.
    Running { pid: u32 },
    /// The sandbox is dead: its pause is gone or stopped, or its pins are
    /// (the node rebooted, or they were unmounted).
    Gone,
}

impl PauseProcess {
    /// The pid, while it runs.
    pub fn pid(self) -> Option<u32> {
        match self {
            Self::Running { pid } => Some(pid),
            Self::Pinned | Self::Gone => None,
        }
    }
}
