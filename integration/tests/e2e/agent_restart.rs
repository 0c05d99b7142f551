//! An agent restart: pods keep running while it is down, and the new agent
//! adopts them instead of starting them again.

use berth_api::reasons;
use berth_integration::*;
use berth_testkit::process::{alive, Ended};

/// `(creationTimestamp, startTime)`.
fn times(pod: &serde_json::Value) -> (String, String) {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    (
        text(&pod["metadata"]["creationTimestamp"]),
        text(&pod["status"]["startTime"]),
    )
}

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
    // A static pod too: its object is made from the file at every start.
    let kept = sh_container("main", "exec sleep 3600");
    std::fs::write(
        agent.manifest_dir().join("kept.yaml"),
        manifest(&pod("kept", "Always", vec![kept])),
    )
    .unwrap();
    let before = wait_running(&agent, "survivor").await;
    let static_before = wait_static_pod(&agent, "kept-", "Running", all_running).await;
    // Past the second the pods were made in, so that a reset would show.
    let made = [&before, &static_before].map(|p| times(p).0);
    let made = made
        .iter()
        .max()
        .unwrap()
        .parse::<jiff::Timestamp>()
        .unwrap();
    let later = made + jiff::SignedDuration::from_secs(1);
    while jiff::Timestamp::now() < later {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let id = container_id(&before, "main").expect("containerID");
    let pid = task_pid(&agent, &id).expect("a task for the container");
    let containers_before = ctr_list(&agent, "containers");
    let (_, events_before) = pod_events(&agent, "default", "survivor").await;
    assert!(
        events_before
            .iter()
            .any(|e| e["reason"] == reasons::STARTED),
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
    // Age and start time go on, as a kubelet restart leaves them.
    assert_eq!(times(&after), times(&before));
    let static_after = wait_static_pod(&agent, "kept-", "Running", all_running).await;
    assert_eq!(uid(&static_after), uid(&static_before));
    assert_eq!(times(&static_after), times(&static_before));
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
    assert_eq!(list_pods(&agent).await.len(), 2);
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

/// What an agent restart must not change, as `berth get pod -o json` shows
/// it: every container's `startedAt` (running or terminated) and every
/// condition's `lastTransitionTime`.
fn status_times(pod: &serde_json::Value) -> Vec<String> {
    let status = &pod["status"];
    let containers = status["initContainerStatuses"]
        .as_array()
        .into_iter()
        .chain(status["containerStatuses"].as_array())
        .flatten()
        .map(|c| {
            format!(
                "{} running {} terminated {}",
                c["name"],
                c["state"]["running"]["startedAt"],
                c["state"]["terminated"]["startedAt"]
            )
        });
    let conditions = status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| format!("{} {} {}", c["type"], c["status"], c["lastTransitionTime"]));
    containers.chain(conditions).collect()
}

#[tokio::test]
async fn status_times_survive_agent_restarts() {
    let Some((_containerd, mut agent)) = setup().await else {
        return;
    };
    let mut spec = pod(
        "timed",
        "Always",
        vec![sh_container("main", "exec sleep 3600")],
    );
    spec["spec"]["initContainers"] = serde_json::json!([sh_container("init", "true")]);
    agent.apply_yaml(&manifest(&spec)).await;
    let before = wait_running(&agent, "timed").await;
    let times = status_times(&before);
    assert!(
        times
            .iter()
            .all(|t| !t.contains("running null terminated null")),
        "{times:#?}"
    );
    assert_eq!(times.len(), 2 + 5, "{times:#?}");
    // Past the second of the last transition, so that a reset would show.
    let later = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(1);
    while jiff::Timestamp::now() < later {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for kill in [false, true] {
        if kill {
            agent.kill().await;
        } else {
            agent.stop().await;
        }
        agent.launch().await;
        let after = wait_running(&agent, "timed").await;
        assert_eq!(
            status_times(&after),
            times,
            "after an agent {}",
            if kill { "kill -9" } else { "stop" }
        );
    }
}

/// A pod's containers share the shim that its first started task spawned,
/// whose command line names that first container. Once a crash loop has
/// replaced it, an agent restart must still leave the shim, and the pod it
/// serves, alone: it used to kill the shim as serving nothing, and the pod
/// was made again in a new sandbox.
#[tokio::test]
async fn a_pod_whose_first_container_was_replaced_survives_an_agent_restart() {
    let Some((_containerd, mut agent)) = setup_with_back_off(1, 1).await else {
        return;
    };
    agent
        .apply_yaml(&manifest(&pod(
            "crashy",
            "Always",
            vec![
                sh_container("crash", "sleep 1; exit 1"),
                sh_container("steady", "exec sleep 3600"),
            ],
        )))
        .await;
    // The instance whose task started the shim is gone once only the last
    // two of `crash` are kept.
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    let before = loop {
        let pod = agent.get_pod_json("default", "crashy").await;
        let records = ctr_list(&agent, "containers");
        let starters = shim_ids(agent.namespace());
        if is_running(&pod, "steady") && starters.iter().all(|s| !records.contains(s)) {
            break pod;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the shim's first container is still there: shims {starters:?}, containers {records:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let id = container_id(&before, "steady").expect("containerID");
    let pid = task_pid(&agent, &id).expect("a task for the container");
    let shims_before = shim_ids(agent.namespace());

    agent.stop().await;
    agent.launch().await;
    let after = agent
        .wait_for("default", "crashy", "steady running", START_TIMEOUT, |p| {
            is_running(p, "steady")
        })
        .await;
    assert_eq!(
        container_id(&after, "steady").as_deref(),
        Some(id.as_str()),
        "the pod was made again"
    );
    assert_eq!(task_pid(&agent, &id), Some(pid));
    assert!(alive(pid), "the container died");
    assert_eq!(restart_count(&after, "steady"), 0);
    assert_eq!(pod_ip(&after), pod_ip(&before), "a new sandbox");
    assert_eq!(
        shim_ids(agent.namespace()),
        shims_before,
        "the shim changed"
    );
}
