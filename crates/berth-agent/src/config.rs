//! The agent's settings: a YAML config file (camelCase keys, every key
//! optional) overridden by command-line flags.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why the settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Syntax errors, wrong types and unknown keys (the message names the key).
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid setting {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

/// A back-off's bounds: the first delay, doubling up to the longest
/// (CrashLoopBackOff and the image pull back-off both start at 10 s and end
/// at 300 s on the kubelet).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct BackOffBounds {
    pub initial_seconds: u64,
    pub max_seconds: u64,
}

impl Default for BackOffBounds {
    fn default() -> Self {
        Self {
            initial_seconds: 10,
            max_seconds: 300,
        }
    }
}

/// Every setting of `berth agent`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AgentConfig {
    pub containerd_socket: PathBuf,
    pub containerd_namespace: String,
    /// Agent state (pod records, sandboxes' files).
    pub root_dir: PathBuf,
    /// The kubelet's `podLogsDir`.
    pub log_dir: PathBuf,
    /// The static pod directory (the kubelet's `staticPodPath`).
    pub manifest_dir: PathBuf,
    /// The local API socket.
    pub socket: PathBuf,
    /// Also serve the local API over HTTPS on this address (client
    /// certificates of the API's own CA required); unset: socket only.
    pub api_listen: Option<std::net::SocketAddr>,
    /// Where the admin kubeconfig for `apiListen` is written.
    pub admin_kubeconfig: PathBuf,
    pub cni_bin_dirs: Vec<PathBuf>,
    pub cni_conf_dir: PathBuf,
    /// The sandbox ("pause") image; `None` uses the built-in one.
    pub pod_infra_image: Option<String>,
    /// Static pods are named `<name>-<nodeName>`.
    pub node_name: String,
    pub crash_loop_back_off: BackOffBounds,
    /// Failed pulls of an image back off per pod and image.
    pub image_pull_back_off: BackOffBounds,
    /// One pod's pull at a time, node-wide (the kubelet's default is true;
    /// berth's is false, so one slow pull does not hold every pod back).
    pub serialize_image_pulls: bool,
    /// At most this many pulls at once when not serialized; unset: no limit.
    pub max_parallel_image_pulls: Option<u32>,
    /// The image filesystem (containerd's root) whose use image GC watches.
    pub image_fs_dir: PathBuf,
    /// Image GC starts at this disk use…
    #[serde(rename = "imageGCHighThresholdPercent")]
    pub image_gc_high_threshold_percent: u8,
    /// …and frees unused images until this one.
    #[serde(rename = "imageGCLowThresholdPercent")]
    pub image_gc_low_threshold_percent: u8,
    /// Images younger than this (since the agent first saw them) are kept.
    #[serde(rename = "imageMinimumGCAgeSeconds")]
    pub image_minimum_gc_age_seconds: u64,
    /// How often image GC looks at the disk.
    #[serde(rename = "imageGCPeriodSeconds")]
    pub image_gc_period_seconds: u64,
    /// A running container's log file this big is rotated (a quantity such
    /// as `10Mi`); zero or less turns rotation off.
    pub container_log_max_size: String,
    /// Log files kept per container, the live one included.
    pub container_log_max_files: u32,
    /// How often log sizes are checked.
    pub container_log_monitor_interval_seconds: u64,
    /// How long the agent drains pods on a node shutdown; 0 leaves them running.
    pub shutdown_grace_period_seconds: u64,
    /// Registry credentials, plain-HTTP/insecure hosts and mirrors (see
    /// deploy/registries.yaml); read once at start.
    pub registry_config: Option<PathBuf>,
    /// Sysctls (or `prefix*` patterns) pods may set beyond the safe set;
    /// each must be namespaced (net, IPC).
    pub allowed_unsafe_sysctls: Vec<String>,
    /// RuntimeDefault seccomp for containers that name no profile.
    pub seccomp_default: bool,
    /// Cluster mode: the kubeconfig of this node's identity
    /// (`system:node:<nodeName>`); unset, the agent runs standalone.
    pub kubeconfig: Option<PathBuf>,
    /// The node's InternalIP address as the cluster sees it (default: the
    /// address of the default route's interface).
    #[serde(rename = "nodeIP")]
    pub node_ip: Option<std::net::IpAddr>,
    /// Cluster mode: the kubelet API's TLS port (logs through the API
    /// server).
    pub port: u16,
    /// The kubelet API's serving certificate and key (PEM); unset, one is
    /// made at first start under the root directory.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_private_key_file: Option<PathBuf>,
    /// CA whose client certificates the kubelet API accepts (the API
    /// server's); other callers need a bearer token the API server accepts.
    #[serde(rename = "clientCAFile")]
    pub client_ca_file: Option<PathBuf>,
    /// The cluster's DNS servers for `dnsPolicy: ClusterFirst` pods; none:
    /// they get the host's resolver (with the kubelet's warning event).
    #[serde(rename = "clusterDNS")]
    pub cluster_dns: Vec<std::net::IpAddr>,
    /// The cluster's DNS domain (`cluster.local` in most clusters), for the
    /// search path.
    pub cluster_domain: String,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            containerd_socket: "/run/containerd/containerd.sock".into(),
            containerd_namespace: "berth".into(),
            root_dir: "/var/lib/berth".into(),
            log_dir: "/var/log/pods".into(),
            manifest_dir: "/etc/berth/manifests".into(),
            socket: "/run/berth/berth.sock".into(),
            api_listen: None,
            admin_kubeconfig: "/etc/berth/admin.kubeconfig".into(),
            cni_bin_dirs: vec!["/usr/lib/cni".into(), "/opt/cni/bin".into()],
            cni_conf_dir: "/etc/cni/net.d".into(),
            pod_infra_image: None,
            node_name: host_name(),
            crash_loop_back_off: BackOffBounds::default(),
            image_pull_back_off: BackOffBounds::default(),
            serialize_image_pulls: false,
            max_parallel_image_pulls: None,
            image_fs_dir: "/var/lib/containerd".into(),
            image_gc_high_threshold_percent: 85,
            image_gc_low_threshold_percent: 80,
            image_minimum_gc_age_seconds: 120,
            image_gc_period_seconds: 300,
            container_log_max_size: "10Mi".into(),
            container_log_max_files: 5,
            container_log_monitor_interval_seconds: 10,
            shutdown_grace_period_seconds: 0,
            registry_config: None,
            kubeconfig: None,
            node_ip: None,
            port: 10250,
            tls_cert_file: None,
            tls_private_key_file: None,
            client_ca_file: None,
            cluster_dns: Vec::new(),
            cluster_domain: String::new(),
            allowed_unsafe_sysctls: Vec::new(),
            seccomp_default: false,
        }
    }
}

