//! Image import, status, listing and the pause image against a private
//! containerd. Skips (with a message) when containerd is missing or the test
//! is not root, unless BERTH_REQUIRE_CONTAINERD=1.

use std::path::{Path, PathBuf};

use berth_containerd::archive::ImageBuilder;
use berth_containerd::{Containerd, ContainerdConfig};
use berth_runtime::{ImageConfig, RuntimeErrorKind};
use berth_testkit::{busybox_image, PrivateContainerd};
use tokio::time::Instant;

async fn connect(config: ContainerdConfig) -> Containerd {
    Containerd::connect(config)
        .await
        .expect("connect to the private containerd")
}

/// The test kit's busybox with every image config field set, so the tests
/// can check that each one survives import.
fn busybox(reference: &str) -> ImageBuilder {
    busybox_image(reference)
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
    let Some(daemon) = PrivateContainerd::start_or_skip().await else {
        return;
    };
    let client = connect(daemon.runtime_config()).await;
    let dir = daemon.dir();

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
    let snapshots = daemon.ctr_stdout(&["snapshots", "--snapshotter", "overlayfs", "ls"]);
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
    let Some(daemon) = PrivateContainerd::start_or_skip().await else {
        return;
    };
    let client = connect(daemon.runtime_config()).await;
    let dir = daemon.dir();

    // ctr's own import and unpack: our status must agree on chain IDs.
    let archive = write_archive(
        dir,
        "ctr.tar",
        &busybox("example.com/tools/busybox:ctr"),
        false,
    );
    daemon.ctr_stdout(&["images", "import", archive.to_str().unwrap()]);
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
    let lease = daemon.ctr_stdout(&["leases", "create"]);
    let lease = lease
        .split_whitespace()
        .next()
        .expect("ctr prints the lease id");
    daemon.ctr_stdout(&["leases", "rm", "--sync", lease]);
    let content = daemon.ctr_stdout(&["content", "ls"]);
    assert!(content.contains(&ours.digest), "{content}");
    // Two manifests and two layers (gzip in OCI, plain in docker), one
    // config shared by both images.
    assert_eq!(content.lines().skip(1).count(), 5, "{content}");
    assert_eq!(
        daemon
            .ctr_stdout(&["snapshots", "--snapshotter", "overlayfs", "ls"])
            .lines()
            .filter(|l| l.contains("Committed"))
            .count(),
        1
    );
    assert_eq!(
        daemon.ctr_stdout(&["leases", "ls"]).lines().count(),
        1,
        "only the header: import leases are gone"
    );
    println!(
        "status of a ctr-imported image: uncached {uncached_status:?}, cached {cached_status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_image_is_built_in_or_required() {
    let Some(daemon) = PrivateContainerd::start_or_skip().await else {
        return;
    };
    let client = connect(daemon.runtime_config()).await;

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
        ..daemon.runtime_config()
    };
    let configured = connect(config).await;
    let err = configured.pause_image().await.unwrap_err();
    assert_eq!(err.kind, RuntimeErrorKind::ImageNotPresent);
    assert!(
        err.message.contains("registry.k8s.io/pause:3.9"),
        "{}",
        err.message
    );

    let config = ContainerdConfig {
        pod_infra_image: Some(pause.reference.clone()),
        ..daemon.runtime_config()
    };
    assert_eq!(connect(config).await.pause_image().await.unwrap(), pause);
    println!("pause image: created {created:?}, present {present:?}");
}
