//! Image import, status, listing and the pause image against a private
//! containerd. Skips (with a message) when /usr/bin/containerd is missing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use berth_containerd::archive::ImageBuilder;
use berth_containerd::{Containerd, ContainerdConfig};
use berth_runtime::{ImageConfig, RuntimeErrorKind};
use tokio::time::Instant;

const CONTAINERD: &str = "/usr/bin/containerd";
const NAMESPACE: &str = "berth-images-test";

/// A containerd of the test's own, killed (by pid) when dropped.
struct PrivateContainerd {
    child: Child,
    dir: tempfile::TempDir,
}

impl PrivateContainerd {
    fn start() -> Option<Self> {
        if !Path::new(CONTAINERD).exists() {
            eprintln!("skipping: {CONTAINERD} is not installed");
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path().display();
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[debug]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
"#
        );
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("containerd.log")).unwrap();
        let child = Command::new(CONTAINERD)
            .arg("--config")
            .arg(dir.path().join("config.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("containerd is installed, so it must start");
        Some(Self { child, dir })
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    fn config(&self) -> ContainerdConfig {
        ContainerdConfig {
            socket: self.socket(),
            namespace: NAMESPACE.into(),
            root_dir: self.dir.path().join("berth"),
            cni_bin_dirs: vec![],
            cni_conf_dir: self.dir.path().join("cni"),
            pod_infra_image: None,
            logger_binary: "/bin/false".into(),
        }
    }

    /// Connects once the daemon answers (it boots in tens of milliseconds).
    async fn connect(&self, config: ContainerdConfig) -> Containerd {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match Containerd::connect(config.clone()).await {
                Ok(client) => return client,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => panic!("containerd did not come up: {e}"),
            }
        }
    }

    /// Runs `ctr` against this daemon, in the test namespace.
    fn ctr(&self, args: &[&str]) -> String {
        let output = Command::new("ctr")
            .arg("--address")
            .arg(self.socket())
            .args(["-n", NAMESPACE])
            .args(args)
            .output()
            .expect("ctr ships with containerd");
        assert!(
            output.status.success(),
            "ctr {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }
}

impl Drop for PrivateContainerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn busybox(reference: &str) -> ImageBuilder {
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static is installed");
    ImageBuilder::new(reference)
        .file("/bin/busybox", busybox, 0o755)
        .symlink("/bin/sh", "busybox")
        .dir("/tmp", 0o1777)
        .entrypoint(vec!["/bin/sh".into(), "-c".into()])
        .cmd(vec!["echo hello".into()])
        .env(vec!["PATH=/bin".into(), "GREETING=hi".into()])
        .working_dir("/tmp".into())
        .user("1000:1000".into())
        .stop_signal("SIGQUIT".into())
}

fn busybox_config() -> ImageConfig {
    ImageConfig {
        entrypoint: vec!["/bin/sh".into(), "-c".into()],
        cmd: vec!["echo hello".into()],
        env: vec!["PATH=/bin".into(), "GREETING=hi".into()],
        working_dir: Some("/tmp".into()),
        user: Some("1000:1000".into()),
        stop_signal: Some("SIGQUIT".into()),
    }
}

fn write_archive(dir: &Path, name: &str, image: &ImageBuilder, docker: bool) -> PathBuf {
    let path = dir.join(name);
    let file = std::fs::File::create(&path).unwrap();
    if docker {
        image.write_docker_archive(file).unwrap();
    } else {
        image.write_oci_archive(file).unwrap();
    }
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_oci_and_docker_archives() {
    let Some(daemon) = PrivateContainerd::start() else {
        return;
    };
    let client = daemon.connect(daemon.config()).await;
    let dir = daemon.dir.path();

    let oci = write_archive(dir, "oci.tar", &busybox("busybox"), false);
    let started = Instant::now();
    let imported = client.import_archive(&oci).await.unwrap();
    let cold_import = started.elapsed();
    assert_eq!(imported.len(), 1);
    let image = &imported[0];
    assert_eq!(image.reference, "docker.io/library/busybox:latest");
    assert_eq!(image.config, busybox_config());
    assert!(image.digest.starts_with("sha256:"));
    assert!(
        image.size > 500_000,
        "busybox is in the layer: {}",
        image.size
    );

    let started = Instant::now();
    let status = client.image_status("busybox").await.unwrap();
    let cached_status = started.elapsed();
    assert_eq!(status.as_ref(), Some(image));
    assert_eq!(
        client
            .image_status("docker.io/library/busybox:latest")
            .await
            .unwrap()
            .as_ref(),
        Some(image)
    );

    // Again: the blobs and the snapshot exist, the record is updated.
    let started = Instant::now();
    let again = client.import_archive(&oci).await.unwrap();
    let warm_import = started.elapsed();
    assert_eq!(&again, &imported);

    let docker = write_archive(dir, "docker.tar", &busybox("busybox:docker"), true);
    let started = Instant::now();
    let from_docker = client.import_archive(&docker).await.unwrap();
    let docker_import = started.elapsed();
    assert_eq!(from_docker.len(), 1);
    assert_eq!(from_docker[0].reference, "docker.io/library/busybox:docker");
    assert_eq!(from_docker[0].config, busybox_config());
    assert_eq!(
        client
            .image_status("busybox:docker")
            .await
            .unwrap()
            .as_ref(),
        Some(&from_docker[0])
    );
    assert!(client.import_archive(&docker).await.is_ok());

    let mut listed: Vec<_> = client
        .list_images()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.reference)
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            "docker.io/library/busybox:docker",
            "docker.io/library/busybox:latest"
        ]
    );
    assert_eq!(client.image_status("busybox:absent").await.unwrap(), None);

    // Whether the top snapshot is there, as containerd itself sees it.
    let snapshots = daemon.ctr(&["snapshots", "--snapshotter", "overlayfs", "ls"]);
    assert_eq!(
        snapshots
            .lines()
            .filter(|l| l.contains("Committed"))
            .count(),
        1,
        "{snapshots}"
    );

    println!(
        "import: cold {cold_import:?}, again {warm_import:?}, docker-archive {docker_import:?}; status (cached) {cached_status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolves_images_imported_by_ctr_and_survives_gc() {
    let Some(daemon) = PrivateContainerd::start() else {
        return;
    };
    let client = daemon.connect(daemon.config()).await;
    let dir = daemon.dir.path();

    // ctr's own import and unpack: our status must agree on chain IDs.
    let archive = write_archive(
        dir,
        "ctr.tar",
        &busybox("example.com/tools/busybox:ctr"),
        false,
    );
    daemon.ctr(&["images", "import", archive.to_str().unwrap()]);
    let started = Instant::now();
    let image = client
        .image_status("example.com/tools/busybox:ctr")
        .await
        .unwrap()
        .expect("unpacked by ctr");
    let uncached_status = started.elapsed();
    let started = Instant::now();
    assert_eq!(
        client
            .image_status("example.com/tools/busybox:ctr")
            .await
            .unwrap()
            .as_ref(),
        Some(&image)
    );
    let cached_status = started.elapsed();
    assert_eq!(image.config, busybox_config());

    // Our import, then a synchronous garbage collection: the GC labels must
    // keep every blob and the snapshot once the import lease is gone.
    let archive = write_archive(
        dir,
        "ours.tar",
        &busybox("example.com/tools/busybox:ours"),
        true,
    );
    let ours = client.import_archive(&archive).await.unwrap().remove(0);
    let lease = daemon.ctr(&["leases", "create"]);
    let lease = lease
        .split_whitespace()
        .next()
        .expect("ctr prints the lease id");
    daemon.ctr(&["leases", "rm", "--sync", lease]);
    let content = daemon.ctr(&["content", "ls"]);
    assert!(content.contains(&ours.digest), "{content}");
    // Two manifests and two layers (gzip in OCI, plain in docker), one
    // config shared by both images.
    assert_eq!(content.lines().skip(1).count(), 5, "{content}");
    assert_eq!(
        daemon
            .ctr(&["snapshots", "--snapshotter", "overlayfs", "ls"])
            .lines()
            .filter(|l| l.contains("Committed"))
            .count(),
        1
    );
    assert_eq!(
        daemon.ctr(&["leases", "ls"]).lines().count(),
        1,
        "only the header: import leases are gone"
    );
    println!(
        "status of a ctr-imported image: uncached {uncached_status:?}, cached {cached_status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_image_is_built_in_or_required() {
    let Some(daemon) = PrivateContainerd::start() else {
        return;
    };
    let client = daemon.connect(daemon.config()).await;

    let started = Instant::now();
    let pause = client.pause_image().await.unwrap();
    let created = started.elapsed();
    assert!(
        pause.reference.starts_with("berth.local/pause:"),
        "{}",
        pause.reference
    );
    assert_eq!(pause.config.entrypoint, ["/pause"]);
    let started = Instant::now();
    assert_eq!(client.pause_image().await.unwrap(), pause);
    let present = started.elapsed();
    assert_eq!(
        client.list_images().await.unwrap(),
        std::slice::from_ref(&pause)
    );

    let config = ContainerdConfig {
        pod_infra_image: Some("registry.k8s.io/pause:3.9".into()),
        ..daemon.config()
    };
    let configured = daemon.connect(config).await;
    let err = configured.pause_image().await.unwrap_err();
    assert_eq!(err.kind, RuntimeErrorKind::ImageNotPresent);
    assert!(
        err.message.contains("registry.k8s.io/pause:3.9"),
        "{}",
        err.message
    );

    let config = ContainerdConfig {
        pod_infra_image: Some(pause.reference.clone()),
        ..daemon.config()
    };
    assert_eq!(
        daemon.connect(config).await.pause_image().await.unwrap(),
        pause
    );
    println!("pause image: created {created:?}, present {present:?}");
}
