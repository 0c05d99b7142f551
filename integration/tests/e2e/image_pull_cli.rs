//! `berth image pull` and `berth image rm` as a user runs them: a real
//! docker-registry on loopback, the agent pointed at it by its registry
//! config, the CLI's output when stdout is not a terminal.

use std::path::PathBuf;
use std::process::Output;

use berth_api::reasons;
use berth_integration::*;
use berth_testkit::registry::LocalRegistry;
use berth_testkit::write_busybox_archive;
use serde_json::json;
use tempfile::TempDir;

/// A registry holding the test kit's busybox as `berth/busybox:1` (its
/// manifest digest returned), and a directory for files.
async fn registry() -> Option<(LocalRegistry, String, TempDir)> {
    let registry = LocalRegistry::start_or_skip(None).await?;
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = write_busybox_archive(dir.path(), "registry.test/busybox:1");
    let digest = registry.push(&archive, "berth/busybox:1").await;
    Some((registry, digest, dir))
}

/// An agent whose registry config makes `registry` plain HTTP, with no image
/// imported (the test image shares the registry image's blobs).
async fn agent_for(
    registry: &LocalRegistry,
    dir: &TempDir,
) -> Option<(PrivateContainerd, AgentProcess)> {
    let config: PathBuf = dir.path().join("registries.yaml");
    let body = json!({ "registries": { registry.host(): { "plainHttp": true } } });
    std::fs::write(&config, body.to_string()).expect("write registry config");
    let containerd = PrivateContainerd::start_or_skip().await?;
    let options = AgentOptions {
        extra_args: vec!["--registry-config".into(), config.display().to_string()],
        import_test_image: false,
        ..AgentOptions::default()
    };
    let agent = AgentProcess::start_with(&containerd, options).await;
    Some((containerd, agent))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn describe(out: &Output) -> String {
    format!(
        "exit {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    )
}

#[tokio::test]
async fn pull_list_repull_and_remove_from_the_command_line() {
    let Some((registry, digest, dir)) = registry().await else {
        return;
    };
    let Some((_containerd, agent)) = agent_for(&registry, &dir).await else {
        return;
    };
    let image = registry.reference("berth/busybox:1");

    // First pull: a line per fetched blob, then the image.
    let out = agent.cli(&["image", "pull", &image]).await;
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = text(&out.stdout);
    assert!(
        !stdout.contains('\x1b'),
        "no terminal codes off a terminal: {stdout:?}"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let (last, blobs) = lines.split_last().expect("output");
    let expected = format!("Pulled {image} ({digest}), ");
    assert!(last.starts_with(&expected), "{stdout}");
    assert!(last.contains(" bytes in "), "{stdout}");
    let fetched = registry.blob_fetches();
    assert!(!fetched.is_empty(), "nothing fetched");
    assert!(!blobs.is_empty(), "no blob lines: {stdout}");
    for line in blobs {
        assert!(line.contains(": Pull complete ("), "{stdout}");
        let short = line.split(':').next().unwrap_or_default();
        assert!(
            fetched
                .iter()
                .any(|d| d.trim_start_matches("sha256:").starts_with(short)),
            "{line} names no fetched blob ({fetched:?})"
        );
    }

    let list = agent.cli_ok(&["image", "ls"]).await;
    let row = list
        .lines()
        .find(|l| l.starts_with(&format!("{image} ")))
        .unwrap_or_else(|| panic!("{image} not listed:\n{list}"));
    assert!(row.contains(&digest), "{list}");

    // Again: nothing fetched, up to date.
    let out = agent.cli(&["image", "pull", &image]).await;
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = text(&out.stdout);
    assert_eq!(
        stdout.lines().last(),
        Some(format!("Image is up to date for {image}").as_str()),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .rev()
            .skip(1)
            .all(|l| l.contains(": Already exists (")),
        "{stdout}"
    );
    assert_eq!(registry.blob_fetches(), fetched, "a re-pull fetched blobs");

    // Remove it; a second removal names it and fails.
    let out = agent.cli(&["image", "rm", &image]).await;
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(text(&out.stdout), format!("Deleted: {image}\n"));
    let list = agent.cli_ok(&["image", "ls"]).await;
    assert!(!list.contains(&image), "{list}");
    let out = agent.cli(&["image", "rm", &image]).await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(out.stdout.is_empty(), "{}", describe(&out));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("NotFound") && stderr.contains(&image),
        "{stderr}"
    );
}

#[tokio::test]
async fn an_absent_tag_fails_with_the_registry_message() {
    let Some((registry, _, dir)) = registry().await else {
        return;
    };
    let Some((_containerd, agent)) = agent_for(&registry, &dir).await else {
        return;
    };
    let image = registry.reference("berth/busybox:nope");
    let out = agent.cli(&["image", "pull", &image]).await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains("manifest unknown"), "{stderr}");
    assert!(
        !text(&out.stdout).contains(reasons::PULLED),
        "{}",
        describe(&out)
    );

    let out = agent.cli(&["image", "pull", "Not A Reference"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("invalid reference format"),
        "{}",
        describe(&out)
    );
}

#[tokio::test]
async fn an_image_a_running_pod_uses_is_kept() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let pod = pod("user", "Always", vec![sh_container("main", "sleep 3600")]);
    agent.apply_yaml(&manifest(&pod)).await;
    wait_running(&agent, "user").await;
    let out = agent
        .cli(&["image", "rm", TEST_IMAGE, "absent.test/x:1"])
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("Conflict") && stderr.contains("default/user"),
        "{stderr}"
    );
    assert!(
        stderr.contains("absent.test/x:1"),
        "both are reported: {stderr}"
    );
    let list = agent.cli_ok(&["image", "ls"]).await;
    assert!(list.contains(TEST_IMAGE), "{list}");
}
