//! A private containerd for tests: its own root, state and sockets under a
//! tempdir, the CRI plugin off, stopped and cleaned up on drop.
//!
//! Never touches /run/containerd (the host's daemon, if any): only runc's
//! default state root `/run/containerd/runc/<namespace>` is shared, and our
//! namespaces are unique per instance.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use berth_containerd::ContainerdConfig;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::{mounts, process};

/// The containerd binary the tests start.
pub const CONTAINERD_BIN: &str = "/usr/bin/containerd";
/// Its client; used for cleanup and for checks the agent's API cannot make.
pub const CTR_BIN: &str = "/usr/bin/ctr";
/// Set to `1` (CI does) to make a missing containerd fail the test instead of
/// skipping it.
pub const REQUIRE_ENV: &str = "BERTH_REQUIRE_CONTAINERD";

const BOOT_DEADLINE: Duration = Duration::from_secs(10);
const STOP_GRACE: Duration = Duration::from_secs(5);

static INSTANCES: AtomicU32 = AtomicU32::new(0);

/// A containerd of the test's own.
#[derive(Debug)]
pub struct PrivateContainerd {
    dir: Option<TempDir>,
    /// Reaped by `process::terminate` on drop.
    child: Option<Child>,
    pid: i32,
    socket: PathBuf,
    namespace: String,
}

impl PrivateContainerd {
    /// Starts one, or returns `None` (printing why) when this machine cannot run
    /// containers: containerd is not installed or we are not root. With
    /// `BERTH_REQUIRE_CONTAINERD=1` both are a panic instead, so CI cannot pass by
    /// skipping.
    pub async fn start_or_skip() -> Option<Self> {
        let missing = if !Path::new(CONTAINERD_BIN).exists() {
            Some("containerd not installed")
        } else if !nix::unistd::geteuid().is_root() {
            Some("not root")
        } else {
            None
        };
        if let Some(why) = missing {
            if std::env::var(REQUIRE_ENV).as_deref() == Ok("1") {
                panic!("{REQUIRE_ENV}=1 but cannot start containerd: {why}");
            }
            eprintln!("skipping: {why}");
            return None;
        }
        Some(Self::start().await)
    }

    /// Starts one; panics if it does not come up within 10 s.
    pub async fn start() -> Self {
        Self::start_configured(None).await
    }

    /// Starts one with containerd's CRI plugin enabled (the benchmark's
    /// comparison with the kubelet's runtime path).
    pub async fn start_with_cri(cri: &CriPlugin) -> Self {
        Self::start_configured(Some(cri)).await
    }

    async fn start_configured(cri: Option<&CriPlugin>) -> Self {
        crate::panic_report::report_panics_at_once();
        let dir = tempfile::Builder::new()
            .prefix("berth-ctrd-")
            .tempdir()
            .expect("create containerd tempdir");
        let base = dir.path().to_path_buf();
        let socket = base.join("containerd.sock");
        let config = base.join("config.toml");
        fs::write(&config, config_toml(&base, cri)).expect("write containerd config");
        let child = spawn_daemon(&base);
        let n = INSTANCES.fetch_add(1, Ordering::Relaxed);
        let mut this = Self {
            dir: Some(dir),
            pid: child.id() as i32,
            child: Some(child),
            socket,
            namespace: format!("berth-test-{}-{n}", std::process::id()),
        };
        this.wait_ready().await;
        this
    }

    /// Stops the daemon as `systemctl stop containerd` does (SIGTERM); the
    /// shims and their containers run on.
    pub fn stop_daemon(&mut self) {
        if let Some(child) = self.child.take() {
            process::terminate(child, Signal::SIGTERM, STOP_GRACE);
        }
    }

    /// Starts the daemon again on the same root, state and sockets, and
    /// waits until it serves; it reconnects to the shims still running.
    pub async fn start_daemon(&mut self) {
        assert!(self.child.is_none(), "containerd is already running");
        let child = spawn_daemon(self.dir());
        self.pid = child.id() as i32;
        self.child = Some(child);
        self.wait_ready().await;
    }

    /// A containerd restart: [`Self::stop_daemon`], then [`Self::start_daemon`].
    pub async fn restart(&mut self) {
        self.stop_daemon();
        self.start_daemon().await;
    }

    /// Polls the gRPC socket until it accepts a connection: containerd creates
    /// it only after its plugins are loaded, so a connect is the readiness
    /// signal, and polling it with a deadline is all a client can do.
    async fn wait_ready(&mut self) {
        let socket = self.socket.clone();
        let child = self.child.as_mut().expect("containerd was spawned");
        let up = crate::process::wait_serving(child, BOOT_DEADLINE, || {
            let socket = socket.clone();
            async move { tokio::net::UnixStream::connect(&socket).await.is_ok() }
        })
        .await;
        if !up {
            panic!(
                "containerd did not come up on {}:\n{}",
                self.socket.display(),
                self.log_tail(40)
            );
        }
    }

