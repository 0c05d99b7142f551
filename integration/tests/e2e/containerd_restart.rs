//! A containerd restart: the shims keep the containers, so berth re-arms its
//! waits through the new connection instead of taking the cut-off waits for
//! exits. No container restarts, none runs twice, and exec works as soon as
//! containerd answers again.

use std::time::Duration;

use berth_integration::*;
use tokio::time::Instant;

const PODS: usize = 20;

/// Tasks `ctr tasks ls` shows RUNNING.
fn running_tasks(agent: &AgentProcess) -> usize {
    let tasks = agent.ctr(&["tasks", "ls"]);
    String::from_utf8_lossy(&tasks.stdout)
        .lines()
        .filter(|l| l.trim_end().ends_with("RUNNING"))
        .count()
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

#[tokio::test]
async fn twenty_pods_survive_a_containerd_restart_without_restarts_or_duplicates() {
    let Some((mut containerd, agent)) = setup().await else {
        return;
    };
    // Half the pods share their process namespace, so have a pause task.
    let docs: Vec<String> = (0..PODS)
        .map(|i| {
            let mut spec = pod(
                &format!("p{i}"),
                "Always",
                vec![sh_container("main", "exec sleep 3600")],
            );
            spec["spec"]["shareProcessNamespace"] = serde_json::json!(i % 2 == 0);
            manifest(&spec)
        })
        .collect();
    agent.apply_yaml(&docs.join("\n---\n")).await;
    for i in 0..PODS {
        wait_running(&agent, &format!("p{i}")).await;
    }
    let tasks_before = sorted(ctr_list(&agent, "tasks"));
    assert_eq!(
        tasks_before.len(),
        PODS + PODS / 2,
        "a main task each, and a pause for each pod sharing its process namespace"
    );
    let shims_before = shims(agent.namespace());
    assert!(shims_before > 0);

    containerd.restart().await;
    let answering = Instant::now();
    // exec through the new connection, within a second of containerd
    // answering (with room for a busy machine).
    loop {
        let out = agent.cli(&["exec", "p0", "--", "true"]).await;
        if out.status.success() {
            break;
        }
        assert!(
            answering.elapsed() < Duration::from_secs(3),
            "exec failing {:?} after containerd answered: {}",
            answering.elapsed(),
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let exec_after = answering.elapsed();
    eprintln!("exec answered {exec_after:?} after containerd");

    // A cut-off wait taken for an exit restarts its container at once; give
    // every pod a few seconds to show that, and see that none does.
    let watch_until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < watch_until {
        for pod in list_pods(&agent).await {
            let name = pod["metadata"]["name"].as_str().unwrap_or_default();
            assert_eq!(restart_count(&pod, "main"), 0, "{name} restarted: {pod:#}");
            assert!(all_running(&pod), "{name} not running: {pod:#}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        sorted(ctr_list(&agent, "tasks")),
        tasks_before,
        "tasks changed across the restart"
    );
    assert_eq!(shims(agent.namespace()), shims_before, "shims changed");
    assert!(
        !agent.agent_log().contains("lost track of container"),
        "{}",
        agent.agent_log()
    );

    // And everything goes when the pods go: no orphan sandbox or shim.
    for i in 0..PODS {
        agent
            .cli_ok(&[
                "delete",
                "pod",
                &format!("p{i}"),
                "--grace-period",
                "0",
                "--wait=false",
            ])
            .await;
    }
    let deadline = Instant::now() + START_TIMEOUT;
    while !(list_pods(&agent).await.is_empty() && ctr_list(&agent, "containers").is_empty()) {
        assert!(
            Instant::now() < deadline,
            "pods or containers left: {:?}",
            ctr_list(&agent, "containers")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ctr_list(&agent, "tasks").is_empty());
    let deadline = Instant::now() + Duration::from_secs(10);
    while shims(agent.namespace()) > 0 {
        assert!(
            Instant::now() < deadline,
            "{} shims left",
            shims(agent.namespace())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_exit_while_containerd_is_down_is_seen_once_it_is_back() {
    let Some((mut containerd, agent)) = setup().await else {
        return;
    };
    agent
        .apply_yaml(&manifest(&pod(
            "dies",
            "Always",
            vec![sh_container("main", "exec sleep 3600")],
        )))
        .await;
    let before = wait_running(&agent, "dies").await;
    let id = container_id(&before, "main").expect("containerID");
    let pid = task_pid(&agent, &id).expect("a task for the container");

    containerd.stop_daemon();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the container's process");
    // Nothing can be known while containerd is away: the pod still shows
    // the container running.
    let pod = agent.get_pod_json("default", "dies").await;
    assert_eq!(restart_count(&pod, "main"), 0, "{pod:#}");
    containerd.start_daemon().await;

    let after = agent
        .wait_for("default", "dies", "a restart", START_TIMEOUT, |p| {
            restart_count(p, "main") == 1 && all_running(p)
        })
        .await;
    let last = &container_status(&after, "main").expect("status")["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 137, "{after:#}");
    assert_ne!(container_id(&after, "main"), Some(id));
    let tasks = agent.ctr(&["tasks", "ls"]);
    assert_eq!(
        running_tasks(&agent),
        1,
        "one main (and no pause):\n{}",
        String::from_utf8_lossy(&tasks.stdout)
    );
}

#[tokio::test]
async fn a_pod_deleted_while_containerd_is_down_goes_once_it_is_back() {
    let Some((mut containerd, agent)) = setup().await else {
        return;
    };
    agent
        .apply_yaml(&manifest(&pod(
            "doomed",
            "Always",
            vec![sh_container("main", "exec sleep 3600")],
        )))
        .await;
    wait_running(&agent, "doomed").await;

    containerd.stop_daemon();
    agent
        .cli_ok(&[
            "delete",
            "pod",
            "doomed",
            "--grace-period",
            "1",
            "--wait=false",
        ])
        .await;
    // The kill cannot reach containerd; it must not be given up.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !agent
        .agent_log()
        .contains("cannot wait for the container yet")
    {
        assert!(Instant::now() < deadline, "{}", agent.agent_log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    containerd.start_daemon().await;

    let deadline = Instant::now() + START_TIMEOUT;
    while !(list_pods(&agent).await.is_empty() && ctr_list(&agent, "containers").is_empty()) {
        assert!(
            Instant::now() < deadline,
            "pod or containers left: {:?}",
            ctr_list(&agent, "containers")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ctr_list(&agent, "tasks").is_empty());
}