/// The host name as the kubelet uses it for the node name: lower-cased, trimmed.
fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .map(|name| name.trim().to_lowercase())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The flags of `berth agent`; each one overrides the config file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AgentFlags {
    /// YAML config file (camelCase keys); flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// containerd's gRPC socket.
    #[arg(long, value_name = "PATH")]
    pub containerd_socket: Option<PathBuf>,
    /// containerd namespace holding berth's containers and images.
    #[arg(long, value_name = "NAME")]
    pub containerd_namespace: Option<String>,
    /// Directory for the agent's state.
    #[arg(long, value_name = "DIR")]
    pub root_dir: Option<PathBuf>,
    /// Directory for container logs.
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
    /// Directory of static pod manifests.
    #[arg(long, value_name = "DIR")]
    pub manifest_dir: Option<PathBuf>,
    /// The local API socket.
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Also serve the local API over HTTPS here (e.g. 127.0.0.1:6443), for kubectl.
    #[arg(long, value_name = "ADDR:PORT")]
    pub api_listen: Option<std::net::SocketAddr>,
    /// Where the admin kubeconfig for --api-listen is written.
    #[arg(long, value_name = "FILE")]
    pub admin_kubeconfig: Option<PathBuf>,
    /// Directory searched for CNI plugins (repeatable; replaces the list).
    #[arg(long = "cni-bin-dir", value_name = "DIR")]
    pub cni_bin_dirs: Vec<PathBuf>,
    /// Directory of CNI network configurations.
    #[arg(long, value_name = "DIR")]
    pub cni_conf_dir: Option<PathBuf>,
    /// Sandbox image (default: built in).
    #[arg(long, value_name = "IMAGE")]
    pub pod_infra_image: Option<String>,
    /// Node name (default: the host name).
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// Join a cluster: the kubeconfig of this node's identity.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The node's InternalIP (default: the default route's interface address).
    #[arg(long = "node-ip", value_name = "IP")]
    pub node_ip: Option<std::net::IpAddr>,
    /// The kubelet API's port (cluster mode).
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// The kubelet API's serving certificate (PEM).
    #[arg(long, value_name = "FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// The kubelet API's serving key (PEM).
    #[arg(long, value_name = "FILE")]
    pub tls_private_key_file: Option<PathBuf>,
    /// CA of the client certificates the kubelet API accepts.
    #[arg(long, value_name = "FILE")]
    pub client_ca_file: Option<PathBuf>,
    /// The cluster DNS server for ClusterFirst pods (repeatable, or
    /// comma-separated).
    #[arg(long = "cluster-dns", value_name = "IP", value_delimiter = ',')]
    pub cluster_dns: Vec<std::net::IpAddr>,
    /// The cluster's DNS domain.
    #[arg(long, value_name = "DOMAIN")]
    pub cluster_domain: Option<String>,
    /// First CrashLoopBackOff delay.
    #[arg(long, value_name = "SECONDS")]
    pub crash_loop_back_off_initial_seconds: Option<u64>,
    /// Longest CrashLoopBackOff delay.
    #[arg(long, value_name = "SECONDS")]
    pub crash_loop_back_off_max_seconds: Option<u64>,
    /// First image pull back-off delay.
    #[arg(long, value_name = "SECONDS")]
    pub image_pull_back_off_initial_seconds: Option<u64>,
    /// Longest image pull back-off delay.
    #[arg(long, value_name = "SECONDS")]
    pub image_pull_back_off_max_seconds: Option<u64>,
    /// Pull one image at a time, node-wide (true or false).
    #[arg(long, value_name = "BOOL")]
    pub serialize_image_pulls: Option<bool>,
    /// Most pulls at once when pulls are not serialized.
    #[arg(long, value_name = "N")]
    pub max_parallel_image_pulls: Option<u32>,
    /// The image filesystem image GC watches (containerd's root).
    #[arg(long, value_name = "DIR")]
    pub image_fs_dir: Option<PathBuf>,
    /// Disk use (percent) at which unused images are removed; 100 disables.
    #[arg(long, value_name = "PERCENT")]
    pub image_gc_high_threshold_percent: Option<u8>,
    /// Disk use (percent) image GC frees down to.
    #[arg(long, value_name = "PERCENT")]
    pub image_gc_low_threshold_percent: Option<u8>,
    /// Images the agent first saw less than this long ago are kept.
    #[arg(long, value_name = "SECONDS")]
    pub image_minimum_gc_age_seconds: Option<u64>,
    /// How often image GC looks at the disk.
    #[arg(long, value_name = "SECONDS")]
    pub image_gc_period_seconds: Option<u64>,
    /// Rotate a running container's log at this size (e.g. 10Mi; 0: never).
    #[arg(long, value_name = "QUANTITY")]
    pub container_log_max_size: Option<String>,
    /// Log files kept per container, the live one included.
    #[arg(long, value_name = "N")]
    pub container_log_max_files: Option<u32>,
    /// How often log sizes are checked.
    #[arg(long, value_name = "SECONDS")]
    pub container_log_monitor_interval_seconds: Option<u64>,
    /// Grace for pods on a node shutdown (0: pods keep running).
    #[arg(long, value_name = "SECONDS")]
    pub shutdown_grace_period_seconds: Option<u64>,
    /// Registry settings (YAML, or docker's config.json): credentials,
    /// plain-HTTP and insecure registries, mirrors.
    #[arg(long, value_name = "FILE")]
    pub registry_config: Option<PathBuf>,
    /// Unsafe sysctls pods may set (comma-separated names or `prefix*`).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub allowed_unsafe_sysctls: Option<Vec<String>>,
    /// Run containers that name no seccomp profile under RuntimeDefault.
    #[arg(long, value_name = "BOOL")]
    pub seccomp_default: Option<bool>,
}

