//! Pods whose images are in a registry (docs/kubelet-semantics.md §3.3, §10): a real
//! docker-registry on loopback, the agent pulling through its registry config;
//! pull policies, ErrImagePull and ImagePullBackOff, basic auth, an outage,
//! one fetch for many pods, and image GC.

use std::path::PathBuf;
use std::time::Duration;

use berth_api::reasons;
use berth_integration::*;
use berth_testkit::registry::LocalRegistry;
use berth_testkit::write_busybox_archive;
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::time::Instant;

/// A registry holding the test kit's busybox as `busybox:1`, and the
/// directory of the archive and the config files.
async fn registry(credentials: Option<(&str, &str)>) -> Option<(LocalRegistry, TempDir)> {
    let registry = LocalRegistry::start_or_skip(credentials).await?;
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = write_busybox_archive(dir.path(), "registry.test/busybox:1");
    registry.push(&archive, "busybox:1").await;
    Some((registry, dir))
}

/// A registry config for `registry` (plain HTTP), with `auth` in docker's
/// config.json form when given.
fn registry_config(dir: &TempDir, registry: &LocalRegistry, auth: Option<&str>) -> PathBuf {
    let host = registry.host();
    let mut config = json!({ "registries": { host.clone(): { "plainHttp": true } } });
    if let Some(auth) = auth {
        config["auths"] = json!({ host: { "auth": auth } });
    }
    let path = dir
        .path()
        .join(format!("registries-{}.yaml", auth.is_some()));
    std::fs::write(&path, config.to_string()).expect("write registry config");
    path
}

/// A private containerd and an agent using `config`, plus `extra` flags.
async fn agent_with(
    config: &std::path::Path,
    extra: &[&str],
) -> Option<(PrivateContainerd, AgentProcess)> {
    let containerd = PrivateContainerd::start_or_skip().await?;
    let mut extra_args = vec!["--registry-config".to_owned(), config.display().to_string()];
    extra_args.extend(extra.iter().map(|s| s.to_string()));
    let options = AgentOptions {
        extra_args,
        ..AgentOptions::default()
    };
    let agent = AgentProcess::start_with(&containerd, options).await;
    Some((containerd, agent))
}

/// Flags for an image pull back-off of 1 s doubling up to `max` seconds.
fn pull_back_off(max: &str) -> [&str; 4] {
    [
        "--image-pull-back-off-initial-seconds",
        "1",
        "--image-pull-back-off-max-seconds",
        max,
    ]
}

/// A pod whose `main` runs `script` from `image`.
fn image_pod(name: &str, image: &str, script: &str) -> Value {
    let mut main = sh_container("main", script);
    main["image"] = json!(image);
    pod(name, "Always", vec![main])
}

