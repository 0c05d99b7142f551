//! What deletion leaves (nothing), what a bad manifest creates (nothing), and
//! a missing image under pull policy Never.

use berth_integration::*;
use berth_testkit::mounts::mounts_under;
use serde_json::json;

#[tokio::test]
async fn deletion_leaves_a_clean_host() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    agent
        .apply_yaml(&manifest(&pod(
            "tidy",
            "Always",
            vec![term_handling_container("main")],
        )))
        .await;
    let running = wait_running(&agent, "tidy").await;
    wait_log_contains(&agent, "tidy", "main", "ready").await;
    let ip = pod_ip(&running).expect("podIP").to_owned();
    // While it runs, the things that must go later are there (so the checks
    // below look in the right places).
    assert_eq!(allocated_ips(&agent), [ip.as_str()]);
    assert!(!ctr_list(&agent, "tasks").is_empty());
    assert!(
        !mounts_under(&agent.root_dir()).is_empty(),
        "netns pin under the root dir"
    );

    agent.cli_ok(&["delete", "pod", "tidy", "--wait"]).await;

    assert_eq!(ctr_list(&agent, "tasks"), Vec::<String>::new());
    assert_eq!(ctr_list(&agent, "containers"), Vec::<String>::new());
    assert_eq!(active_snapshots(&agent), Vec::<String>::new());
    assert_eq!(
        mounts_under(&agent.root_dir()),
        Vec::<std::path::PathBuf>::new()
    );
    assert_eq!(allocated_ips(&agent), Vec::<String>::new());
    assert!(agent.healthy().await);
}

#[tokio::test]
async fn an_invalid_manifest_is_refused_naming_the_field() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let mut no_image = pod("no-image", "Always", vec![sh_container("main", "true")]);
    no_image["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("image");
    let bad_name = pod("Bad_Name", "Always", vec![sh_container("main", "true")]);
    let bad_policy = pod(
        "bad-policy",
        "Sometimes",
        vec![sh_container("main", "true")],
    );
    let cases = [
        (no_image, "spec.containers[0].image"),
        (bad_name, "metadata.name"),
        (bad_policy, "spec.restartPolicy"),
    ];
    for (spec, field) in cases {
        let out = agent.apply_yaml_output(&manifest(&spec)).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "accepted an invalid pod ({field})");
        assert!(
            stderr.contains(field),
            "error does not name {field}: {stderr}"
        );
    }
    assert_eq!(list_pods(&agent).await, Vec::<serde_json::Value>::new());
    assert_eq!(ctr_list(&agent, "containers"), Vec::<String>::new());
    assert!(agent.healthy().await);
}

#[tokio::test]
async fn pull_policy_never_with_an_absent_image_waits_with_err_image_never_pull() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let mut container = sh_container("main", "true");
    container["image"] = json!("berth.test/absent:1");
    container["imagePullPolicy"] = json!("Never");
    agent
        .apply_yaml(&manifest(&pod("never", "Always", vec![container])))
        .await;
    let pod = agent
        .wait_for(
            "default",
            "never",
            "ErrImageNeverPull",
            START_TIMEOUT,
            |p| waiting_reason(p, "main") == Some("ErrImageNeverPull"),
        )
        .await;
    assert_eq!(phase(&pod), "Pending");
    let message = container_status(&pod, "main").unwrap()["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(message.contains("berth.test/absent:1"), "{message}");
    let get = agent.cli_ok(&["get", "pods"]).await;
    assert!(get.contains("ErrImageNeverPull"), "{get}");
}
