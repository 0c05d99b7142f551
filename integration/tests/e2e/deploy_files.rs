//! The shipped deployment files say what the code does: deploy/config.yaml
//! lists the real defaults, the example manifest is a valid pod that needs no
//! registry, and the systemd unit keeps pods alive across agent restarts.

use std::path::PathBuf;

use berth_agent::AgentConfig;
use k8s_openapi::api::core::v1::Pod;

fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

#[test]
fn the_documented_config_is_the_default_config() {
    let documented = AgentConfig::load(Some(&repo_file("deploy/config.yaml"))).expect("parses");
    assert_eq!(documented, AgentConfig::default());
}

#[test]
fn the_example_pod_uses_the_imported_image_without_pulling() {
    let text = std::fs::read_to_string(repo_file("deploy/manifests/web.yaml")).unwrap();
    let pod: Pod = serde_yaml_ng::from_str(&text).expect("a Pod");
    assert_eq!(pod.metadata.name.as_deref(), Some("web"));
    let spec = pod.spec.expect("spec");
    let container = &spec.containers[0];
    assert_eq!(
        container.image.as_deref(),
        Some("docker.io/library/busybox:latest")
    );
    assert_eq!(container.image_pull_policy.as_deref(), Some("Never"));
}

#[test]
fn the_systemd_unit_waits_for_readiness_and_spares_the_pods() {
    let unit = std::fs::read_to_string(repo_file("systemd/berth.service")).unwrap();
    let lines: Vec<&str> = unit.lines().map(str::trim).collect();
    for expected in [
        "Type=notify",
        "KillMode=process",
        "Delegate=yes",
        "Restart=always",
        "Requires=containerd.service",
        "ExecStart=/usr/local/bin/berth agent --config /etc/berth/config.yaml",
    ] {
        assert!(lines.contains(&expected), "missing {expected}");
    }
}

/// What scripts/up.sh does, on a private containerd and agent: import the
/// busybox image that berth-mkimage builds, drop the example manifest into
/// the manifest directory, and fetch the page from the pod's IP.
#[tokio::test]
async fn the_example_static_pod_serves_its_page() {
    use berth_integration::*;
    use berth_testkit::{AgentOptions, PrivateContainerd};

    let Some(containerd) = PrivateContainerd::start_or_skip().await else {
        return;
    };
    let options = AgentOptions {
        import_test_image: false,
        ..AgentOptions::default()
    };
    let agent = AgentProcess::start_with(&containerd, options).await;
    let archive = agent.work_dir().join("busybox.oci.tar");
    let mut file = std::fs::File::create(&archive).unwrap();
    berth_testkit::busybox_image("docker.io/library/busybox:latest")
        .write_oci_archive(&mut file)
        .unwrap();
    agent
        .cli_ok(&["image", "import", &archive.to_string_lossy()])
        .await;
    std::fs::copy(
        repo_file("deploy/manifests/web.yaml"),
        agent.manifest_dir().join("web.yaml"),
    )
    .unwrap();

    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    let web = loop {
        let pods = list_pods(&agent).await;
        if let Some(pod) = pods.into_iter().find(all_running) {
            break pod;
        }
        assert!(tokio::time::Instant::now() < deadline, "web never Running");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let name = web["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("web-"), "{name}");
    let ip = pod_ip(&web).expect("podIP");
    let page = http_get(ip, 80, "/", std::time::Duration::from_secs(10)).await;
    assert!(
        page.contains(&format!("hello from berth: pod {name}")),
        "{page}"
    );
}
