//! A registry of the test's own: Debian's `docker-registry` (distribution
//! 2.8) on 127.0.0.1 with a free port, plain HTTP, storage under a tempdir,
//! optionally behind htpasswd basic auth. Images get in with skopeo from the
//! test kit's OCI archives; its access log tells what was fetched.
//!
//! Basic auth works over plain HTTP with this registry (it only warns). TLS
//! is optional ([`LocalRegistry::start_tls`]), with a self-signed certificate
//! no client trusts.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::containerd::REQUIRE_ENV;
use crate::process;

/// The registry binary (Debian's docker-registry package).
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
/// Pushes images into it.
pub const SKOPEO_BIN: &str = "/usr/bin/skopeo";

const BOOT_DEADLINE: Duration = Duration::from_secs(10);
const STOP_GRACE: Duration = Duration::from_secs(5);
/// bcrypt's minimum: the registry checks the hash on every request.
const BCRYPT_COST: u32 = 4;

static PUSHES: AtomicU32 = AtomicU32::new(0);

/// `Some` when docker-registry and skopeo are installed; otherwise `None`
/// (printing why), or a panic with `BERTH_REQUIRE_CONTAINERD=1`.
fn tools_or_skip() -> Option<()> {
    let missing = [REGISTRY_BIN, SKOPEO_BIN]
        .into_iter()
        .find(|bin| !Path::new(bin).exists());
    if let Some(bin) = missing {
        if std::env::var(REQUIRE_ENV).as_deref() == Ok("1") {
            panic!("{REQUIRE_ENV}=1 but {bin} is missing (scripts/install-deps.sh --test)");
        }
        eprintln!("skipping: {bin} not installed");
        return None;
    }
    Some(())
}

/// How an image is pushed.
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// skopeo's `--format`: `oci`, `v2s2` (docker media types); default: as
    /// the archive (OCI).
    pub format: Option<String>,
    /// skopeo's `--dest-compress-format`: `gzip` or `zstd`.
    pub compress: Option<String>,
}

/// A running (or stopped) local registry; killed and removed on drop.
#[derive(Debug)]
pub struct LocalRegistry {
    dir: TempDir,
    port: u16,
    child: Option<Child>,
    credentials: Option<(String, String)>,
}

impl LocalRegistry {
    /// Starts one, or returns `None` (printing why) when docker-registry or
    /// skopeo is missing; with `BERTH_REQUIRE_CONTAINERD=1` that panics.
    pub async fn start_or_skip(credentials: Option<(&str, &str)>) -> Option<Self> {
        tools_or_skip()?;
        Some(Self::start(credentials).await)
    }

    /// Starts one, requiring `user:password` when `credentials` are given;
    /// panics if it does not come up within 10 s.
    pub async fn start(credentials: Option<(&str, &str)>) -> Self {
        Self::start_with(credentials, false).await
    }

    /// Like [`Self::start_or_skip`], serving HTTPS with a self-signed
    /// certificate for `127.0.0.1`.
    pub async fn start_tls_or_skip() -> Option<Self> {
        tools_or_skip()?;
        Some(Self::start_with(None, true).await)
    }

