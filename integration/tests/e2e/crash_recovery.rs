//! An agent killed in the middle of pod starts: the next agent releases what
//! the interrupted starts made (network attachments and addresses, namespace
//! pins, mounts, shims, loggers), answers its API at once, and once the pods
//! are deleted the host is as clean as before.

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

/// How a cut-off pause start is made behind a killed agent's back: berth's
/// mark that the pause started is removed, and its task is
enum CutOff {
    /// deleted (the kill came before the task create);
    NoTask,
    /// left stopped (as containerd shows one whose create it is undoing).
    Stopped,
}

/// The pause task starts in the background after the pod's first container,
/// so an agent killed in between leaves a running pod whose pause never
/// started. The next agent finishes that start and adopts the pod as it is;
/// it used to take the sandbox for dead and make the pod again in a new one.
async fn pause_start_cut_off(how: CutOff) {
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
    let sandbox = id.split("-main-").next().expect("sandbox id").to_owned();
    let deadline = Instant::now() + START_TIMEOUT;
    while !pause_started_marker(&agent, &sandbox).exists() {
        assert!(Instant::now() < deadline, "the pause never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    agent.kill().await;
    let args: &[&str] = match how {
        CutOff::NoTask => &["tasks", "delete", "-f", &sandbox],
        CutOff::Stopped => &["tasks", "kill", "-s", "SIGKILL", &sandbox],
    };
    let out = agent.ctr(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + START_TIMEOUT;
    while task_status(&agent, &sandbox).as_deref() == Some("RUNNING") {
        assert!(Instant::now() < deadline, "the pause still runs");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    std::fs::remove_file(pause_started_marker(&agent, &sandbox)).expect("the pause was marked");
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
    assert_eq!(
        task_status(&agent, &sandbox).as_deref(),
        Some("RUNNING"),
        "the pause is not running"
    );
}

#[tokio::test]
async fn a_pause_start_cut_off_by_kill_9_is_finished_and_the_pod_kept() {
    pause_start_cut_off(CutOff::NoTask).await;
}

#[tokio::test]
async fn a_pause_start_cut_off_in_its_create_is_finished_and_the_pod_kept() {
    pause_start_cut_off(CutOff::Stopped).await;
}

/// Where berth marks that a sandbox's pause started.
fn pause_started_marker(agent: &AgentProcess, sandbox: &str) -> std::path::PathBuf {
    agent
        .root_dir()
        .join("sandboxes")
        .join(sandbox)
        .join("pause-started")
}

/// A pause that ran and died while the agent was down: as the kubelet does
/// with a sandbox that is not ready, the next agent makes the pod again in a
/// new sandbox (it is not taken for a start the crash cut off).
#[tokio::test]
async fn a_pause_that_died_while_the_agent_was_down_has_its_pod_made_again() {
    let Some((_containerd, mut agent)) = setup().await else {
        return;
    };
    agent
        .apply_yaml(&manifest(&pod(
            "orphaned",
            "Always",
            vec![sh_container("main", "exec sleep 3600")],
        )))
        .await;
    let before = wait_running(&agent, "orphaned").await;
    let id = container_id(&before, "main").expect("containerID");
    let sandbox = id.split("-main-").next().expect("sandbox id").to_owned();
    // Once berth has marked it started, a pause that is gone has died.
    let deadline = Instant::now() + START_TIMEOUT;
    while !pause_started_marker(&agent, &sandbox).exists() {
        assert!(Instant::now() < deadline, "the pause never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pause = task_pid(&agent, &sandbox).expect("the pause runs");

    agent.kill().await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pause),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the pause");
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
