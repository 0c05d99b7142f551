//! Pulls from a real registry (the test kit's docker-registry on loopback)
//! into a private containerd. Skips (with a message) when containerd,
//! docker-registry or skopeo is missing or the test is not root, unless
//! BERTH_REQUIRE_CONTAINERD=1.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use berth_containerd::{Containerd, ContainerdConfig, RegistryConfig};
use berth_runtime::{ImageInfo, PullProgress, RegistryCredentials, RuntimeErrorKind};
use berth_testkit::proxy::ThrottledProxy;
use berth_testkit::{
    busybox_image, write_busybox_archive, LocalRegistry, PrivateContainerd, PushOptions,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// A containerd and a registry of the test's own.
struct Env {
    daemon: PrivateContainerd,
    registry: LocalRegistry,
}

impl Env {
    async fn start(credentials: Option<(&str, &str)>) -> Option<Self> {
        let daemon = PrivateContainerd::start_or_skip().await?;
        let registry = LocalRegistry::start_or_skip(credentials).await?;
        Some(Self { daemon, registry })
    }

    /// A registry that takes only `puller`/`s3cret`, holding busybox as
    /// `private:v1`; with that image's reference.
    async fn start_private() -> Option<(Self, String)> {
        let env = Self::start(Some(("puller", "s3cret"))).await?;
        env.registry
            .push(&env.busybox_archive(), "private:v1")
            .await;
        let reference = env.registry.reference("private:v1");
        Some((env, reference))
    }

    /// The registry over plain HTTP, plus `extra` YAML lines under it.
    fn plain_http(&self) -> String {
        format!(
            "registries:\n  \"{}\": {{ plainHttp: true }}\n",
            self.registry.host()
        )
    }

    async fn client(&self, registry_config: &str) -> Containerd {
        self.client_in(self.daemon.runtime_config(), registry_config)
            .await
    }

    async fn client_in(&self, config: ContainerdConfig, registry_config: &str) -> Containerd {
        let registries = RegistryConfig::parse(registry_config).expect("registry config");
        Containerd::connect(config)
            .await
            .expect("connect to the private containerd")
            .with_registries(registries)
    }

    fn busybox_archive(&self) -> PathBuf {
        write_busybox_archive(self.daemon.dir(), "busybox")
    }

    /// busybox plus a file: another config and layer, so another digest.
    fn other_archive(&self) -> PathBuf {
        let path = self.daemon.dir().join("other.oci.tar");
        busybox_image("other")
            .file("etc/motd", b"another image\n".to_vec(), 0o644)
            .write_oci_archive(std::fs::File::create(&path).unwrap())
            .unwrap();
        path
    }

    /// Runs the image with containerd's own client: proof that it is
    /// unpacked as containerd expects.
    /// Runs the image's shell with `ctr run` and asserts it ran: it exits
    /// 7, which ctr passes on. (Not its output: ctr can lose a short-lived
    /// container's stdout when the machine is busy.)
    fn assert_runs(&self, image: &ImageInfo, id: &str) {
        let out = self
            .daemon
            .ctr(&["run", "--rm", &image.reference, id, "sh", "-c", "exit 7"]);
        assert_eq!(
            out.status.code(),
            Some(7),
            "ctr run {}: {}",
            image.reference,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The last report of each blob.
fn final_reports(reports: &[PullProgress]) -> BTreeMap<String, (u64, u64)> {
    reports
        .iter()
        .map(|r| (r.layer.clone(), (r.done, r.total)))
        .collect()
}

fn distinct(digests: &[String]) -> BTreeSet<String> {
    digests.iter().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_by_tag_reports_progress_and_runs() {
    let Some(env) = Env::start(None).await else {
        return;
    };
    let pushed = env
        .registry
        .push(&env.busybox_archive(), "team/busybox:1")
        .await;
    let client = env.client(&env.plain_http()).await;
    let reference = env.registry.reference("team/busybox:1");

    let (tx, mut rx) = mpsc::unbounded_channel();
    let started = Instant::now();
    let image = client.pull_image(&reference, Some(tx)).await.unwrap();
    let took = started.elapsed();
    eprintln!("pull of busybox ({} bytes) took {took:?}", image.size);
    assert_eq!(image.reference, reference);
    assert_eq!(image.digest, pushed);
    assert_eq!(image.config.cmd, vec!["sh".to_string()]);
    assert!(image.size > 500_000, "{}", image.size);

    // Progress: every blob (config and layer) reported up to its size, and
    // the sizes add up to the image's.
    let mut reports = Vec::new();
    while let Ok(report) = rx.try_recv() {
        reports.push(report);
    }
    let finals = final_reports(&reports);
    assert_eq!(finals.len(), 2, "{reports:?}");
    assert!(
        finals.values().all(|(done, total)| done == total),
        "{reports:?}"
    );
    assert_eq!(finals.values().map(|(_, t)| t).sum::<u64>(), image.size);
    assert!(
        reports.iter().any(|r| r.done == 0),
        "a start report: {reports:?}"
    );

    // Present, unpacked and runnable.
    let status = client.image_status(&reference).await.unwrap();
    assert_eq!(status.as_ref(), Some(&image));
    env.assert_runs(&image, "pulled");
    // The lease is gone; the record alone keeps the image.
    let leases = env.daemon.ctr_stdout(&["leases", "ls", "-q"]);
    assert!(leases.trim().is_empty(), "{leases}");
    // Nothing half-written left behind.
    let active = env.daemon.ctr_stdout(&["content", "active"]);
    assert_eq!(active.lines().count(), 1, "only the header: {active}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_by_digest_with_docker_and_zstd_layers() {
    let Some(env) = Env::start(None).await else {
        return;
    };
    let client = env.client(&env.plain_http()).await;
    let archive = env.busybox_archive();

    let digest = env.registry.push(&archive, "app:v1").await;
    let by_digest = format!("{}@{digest}", env.registry.reference("app"));
    let image = client.pull_image(&by_digest, None).await.unwrap();
    assert_eq!(image.digest, digest);
    assert_eq!(image.reference, by_digest);
    assert_eq!(
        client
            .image_status(&by_digest)
            .await
            .unwrap()
            .unwrap()
            .digest,
        digest
    );

    // Docker media types.
    let docker = PushOptions {
        format: Some("v2s2".into()),
        ..PushOptions::default()
    };
    let docker_digest = env
        .registry
        .push_with(&archive, "app:docker", &docker)
        .await;
    assert_ne!(docker_digest, digest, "another manifest");
    let image = client
        .pull_image(&env.registry.reference("app:docker"), None)
        .await
        .unwrap();
    assert_eq!(image.digest, docker_digest);
    env.assert_runs(&image, "docker-types");

    // zstd layer: containerd's Diff.Apply decompresses it.
    let zstd = PushOptions {
        format: Some("oci".into()),
        compress: Some("zstd".into()),
    };
    let zstd_digest = env.registry.push_with(&archive, "app:zstd", &zstd).await;
    let image = client
        .pull_image(&env.registry.reference("app:zstd"), None)
        .await
        .unwrap();
    assert_eq!(image.digest, zstd_digest);
    env.assert_runs(&image, "zstd");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_tag_is_pulled_again_and_unchanged_blobs_are_not() {
    let Some(env) = Env::start(None).await else {
        return;
    };
    let client = env.client(&env.plain_http()).await;
    let first = env
        .registry
        .push(&env.busybox_archive(), "app:latest")
        .await;
    // No tag means latest.
    let short = env.registry.reference("app");
    let image = client.pull_image(&short, None).await.unwrap();
    assert_eq!(image.reference, env.registry.reference("app:latest"));
    assert_eq!(image.digest, first);
    let first_blobs = distinct(&env.registry.blob_fetches());
    assert_eq!(first_blobs.len(), 2);
    assert_eq!(env.registry.blob_fetches().len(), 2);

    // Same tag, same image: the manifest is asked for again, no blob is.
    let manifests = env.registry.manifest_requests();
    let again = client.pull_image(&short, None).await.unwrap();
    assert_eq!(again, image);
    assert_eq!(env.registry.manifest_requests(), manifests + 1);
    assert_eq!(env.registry.blob_fetches().len(), 2);

    // The tag moves: the record follows, and only the new blobs come.
    let second = env.registry.push(&env.other_archive(), "app:latest").await;
    assert_ne!(second, first);
    let moved = client.pull_image(&short, None).await.unwrap();
    assert_eq!(moved.digest, second);
    let fetches = env.registry.blob_fetches();
    assert_eq!(fetches.len(), 4, "{fetches:?}");
    assert!(
        fetches[2..].iter().all(|d| !first_blobs.contains(d)),
        "{fetches:?}"
    );
    let status = client.image_status(&short).await.unwrap().unwrap();
    assert_eq!(status.digest, second);
    // Exit codes, not output (see `assert_runs`): 7 if the new image's file is there.
    let script = "grep -q 'another image' /etc/motd && exit 7";
    let out = env
        .daemon
        .ctr(&["run", "--rm", &moved.reference, "moved", "sh", "-c", script]);
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absent_tag_fails_in_the_registrys_words() {
    let Some(env) = Env::start(None).await else {
        return;
    };
    env.registry.push(&env.busybox_archive(), "app:v1").await;
    let client = env.client(&env.plain_http()).await;
    let reference = env.registry.reference("app:nope");
    let err = client.pull_image(&reference, None).await.unwrap_err();
    assert_eq!(err.kind, RuntimeErrorKind::Other, "{err}");
    assert!(err.message.contains("manifest unknown"), "{err}");
    eprintln!("{err}");

    assert!(
        err.message
            .starts_with(&format!("failed to pull and unpack image \"{reference}\"")),
        "{err}"
    );
    assert!(client.image_status(&reference).await.unwrap().is_none());
    let err = client
        .pull_image(&env.registry.reference("nothing/here:v1"), None)
        .await
        .unwrap_err();
    // distribution 2.8 says the same for a repository it does not have.
    assert!(err.message.contains("manifest unknown"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_refuses_without_credentials_and_serves_with_them() {
    let Some((env, reference)) = Env::start_private().await else {
        return;
    };
    let host = env.registry.host();

    let anonymous = env.client(&env.plain_http()).await;
    let err = anonymous.pull_image(&reference, None).await.unwrap_err();
    eprintln!("{err}");
    assert!(err.message.contains("unauthorized"), "{err}");

    let wrong = format!(
        "{}auths: {{ \"{host}\": {{ username: puller, password: wrong }} }}\n",
        env.plain_http()
    );
    let err = env
        .client(&wrong)
        .await
        .pull_image(&reference, None)
        .await
        .unwrap_err();
    assert!(err.message.contains("unauthorized"), "{err}");
    assert!(
        !err.message.contains("wrong"),
        "no credential in errors: {err}"
    );

    // docker's config.json form (base64 of puller:s3cret)...
    let docker_json = format!(
        r#"{{"auths": {{"{host}": {{"auth": "cHVsbGVyOnMzY3JldA=="}}}}, "registries": {{"{host}": {{"plainHttp": true}}}}}}"#
    );
    let image = env
        .client(&docker_json)
        .await
        .pull_image(&reference, None)
        .await
        .unwrap();
    assert!(image.size > 0);

    // ...and the registries form, in another namespace (so it fetches anew).
    let config = ContainerdConfig {
        namespace: format!("{}-b", env.daemon.namespace()),
        ..env.daemon.runtime_config()
    };
    let own = format!(
        "registries:\n  \"{host}\": {{ plainHttp: true, username: puller, password: s3cret }}\n"
    );
    let again = env
        .client_in(config, &own)
        .await
        .pull_image(&reference, None)
        .await
        .unwrap();
    assert_eq!(again.digest, image.digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_fails_while_the_registry_is_down_and_succeeds_after() {
    let Some(mut env) = Env::start(None).await else {
        return;
    };
    let digest = env.registry.push(&env.busybox_archive(), "app:v1").await;
    let client = env.client(&env.plain_http()).await;
    let reference = env.registry.reference("app:v1");

    env.registry.stop().await;
    let err = client.pull_image(&reference, None).await.unwrap_err();
    assert_eq!(err.kind, RuntimeErrorKind::RegistryUnavailable, "{err}");
    eprintln!("{err}");
    assert!(err.message.contains(&env.registry.host()), "{err}");

    env.registry.restart().await;
    let image = client.pull_image(&reference, None).await.unwrap();
    assert_eq!(image.digest, digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_blob_fails_the_pull_and_leaves_nothing_behind() {
    let Some(env) = Env::start(None).await else {
        return;
    };
    env.registry.push(&env.busybox_archive(), "app:v1").await;
    let client = env.client(&env.plain_http()).await;
    let reference = env.registry.reference("app:v1");

    // The biggest blob in the registry's storage is the layer: flip its
    // bytes (same size), so the registry serves data that fails the digest.
    let layer = biggest_file(&env.registry.storage_dir());
    let good = std::fs::read(&layer).unwrap();
    let bad: Vec<u8> = good.iter().map(|b| !b).collect();
    std::fs::write(&layer, &bad).unwrap();
    let err = client.pull_image(&reference, None).await.unwrap_err();
    assert!(err.message.contains("digest"), "{err}");
    eprintln!("{err}");
    let active = env.daemon.ctr_stdout(&["content", "active"]);
    assert_eq!(active.lines().count(), 1, "no ingest left: {active}");
    assert!(client.image_status(&reference).await.unwrap().is_none());

    std::fs::write(&layer, &good).unwrap();
    client.pull_image(&reference, None).await.unwrap();
    assert!(client.image_status(&reference).await.unwrap().is_some());
}

fn biggest_file(dir: &std::path::Path) -> PathBuf {
    let mut best: Option<(u64, PathBuf)> = None;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            } else if best.as_ref().is_none_or(|(size, _)| meta.len() > *size) {
                best = Some((meta.len(), entry.path()));
            }
        }
    }
    best.expect("the registry stores blobs").1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_concurrent_pulls_fetch_each_blob_once() {
    let Some(env) = Env::start(None).await else {
        return;
    };
    let digest = env.registry.push(&env.busybox_archive(), "app:v1").await;
    let client = env.client(&env.plain_http()).await;
    let reference = env.registry.reference("app:v1");
    let manifests = env.registry.manifest_requests();

    let pulls = (0..10).map(|_| client.pull_image(&reference, None));
    let images = futures::future::join_all(pulls).await;
    for image in images {
        assert_eq!(image.unwrap().digest, digest);
    }
    let fetches = env.registry.blob_fetches();
    assert_eq!(fetches.len(), 2, "{fetches:?}");
    assert_eq!(distinct(&fetches).len(), 2, "{fetches:?}");
    assert_eq!(env.registry.manifest_requests(), manifests + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrors_are_tried_in_order_before_the_registry() {
    let Some(env) = Env::start(None).await else {
        return;
    };
    let Some(mirror) = LocalRegistry::start_or_skip(None).await else {
        return;
    };
    let digest = mirror.push(&env.busybox_archive(), "team/app:v1").await;
    let mirrored = format!(
        "registries:\n  \"{m}\": {{ plainHttp: true }}\n  \"registry.invalid:5000\": {{ mirrors: [\"http://127.0.0.1:1\", \"{m}\"] }}\n",
        m = mirror.host()
    );
    // The registry itself does not exist: the second mirror serves.
    let client = env.client(&mirrored).await;
    let image = client
        .pull_image("registry.invalid:5000/team/app:v1", None)
        .await
        .unwrap();
    assert_eq!(image.digest, digest);
    assert_eq!(image.reference, "registry.invalid:5000/team/app:v1");
    assert_eq!(mirror.blob_fetches().len(), 2);

    // A failing mirror falls through to the registry.
    env.registry
        .push(&env.busybox_archive(), "team/app:v1")
        .await;
    let fallback = format!(
        "registries:\n  \"{}\": {{ plainHttp: true, mirrors: [\"http://127.0.0.1:1\"] }}\n",
        env.registry.host()
    );
    let client = env
        .client_in(
            ContainerdConfig {
                namespace: format!("{}-b", env.daemon.namespace()),
                ..env.daemon.runtime_config()
            },
            &fallback,
        )
        .await;
    let image = client
        .pull_image(&env.registry.reference("team/app:v1"), None)
        .await
        .unwrap();
    assert_eq!(image.digest, digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_resolves_to_the_nodes_platform() {
    let Some(env) = Env::start(None).await else {
        return;
    };
    let ours = env
        .registry
        .push(&env.busybox_archive(), "multi:ours")
        .await;
    let theirs = env
        .registry
        .push(&env.other_archive(), "multi:theirs")
        .await;
    let (our_arch, other_arch) = match std::env::consts::ARCH {
        "aarch64" => ("arm64", "amd64"),
        _ => ("amd64", "arm64"),
    };
    let oci = oci_client::Client::new(oci_client::client::ClientConfig {
        protocol: oci_client::client::ClientProtocol::Http,
        ..Default::default()
    });
    let auth = oci_client::secrets::RegistryAuth::Anonymous;
    let manifest_size = |tag: &'static str| {
        let oci = oci.clone();
        let reference: oci_client::Reference = env.registry.reference(tag).parse().unwrap();
        let auth = auth.clone();
        async move {
            let (bytes, _) = oci
                .pull_manifest_raw(
                    &reference,
                    &auth,
                    &["application/vnd.oci.image.manifest.v1+json"],
                )
                .await
                .unwrap();
            bytes.len()
        }
    };
    let entry = |digest: &str, size: usize, arch: &str| {
        serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest, "size": size,
            "platform": {"os": "linux", "architecture": arch}
        })
    };
    // The other platform first, so picking the first entry would be wrong.
    let index: oci_client::manifest::OciImageIndex = serde_json::from_value(serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            entry(&theirs, manifest_size("multi:theirs").await, other_arch),
            entry(&ours, manifest_size("multi:ours").await, our_arch),
        ]
    }))
    .unwrap();
    let index_ref: oci_client::Reference = env.registry.reference("multi:index").parse().unwrap();
    oci.push_manifest_list(&index_ref, &auth, index)
        .await
        .unwrap();

    let client = env.client(&env.plain_http()).await;
    let image = client
        .pull_image(&env.registry.reference("multi:index"), None)
        .await
        .unwrap();
    assert_eq!(image.digest, ours, "the manifest for {our_arch}");
    let fetches = env.registry.blob_fetches();
    assert_eq!(fetches.len(), 2, "only our platform's blobs: {fetches:?}");
    env.assert_runs(&image, "indexed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_an_image_drops_its_record() {
    let Some(env) = Env::start(None).await else {
        return;
    };
    env.registry.push(&env.busybox_archive(), "app:v1").await;
    let client = env.client(&env.plain_http()).await;
    let reference = env.registry.reference("app:v1");
    client.pull_image(&reference, None).await.unwrap();
    client.remove_image(&reference).await.unwrap();
    assert!(client.image_status(&reference).await.unwrap().is_none());
    let err = client.remove_image(&reference).await.unwrap_err();
    assert_eq!(err.kind, RuntimeErrorKind::NotFound, "{err}");
    // Pulled again after removal, it is whole again.
    client.pull_image(&reference, None).await.unwrap();
    assert!(client.image_status(&reference).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_signed_registry_needs_insecure_skip_verify() {
    let Some(daemon) = PrivateContainerd::start_or_skip().await else {
        return;
    };
    let Some(registry) = LocalRegistry::start_tls_or_skip().await else {
        return;
    };
    let env = Env { daemon, registry };
    env.registry
        .push(&env.busybox_archive(), "tls/busybox:1")
        .await;
    let reference = env.registry.reference("tls/busybox:1");

    // Unconfigured, a loopback registry is spoken to over plain HTTP (the
    // CRI plugin's default for local hosts), which a TLS one refuses.
    let unconfigured = env.client("registries: {}\n").await;
    let error = unconfigured.pull_image(&reference, None).await.unwrap_err();
    assert!(
        error.message.contains("HTTP request to an HTTPS server"),
        "{error}"
    );
    // Named without insecureSkipVerify, it is HTTPS with certificate checks.
    let named = |settings: &str| {
        format!(
            "registries:\n  \"{}\": {{ {settings} }}\n",
            env.registry.host()
        )
    };
    let verifying = env.client(&named("mirrors: []")).await;
    let error = verifying.pull_image(&reference, None).await.unwrap_err();
    assert!(
        error.message.to_lowercase().contains("certificate"),
        "{error}"
    );

    let trusting = env.client(&named("insecureSkipVerify: true")).await;
    let image = trusting.pull_image(&reference, None).await.unwrap();
    env.assert_runs(&image, "over-tls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_cut_off_in_the_middle_of_a_blob_recovers_on_the_next_try() {
    let Some(env) = Env::start(None).await else {
        return;
    };
    // An 8 MiB layer of noise (gzip cannot shrink it), served at 2 MiB/s.
    let mut noise = vec![0u8; 8 << 20];
    rand::fill(&mut noise[..]);
    let path = env.daemon.dir().join("big.oci.tar");
    busybox_image("big")
        .file("noise.bin", noise, 0o644)
        .write_oci_archive(std::fs::File::create(&path).unwrap())
        .unwrap();
    env.registry.push(&path, "big:1").await;
    let proxy = ThrottledProxy::start(env.registry.host(), 2 << 20).await;
    let client = env
        .client(&format!(
            "registries:\n  \"{}\": {{ plainHttp: true }}\n",
            proxy.host()
        ))
        .await;
    let reference = format!("{}/big:1", proxy.host());

    let (tx, mut rx) = mpsc::unbounded_channel();
    let pull = {
        let (client, reference) = (client.clone(), reference.clone());
        tokio::spawn(async move { client.pull_image(&reference, Some(tx)).await })
    };
    // Cut when the big layer is partly fetched; refuse until the pull gave up.
    loop {
        let report = rx.recv().await.expect("progress before the pull ends");
        if report.total > 4 << 20 && report.done > 0 && report.done < report.total {
            proxy.cut(true);
            break;
        }
    }
    let error = pull.await.unwrap().unwrap_err();
    eprintln!("cut off: {error}");
    let active = env.daemon.ctr_stdout(&["content", "active"]);
    assert_eq!(active.lines().count(), 1, "an ingest was left: {active}");

    proxy.restore();
    let image = client.pull_image(&reference, None).await.unwrap();
    env.assert_runs(&image, "after-cut");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pulls_own_credentials_replace_the_registrys_and_each_is_used_afresh() {
    let Some((env, reference)) = Env::start_private().await else {
        return;
    };
    // One client for all: it must not keep the first credentials it saw.
    let client = env.client(&env.plain_http()).await;
    let wrong = RegistryCredentials {
        username: "puller".into(),
        password: "wrong".into(),
    };
    let err = client
        .pull_image_with_credentials(&reference, None, Some(&wrong))
        .await
        .unwrap_err();
    assert!(err.message.contains("unauthorized"), "{err}");
    assert!(
        !err.message.contains("wrong"),
        "no credential in errors: {err}"
    );
    let right = RegistryCredentials {
        username: "puller".into(),
        password: "s3cret".into(),
    };
    let image = client
        .pull_image_with_credentials(&reference, None, Some(&right))
        .await
        .unwrap();
    assert!(image.size > 0);
    // Without credentials, still refused (the tag is resolved again).
    let err = client.pull_image(&reference, None).await.unwrap_err();
    assert!(err.message.contains("unauthorized"), "{err}");
}
