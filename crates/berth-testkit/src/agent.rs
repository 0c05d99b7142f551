//! The real `berth` binary as a test sees it: `berth agent` started with every
//! path private, and the CLI pointed at its socket.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;
use tempfile::TempDir;
use tokio::time::Instant;

use crate::containerd::{ctr, purge_namespace, PrivateContainerd};
use crate::net::TestNetwork;
use crate::{mounts, process, TEST_IMAGE};

/// Overrides the path of the `berth` binary under test.
pub const BIN_ENV: &str = "BERTH_BIN";

const READY_DEADLINE: Duration = Duration::from_secs(10);
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How often `wait_for` looks at the pod.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// The agent's debug line for each API read.
const API_REQUEST_LINE: &str = "api request method=GET";
/// A directory where a failed test's whole agent log is copied, when set.
pub const FAILED_LOG_DIR_ENV: &str = "BERTH_TEST_LOG_DIR";

static FILES: AtomicU32 = AtomicU32::new(0);

/// How to start an agent.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// The containerd namespace; the containerd's own by default.
    pub namespace: Option<String>,
    /// Import the busybox test image ([`TEST_IMAGE`]) with `ctr` before the
    /// agent starts (on by default).
    pub import_test_image: bool,
    /// More `berth agent` flags.
    pub extra_args: Vec<String>,
    /// A network namespace (its `/var/run/netns` path) to run the agent
    /// in, as on a host of its own; the host's by default. Only the network
    /// namespace is entered: mounts stay shared with containerd.
    pub netns: Option<PathBuf>,
}

impl Default for AgentOptions {
    fn default() -> Self {
        Self {
            namespace: None,
            import_test_image: true,
            extra_args: Vec::new(),
            netns: None,
        }
    }
}

/// A running `berth agent` of the test's own, with its own root, log,
/// manifest and CNI directories, socket and pod network.
///
/// Dropping it stops the agent and removes everything it made in containerd
/// and on the host, so a failed test leaves no litter; if the test is failing,
/// the agent's log is printed.
#[derive(Debug)]
pub struct AgentProcess {
    dir: Option<TempDir>,
    bin: PathBuf,
    containerd_socket: PathBuf,
    namespace: String,
    extra_args: Vec<String>,
    netns: Option<PathBuf>,
    /// The running agent; reaped by `process::terminate`.
    child: Option<Child>,
    network: TestNetwork,
}

impl AgentProcess {
    /// Starts an agent on `containerd` with the default options.
    pub async fn start(containerd: &PrivateContainerd) -> Self {
        Self::start_with(containerd, AgentOptions::default()).await
    }