    /// The gRPC socket (`--containerd-socket`).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// A containerd namespace no other instance uses.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The daemon's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// containerd's root (content, snapshots).
    pub fn root(&self) -> PathBuf {
        self.dir().join("root")
    }

    /// The tempdir this daemon lives in; a test may keep its own files there
    /// (removed, after unmounting, on drop).
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("dir lives until drop").path()
    }

    /// A `berth-containerd` configuration for this daemon and namespace:
    /// berth's root and CNI config dir under [`Self::dir`], no CNI plugins,
    /// `/bin/false` as the log writer. Tests override what they exercise.
    pub fn runtime_config(&self) -> ContainerdConfig {
        ContainerdConfig {
            socket: self.socket.clone(),
            namespace: self.namespace.clone(),
            root_dir: self.dir().join("berth"),
            cni_bin_dirs: vec![],
            cni_conf_dir: self.dir().join("cni-conf"),
            pod_infra_image: None,
            logger_binary: "/bin/false".into(),
            shim_timeout: berth_containerd::DEFAULT_SHIM_TIMEOUT,
        }
    }

    /// Runs `ctr --address <socket> -n <namespace> args...`.
    pub fn ctr(&self, args: &[&str]) -> Output {
        ctr(&self.socket, &self.namespace, args)
    }

    /// Runs `ctr` like [`Self::ctr`], panicking unless it succeeds; its stdout.
    pub fn ctr_stdout(&self, args: &[&str]) -> String {
        let out = self.ctr(args);
        assert!(
            out.status.success(),
            "ctr {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `ctr` in another namespace of this containerd.
    pub fn ctr_in(&self, namespace: &str, args: &[&str]) -> Output {
        ctr(&self.socket, namespace, args)
    }

    /// The last `lines` lines of containerd's own log.
    pub fn log_tail(&self, lines: usize) -> String {
        process::log_tail(&self.dir().join("containerd.log"), lines)
    }
}

impl Drop for PrivateContainerd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- containerd log (tail) ---\n{}", self.log_tail(30));
        }
        // Containers and shims outlive containerd, so they go first.
        let namespaces = ctr(&self.socket, &self.namespace, &["namespaces", "ls", "-q"]);
        let mut names: Vec<String> = String::from_utf8_lossy(&namespaces.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        if !names.contains(&self.namespace) {
            names.push(self.namespace.clone());
        }
        for ns in &names {
            purge_namespace(&self.socket, ns);
        }
        if let Some(child) = self.child.take() {
            process::terminate(child, Signal::SIGTERM, STOP_GRACE);
        }
        kill_orphan_shims(&self.socket);
        for ns in &names {
            runc_purge(ns);
        }
        remove_namespace_cgroups(&self.namespace);
        if let Some(dir) = self.dir.take() {
            mounts::unmount_all_under(dir.path());
            let _ = dir.close();
        }
    }
}

/// For a containerd test binary that doubles as the container log writer
/// (its `logger_binary`): when the shim spawned it as `<binary> logger
/// <path>` (or the runtime as `<binary> logger <path> <stdout> <stderr>`),
/// runs the logger and exits; otherwise returns at once. Call it
/// from a `#[test]` of its own.
pub fn serve_as_logger_if_spawned() {
    let args: Vec<String> = std::env::args().collect();
    if std::env::var_os("CONTAINER_ID").is_none()
        || args.get(1).map(String::as_str) != Some("logger")
    {
        return;
    }
    let fifos = args.get(3).zip(args.get(4));
    let fifos = fifos.map(|(out, err)| (Path::new(out), Path::new(err)));
    let code = match berth_containerd::logger::run_logger(Path::new(&args[2]), fifos) {
        Ok(()) => 0,
        Err(_) => 1,
    };
    std::process::exit(code);
}

