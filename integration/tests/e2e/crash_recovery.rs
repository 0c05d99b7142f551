//! An agent killed in the middle of pod starts: the next agent releases what
//! the interrupted starts made (network attachments and addresses, namespace
//! pins, mounts, shims, loggers), answers its API at once, and once the pods
//! are deleted the host is as clean as before. A sandbox that dies, while
//! the agent is down or while it runs, is made again.

use std::time::Duration;

use berth_api::reasons;
use berth_integration::*;
use berth_testkit::mounts::mounts_under;
use tokio::time::Instant;

const PODS: usize = 10;

#[tokio::test]
async fn kill_9_during_pod_starts_leaks_nothing() {
    let Some((_containerd, mut agent)) = setup().await else {
        return;
    };
    let names: Vec<String> = (0..PODS).map(|i| format!("s{i}")).collect();
    for round in 0..2 {
        let docs: Vec<String> = names
            .iter()
            .map(|n| {
                manifest(&pod(
                    n,
                    "Always",
                    vec![sh_container("main", "exec sleep 3600")],
                ))
            })
            .collect();
        agent.apply_yaml(&docs.join("\n---\n")).await;
        // Killed as soon as the first sandbox is being made: the other
        // starts are at every step between namespaces and a running task.
        let deadline = Instant::now() + START_TIMEOUT;
        while sandboxes_pinned(&agent) == 0 {
            assert!(Instant::now() < deadline, "no sandbox is being made");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        agent.kill().await;

        let relaunched = Instant::now();
        agent.launch().await;
        let api_back = relaunched.elapsed();
        eprintln!("round {round}: API back {api_back:?} after the crash");
        assert!(
            api_back < Duration::from_secs(3),
            "API took {api_back:?} to come back"
        );
        for name in &names {
            wait_running(&agent, name).await;
        }
        assert_eq!(allocated_ips(&agent).len(), PODS, "one address per pod");
        assert_eq!(veths(&agent), PODS, "one veth per pod");
        assert_eq!(sandboxes_pinned(&agent), PODS, "one set of pins per pod");

        for name in &names {
            agent
                .cli_ok(&["delete", "pod", name, "--grace-period", "0"])
                .await;
        }
        let deadline = Instant::now() + START_TIMEOUT;
        while !list_pods(&agent).await.is_empty() {
            assert!(Instant::now() < deadline, "pods not deleted");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(ctr_list(&agent, "containers"), Vec::<String>::new());
        assert_eq!(ctr_list(&agent, "tasks"), Vec::<String>::new());
        assert_eq!(
            allocated_ips(&agent),
            Vec::<String>::new(),
            "addresses left"
        );
        assert_eq!(veths(&agent), 0, "veths left");
        assert_eq!(sandboxes_pinned(&agent), 0, "namespace pins left");
        assert_eq!(
            mounts_under(&agent.root_dir()),
            Vec::<std::path::PathBuf>::new(),
            "mounts left"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while shims(agent.namespace()) + loggers(agent.namespace()) > 0 {
            assert!(
                Instant::now() < deadline,
                "{} shims and {} loggers left",
                shims(agent.namespace()),
                loggers(agent.namespace())
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The shim of a pod is named after the pod's first task: once that
/// container has restarted twice its record is gone, yet the shim still
/// serves the pod, and a restarted agent must not take it for a stray.
#[tokio::test]
async fn a_pods_shim_outlives_its_first_containers_record() {
    let Some((_containerd, mut agent)) = setup_with_back_off(1, 1).await else {
        return;
    };
    let spec = pod(
        "firsts",
        "Always",
        vec![
            sh_container("first", "sleep 1; exit 1"),
            sh_container("steady", "exec sleep 3600"),
        ],
    );
    agent.apply_yaml(&manifest(&spec)).await;
    let deadline = Instant::now() + START_TIMEOUT * 2;
    let before = loop {
        let pod = agent.get_pod_json("default", "firsts").await;
        if restart_count(&pod, "first") >= 2 && is_running(&pod, "steady") {
            break pod;
        }
        assert!(Instant::now() < deadline, "no second restart: {pod:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let steady = container_id(&before, "steady").unwrap();
    let pid = task_pid(&agent, &steady).expect("steady runs");
    let shims_before = shims(agent.namespace());

    agent.stop().await;
    agent.launch().await;
    let after = wait_running(&agent, "firsts").await;
    assert_eq!(
        container_id(&after, "steady").as_deref(),
        Some(steady.as_str())
    );
    assert_eq!(restart_count(&after, "steady"), 0);
    assert_eq!(task_pid(&agent, &steady), Some(pid));
    assert!(
        berth_testkit::process::alive(pid),
        "the pod's processes were killed"
    );
    assert_eq!(
        shims(agent.namespace()),
        shims_before,
        "the pod's shim was killed"
    );
}

/// A pod that shares no process namespace has no pause process: its
/// namespaces are held by pins. Its sandbox record has no task, and an agent
/// killed and started again adopts the pod as it is (the missing pause is
/// not taken for a dead sandbox).
#[tokio::test]
async fn a_pod_without_a_shared_process_namespace_runs_with_no_pause_and_is_adopted_as_it_is() {
    let Some((_containerd, mut agent)) = setup().await else {
        return;
    };
    agent
        .apply_yaml(&manifest(&pod(
            "unpaused",
            "Always",
            vec![sh_container("main", "exec sleep 3600")],
        )))
        .await;
    let before = wait_running(&agent, "unpaused").await;
    let id = container_id(&before, "main").expect("containerID");
    let pid = task_pid(&agent, &id).expect("a task for the container");
    let sandbox = sandbox_of(&id);
    assert_eq!(task_status(&agent, &sandbox), None, "a pause task was made");

    agent.kill().await;
    agent.launch().await;

    let after = wait_running(&agent, "unpaused").await;
    assert_eq!(
        container_id(&after, "main").as_deref(),
        Some(id.as_str()),
        "the pod was made again"
    );
    assert_eq!(task_pid(&agent, &id), Some(pid));
    assert_eq!(restart_count(&after, "main"), 0);
    assert_eq!(pod_ip(&after), pod_ip(&before), "a new sandbox");
    assert_eq!(task_status(&agent, &sandbox), None, "a pause task was made");
}

fn sandbox_of(container_id: &str) -> String {
    let sandbox = container_id.split("-main-").next();
    sandbox.expect("sandbox id").to_owned()
}

/// How a sandbox dies while the agent is down.
enum Death {
    /// The pause of a pod that shares its process namespace is killed.
    PauseKilled,
    /// The namespace pins are unmounted, as a reboot loses them.
    PinsGone,
}

/// As the kubelet does with a sandbox that is not ready, the next agent
/// makes the pod again in a new sandbox, with a `SandboxChanged` event.
async fn sandbox_died_while_the_agent_was_down(death: Death) {
    let Some((_containerd, mut agent)) = setup().await else {
        return;
    };
    let mut spec = pod(
        "orphaned",
        "Always",
        vec![sh_container("main", "exec sleep 3600")],
    );
    if matches!(death, Death::PauseKilled) {
        spec["spec"]["shareProcessNamespace"] = serde_json::json!(true);
    }
    agent.apply_yaml(&manifest(&spec)).await;
    let before = wait_running(&agent, "orphaned").await;
    let id = container_id(&before, "main").expect("containerID");
    let sandbox = sandbox_of(&id);

    agent.kill().await;
    match death {
        Death::PauseKilled => {
            let pause = task_pid(&agent, &sandbox).expect("the pause runs");
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pause),
                nix::sys::signal::Signal::SIGKILL,
            )
            .expect("kill the pause");
        }
        Death::PinsGone => {
            let pins = agent.root_dir().join("ns").join(&sandbox);
            for kind in ["net", "ipc", "uts"] {
                nix::mount::umount2(&pins.join(kind), nix::mount::MntFlags::MNT_DETACH)
                    .expect("unmount a pin");
            }
        }
    }
    agent.launch().await;

    let after = agent
        .wait_for(
            "default",
            "orphaned",
            "in a new sandbox",
            START_TIMEOUT,
            |p| all_running(p) && container_id(p, "main").is_some_and(|c| c != id),
        )
        .await;
    let (_, events) = pod_events(&agent, "default", "orphaned").await;
    assert!(
        events
            .iter()
            .any(|e| e["reason"] == reasons::SANDBOX_CHANGED),
        "{events:#?}"
    );
    assert_ne!(pod_ip(&after), None);
}

#[tokio::test]
async fn a_pause_that_died_while_the_agent_was_down_has_its_pod_made_again() {
    sandbox_died_while_the_agent_was_down(Death::PauseKilled).await;
}

#[tokio::test]
async fn a_sandbox_whose_pins_went_while_the_agent_was_down_has_its_pod_made_again() {
    sandbox_died_while_the_agent_was_down(Death::PinsGone).await;
}

/// A pause killed while the agent runs: the kernel ends the pod's shared
/// PID namespace with it, and the agent makes the pod again in a new
/// sandbox (`SandboxChanged`), its container restarted once.
#[tokio::test]
async fn a_pause_killed_while_the_agent_runs_has_its_pod_made_again() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let mut spec = pod(
        "shared",
        "Always",
        vec![sh_container("main", "exec sleep 3600")],
    );
    spec["spec"]["shareProcessNamespace"] = serde_json::json!(true);
    agent.apply_yaml(&manifest(&spec)).await;
    let before = wait_running(&agent, "shared").await;
    let id = container_id(&before, "main").expect("containerID");
    let sandbox = sandbox_of(&id);
    let pause = task_pid(&agent, &sandbox).expect("the pause runs");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pause),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the pause");

    let after = agent
        .wait_for(
            "default",
            "shared",
            "running again in a new sandbox",
            START_TIMEOUT,
            |p| {
                all_running(p) && container_id(p, "main").is_some_and(|c| sandbox_of(&c) != sandbox)
            },
        )
        .await;
    assert_eq!(restart_count(&after, "main"), 1, "{after:#}");
    let last = &container_status(&after, "main").expect("status")["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 137, "{after:#}");
    let (_, events) = pod_events(&agent, "default", "shared").await;
    assert!(
        events
            .iter()
            .any(|e| e["reason"] == reasons::SANDBOX_CHANGED),
        "{events:#?}"
    );
    // The old sandbox went with its container: a pause and a main task.
    let new_id = container_id(&after, "main").expect("containerID");
    let mut tasks = ctr_list(&agent, "tasks");
    tasks.sort();
    let mut want = vec![sandbox_of(&new_id), new_id];
    want.sort();
    assert_eq!(tasks, want);
    assert_ne!(pod_ip(&after), None);
}