fn event_messages(events: &[Value], reason: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["reason"] == reason)
        .filter_map(|e| e["message"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn a_pod_runs_from_the_registry_with_pulling_and_pulled_events() {
    let Some((registry, dir)) = registry(None).await else {
        return;
    };
    let config = registry_config(&dir, &registry, None);
    let Some((_containerd, agent)) = agent_with(&config, &[]).await else {
        return;
    };
    let image = registry.reference("busybox:1");
    agent
        .apply_yaml(&manifest(&image_pod(
            "pulled",
            &image,
            "echo from-registry; sleep 3600",
        )))
        .await;
    let running = wait_running(&agent, "pulled").await;
    wait_log_contains(&agent, "pulled", "main", "from-registry").await;
    let status = container_status(&running, "main").expect("status");
    assert_eq!(status["image"], image, "{status:#}");
    assert!(
        status["imageID"]
            .as_str()
            .is_some_and(|id| id.contains("@sha256:")),
        "{status:#}"
    );
    let (_, events) = pod_events(&agent, "default", "pulled").await;
    assert_eq!(
        event_messages(&events, reasons::PULLING),
        vec![format!("Pulling image \"{image}\"")]
    );
    let pulled = event_messages(&events, reasons::PULLED);
    assert!(
        pulled.iter().any(
            |m| m.starts_with(&format!("Successfully pulled image \"{image}\" in "))
                && m.contains(" including waiting). Image size: ")
                && m.ends_with(" bytes.")
        ),
        "{pulled:?}"
    );
    let images = agent.cli_ok(&["image", "ls"]).await;
    assert!(
        images.contains(&format!("{}/busybox", registry.host())),
        "{images}"
    );
}

#[tokio::test]
async fn a_registry_on_this_machine_is_reached_over_plain_http_with_no_config() {
    let Some((registry, _dir)) = registry(None).await else {
        return;
    };
    let Some(containerd) = PrivateContainerd::start_or_skip().await else {
        return;
    };
    let agent = AgentProcess::start(&containerd).await;
    // As the CRI plugin: localhost and loopback registries default to http.
    let port = registry
        .host()
        .rsplit_once(':')
        .expect("host:port")
        .1
        .to_owned();
    for (name, image) in [
        ("by-name", format!("localhost:{port}/busybox:1")),
        ("by-address", registry.reference("busybox:1")),
    ] {
        agent
            .apply_yaml(&manifest(&image_pod(name, &image, "sleep 3600")))
            .await;
        wait_running(&agent, name).await;
    }
}

#[tokio::test]
async fn always_pulls_on_every_start_and_ten_pods_fetch_each_blob_once() {
    let Some((registry, dir)) = registry(None).await else {
        return;
    };
    let config = registry_config(&dir, &registry, None);
    let Some((_containerd, agent)) = agent_with(&config, &[]).await else {
        return;
    };
    let image = registry.reference("busybox:1");
    let names: Vec<String> = (0..10).map(|i| format!("many-{i}")).collect();
    let applies = names
        .iter()
        .map(|name| manifest(&image_pod(name, &image, "sleep 3600")));
    let agent = &agent;
    futures::future::join_all(applies.map(|m| async move { agent.apply_yaml(&m).await })).await;
    for name in &names {
        wait_running(agent, name).await;
    }
    let fetched = registry.blob_fetches();
    let mut unique = fetched.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        fetched.len(),
        unique.len(),
        "a blob was fetched twice: {fetched:?}"
    );

    // `Always` resolves the tag again at each restart, fetching no blob.
    let before = registry.manifest_requests();
    let mut crasher = image_pod("always", &image, "sleep 1; exit 1");
    crasher["spec"]["containers"][0]["imagePullPolicy"] = json!("Always");
    agent.apply_yaml(&manifest(&crasher)).await;
    agent
        .wait_for("default", "always", "a restart", START_TIMEOUT, |p| {
            restart_count(p, "main") >= 1
        })
        .await;
    let deadline = Instant::now() + START_TIMEOUT;
    while registry.manifest_requests() < before + 2 {
        assert!(Instant::now() < deadline, "no second manifest request");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(registry.blob_fetches().len(), fetched.len());
}

#[tokio::test]
async fn an_absent_tag_gives_err_image_pull_then_a_growing_image_pull_back_off() {
    let Some((registry, dir)) = registry(None).await else {
        return;
    };
    let config = registry_config(&dir, &registry, None);
    let Some((_containerd, agent)) = agent_with(&config, &pull_back_off("8")).await else {
        return;
    };
    let image = registry.reference("busybox:nope");
    // skopeo's push asked for manifests too.
    let pushed = registry.manifest_requests();
    agent
        .apply_yaml(&manifest(&image_pod("typo", &image, "sleep 3600")))
        .await;

    // Every pull asks for the manifest once: note when each one comes.
    let begin = Instant::now();
    let mut asked = Vec::new();
    let mut reasons: Vec<String> = Vec::new();
    while asked.len() < 5 {
        assert!(
            begin.elapsed() < Duration::from_secs(60),
            "pulls at {asked:?}"
        );
        while registry.manifest_requests() - pushed > asked.len() {
            asked.push(begin.elapsed());
        }
        let pod = agent.get_pod_json("default", "typo").await;
        if let Some(reason) = waiting_reason(&pod, "main") {
            if reasons.last().map(String::as_str) != Some(reason) {
                reasons.push(reason.to_owned());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Delays 1, 2, 4 and 8 s between pulls (± the polling and pull time).
    let gaps: Vec<f64> = asked
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    for (gap, want) in gaps.iter().zip([1.0, 2.0, 4.0, 8.0]) {
        assert!(
            (gap - want).abs() < 0.6,
            "gaps {gaps:?}; registry:\n{}\nagent:\n{}",
            registry.log_tail(30),
            agent.agent_log()
        );
    }
    assert!(
        is_subsequence(
            &reasons,
            &["ErrImagePull", "ImagePullBackOff", "ErrImagePull"]
        ),
        "{reasons:?}"
    );
    let pod = agent.get_pod_json("default", "typo").await;
    assert_eq!(phase(&pod), "Pending");
    let (_, events) = pod_events(&agent, "default", "typo").await;
    let failed = event_messages(&events, reasons::FAILED);
    assert!(
        failed.iter().any(
            |m| m.starts_with(&format!("Failed to pull image \"{image}\": "))
                && m.contains("manifest unknown")
        ),
        "{failed:?}"
    );
    for wanted in ["Error: ErrImagePull", "Error: ImagePullBackOff"] {
        assert!(failed.iter().any(|m| m == wanted), "{wanted} in {failed:?}");
    }
    assert!(
        event_messages(&events, reasons::BACK_OFF)
            .contains(&format!("Back-off pulling image \"{image}\"")),
        "{events:#?}"
    );
    let row = get_pods_row(&agent, "typo").await.expect("a row");
    assert!(
        row[2] == "ImagePullBackOff" || row[2] == "ErrImagePull",
        "{row:?}"
    );
}

#[tokio::test]
async fn basic_auth_refuses_without_credentials_and_serves_with_them() {
    let Some((registry, dir)) = registry(Some(("puller", "s3cret"))).await else {
        return;
    };
    let anonymous = registry_config(&dir, &registry, None);
    // base64("puller:s3cret")
    let with_auth = registry_config(&dir, &registry, Some("cHVsbGVyOnMzY3JldA=="));
    let image = registry.reference("busybox:1");
    {
        let Some((_containerd, agent)) = agent_with(&anonymous, &[]).await else {
            return;
        };
        agent
            .apply_yaml(&manifest(&image_pod("locked", &image, "sleep 3600")))
            .await;
        let pod = agent
            .wait_for("default", "locked", "ErrImagePull", START_TIMEOUT, |p| {
                waiting_reason(p, "main") == Some("ErrImagePull")
            })
            .await;
        let message = container_status(&pod, "main").expect("status")["state"]["waiting"]
            ["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(message.contains("unauthorized"), "{message}");
        assert!(!agent.agent_log().contains("s3cret"));
    }
    let Some((_containerd, agent)) = agent_with(&with_auth, &[]).await else {
        return;
    };
    agent
        .apply_yaml(&manifest(&image_pod("unlocked", &image, "sleep 3600")))
        .await;
    wait_running(&agent, "unlocked").await;
}

#[tokio::test]
async fn a_pull_during_a_registry_outage_recovers_on_the_next_try() {
    let Some((mut registry, dir)) = registry(None).await else {
        return;
    };
    let config = registry_config(&dir, &registry, None);
    let Some((_containerd, agent)) = agent_with(&config, &pull_back_off("2")).await else {
        return;
    };
    registry.stop().await;
    let image = registry.reference("busybox:1");
    agent
        .apply_yaml(&manifest(&image_pod("outage", &image, "sleep 3600")))
        .await;
    agent
        .wait_for("default", "outage", "a failed pull", START_TIMEOUT, |p| {
            matches!(
                waiting_reason(p, "main"),
                Some("RegistryUnavailable" | "ImagePullBackOff")
            )
        })
        .await;
    registry.restart().await;
    wait_running(&agent, "outage").await;
}

#[tokio::test]
async fn image_gc_removes_unused_images_over_the_threshold_and_keeps_used_ones() {
    let Some((registry, dir)) = registry(None).await else {
        return;
    };
    let config = registry_config(&dir, &registry, None);
    let Some(containerd) = PrivateContainerd::start_or_skip().await else {
        return;
    };
    // Any real disk is fuller than 1 %: every pass collects.
    let root = containerd.root().display().to_string();
    let options = AgentOptions {
        extra_args: [
            "--registry-config",
            &config.display().to_string(),
            "--image-fs-dir",
            &root,
            "--image-gc-high-threshold-percent",
            "1",
            "--image-gc-low-threshold-percent",
            "0",
            "--image-minimum-gc-age-seconds",
            "0",
            "--image-gc-period-seconds",
            "1",
        ]
        .map(String::from)
        .to_vec(),
        ..AgentOptions::default()
    };
    let agent = AgentProcess::start_with(&containerd, options).await;
    let image = registry.reference("busybox:1");
    agent
        .apply_yaml(&manifest(&image_pod("user", &image, "sleep 3600")))
        .await;
    wait_running(&agent, "user").await;

    // The imported test image is used by nothing: it goes; the pulled one
    // stays while its pod runs, and goes once the pod is deleted.
    let pulled = format!("{}/busybox", registry.host());
    let images = wait_cli_output(&agent, &["image", "ls"], "the unused image gone", |out| {
        !out.contains("berth.test/busybox")
    })
    .await;
    assert!(images.contains(&pulled), "{images}");
    agent.cli_ok(&["delete", "pod", "user"]).await;
    agent.wait_gone("default", "user", START_TIMEOUT).await;
    wait_cli_output(&agent, &["image", "ls"], "the pulled image gone", |out| {
        !out.contains(&pulled)
    })
    .await;

    // Down to 0 % is out of reach: the node is warned at every pass, and
    // from the second failed pass in a row image GC counts as failed.
    let reasons = ["FreeDiskSpaceFailed", "ImageGCFailed"];
    let events = wait_cli_output(&agent, &["get", "events"], "both node events", |out| {
        reasons.iter().all(|r| out.contains(r))
    })
    .await;
    for reason in reasons {
        let row = events.lines().find(|line| line.contains(reason)).unwrap();
        assert!(row.contains("Warning") && row.contains("node/"), "{events}");
        assert!(
            row.contains("Failed to garbage collect required amount of images."),
            "{events}"
        );
    }
    drop(agent);
    drop(containerd);
}

/// A Go duration as the kubelet prints pull times ("1.502s", "870ms").
fn go_duration(text: &str) -> Duration {
    if let Some(ms) = text.strip_suffix("ms") {
        return Duration::from_secs_f64(ms.parse::<f64>().expect("ms") / 1000.0);
    }
    let s = text.strip_suffix('s').expect("a duration in s or ms");
    Duration::from_secs_f64(s.parse().expect("seconds"))
}

/// (pull time, time including the wait for a pull slot) of a `Pulled` message.
fn pull_times(message: &str) -> (Duration, Duration) {
    let (_, rest) = message.split_once("\" in ").expect("a pull time");
    let (pulling, rest) = rest.split_once(" (").expect("a total");
    let (total, _) = rest.split_once(" including waiting)").expect("a total");
    (go_duration(pulling), go_duration(total))
}

#[tokio::test]
async fn serialized_pulls_take_turns_and_the_second_counts_its_wait() {
    let Some((registry, dir)) = registry(None).await else {
        return;
    };
    // Two images with a 4 MiB layer of noise each, served at 2 MiB/s: each
    // pull takes about 2 s.
    for name in ["slow-a", "slow-b"] {
        let mut noise = vec![0u8; 4 << 20];
        rand::fill(&mut noise[..]);
        let path = dir.path().join(format!("{name}.oci.tar"));
        berth_testkit::busybox_image(name)
            .file("noise.bin", noise, 0o644)
            .write_oci_archive(std::fs::File::create(&path).expect("archive"))
            .expect("write archive");
        registry.push(&path, &format!("{name}:1")).await;
    }
    let proxy = berth_testkit::proxy::ThrottledProxy::start(registry.host(), 2 << 20).await;
    let config = dir.path().join("registries-proxy.yaml");
    let text = json!({ "registries": { proxy.host(): { "plainHttp": true } } }).to_string();
    std::fs::write(&config, text).expect("write registry config");
    let Some((_containerd, agent)) =
        agent_with(&config, &["--serialize-image-pulls", "true"]).await
    else {
        return;
    };
    // Both pods at once, so their pulls are asked for together.
    let applies = ["slow-a", "slow-b"].map(|name| {
        let image = format!("{}/{name}:1", proxy.host());
        manifest(&image_pod(name, &image, "sleep 3600"))
    });
    let agent = &agent;
    futures::future::join_all(applies.iter().map(|m| agent.apply_yaml(m))).await;

    let mut times = Vec::new();
    for name in ["slow-a", "slow-b"] {
        wait_running(agent, name).await;
        let (_, events) = pod_events(agent, "default", name).await;
        let pulled = event_messages(&events, reasons::PULLED);
        assert_eq!(pulled.len(), 1, "{pulled:?}");
        times.push(pull_times(&pulled[0]));
    }
    // The pod that got the slot second waited out (most of) the first's pull.
    times.sort_by_key(|(pulling, total)| *total - *pulling);
    let [(first_pull, first_total), (second_pull, second_total)] = times[..] else {
        unreachable!()
    };
    assert!(first_pull > Duration::from_millis(1500), "{times:?}");
    assert!(
        first_total - first_pull < Duration::from_millis(200),
        "{times:?}"
    );
    assert!(second_pull > Duration::from_millis(1500), "{times:?}");
    assert!(
        second_total - second_pull > first_pull - Duration::from_millis(700),
        "the second pull did not wait for the first: {times:?}"
    );
}
