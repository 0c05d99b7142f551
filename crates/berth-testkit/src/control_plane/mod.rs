//! A real Kubernetes control plane for cluster-mode tests: etcd,
//! kube-apiserver, kube-controller-manager and kube-scheduler (v1.37, built
//! by scripts/build-control-plane.sh) on free loopback ports, with their
//! certificates, kubeconfigs, data and logs in a directory of their own.
//!
//! The apiserver runs as a production one would for a kubelet: Node and
//! RBAC authorization, NodeRestriction admission, client certificates from
//! one CA. [`ControlPlane::node_kubeconfig`] mints a `system:node:<name>`
//! identity for any node. Everything is stopped, and a temporary directory
//! removed, on drop.

mod binaries;
mod kubeconfig;
mod layout;
mod pki;

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use nix::sys::signal::Signal;
use tempfile::TempDir;
use tokio::time::Instant;

pub use binaries::{built_bin_dir, installed_bin_dir, BIN_ENV, COMPONENTS, REQUIRE_ENV};
pub use layout::{KUBERNETES_SERVICE_IP, SERVICE_ACCOUNT_ISSUER, SERVICE_CIDR};

use layout::{Layout, Ports};
use pki::{CertificateAuthority, Usage};

use crate::process;

/// The Kubernetes release the control plane is built from
/// (integration/k8s/go.mod pins it; a test checks they agree).
pub const KUBERNETES_VERSION: &str = "v1.37.2";

/// How long etcd may take to answer `/health`.
const ETCD_DEADLINE: Duration = Duration::from_secs(30);
/// How long the apiserver may take to be ready, and then the controller
/// manager to create the `default` ServiceAccount. Generous: on 2 busy
/// cores a start takes several times what it takes on an idle machine.
const APISERVER_DEADLINE: Duration = Duration::from_secs(120);
const SERVICE_ACCOUNT_DEADLINE: Duration = Duration::from_secs(120);
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Per request while polling: a wedged server must not stall the poll.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Lines of a component's log an error shows.
const LOG_TAIL: usize = 30;

/// Where a control plane lives.
#[derive(Debug, Clone, Default)]
pub struct ControlPlaneOptions {
    /// A directory for its files, created if missing and kept after the
    /// control plane stops (its logs stay readable). `None`: a temporary
    /// directory, removed on drop.
    pub dir: Option<PathBuf>,
    /// Start each process in a process group of its own, so a terminal's
    /// Ctrl-C reaches only the caller, which then stops them in order
    /// (scripts/cluster-up.sh). Tests leave them in theirs, so a test
    /// runner that kills a hung test's group kills them too.
    pub own_process_group: bool,
}

/// How long start-up took, counted from the call to start.
#[derive(Debug, Clone, Copy)]
pub struct Startup {
    /// Until the apiserver's `/readyz` answered 200.
    pub readyz: Duration,
    /// Until the `default` ServiceAccount existed in `default`: the
    /// controller manager is working, and pods can be created.
    pub default_service_account: Duration,
}

/// Credentials minted for one node.
#[derive(Debug, Clone)]
pub struct NodeCredentials {
    /// A kubeconfig authenticating as `system:node:<name>` (group `system:nodes`).
    pub kubeconfig: PathBuf,
    /// The client certificate and key that kubeconfig embeds.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A serving certificate for the node's kubelet API (`CN=system:node:<name>`,
    /// for `<name>`, `localhost` and 127.0.0.1), signed by the cluster CA.
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
}

/// One running process of the control plane.
#[derive(Debug)]
struct Component {
    name: &'static str,
    /// Reaped by `process::terminate` on drop.
    child: Option<Child>,
    pid: u32,
    log: PathBuf,
}

/// A running control plane; stopped (and its temporary directory removed)
/// on drop.
#[derive(Debug)]
pub struct ControlPlane {
    /// `Some` when the directory is temporary.
    tempdir: Option<TempDir>,
    layout: Layout,
    ca: CertificateAuthority,
    components: Vec<Component>,
    own_process_group: bool,
    startup: Startup,
}

impl ControlPlane {
    /// Starts one from the installed binaries, or returns `None` (printing
    /// why) when they or `kubectl` are missing. With
    /// `BERTH_REQUIRE_CONTROL_PLANE=1` a missing piece is a panic, so CI
    /// cannot pass by skipping. A start that fails panics with the failing
    /// component's log.
    pub async fn start_or_skip() -> Option<Self> {
        let missing = match installed_bin_dir() {
            Err(why) => Some(why),
            Ok(_) if binaries::kubectl().is_none() => {
                Some("kubectl not found on PATH (scripts/install-deps.sh --test)".to_owned())
            }
            Ok(_) => None,
        };
        if let Some(why) = missing {
            if std::env::var(REQUIRE_ENV).as_deref() == Ok("1") {
                panic!("{REQUIRE_ENV}=1 but cannot start a control plane: {why}");
            }
            eprintln!("skipping: {why}");
            return None;
        }
        let bin_dir = installed_bin_dir().expect("checked above");
        match Self::start(&bin_dir, ControlPlaneOptions::default()).await {
            Ok(control_plane) => Some(control_plane),
            Err(e) => panic!("control plane did not start: {e:#}"),
        }
    }