    /// Starts an agent and waits until its API answers `/healthz`.
    pub async fn start_with(containerd: &PrivateContainerd, options: AgentOptions) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("berth-agent-")
            .tempdir()
            .expect("create agent tempdir");
        let network = TestNetwork::claim();
        let mut agent = Self {
            dir: Some(dir),
            bin: berth_bin(),
            containerd_socket: containerd.socket().to_path_buf(),
            namespace: options
                .namespace
                .unwrap_or_else(|| containerd.namespace().to_owned()),
            extra_args: options.extra_args,
            netns: options.netns,
            child: None,
            network,
        };
        for sub in [
            agent.root_dir(),
            agent.log_dir(),
            agent.manifest_dir(),
            agent.cni_conf_dir(),
            agent.ipam_dir(),
            agent.work_dir(),
        ] {
            fs::create_dir_all(sub).expect("create agent dirs");
        }
        fs::write(
            agent.cni_conf_dir().join("10-berth-test.conflist"),
            agent.network.conflist(&agent.ipam_dir()),
        )
        .expect("write test conflist");
        if options.import_test_image {
            agent.import_test_image();
        }
        agent.launch().await;
        agent
    }

    fn import_test_image(&self) {
        let archive = crate::busybox::write_busybox_archive(&self.work_dir(), TEST_IMAGE);
        self.ctr_import(&archive);
    }

    /// Imports an image archive into the agent's namespace with `ctr`, behind
    /// the agent's back (as a node's image store may change).
    pub fn ctr_import(&self, archive: &Path) {
        let archive = archive.to_string_lossy().into_owned();
        let out = self.ctr(&["images", "import", &archive]);
        assert!(
            out.status.success(),
            "ctr images import {archive}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the agent process (again, after `stop` or `kill`) on the same
    /// directories and namespace, and waits for readiness.
    pub async fn launch(&mut self) {
        assert!(self.child.is_none(), "agent already running");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.agent_log_path())
            .expect("open agent log");
        // nsenter execs the agent, so the child's pid is the agent's.
        let mut command = match &self.netns {
            Some(netns) => {
                let mut nsenter = Command::new("nsenter");
                nsenter
                    .arg(format!("--net={}", netns.display()))
                    .arg(&self.bin);
                nsenter
            }
            None => Command::new(&self.bin),
        };
        let child = command
            .arg("agent")
            .arg("--containerd-socket")
            .arg(&self.containerd_socket)
            .args(["--containerd-namespace", &self.namespace])
            .arg("--root-dir")
            .arg(self.root_dir())
            .arg("--log-dir")
            .arg(self.log_dir())
            .arg("--manifest-dir")
            .arg(self.manifest_dir())
            .arg("--socket")
            .arg(self.socket())
            .args(["--cni-bin-dir", "/usr/lib/cni"])
            .arg("--cni-conf-dir")
            .arg(self.cni_conf_dir())
            .args(&self.extra_args)
            .env(
                "BERTH_LOG",
                "info,berth=debug,berth_agent=debug,berth_pod=debug,berth_containerd=debug",
            )
            .env("NO_COLOR", "1")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log fd"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.bin.display()));
        self.child = Some(child);
        let deadline = Instant::now() + READY_DEADLINE;
        // The agent says it is ready by creating its socket; /healthz proves the
        // API behind it answers. Polling is how any client would find out.
        while !healthz(&self.socket()).await {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                panic!("berth agent exited during start-up ({status}); its log follows");
            }
            if Instant::now() >= deadline {
                panic!("berth agent not ready within {READY_DEADLINE:?}; its log follows");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, then waits for the agent to exit (SIGKILL after 10 s).
    pub async fn stop(&mut self) -> process::Ended {
        self.signal_and_reap(Signal::SIGTERM).await
    }

    /// SIGKILL: an agent crash.
    pub async fn kill(&mut self) -> process::Ended {
        self.signal_and_reap(Signal::SIGKILL).await
    }

    async fn signal_and_reap(&mut self, signal: Signal) -> process::Ended {
        let child = self.child.take().expect("agent not running");
        tokio::task::spawn_blocking(move || process::terminate(child, signal, STOP_GRACE))
            .await
            .expect("reaper task")
    }

    /// `GET path` on the agent's API without the CLI; the body as JSON when
    /// the answer is a 200.
    pub async fn api_get_json(&self, path: &str) -> Option<Value> {
        match api_get(&self.socket(), path).await? {
            (200, body) => serde_json::from_slice(&body).ok(),
            _ => None,
        }
    }

    /// Whether the API answers `/healthz` with 200.
    pub async fn healthy(&self) -> bool {
        healthz(&self.socket()).await
    }

    /// The agent's pid while it runs.
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// The containerd namespace it uses.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Its test network (bridge and subnet).
    pub fn network(&self) -> &TestNetwork {
        &self.network
    }

    fn base(&self) -> &Path {
        self.dir.as_ref().expect("dir lives until drop").path()
    }

    /// `--root-dir`.
    pub fn root_dir(&self) -> PathBuf {
        self.base().join("root")
    }

    /// `--log-dir`: the CRI log files.
    pub fn log_dir(&self) -> PathBuf {
        self.base().join("logs")
    }

    /// `--manifest-dir`: static pods.
    pub fn manifest_dir(&self) -> PathBuf {
        self.base().join("manifests")
    }

    /// `--cni-conf-dir`.
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.base().join("cni")
    }

    /// host-local's data dir for this agent's network.
    pub fn ipam_dir(&self) -> PathBuf {
        self.base().join("ipam")
    }

    /// Scratch space for the test (manifests to apply, archives).
    pub fn work_dir(&self) -> PathBuf {
        self.base().join("work")
    }

    /// `--socket`.
    pub fn socket(&self) -> PathBuf {
        self.base().join("berth.sock")
    }

    fn agent_log_path(&self) -> PathBuf {
        self.base().join("agent.log")
    }

    /// Everything the agent wrote to stdout and stderr, across restarts.
    pub fn agent_log(&self) -> String {
        fs::read_to_string(self.agent_log_path()).unwrap_or_default()
    }

    /// Runs `ctr` against its containerd and namespace.
    pub fn ctr(&self, args: &[&str]) -> Output {
        ctr(&self.containerd_socket, &self.namespace, args)
    }

    /// Runs `berth --socket <socket> args...`.
    pub async fn cli(&self, args: &[&str]) -> Output {
        tokio::process::Command::new(&self.bin)
            .arg("--socket")
            .arg(self.socket())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .expect("run berth")
    }

    /// Runs the CLI and panics unless it succeeds; returns its stdout.
    pub async fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args).await;
        assert!(
            out.status.success(),
            "berth {} failed ({}):\nstdout: {}\nstderr: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Writes `text` to a fresh file in the work dir and returns its path.
    pub fn write_work_file(&self, stem: &str, text: &str) -> PathBuf {
        let n = FILES.fetch_add(1, Ordering::Relaxed);
        let path = self.work_dir().join(format!("{stem}-{n}.yaml"));
        fs::write(&path, text).expect("write work file");
        path
    }

    /// `berth apply -f <file with yaml>`, whatever the outcome.
    pub async fn apply_yaml_output(&self, yaml: &str) -> Output {
        let path = self.write_work_file("apply", yaml);
        self.cli(&["apply", "-f", &path.to_string_lossy()]).await
    }

    /// `berth apply -f`, which must succeed; returns its stdout.
    pub async fn apply_yaml(&self, yaml: &str) -> String {
        let path = self.write_work_file("apply", yaml);
        self.cli_ok(&["apply", "-f", &path.to_string_lossy()]).await
    }

    /// `berth get pod NAME -o json` (with `-n` for other namespaces); `None`
    /// when the CLI fails (e.g. not found).
    pub async fn try_get_pod_json(&self, namespace: &str, name: &str) -> Option<Value> {
        let mut args = vec!["get", "pod", name, "-o", "json"];
        if namespace != "default" {
            args.extend(["-n", namespace]);
        }
        let out = self.cli(&args).await;
        if !out.status.success() {
            return None;
        }
        Some(serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "berth get pod {name} -o json printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        }))
    }

    /// The pod as JSON; panics when it does not exist.
    pub async fn get_pod_json(&self, namespace: &str, name: &str) -> Value {
        let mut args = vec!["get", "pod", name, "-o", "json"];
        if namespace != "default" {
            args.extend(["-n", namespace]);
        }
        let out = self.cli_ok(&args).await;
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }

    /// Polls `get pod -o json` every 50 ms until `pred` holds, and returns that
    /// pod; panics with the last pod seen after `timeout`.
    ///
    /// Polling is the right tool here: the test observes the agent through its
    /// API, as a user would, and the API's state is what is asserted on.
    pub async fn wait_for(
        &self,
        namespace: &str,
        name: &str,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        loop {
            if let Some(pod) = self.try_get_pod_json(namespace, name).await {
                if pred(&pod) {
                    return pod;
                }
                last = Some(pod);
            }
            if Instant::now() >= deadline {
                panic!(
                    "pod {namespace}/{name}: not {what} after {timeout:?}; last seen:\n{}",
                    last.map(|p| serde_json::to_string_pretty(&p).unwrap_or_default())
                        .unwrap_or_else(|| "(never found)".into())
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Polls until `get pod` no longer finds the pod.
    pub async fn wait_gone(&self, namespace: &str, name: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.try_get_pod_json(namespace, name).await.is_some() {
            if Instant::now() >= deadline {
                panic!("pod {namespace}/{name} still exists after {timeout:?}");
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let path = self.agent_log_path();
            // A failing test usually polled the API up to its deadline:
            // those request lines would fill the tail.
            eprintln!(
                "--- berth agent log ({}; last 200 lines, API requests left out) ---\n{}",
                path.display(),
                process::log_tail_without(&path, 200, Some(API_REQUEST_LINE))
            );
            keep_failed_log(&path, &self.namespace);
        }
        if let Some(child) = self.child.take() {
            process::terminate(child, Signal::SIGTERM, STOP_GRACE);
        }
        // Cleanup without berth: whatever the agent did or did not undo.
        purge_namespace(&self.containerd_socket, &self.namespace);
        if let Some(dir) = self.dir.take() {
            mounts::unmount_all_under(dir.path());
            let _ = dir.close();
        }
    }
}

/// Copies a failed test's agent log to [`FAILED_LOG_DIR_ENV`], named by the
/// agent's containerd namespace (unique per agent), when that is set.
fn keep_failed_log(log: &Path, namespace: &str) {
    let Some(dir) = std::env::var_os(FAILED_LOG_DIR_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let kept = dir.join(format!("{namespace}.log"));
    match fs::create_dir_all(&dir).and_then(|()| fs::copy(log, &kept)) {
        Ok(_) => eprintln!("--- the whole agent log is kept at {} ---", kept.display()),
        Err(e) => eprintln!("cannot keep the agent log at {}: {e}", kept.display()),
    }
}

/// `GET /healthz` over the agent's socket; true on a 200.
pub async fn healthz(socket: &Path) -> bool {
    matches!(api_get(socket, "/healthz").await, Some((200, _)))
}

/// A plain HTTP/1.1 `GET path` over the agent's unix socket, for callers that
/// must not pay for a CLI process per request (the benchmark's tight polls).
/// Returns the status code and the (de-chunked) body; `None` when the agent
/// does not answer within 2 s.
pub async fn api_get(socket: &Path, path: &str) -> Option<(u16, Vec<u8>)> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    crate::api_watch::exchange(socket, request.as_bytes(), Duration::from_secs(2)).await
}

pub(crate) fn parse_response(response: &[u8]) -> Option<(u16, Vec<u8>)> {
    let split = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
    let body = &response[split + 4..];
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = head
        .lines()
        .any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked"));
    Some((
        status,
        if chunked {
            dechunk(body)?
        } else {
            body.to_vec()
        },
    ))
}

fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_field = std::str::from_utf8(&body[..line_end]).ok()?;
        let size = usize::from_str_radix(size_field.split(';').next()?.trim(), 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

/// The `berth` binary: `$BERTH_BIN`, else `berth` in the cargo target
/// directory this test executable was built into (`target/<profile>/deps/x`
/// or `target/<profile>/x`).
pub fn berth_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os(BIN_ENV) {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    let bin = dir.join("berth");
    assert!(
        bin.exists(),
        "{} not found: build it first (cargo build -p berth), or set {BIN_ENV}",
        bin.display()
    );
    bin
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_parsed_plain_and_chunked() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        assert_eq!(parse_response(plain), Some((200, b"ok".to_vec())));
        let chunked =
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked), Some((404, b"abcde".to_vec())));
        assert_eq!(parse_response(b"garbage"), None);
    }
}