    async fn start_with(credentials: Option<(&str, &str)>, tls: bool) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("berth-registry-")
            .tempdir()
            .expect("create registry tempdir");
        let port = free_port();
        let credentials = credentials.map(|(u, p)| (u.to_string(), p.to_string()));
        let mut auth = String::new();
        if let Some((user, password)) = &credentials {
            let hash = bcrypt::hash(password, BCRYPT_COST).expect("bcrypt");
            let htpasswd = dir.path().join("htpasswd");
            fs::write(&htpasswd, format!("{user}:{hash}\n")).expect("write htpasswd");
            auth = format!(
                "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                htpasswd.display()
            );
        }
        let mut tls_config = String::new();
        if tls {
            let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()])
                .expect("self-signed certificate");
            let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
            fs::write(&cert_path, cert.cert.pem()).expect("write certificate");
            fs::write(&key_path, cert.signing_key.serialize_pem()).expect("write key");
            tls_config = format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert_path.display(),
                key_path.display()
            );
        }
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n{tls_config}{auth}",
            dir.path().join("data").display()
        );
        fs::write(dir.path().join("config.yml"), config).expect("write registry config");
        let mut this = Self {
            dir,
            port,
            child: None,
            credentials,
        };
        this.spawn().await;
        this
    }

    async fn spawn(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open registry log");
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log fd"))
            .stderr(log)
            .spawn()
            .expect("spawn docker-registry");
        // It listens once its storage and handlers are set up.
        let port = self.port;
        let child = self.child.insert(child);
        let up = crate::process::wait_serving(child, BOOT_DEADLINE, || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        if !up {
            panic!(
                "docker-registry did not come up on port {}:\n{}",
                self.port,
                self.log_tail(30)
            );
        }
    }

    /// `127.0.0.1:PORT`, the registry part of image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT/<repo_tag>`.
    pub fn reference(&self, repo_tag: &str) -> String {
        format!("{}/{repo_tag}", self.host())
    }

    /// Where it keeps repositories and blobs (a test may damage them).
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The user and password it requires, if any.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// Stops it (connections are refused from now on); storage is kept.
    pub async fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            tokio::task::spawn_blocking(move || {
                process::terminate(child, Signal::SIGTERM, STOP_GRACE)
            })
            .await
            .expect("stop docker-registry");
        }
    }

    /// Starts it again on the same port with the same storage.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.spawn().await;
    }

    /// Whether it is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Pushes the image of an OCI archive (e.g. from
    /// [`crate::write_busybox_archive`]) as `repo:tag`; returns its manifest
    /// digest.
    pub async fn push(&self, archive: &Path, repo_tag: &str) -> String {
        self.push_with(archive, repo_tag, &PushOptions::default())
            .await
    }

    /// [`Self::push`] with skopeo's format and compression options.
    pub async fn push_with(&self, archive: &Path, repo_tag: &str, options: &PushOptions) -> String {
        let n = PUSHES.fetch_add(1, Ordering::Relaxed);
        let digest_file = self.dir.path().join(format!("digest-{n}"));
        let mut command = tokio::process::Command::new(SKOPEO_BIN);
        command
            .args([
                "--insecure-policy",
                "copy",
                "--quiet",
                "--dest-tls-verify=false",
            ])
            .arg("--digestfile")
            .arg(&digest_file);
        if let Some((user, password)) = &self.credentials {
            command
                .arg("--dest-creds")
                .arg(format!("{user}:{password}"));
        }
        if let Some(format) = &options.format {
            command.args(["--format", format]);
        }
        if let Some(compress) = &options.compress {
            command.args(["--dest-compress-format", compress]);
        }
        command
            .arg(format!("oci-archive:{}", archive.display()))
            .arg(format!("docker://{}", self.reference(repo_tag)));
        let out = command.output().await.expect("run skopeo");
        assert!(
            out.status.success(),
            "skopeo copy {} {repo_tag}: {}\nregistry log:\n{}",
            archive.display(),
            String::from_utf8_lossy(&out.stderr),
            self.log_tail(20)
        );
        fs::read_to_string(&digest_file)
            .expect("read skopeo's digest file")
            .trim()
            .to_string()
    }

    /// Every successful blob download so far (`GET /v2/<repo>/blobs/<digest>`
    /// answered 200), as the digests fetched, in order.
    pub fn blob_fetches(&self) -> Vec<String> {
        self.access_log()
            .iter()
            .filter(|(method, path, status)| {
                method == "GET" && *status == 200 && path.contains("/blobs/sha256:")
            })
            .filter_map(|(_, path, _)| {
                path.rsplit('/')
                    .next()
                    .map(|d| d.split('?').next().unwrap_or(d).to_string())
            })
            .collect()
    }

    /// Every manifest request so far (GET or HEAD), whatever the answer.
    pub fn manifest_requests(&self) -> usize {
        self.access_log()
            .iter()
            .filter(|(_, path, _)| path.contains("/manifests/"))
            .count()
    }

    /// `(method, path, status)` of each request in the access log (combined
    /// log format: `... "GET /v2/... HTTP/1.1" 200 ...`).
    fn access_log(&self) -> Vec<(String, String, u16)> {
        let text = fs::read_to_string(self.log_path()).unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                let (_, rest) = line.split_once(" \"")?;
                let (request, rest) = rest.split_once("\" ")?;
                let mut request = request.split(' ');
                let method = request.next()?.to_string();
                let path = request.next()?.to_string();
                let status = rest.split(' ').next()?.parse().ok()?;
                path.starts_with("/v2/").then_some((method, path, status))
            })
            .collect()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        process::log_tail(&self.log_path(), lines)
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- registry log (tail) ---\n{}", self.log_tail(30));
        }
        if let Some(child) = self.child.take() {
            process::terminate(child, Signal::SIGTERM, STOP_GRACE);
        }
    }
}

/// A port nobody listens on right now (the kernel's pick).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("find a free port")
        .port()
}