    /// Writes the certificates and kubeconfigs, starts etcd and the
    /// apiserver, waits for `/readyz`, starts the controller manager and
    /// the scheduler, and waits for the `default` ServiceAccount. An error
    /// names the process that died or was not ready in time, with the end
    /// of its log; whatever was started is stopped again.
    pub async fn start(bin_dir: &Path, options: ControlPlaneOptions) -> anyhow::Result<Self> {
        let began = Instant::now();
        let (tempdir, dir) = match options.dir {
            Some(dir) => (None, dir),
            None => {
                let tempdir = tempfile::Builder::new()
                    .prefix("berth-cp-")
                    .tempdir()
                    .context("create the control plane's directory")?;
                let dir = tempdir.path().to_path_buf();
                (Some(tempdir), dir)
            }
        };
        let layout = Layout {
            dir,
            ports: Ports::free().context("find free loopback ports")?,
        };
        for sub in [layout.pki_dir(), layout.log_dir()] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&sub)
                .with_context(|| format!("create {}", sub.display()))?;
        }
        let ca = write_credentials(&layout)?;
        let mut this = Self {
            tempdir,
            layout,
            ca,
            components: Vec::new(),
            own_process_group: options.own_process_group,
            startup: Startup {
                readyz: Duration::ZERO,
                default_service_account: Duration::ZERO,
            },
        };
        let client = this.http_client()?;

        this.spawn(bin_dir, "etcd", this.layout.etcd_args())?;
        let health = format!("{}/health", this.layout.etcd_url());
        this.wait_until("etcd", "/health", ETCD_DEADLINE, || {
            get_ok(&client, &health)
        })
        .await?;

        this.spawn(bin_dir, "kube-apiserver", this.layout.apiserver_args())?;
        let readyz = format!("{}/readyz", this.layout.server());
        this.wait_until("kube-apiserver", "/readyz", APISERVER_DEADLINE, || {
            get_ok(&client, &readyz)
        })
        .await?;
        this.startup.readyz = began.elapsed();

        // Only now: the controller manager exits if the apiserver is not
        // healthy within 10 s of its own start (kube-controller-manager
        // `CreateControllerContext` → `WaitForAPIServer`).
        let args = this.layout.controller_manager_args();
        this.spawn(bin_dir, "kube-controller-manager", args)?;
        this.spawn(bin_dir, "kube-scheduler", this.layout.scheduler_args())?;
        let default_sa = format!(
            "{}/api/v1/namespaces/default/serviceaccounts/default",
            this.layout.server()
        );
        this.wait_until(
            "kube-controller-manager",
            "the default ServiceAccount",
            SERVICE_ACCOUNT_DEADLINE,
            || get_ok(&client, &default_sa),
        )
        .await?;
        this.startup.default_service_account = began.elapsed();
        // As kubeadm does: the API server's kubelet client may use every
        // node's kubelet API (logs, exec), authorized there by
        // SubjectAccessReview.
        let bound = this.kubectl(&[
            "create",
            "clusterrolebinding",
            "kube-apiserver-kubelet-client",
            "--clusterrole=system:kubelet-api-admin",
            "--user=kube-apiserver-kubelet-client",
        ]);
        anyhow::ensure!(
            bound.status.success(),
            "bind the API server's kubelet client to system:kubelet-api-admin: {}",
            String::from_utf8_lossy(&bound.stderr)
        );
        Ok(this)
    }

    /// The apiserver's URL, `https://127.0.0.1:<port>`.
    pub fn server(&self) -> String {
        self.layout.server()
    }

    /// A kubeconfig for `admin` in `system:masters`.
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.layout.kubeconfig("admin")
    }

    /// The cluster CA's certificate (PEM): it signed every certificate here,
    /// and verifies client certificates.
    pub fn ca_cert_path(&self) -> PathBuf {
        self.layout.pki("ca.crt")
    }

    /// The admin's client certificate and key (PEM), for clients that are
    /// not kubectl.
    pub fn admin_identity(&self) -> (PathBuf, PathBuf) {
        (self.layout.pki("admin.crt"), self.layout.pki("admin.key"))
    }

    /// The directory holding certificates, kubeconfigs, logs and etcd's data.
    pub fn dir(&self) -> &Path {
        &self.layout.dir
    }

    /// How long start-up took.
    pub fn startup(&self) -> Startup {
        self.startup
    }

    /// Each process's name and pid, in start order.
    pub fn processes(&self) -> Vec<(&'static str, u32)> {
        self.components.iter().map(|c| (c.name, c.pid)).collect()
    }

    /// The last `lines` lines of a component's log (`kube-apiserver`, ...).
    pub fn log_tail(&self, component: &str, lines: usize) -> String {
        process::log_tail(&self.layout.log(component), lines)
    }

    /// A kubeconfig authenticating as `system:node:<name>` in group
    /// `system:nodes`, minted on first use; panics on an invalid name.
    pub fn node_kubeconfig(&self, name: &str) -> PathBuf {
        self.node_credentials(name)
            .unwrap_or_else(|e| panic!("node credentials for {name:?}: {e:#}"))
            .kubeconfig
    }

    /// Mints (on first use) a client identity and a kubelet serving
    /// certificate for node `name`, which must be a valid Node name.
    pub fn node_credentials(&self, name: &str) -> anyhow::Result<NodeCredentials> {
        validate_node_name(name)?;
        let l = &self.layout;
        let creds = NodeCredentials {
            kubeconfig: l.kubeconfig(&format!("node-{name}")),
            client_cert: l.pki(&format!("node-{name}.crt")),
            client_key: l.pki(&format!("node-{name}.key")),
            serving_cert: l.pki(&format!("node-{name}-serving.crt")),
            serving_key: l.pki(&format!("node-{name}-serving.key")),
        };
        if creds.kubeconfig.exists() {
            return Ok(creds);
        }
        let user = format!("system:node:{name}");
        let client = self.ca.issue(&user, Some("system:nodes"), Usage::Client)?;
        pki::write_issued(&l.pki_dir(), &format!("node-{name}"), &client)?;
        let names = vec![name.to_owned(), "localhost".into(), "127.0.0.1".into()];
        let serving = self.ca.issue(&user, None, Usage::Server(names))?;
        pki::write_issued(&l.pki_dir(), &format!("node-{name}-serving"), &serving)?;
        kubeconfig::write(
            &creds.kubeconfig,
            &l.server(),
            self.ca.cert_pem(),
            &user,
            &client,
        )?;
        Ok(creds)
    }

    /// Runs the real `kubectl` as the admin.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_as(&self.admin_kubeconfig(), args)
    }

    /// Runs the real `kubectl` with `kubeconfig`; its discovery cache stays
    /// in this control plane's directory.
    pub fn kubectl_as(&self, kubeconfig: &Path, args: &[&str]) -> Output {
        self.kubectl_command_as(kubeconfig, args)
            .stdin(Stdio::null())
            .output()
            .expect("run kubectl")
    }

    /// The admin's `kubectl ARGS`, to run with stdin or on a terminal.
    pub fn kubectl_command(&self, args: &[&str]) -> Command {
        self.kubectl_command_as(&self.admin_kubeconfig(), args)
    }

    /// `kubectl` with `kubeconfig` and `args`, to spawn (a `logs -f` that
    /// runs alongside the test).
    pub fn kubectl_command_as(&self, kubeconfig: &Path, args: &[&str]) -> Command {
        let kubectl = binaries::kubectl().expect("kubectl not found on PATH");
        let mut command = Command::new(kubectl);
        command
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--cache-dir")
            .arg(self.layout.dir.join("kubectl-cache"))
            .args(args);
        command
    }

    /// A client that trusts the cluster CA and presents the admin's
    /// certificate.
    fn http_client(&self) -> anyhow::Result<reqwest::Client> {
        let ca = fs::read(self.ca_cert_path())?;
        let mut identity = fs::read(self.layout.pki("admin.crt"))?;
        identity.extend(fs::read(self.layout.pki("admin.key"))?);
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&ca)?])
            .identity(reqwest::Identity::from_pem(&identity)?)
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("build the readiness client")
    }

    fn spawn(
        &mut self,
        bin_dir: &Path,
        name: &'static str,
        args: Vec<String>,
    ) -> anyhow::Result<()> {
        let log_path = self.layout.log(name);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("open {}", log_path.display()))?;
        let mut command = Command::new(bin_dir.join(name));
        if self.own_process_group {
            command.process_group(0);
        }
        let child = command
            .args(&args)
            .current_dir(&self.layout.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {}", bin_dir.join(name).display()))?;
        self.components.push(Component {
            name,
            pid: child.id(),
            child: Some(child),
            log: log_path,
        });
        Ok(())
    }

    /// Polls `ready` until it holds. Fails when a component exits (naming
    /// it) or when `deadline` passes (naming `blame`, the component whose
    /// job `what` is); either way with the end of that component's log.
    async fn wait_until<F>(
        &mut self,
        blame: &str,
        what: &str,
        deadline: Duration,
        mut ready: impl FnMut() -> F,
    ) -> anyhow::Result<()>
    where
        F: std::future::Future<Output = Result<(), String>>,
    {
        let until = Instant::now() + deadline;
        loop {
            let last = match ready().await {
                Ok(()) => return Ok(()),
                Err(last) => last,
            };
            for component in &mut self.components {
                let child = component.child.as_mut().expect("running");
                if let Ok(Some(status)) = child.try_wait() {
                    bail!(
                        "{} exited ({status}) while waiting for {what}; end of {}:\n{}",
                        component.name,
                        component.log.display(),
                        process::log_tail(&component.log, LOG_TAIL)
                    );
                }
            }
            if Instant::now() >= until {
                let log = self.layout.log(blame);
                bail!(
                    "{what} not ready after {deadline:?} (last answer: {last}); end of {}:\n{}",
                    log.display(),
                    process::log_tail(&log, LOG_TAIL)
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for c in &self.components {
                eprintln!(
                    "--- {} log (tail) ---\n{}",
                    c.name,
                    process::log_tail(&c.log, LOG_TAIL)
                );
            }
        }
        // etcd last: the apiserver's graceful shutdown hangs on a vanished
        // etcd (10 s instead of 1). The others all at once, each waiting
        // out its own graceful shutdown.
        let (etcd, others): (Vec<_>, Vec<_>) =
            self.components.iter_mut().partition(|c| c.name == "etcd");
        for group in [others, etcd] {
            let stopping: Vec<_> = group
                .into_iter()
                .filter_map(|c| c.child.take())
                .map(|child| {
                    std::thread::spawn(move || {
                        process::terminate(child, Signal::SIGTERM, STOP_GRACE)
                    })
                })
                .collect();
            for stop in stopping {
                let _ = stop.join();
            }
        }
        if let Some(dir) = self.tempdir.take() {
            let _ = dir.close();
        }
    }
}

/// Writes the CA, every component's certificate, the service-account key
/// pair and the admin, controller-manager and scheduler kubeconfigs.
fn write_credentials(l: &Layout) -> anyhow::Result<CertificateAuthority> {
    let ca = CertificateAuthority::generate("berth-test-ca")?;
    let pki = l.pki_dir();
    pki::write_private(&l.pki("ca.crt"), ca.cert_pem())?;
    pki::write_private(&l.pki("ca.key"), &ca.key_pem())?;
    let serving_names = [
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "localhost",
        "127.0.0.1",
        KUBERNETES_SERVICE_IP,
    ];
    let apiserver = ca.issue(
        "kube-apiserver",
        None,
        Usage::Server(serving_names.map(str::to_owned).to_vec()),
    )?;
    pki::write_issued(&pki, "apiserver", &apiserver)?;
    let kubelet_client = ca.issue("kube-apiserver-kubelet-client", None, Usage::Client)?;
    pki::write_issued(&pki, "apiserver-kubelet-client", &kubelet_client)?;
    let (sa_key, sa_pub) = pki::service_account_key()?;
    pki::write_private(&l.pki("sa.key"), &sa_key)?;
    pki::write_private(&l.pki("sa.pub"), &sa_pub)?;
    // The users upstream's bootstrap RBAC policy grants: system:masters is
    // cluster-admin; the other two have their own ClusterRoleBindings.
    for (file, user, group) in [
        ("admin", "admin", Some("system:masters")),
        ("controller-manager", "system:kube-controller-manager", None),
        ("scheduler", "system:kube-scheduler", None),
    ] {
        let issued = ca.issue(user, group, Usage::Client)?;
        pki::write_issued(&pki, file, &issued)?;
        kubeconfig::write(
            &l.kubeconfig(file),
            &l.server(),
            ca.cert_pem(),
            user,
            &issued,
        )?;
    }
    Ok(ca)
}

/// A Node name is a DNS subdomain (apimachinery `IsDNS1123Subdomain`); it
/// also names files here.
pub fn validate_node_name(name: &str) -> anyhow::Result<()> {
    let valid_label = |label: &str| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if name.len() > 253 || !name.split('.').all(valid_label) {
        bail!(
            "invalid node name {name:?}: a lowercase RFC 1123 subdomain must consist of lower case \
             alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
        );
    }
    Ok(())
}

/// `Ok` when `url` answers 200; else what it answered, for the error.
async fn get_ok(client: &reqwest::Client, url: &str) -> Result<(), String> {
    match client.get(url).send().await {
        Ok(resp) if resp.status().is_success() => Ok(()),
        Ok(resp) => {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            Err(format!("{status}: {}", body.trim()))
        }
        Err(e) => Err(format!("{e}")),
    }
}

#[cfg(test)]
mod tests;
