//! Exit codes, restart policies and termination (grace period, SIGKILL).

use std::process::Stdio;
use std::time::Duration;

use berth_integration::*;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

#[tokio::test]
async fn restart_never_keeps_the_exit_code_and_fails_the_pod() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    agent
        .apply_yaml(&manifest(&pod(
            "exit3",
            "Never",
            vec![sh_container("main", "exit 3")],
        )))
        .await;
    let done = wait_terminal(&agent, "exit3").await;
    assert_eq!(phase(&done), "Failed", "{done:#}");
    let term = terminated(&done, "main").expect("terminated state");
    assert_eq!(term["exitCode"], 3, "{term:#}");
    assert_eq!(term["reason"], "Error", "{term:#}");
    assert_eq!(restart_count(&done, "main"), 0);
}

#[tokio::test]
async fn on_failure_with_exit_zero_succeeds() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    agent
        .apply_yaml(&manifest(&pod(
            "ok",
            "OnFailure",
            vec![sh_container("main", "exit 0")],
        )))
        .await;
    let done = wait_terminal(&agent, "ok").await;
    assert_eq!(phase(&done), "Succeeded", "{done:#}");
    let term = terminated(&done, "main").expect("terminated state");
    assert_eq!(term["exitCode"], 0);
    assert_eq!(term["reason"], "Completed");
    assert_eq!(restart_count(&done, "main"), 0);
}

#[tokio::test]
async fn restart_always_restarts_a_failing_container() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    agent
        .apply_yaml(&manifest(&pod(
            "crasher",
            "Always",
            vec![sh_container("main", "exit 1")],
        )))
        .await;
    // The first restart comes without back-off; later ones wait 10 s, 20 s, …
    let restarted = agent
        .wait_for("default", "crasher", "restarted", START_TIMEOUT, |p| {
            restart_count(p, "main") >= 1
        })
        .await;
    let last = &container_status(&restarted, "main").unwrap()["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 1, "{restarted:#}");
    // A crash-looping pod with restartPolicy Always is Running, never Failed.
    assert_ne!(phase(&restarted), "Failed");
    let get = agent.cli_ok(&["get", "pods"]).await;
    let row = get
        .lines()
        .find(|l| l.starts_with("crasher "))
        .expect("row");
    let restarts: i64 = row.split_whitespace().nth(3).unwrap().parse().unwrap();
    assert!(restarts >= 1, "{get}");
}

/// Starts `berth get pods -w -o json` and returns the child; its stdout is the
/// stream of pod objects.
async fn watch(agent: &AgentProcess) -> tokio::process::Child {
    tokio::process::Command::new(berth_testkit::agent::berth_bin())
        .arg("--socket")
        .arg(agent.socket())
        .args(["get", "pods", "-w", "-o", "json"])
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn berth get pods -w")
}

#[tokio::test]
async fn grace_period_ends_with_sigkill() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let script = "trap '' TERM; sleep 1000";
    agent
        .apply_yaml(&manifest(&pod(
            "stubborn",
            "Always",
            vec![sh_container("main", script)],
        )))
        .await;
    wait_running(&agent, "stubborn").await;
    let mut watcher = watch(&agent).await;

    let started = Instant::now();
    agent
        .cli_ok(&["delete", "pod", "stubborn", "--grace-period", "2", "--wait"])
        .await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "gone after {took:?}, before the grace period"
    );
    assert!(
        took < Duration::from_secs(5),
        "gone after {took:?}; grace period was 2 s"
    );
    assert!(agent
        .try_get_pod_json("default", "stubborn")
        .await
        .is_none());

    // The watch saw the container's end: killed by SIGKILL, 128 + 9.
    let mut stdout = watcher.stdout.take().unwrap();
    let mut stream = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut chunk = [0u8; 8192];
    let exit_codes = loop {
        let exit_codes: Vec<_> = watched_pods(&stream)
            .iter()
            .filter(|p| p["metadata"]["name"] == "stubborn")
            .filter_map(|p| terminated(p, "main"))
            .map(|t| t["exitCode"].clone())
            .collect();
        let left = deadline.saturating_duration_since(Instant::now());
        if exit_codes.iter().any(|c| c == 137) || left.is_zero() {
            break exit_codes;
        }
        match tokio::time::timeout(left, stdout.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => stream.extend_from_slice(&chunk[..n]),
            _ => break exit_codes,
        }
    };
    watcher.start_kill().ok();
    assert!(
        exit_codes.iter().any(|c| c == 137),
        "exit codes seen by the watch: {exit_codes:?}\n{}",
        String::from_utf8_lossy(&stream)
    );
}

#[tokio::test]
async fn a_container_that_handles_sigterm_stops_at_once() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    // sh runs traps between commands, so the loop's sleeps are short.
    agent
        .apply_yaml(&manifest(&pod(
            "polite",
            "Always",
            vec![term_handling_container("main")],
        )))
        .await;
    wait_running(&agent, "polite").await;
    // Only once the trap is installed does SIGTERM mean "exit".
    wait_log_contains(&agent, "polite", "main", "ready").await;
    let started = Instant::now();
    agent.cli_ok(&["delete", "pod", "polite", "--wait"]).await;
    let took = started.elapsed();
    // The default grace period is 30 s; a SIGTERM handler ends it at once.
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(agent.try_get_pod_json("default", "polite").await.is_none());
}
