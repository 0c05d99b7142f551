//! Static pods: files in the manifest directory become pods named
//! `<name>-<node name>`; editing a file replaces the pod, removing it deletes it.

use std::time::Duration;

use berth_integration::*;
use serde_json::{json, Value};

fn static_manifest(mark: &str) -> String {
    let mut container = sh_container(
        "main",
        "trap 'exit 0' TERM; echo started-$MARK; while true; do sleep 0.1; done",
    );
    container["env"] = json!([{ "name": "MARK", "value": mark }]);
    manifest(&pod("static-web", "Always", vec![container]))
}

/// The `static-web-<node>` pod once `pred` holds for it.
async fn wait_static(agent: &AgentProcess, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    wait_static_pod(agent, "static-web-", what, pred).await
}

#[tokio::test]
async fn manifest_files_create_replace_and_remove_static_pods() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let file = agent.manifest_dir().join("web.yaml");
    std::fs::write(&file, static_manifest("v1")).unwrap();

    let first = wait_static(&agent, "Running", all_running).await;
    let name = first["metadata"]["name"].as_str().unwrap().to_owned();
    let node = first["spec"]["nodeName"]
        .as_str()
        .expect("static pods are bound to this node");
    assert!(!node.is_empty());
    assert_eq!(name, format!("static-web-{node}"));
    let log = wait_log_contains(&agent, &name, "main", "started-v1").await;
    assert_eq!(log.trim_end(), "started-v1");

    // Edit: a new pod (new UID) with the new spec replaces the old one.
    std::fs::write(&file, static_manifest("v2")).unwrap();
    let old_uid = uid(&first).to_owned();
    let second = wait_static(&agent, "replaced", |p| uid(p) != old_uid && all_running(p)).await;
    assert_eq!(second["metadata"]["name"], name.as_str());
    let log = wait_log_contains(&agent, &name, "main", "started-v2").await;
    assert_eq!(log.trim_end(), "started-v2");
    let static_pods = list_pods(&agent)
        .await
        .into_iter()
        .filter(|p| p["metadata"]["name"] == name.as_str())
        .count();
    assert_eq!(static_pods, 1);

    // Remove: the pod goes away (after its grace period; sleep as PID 1
    // ignores SIGTERM, so give it the default 30 s and some).
    std::fs::remove_file(&file).unwrap();
    agent
        .wait_gone("default", &name, Duration::from_secs(45))
        .await;
}

#[tokio::test]
async fn an_invalid_static_pod_is_refused_naming_its_file_and_field() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    // A UID that would put the pod's directories outside the state root.
    let mut escape = pod("escape", "Always", vec![sh_container("main", "sleep 3600")]);
    escape["metadata"]["uid"] = "../../escape".into();
    let file = agent.manifest_dir().join("escape.yaml");
    std::fs::write(&file, manifest(&escape)).unwrap();
    std::fs::write(
        agent.manifest_dir().join("good.yaml"),
        static_manifest("v1"),
    )
    .unwrap();
    // The good file is read after the bad one.
    wait_static(&agent, "Running", all_running).await;
    let log = agent.agent_log();
    let refusal = log
        .lines()
        .find(|l| l.contains("invalid manifest") && l.contains(&*file.to_string_lossy()))
        .unwrap_or_else(|| panic!("no refusal naming {}:\n{log}", file.display()));
    assert!(
        refusal.contains(r#"metadata.uid: Invalid value: "../../escape""#),
        "{refusal}"
    );
    let names: Vec<Value> = list_pods(&agent).await;
    assert_eq!(names.len(), 1, "{names:#?}");
    let outside = agent.root_dir().join("pods/../../escape");
    assert!(!outside.exists(), "{} was made", outside.display());
}