/// Starts containerd on the config in `base`, appending to its log there.
fn spawn_daemon(base: &Path) -> Child {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(base.join("containerd.log"))
        .expect("open containerd log");
    Command::new(CONTAINERD_BIN)
        .arg("--config")
        .arg(base.join("config.toml"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup log fd"))
        .stderr(log)
        .spawn()
        .expect("spawn containerd")
}

/// Runs `ctr --address socket -n namespace args...`.
pub fn ctr(socket: &Path, namespace: &str, args: &[&str]) -> Output {
    Command::new(CTR_BIN)
        .arg("--address")
        .arg(socket)
        .arg("-n")
        .arg(namespace)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ctr")
}

/// The first column of `ctr ... ls` output (header skipped when present).
pub fn ctr_ids(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|id| !matches!(*id, "TASK" | "CONTAINER" | "KEY" | "REF" | "NAME"))
        .map(str::to_owned)
        .collect()
}

/// Deletes every task, container and active snapshot of `namespace` (committed
/// image snapshots stay), best effort: what a failed test left behind.
pub fn purge_namespace(socket: &Path, namespace: &str) {
    let tasks = ctr_ids(&ctr(socket, namespace, &["tasks", "ls", "-q"]));
    for task in &tasks {
        let _ = ctr(
            socket,
            namespace,
            &["tasks", "kill", "-a", "-s", "SIGKILL", task],
        );
        let _ = ctr(socket, namespace, &["tasks", "delete", "-f", task]);
    }
    let containers = ctr_ids(&ctr(socket, namespace, &["containers", "ls", "-q"]));
    for container in &containers {
        let _ = ctr(socket, namespace, &["containers", "delete", container]);
    }
    let snapshots = ctr(socket, namespace, &["snapshots", "ls"]);
    for line in String::from_utf8_lossy(&snapshots.stdout).lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.last() == Some(&"Active") {
            let _ = ctr(socket, namespace, &["snapshots", "rm", fields[0]]);
        }
    }
}

/// Shims that our containerd started and that survived it (their command
/// line names our socket).
fn kill_orphan_shims(socket: &Path) {
    let Ok(entries) = fs::read_dir("/proc") else {
        return;
    };
    let needle = socket.to_string_lossy().into_owned();
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        if cmdline.contains("containerd-shim") && cmdline.split('\0').any(|a| a == needle) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// runc state a dead shim could not clean: kill and delete what runc still
/// knows in this namespace.
fn runc_purge(namespace: &str) {
    let root = format!("/run/containerd/runc/{namespace}");
    if !Path::new(&root).exists() {
        return;
    }
    let list = Command::new("runc")
        .args(["--root", &root, "list", "-q"])
        .output();
    if let Ok(list) = list {
        for id in String::from_utf8_lossy(&list.stdout).lines() {
            let _ = Command::new("runc")
                .args(["--root", &root, "delete", "--force", id])
                .output();
        }
    }
    let _ = fs::remove_dir(&root);
}

/// Removes the empty cgroup `/<namespace>` that runc leaves in every
/// hierarchy after a container made without a cgroups path (`ctr run`) is
/// gone. Only this instance's own namespace: its name is unique, so nothing
/// another containerd uses is touched, and `rmdir` spares a cgroup in use.
fn remove_namespace_cgroups(namespace: &str) {
    for dir in namespace_cgroups(namespace) {
        let _ = fs::remove_dir(dir);
    }
}

/// Where `/<namespace>` is in each cgroup hierarchy (v1 and unified),
/// whether or not it is there.
pub(crate) fn namespace_cgroups(namespace: &str) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let hierarchies = fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path());
    hierarchies
        .chain([root.to_path_buf()])
        .map(|dir| dir.join(namespace))
        .collect()
}

/// How the CRI plugin runs, when it is enabled.
#[derive(Debug, Clone)]
pub struct CriPlugin {
    /// The sandbox (pause) image; it must be in the `k8s.io` namespace.
    pub sandbox_image: String,
    pub cni_bin_dir: PathBuf,
    /// Watched by the plugin: a conflist may arrive after the start.
    pub cni_conf_dir: PathBuf,
}

fn config_toml(base: &Path, cri: Option<&CriPlugin>) -> String {
    let d = base.display();
    let plugins = match cri {
        None => r#"disabled_plugins = ["io.containerd.grpc.v1.cri"]"#.to_owned(),
        // These machines refuse a negative oom_score_adj, which the pause
        // container asks for unless restricted to the daemon's own.
        Some(cri) => format!(
            r#"disabled_plugins = []

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{}"
    conf_dir = "{}"
"#,
            cri.sandbox_image,
            cri.cni_bin_dir.display(),
            cri.cni_conf_dir.display()
        ),
    };
    format!(
        r#"version = 2
root = "{d}/root"
state = "{d}/state"
{plugins}

[grpc]
  address = "{d}/containerd.sock"

[ttrpc]
  address = "{d}/containerd.sock.ttrpc"

[debug]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn boots_answers_ctr_and_leaves_nothing_behind() {
        let Some(containerd) = PrivateContainerd::start_or_skip().await else {
            return;
        };
        let out = containerd.ctr(&["version"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("Server:"));
        let root = containerd.root();
        let pid = containerd.pid();
        assert!(root.exists());
        drop(containerd);
        assert!(!root.exists(), "tempdir removed");
        assert!(!process::alive(pid), "containerd reaped");
    }

    #[tokio::test]
    async fn namespaces_are_unique_per_instance() {
        let Some(a) = PrivateContainerd::start_or_skip().await else {
            return;
        };
        let Some(b) = PrivateContainerd::start_or_skip().await else {
            return;
        };
        assert_ne!(a.namespace(), b.namespace());
        assert_ne!(a.socket(), b.socket());
    }
}