impl AgentConfig {
    /// Reads `path` (defaults for keys it lacks), or the defaults when `None`.
    /// Does not validate.
    pub fn load(path: Option<&Path>) -> Result<AgentConfig, ConfigError> {
        let Some(path) = path else {
            return Ok(AgentConfig::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    fn parse(text: &str) -> Result<AgentConfig, String> {
        // An empty file (or one of only comments) means "all defaults".
        let value: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
        if value.is_null() {
            return Ok(AgentConfig::default());
        }
        serde_yaml_ng::from_str(text).map_err(|e| e.to_string())
    }

    /// The config file named by `--config` (if any), then each flag given;
    /// the result is validated.
    pub fn from_flags(flags: AgentFlags) -> Result<AgentConfig, ConfigError> {
        let mut config = Self::load(flags.config.as_deref())?;
        config.apply(flags);
        config.validate()?;
        Ok(config)
    }

    fn apply(&mut self, flags: AgentFlags) {
        fn set<T>(field: &mut T, flag: Option<T>) {
            if let Some(value) = flag {
                *field = value;
            }
        }
        set(&mut self.containerd_socket, flags.containerd_socket);
        set(&mut self.containerd_namespace, flags.containerd_namespace);
        set(&mut self.root_dir, flags.root_dir);
        set(&mut self.log_dir, flags.log_dir);
        set(&mut self.manifest_dir, flags.manifest_dir);
        set(&mut self.socket, flags.socket);
        if flags.api_listen.is_some() {
            self.api_listen = flags.api_listen;
        }
        set(&mut self.admin_kubeconfig, flags.admin_kubeconfig);
        if !flags.cni_bin_dirs.is_empty() {
            self.cni_bin_dirs = flags.cni_bin_dirs;
        }
        set(&mut self.cni_conf_dir, flags.cni_conf_dir);
        if flags.pod_infra_image.is_some() {
            self.pod_infra_image = flags.pod_infra_image;
        }
        set(&mut self.node_name, flags.node_name);
        if let Some(path) = flags.kubeconfig {
            // A flag is relative to where the agent was started, as kubectl's.
            self.kubeconfig = Some(std::path::absolute(&path).unwrap_or(path));
        }
        if flags.node_ip.is_some() {
            self.node_ip = flags.node_ip;
        }
        set(&mut self.port, flags.port);
        let absolute = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
        if let Some(path) = flags.tls_cert_file {
            self.tls_cert_file = Some(absolute(path));
        }
        if let Some(path) = flags.tls_private_key_file {
            self.tls_private_key_file = Some(absolute(path));
        }
        if let Some(path) = flags.client_ca_file {
            self.client_ca_file = Some(absolute(path));
        }
        if !flags.cluster_dns.is_empty() {
            self.cluster_dns = flags.cluster_dns;
        }
        set(&mut self.cluster_domain, flags.cluster_domain);
        let backoff = &mut self.crash_loop_back_off;
        set(
            &mut backoff.initial_seconds,
            flags.crash_loop_back_off_initial_seconds,
        );
        set(
            &mut backoff.max_seconds,
            flags.crash_loop_back_off_max_seconds,
        );
        let backoff = &mut self.image_pull_back_off;
        set(
            &mut backoff.initial_seconds,
            flags.image_pull_back_off_initial_seconds,
        );
        set(
            &mut backoff.max_seconds,
            flags.image_pull_back_off_max_seconds,
        );
        set(&mut self.serialize_image_pulls, flags.serialize_image_pulls);
        if flags.max_parallel_image_pulls.is_some() {
            self.max_parallel_image_pulls = flags.max_parallel_image_pulls;
        }
        set(&mut self.image_fs_dir, flags.image_fs_dir);
        set(
            &mut self.image_gc_high_threshold_percent,
            flags.image_gc_high_threshold_percent,
        );
        set(
            &mut self.image_gc_low_threshold_percent,
            flags.image_gc_low_threshold_percent,
        );
        set(
            &mut self.image_minimum_gc_age_seconds,
            flags.image_minimum_gc_age_seconds,
        );
        set(
            &mut self.image_gc_period_seconds,
            flags.image_gc_period_seconds,
        );
        set(
            &mut self.container_log_max_size,
            flags.container_log_max_size,
        );
        set(
            &mut self.container_log_max_files,
            flags.container_log_max_files,
        );
        set(
            &mut self.container_log_monitor_interval_seconds,
            flags.container_log_monitor_interval_seconds,
        );
        set(
            &mut self.shutdown_grace_period_seconds,
            flags.shutdown_grace_period_seconds,
        );
        if flags.registry_config.is_some() {
            self.registry_config = flags.registry_config;
        }
        set(
            &mut self.allowed_unsafe_sysctls,
            flags.allowed_unsafe_sysctls,
        );
        set(&mut self.seccomp_default, flags.seccomp_default);
    }

    /// Checks what the file format cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: String| Err(ConfigError::Invalid { key, message });
        if let Err(message) = validate_containerd_namespace(&self.containerd_namespace) {
            return invalid("containerdNamespace", message);
        }
        let paths = [
            ("containerdSocket", &self.containerd_socket),
            ("rootDir", &self.root_dir),
            ("logDir", &self.log_dir),
            ("manifestDir", &self.manifest_dir),
            ("socket", &self.socket),
            ("adminKubeconfig", &self.admin_kubeconfig),
            ("cniConfDir", &self.cni_conf_dir),
        ];
        let cni_bin = self.cni_bin_dirs.iter().map(|dir| ("cniBinDirs", dir));
        for (key, path) in paths.into_iter().chain(cni_bin) {
            if !path.is_absolute() {
                return invalid(key, format!("{} is not an absolute path", path.display()));
            }
        }
        let optional_paths = [
            ("registryConfig", &self.registry_config),
            ("kubeconfig", &self.kubeconfig),
            ("tlsCertFile", &self.tls_cert_file),
            ("tlsPrivateKeyFile", &self.tls_private_key_file),
            ("clientCAFile", &self.client_ca_file),
        ];
        for (key, path) in optional_paths {
            if let Some(path) = path.as_ref().filter(|p| !p.is_absolute()) {
                return invalid(key, format!("{} is not an absolute path", path.display()));
            }
        }
        if !self.cluster_domain.is_empty() {
            let problems = berth_api::validation::names::dns1123_subdomain(&self.cluster_domain);
            if let Some(problem) = problems.first() {
                return invalid(
                    "clusterDomain",
                    format!("{:?}: {problem}", self.cluster_domain),
                );
            }
        }
        if self.tls_cert_file.is_some() != self.tls_private_key_file.is_some() {
            return invalid(
                "tlsCertFile",
                "tlsCertFile and tlsPrivateKeyFile go together".into(),
            );
        }
        if self.cni_bin_dirs.is_empty() {
            return invalid("cniBinDirs", "must name at least one directory".into());
        }
        if let Some(image) = &self.pod_infra_image {
            if image.trim().is_empty() {
                return invalid("podInfraImage", "must not be empty".into());
            }
        }
        if let Err(message) = validate_node_name(&self.node_name) {
            return invalid("nodeName", message);
        }
        validate_back_off(
            [
                "crashLoopBackOff.initialSeconds",
                "crashLoopBackOff.maxSeconds",
            ],
            &self.crash_loop_back_off,
        )?;
        validate_back_off(
            [
                "imagePullBackOff.initialSeconds",
                "imagePullBackOff.maxSeconds",
            ],
            &self.image_pull_back_off,
        )?;
        match self.max_parallel_image_pulls {
            Some(0) => return invalid("maxParallelImagePulls", "must be at least 1".into()),
            Some(n) if n > 1 && self.serialize_image_pulls => {
                return invalid(
                    "maxParallelImagePulls",
                    format!("{n} must be 1 or unset when serializeImagePulls is true"),
                )
            }
            _ => {}
        }
        let (high, low) = (
            self.image_gc_high_threshold_percent,
            self.image_gc_low_threshold_percent,
        );
        if high > 100 {
            return invalid(
                "imageGCHighThresholdPercent",
                format!("{high} is more than 100"),
            );
        }
        if low > high {
            return invalid(
                "imageGCLowThresholdPercent",
                format!("{low} exceeds imageGCHighThresholdPercent {high}"),
            );
        }
        if self.image_gc_period_seconds < 1 {
            return invalid("imageGCPeriodSeconds", "must be at least 1".into());
        }
        if berth_api::quantity::value(&self.container_log_max_size).is_none() {
            return invalid(
                "containerLogMaxSize",
                format!("{:?} is not a quantity", self.container_log_max_size),
            );
        }
        if self.container_log_max_files < 2 {
            return invalid("containerLogMaxFiles", "must be greater than 1".into());
        }
        if self.container_log_monitor_interval_seconds < 3 {
            return invalid(
                "containerLogMonitorIntervalSeconds",
                "must be at least 3".into(),
            );
        }
        if !self.image_fs_dir.is_absolute() {
            return invalid(
                "imageFsDir",
                format!("{} is not an absolute path", self.image_fs_dir.display()),
            );
        }
        if let Err(message) = berth_api::sysctl::Allowlist::new(&self.allowed_unsafe_sysctls, None)
        {
            return invalid("allowedUnsafeSysctls", message);
        }
        Ok(())
    }

    /// Log rotation as configured; `None` when the maximum size turns it off.
    pub fn log_rotation(&self) -> Option<crate::log_rotation::LogRotationPolicy> {
        let max_size = berth_api::quantity::value(&self.container_log_max_size)?;
        Some(crate::log_rotation::LogRotationPolicy {
            max_size: u64::try_from(max_size).ok().filter(|&size| size > 0)?,
            max_files: usize::try_from(self.container_log_max_files).unwrap_or(usize::MAX),
            interval: std::time::Duration::from_secs(self.container_log_monitor_interval_seconds),
        })
    }

    /// How many pulls may run at once across all pods; `None`: no limit.
    pub fn image_pull_slots(&self) -> Option<usize> {
        if self.serialize_image_pulls {
            return Some(1);
        }
        self.max_parallel_image_pulls
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
    }
}

/// Both bounds at least 1 s, the first no longer than the longest; errors
/// name `initial_key` or `max_key`.
fn validate_back_off(
    [initial_key, max_key]: [&'static str; 2],
    bounds: &BackOffBounds,
) -> Result<(), ConfigError> {
    let invalid = |key, message: String| Err(ConfigError::Invalid { key, message });
    if bounds.initial_seconds < 1 {
        return invalid(initial_key, "must be at least 1".into());
    }
    if bounds.max_seconds < 1 {
        return invalid(max_key, "must be at least 1".into());
    }
    if bounds.initial_seconds > bounds.max_seconds {
        return invalid(
            initial_key,
            format!(
                "{} exceeds maxSeconds {}",
                bounds.initial_seconds, bounds.max_seconds
            ),
        );
    }
    Ok(())
}

/// containerd's identifier rule: up to 76 characters, alphanumeric runs
/// joined by single `.`, `_` or `-`.
fn validate_containerd_namespace(name: &str) -> Result<(), String> {
    const MAX: usize = 76;
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > MAX {
        return Err(format!("{name:?} is longer than {MAX} characters"));
    }
    let well_formed = name
        .split(['.', '_', '-'])
        .all(|run| !run.is_empty() && run.chars().all(|c| c.is_ascii_alphanumeric()));
    if !well_formed {
        return Err(format!(
            "{name:?} must be alphanumeric runs separated by single '.', '_' or '-'"
        ));
    }
    Ok(())
}

/// Node names are DNS-1123 subdomains (static pod names embed them).
fn validate_node_name(name: &str) -> Result<(), String> {
    const MAX: usize = 253;
    let valid_label = |label: &str| {
        !label.is_empty()
            && label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if name.is_empty() || name.len() > MAX || !name.split('.').all(valid_label) {
        return Err(format!(
            "{name:?} must be a lowercase DNS-1123 subdomain of at most {MAX} characters"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    #[test]
    fn defaults_without_file() {
        let config = AgentConfig::load(None).unwrap();
        assert_eq!(config.containerd_namespace, "berth");
        assert_eq!(config.socket, Path::new("/run/berth/berth.sock"));
        assert_eq!(config.crash_loop_back_off.initial_seconds, 10);
        assert_eq!(config.crash_loop_back_off.max_seconds, 300);
        assert_eq!(config.cni_bin_dirs.len(), 2);
        assert!(config.pod_infra_image.is_none());
        assert!(!config.node_name.is_empty());
        config.validate().unwrap();
    }

    #[test]
    fn empty_file_is_all_defaults() {
        let file = write("# nothing set\n");
        let config = AgentConfig::load(Some(file.path())).unwrap();
        assert_eq!(config, AgentConfig::default());
    }

    #[test]
    fn file_sets_camel_case_keys_and_keeps_other_defaults() {
        let file = write(
            "containerdNamespace: test\nlogDir: /tmp/logs\nnodeName: node-a\n\
             crashLoopBackOff:\n  maxSeconds: 20\npodInfraImage: pause:1\n\
             registryConfig: /etc/berth/registries.yaml\n",
        );
        let config = AgentConfig::load(Some(file.path())).unwrap();
        assert_eq!(config.containerd_namespace, "test");
        assert_eq!(config.log_dir, Path::new("/tmp/logs"));
        assert_eq!(config.node_name, "node-a");
        assert_eq!(config.crash_loop_back_off.max_seconds, 20);
        assert_eq!(config.crash_loop_back_off.initial_seconds, 10);
        assert_eq!(config.pod_infra_image.as_deref(), Some("pause:1"));
        assert_eq!(
            config.registry_config.as_deref(),
            Some(Path::new("/etc/berth/registries.yaml"))
        );
        assert_eq!(config.root_dir, Path::new("/var/lib/berth"));
    }

    #[test]
    fn unknown_key_names_key_and_file() {
        let file = write("rootDir: /x\nlogdir: /y\n");
        let err = AgentConfig::load(Some(file.path()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("logdir"), "{err}");
        assert!(err.contains(&file.path().display().to_string()), "{err}");

        let file = write("crashLoopBackOff:\n  initial: 3\n");
        let err = AgentConfig::load(Some(file.path()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("initial"), "{err}");
    }

    #[test]
    fn api_listen_and_admin_kubeconfig() {
        let file = write("apiListen: 127.0.0.1:6443\nadminKubeconfig: /tmp/admin.kubeconfig\n");
        let config = AgentConfig::load(Some(file.path())).unwrap();
        assert_eq!(config.api_listen, Some("127.0.0.1:6443".parse().unwrap()));
        assert_eq!(config.admin_kubeconfig, Path::new("/tmp/admin.kubeconfig"));
        assert_eq!(AgentConfig::default().api_listen, None);
        let err = AgentConfig::load(Some(write("apiListen: localhost\n").path())).unwrap_err();
        assert!(
            err.to_string().contains("apiListen") || err.to_string().contains("socket address"),
            "{err}"
        );
        let relative = AgentConfig {
            admin_kubeconfig: "admin.kubeconfig".into(),
            ..AgentConfig::default()
        };
        let err = relative.validate().unwrap_err();
        assert!(err.to_string().contains("adminKubeconfig"), "{err}");
    }

    #[test]
    fn missing_file_is_an_error() {
        let err = AgentConfig::load(Some(Path::new("/nonexistent/berth.yaml"))).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    }

    #[test]
    fn flags_override_file() {
        let file = write("logDir: /from/file\nrootDir: /from/file/root\nnodeName: filenode\n");
        let flags = AgentFlags {
            config: Some(file.path().to_owned()),
            log_dir: Some("/from/flag".into()),
            cni_bin_dirs: vec!["/cni".into()],
            crash_loop_back_off_max_seconds: Some(60),
            ..AgentFlags::default()
        };
        let config = AgentConfig::from_flags(flags).unwrap();
        assert_eq!(config.log_dir, Path::new("/from/flag"));
        assert_eq!(config.root_dir, Path::new("/from/file/root"));
        assert_eq!(config.node_name, "filenode");
        assert_eq!(config.cni_bin_dirs, vec![PathBuf::from("/cni")]);
        assert_eq!(config.crash_loop_back_off.max_seconds, 60);
    }

    #[test]
    fn flags_are_parsed_by_clap() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            flags: AgentFlags,
        }
        let cli = Cli::parse_from([
            "berth",
            "--cni-bin-dir",
            "/a",
            "--cni-bin-dir",
            "/b",
            "--node-name",
            "n1",
            "--crash-loop-back-off-initial-seconds",
            "2",
            "--registry-config",
            "/etc/r.yaml",
        ]);
        let config = AgentConfig::from_flags(cli.flags).unwrap();
        assert_eq!(
            config.cni_bin_dirs,
            vec![PathBuf::from("/a"), PathBuf::from("/b")]
        );
        assert_eq!(config.node_name, "n1");
        assert_eq!(config.crash_loop_back_off.initial_seconds, 2);
        assert_eq!(config.registry_config, Some(PathBuf::from("/etc/r.yaml")));
    }

    #[test]
    fn pull_slots_follow_the_kubelets_two_settings() {
        let file = write("serializeImagePulls: true\nmaxParallelImagePulls: 1\n");
        let config = AgentConfig::load(Some(file.path())).unwrap();
        config.validate().unwrap();
        assert_eq!(config.image_pull_slots(), Some(1));

        let parallel = |max| AgentConfig {
            max_parallel_image_pulls: max,
            ..AgentConfig::default()
        };
        assert_eq!(parallel(Some(3)).image_pull_slots(), Some(3));
        // berth's default: no limit.
        assert_eq!(parallel(None).image_pull_slots(), None);

        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            flags: AgentFlags,
        }
        let cli = Cli::parse_from(["berth", "--serialize-image-pulls", "true"]);
        let config = AgentConfig::from_flags(cli.flags).unwrap();
        assert_eq!(config.image_pull_slots(), Some(1));
    }

    #[test]
    fn log_rotation_follows_the_kubelets_settings() {
        let rotation = AgentConfig::default()
            .log_rotation()
            .expect("on by default");
        assert_eq!(rotation.max_size, 10 << 20);
        assert_eq!(rotation.max_files, 5);
        assert_eq!(rotation.interval, std::time::Duration::from_secs(10));
        let file = write("containerLogMaxSize: 1Ki\ncontainerLogMaxFiles: 3\n");
        let config = AgentConfig::load(Some(file.path())).unwrap();
        config.validate().unwrap();
        let rotation = config.log_rotation().unwrap();
        assert_eq!((rotation.max_size, rotation.max_files), (1024, 3));
        for off in ["0", "-1Mi"] {
            let config = AgentConfig {
                container_log_max_size: off.into(),
                ..AgentConfig::default()
            };
            config.validate().unwrap();
            assert_eq!(config.log_rotation(), None, "{off}");
        }
    }

    #[test]
    fn validation_rejects_bad_settings() {
        let check = |edit: fn(&mut AgentConfig), key: &str| {
            let mut config = AgentConfig::default();
            edit(&mut config);
            match config.validate() {
                Err(ConfigError::Invalid { key: got, .. }) => assert_eq!(got, key),
                other => panic!("expected {key} to be invalid, got {other:?}"),
            }
        };
        check(
            |c| c.containerd_namespace = "a..b".into(),
            "containerdNamespace",
        );
        check(
            |c| c.containerd_namespace = "".into(),
            "containerdNamespace",
        );
        check(
            |c| c.containerd_namespace = "x".repeat(77),
            "containerdNamespace",
        );
        check(|c| c.log_dir = "relative/logs".into(), "logDir");
        check(|c| c.cni_bin_dirs = vec!["cni".into()], "cniBinDirs");
        check(|c| c.cni_bin_dirs.clear(), "cniBinDirs");
        check(|c| c.node_name = "Upper".into(), "nodeName");
        check(
            |c| c.crash_loop_back_off.max_seconds = 0,
            "crashLoopBackOff.maxSeconds",
        );
        check(
            |c| c.crash_loop_back_off.initial_seconds = 0,
            "crashLoopBackOff.initialSeconds",
        );
        check(
            |c| c.crash_loop_back_off.initial_seconds = 400,
            "crashLoopBackOff.initialSeconds",
        );
        check(
            |c| c.image_pull_back_off.initial_seconds = 0,
            "imagePullBackOff.initialSeconds",
        );
        check(
            |c| c.image_gc_high_threshold_percent = 101,
            "imageGCHighThresholdPercent",
        );
        check(
            |c| c.image_gc_low_threshold_percent = 90,
            "imageGCLowThresholdPercent",
        );
        check(|c| c.image_gc_period_seconds = 0, "imageGCPeriodSeconds");
        check(|c| c.image_fs_dir = "containerd".into(), "imageFsDir");
        check(|c| c.pod_infra_image = Some(" ".into()), "podInfraImage");
        check(
            |c| c.registry_config = Some("registries.yaml".into()),
            "registryConfig",
        );
        check(
            |c| c.max_parallel_image_pulls = Some(0),
            "maxParallelImagePulls",
        );
        check(
            |c| c.container_log_max_size = "ten megs".into(),
            "containerLogMaxSize",
        );
        check(|c| c.container_log_max_files = 1, "containerLogMaxFiles");
        check(
            |c| c.container_log_monitor_interval_seconds = 2,
            "containerLogMonitorIntervalSeconds",
        );
        check(
            |c| {
                c.serialize_image_pulls = true;
                c.max_parallel_image_pulls = Some(3);
            },
            "maxParallelImagePulls",
        );

        let ok = AgentConfig {
            containerd_namespace: "berth-test_1.a".into(),
            node_name: "node-1.example".into(),
            ..AgentConfig::default()
        };
        ok.validate().unwrap();
    }
}
