//! An agent restart: pods keep running while it is down, and the new agent
//! adopts them instead of starting them again.

use berth_integration::*;
use berth_testkit::process::{alive, Ended};

#[tokio::test]
async fn pods_survive_an_agent_restart_and_are_adopted() {
    let Some((_containerd, mut agent)) = setup().await else {
        return;
    };
    agent
        .apply_yaml(&manifest(&pod(
            "survivor",
            "Always",
            vec![sh_container("main", "exec sleep 3600")],
        )))
        .await;
    let before = wait_running(&agent, "survivor").await;
    let id = container_id(&before, "main").expect("containerID");
    let pid = task_pid(&agent, &id).expect("a task for the container");
    let containers_before = ctr_list(&agent, "containers");
    let (_, events_before) = pod_events(&agent, "default", "survivor").await;
    assert!(
        events_before.iter().any(|e| e["reason"] == "Started"),
        "{events_before:#?}"
    );

    let ended = agent.stop().await;
    assert!(
        matches!(
            ended,
            Ended::Exited(status) if status.success()),
        "agent did not exit cleanly on SIGTERM: {ended:?}"
    );
    assert!(alive(pid), "the container died with the agent");

    agent.launch().await;
    let after = wait_running(&agent, "survivor").await;
    assert_eq!(uid(&after), uid(&before), "a different pod");
    assert_eq!(
        container_id(&after, "main").as_deref(),
        Some(id.as_str()),
        "container replaced"
    );
    assert_eq!(restart_count(&after, "main"), 0);
    assert_eq!(task_pid(&agent, &id), Some(pid));
    assert!(alive(pid));
    assert_eq!(
        ctr_list(&agent, "containers"),
        containers_before,
        "duplicate containers"
    );
    assert_eq!(list_pods(&agent).await.len(), 1);
    // The events are still there, as the API server keeps a kubelet's.
    let (_, events_after) = pod_events(&agent, "default", "survivor").await;
    let seen = |events: &[serde_json::Value]| -> Vec<(String, String)> {
        events
            .iter()
            .map(|e| (e["reason"].to_string(), e["message"].to_string()))
            .collect()
    };
    assert_eq!(seen(&events_after), seen(&events_before));
}
