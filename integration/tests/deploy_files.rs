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
