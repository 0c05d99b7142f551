//! The restart-policy matrix for main containers (Always / OnFailure / Never
//! over exit 0 and exit 1), and the start failures StartError and
//! CreateContainerConfigError (docs/kubelet-semantics.md §3, §4, §5).

use std::time::Duration;

use berth_api::reasons;
use berth_integration::*;
use serde_json::{json, Value};
use tokio::time::Instant;

/// What the kubelet reports for a single-container pod whose container
/// runs `exit <code>` under `policy`.
struct Row {
    policy: &'static str,
    exit_code: i64,
    /// The container is restarted (and so crash-loops).
    restarts: bool,
    phase: &'static str,
    reason: &'static str,
}

fn condition_of<'a>(pod: &'a Value, type_: &str) -> &'a Value {
    condition(pod, type_).unwrap_or_else(|| panic!("no {type_} condition: {pod:#}"))
}

async fn check(row: Row) {
    let Some((_containerd, agent)) = setup_with_back_off(1, 2).await else {
        return;
    };
    let name = format!("{}-exit{}", row.policy.to_ascii_lowercase(), row.exit_code);
    let script = format!("exit {}", row.exit_code);
    agent
        .apply_yaml(&manifest(&pod(
            &name,
            row.policy,
            vec![sh_container("main", &script)],
        )))
        .await;

    if !row.restarts {
        let done = wait_terminal(&agent, &name).await;
        assert_eq!(phase(&done), row.phase, "{done:#}");
        let status = container_status(&done, "main").expect("status");
        assert_eq!(status["restartCount"], 0, "{done:#}");
        let term = &status["state"]["terminated"];
        assert_eq!(term["exitCode"], row.exit_code, "{done:#}");
        assert_eq!(term["reason"], row.reason, "{done:#}");
        assert!(status["lastState"]["terminated"].is_null(), "{done:#}");
        assert_eq!(status["ready"], false, "{done:#}");
        assert_eq!(status["started"], false, "{done:#}");
        // A terminal phase forces both conditions False, with PodCompleted
        // or PodFailed as reason.
        let why = if row.phase == "Succeeded" {
            "PodCompleted"
        } else {
            "PodFailed"
        };
        for type_ in ["Ready", "ContainersReady"] {
            let c = condition_of(&done, type_);
            assert_eq!(c["status"], "False", "{type_}: {done:#}");
            assert_eq!(c["reason"], why, "{type_}: {done:#}");
        }
        let row_out = get_pods_row(&agent, &name).await.expect("row");
        assert_eq!(row_out[1], "0/1", "{row_out:?}");
        assert_eq!(row_out[2], row.reason, "{row_out:?}");
        // It stays terminated: never restarted after the fact.
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            let pod = agent.get_pod_json("default", &name).await;
            assert_eq!(phase(&pod), row.phase, "{pod:#}");
            assert_eq!(restart_count(&pod, "main"), 0, "{pod:#}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        return;
    }

    // Crash-looping: wait for the second restart's back-off.
    let looping = agent
        .wait_for(
            "default",
            &name,
            "in CrashLoopBackOff",
            START_TIMEOUT,
            |p| {
                restart_count(p, "main") >= 2
                    && waiting_reason(p, "main") == Some("CrashLoopBackOff")
            },
        )
        .await;
    // A crash-looping pod under Always or OnFailure is Running.
    assert_eq!(phase(&looping), row.phase, "{looping:#}");
    let status = container_status(&looping, "main").expect("status");
    let last = &status["lastState"]["terminated"];
    assert_eq!(last["exitCode"], row.exit_code, "{looping:#}");
    assert_eq!(last["reason"], row.reason, "{looping:#}");
    assert!(last["containerID"].is_string(), "{looping:#}");
    let message = status["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or_default();
    let expected = format!(
        "back-off 2s restarting failed container=main pod={name}_default({})",
        uid(&looping)
    );
    assert_eq!(message, expected, "{looping:#}");
    assert_eq!(status["ready"], false, "{looping:#}");
    assert_eq!(status["started"], false, "{looping:#}");
    for type_ in ["Ready", "ContainersReady"] {
        let c = condition_of(&looping, type_);
        assert_eq!(c["status"], "False", "{type_}: {looping:#}");
        assert_eq!(c["reason"], "ContainersNotReady", "{type_}: {looping:#}");
        assert_eq!(
            c["message"], "containers with unready status: [main]",
            "{type_}: {looping:#}"
        );
    }
    let row_out = get_pods_row(&agent, &name).await.expect("row");
    assert_eq!(row_out[1], "0/1", "{row_out:?}");
    // The back-off may end between the two reads; STATUS then shows the
    // container's brief run or exit.
    assert!(
        matches!(
            row_out[2].as_str(),
            "CrashLoopBackOff" | "Running" | "Completed" | "Error"
        ),
        "{row_out:?}"
    );
    let restarts: i64 = row_out[3].parse().expect("RESTARTS count");
    assert!(restarts >= 2, "{row_out:?}");
}

#[tokio::test]
async fn never_exit_0_succeeds() {
    check(Row {
        policy: "Never",
        exit_code: 0,
        restarts: false,
        phase: "Succeeded",
        reason: "Completed",
    })
    .await;
}

#[tokio::test]
async fn never_exit_1_fails() {
    check(Row {
        policy: "Never",
        exit_code: 1,
        restarts: false,
        phase: "Failed",
        reason: "Error",
    })
    .await;
}

#[tokio::test]
async fn on_failure_exit_0_succeeds() {
    check(Row {
        policy: "OnFailure",
        exit_code: 0,
        restarts: false,
        phase: "Succeeded",
        reason: "Completed",
    })
    .await;
}

#[tokio::test]
async fn on_failure_exit_1_crash_loops_running() {
    check(Row {
        policy: "OnFailure",
        exit_code: 1,
        restarts: true,
        phase: "Running",
        reason: "Error",
    })
    .await;
}

#[tokio::test]
async fn always_exit_0_crash_loops_running() {
    check(Row {
        policy: "Always",
        exit_code: 0,
        restarts: true,
        phase: "Running",
        reason: "Completed",
    })
    .await;
}

#[tokio::test]
async fn always_exit_1_crash_loops_running() {
    check(Row {
        policy: "Always",
        exit_code: 1,
        restarts: true,
        phase: "Running",
        reason: "Error",
    })
    .await;
}

#[tokio::test]
async fn a_missing_command_is_a_start_error_then_crash_loops() {
    let Some((_containerd, agent)) = setup_with_back_off(1, 2).await else {
        return;
    };
    let mut container = sh_container("main", "unused");
    container["command"] = json!(["/no/such/binary"]);
    agent
        .apply_yaml(&manifest(&pod("no-binary", "Always", vec![container])))
        .await;

    // containerd's CRI reports a failed start as terminated StartError, 128.
    let looping = agent
        .wait_for(
            "default",
            "no-binary",
            "crash-looping",
            START_TIMEOUT,
            |p| {
                restart_count(p, "main") >= 1
                    && waiting_reason(p, "main") == Some("CrashLoopBackOff")
            },
        )
        .await;
    assert_eq!(phase(&looping), "Running", "{looping:#}");
    let last = &container_status(&looping, "main").unwrap()["lastState"]["terminated"];
    assert_eq!(last["reason"], "StartError", "{looping:#}");
    assert_eq!(last["exitCode"], 128, "{looping:#}");
    let message = last["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("/no/such/binary"),
        "the message names the command: {looping:#}"
    );
    // The failed start is an event too (Warning Failed).
    let (_, events) = pod_events(&agent, "default", "no-binary").await;
    let failed = find_event(&events, reasons::FAILED, "spec.containers{main}")
        .unwrap_or_else(|| panic!("no Failed event: {events:#?}"));
    assert_eq!(failed["type"], "Warning", "{failed:#}");
}

#[tokio::test]
async fn a_missing_command_fails_the_pod_under_never() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    agent
        .apply_yaml(&manifest(&pod(
            "no-binary-never",
            "Never",
            vec![json!({
                "name": "main",
                "image": TEST_IMAGE,
                "command": ["/no/such/binary"],
            })],
        )))
        .await;
    let done = wait_terminal(&agent, "no-binary-never").await;
    assert_eq!(phase(&done), "Failed", "{done:#}");
    let term = terminated(&done, "main").expect("terminated");
    assert_eq!(term["reason"], "StartError", "{done:#}");
    assert_eq!(term["exitCode"], 128, "{done:#}");
}

#[tokio::test]
async fn a_missing_secret_is_a_config_error_while_other_containers_run() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let mut needs_secret = sh_container("needs-secret", "exec sleep 3600");
    needs_secret["env"] = json!([{
        "name": "PASSWORD",
        "valueFrom": { "secretKeyRef": { "name": "db-credentials", "key": "password" } }
    }]);
    let fine = sh_container("fine", "exec sleep 3600");
    agent
        .apply_yaml(&manifest(&pod(
            "config-error",
            "Always",
            vec![needs_secret, fine],
        )))
        .await;

    let pod = agent
        .wait_for(
            "default",
            "config-error",
            "config error beside a running container",
            START_TIMEOUT,
            |p| {
                waiting_reason(p, "needs-secret") == Some("CreateContainerConfigError")
                    && is_running(p, "fine")
            },
        )
        .await;
    let status = container_status(&pod, "needs-secret").unwrap();
    let message = status["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("db-credentials"), "{pod:#}");
    assert_eq!(container_id(&pod, "needs-secret"), None, "{pod:#}");
    assert_eq!(restart_count(&pod, "needs-secret"), 0, "{pod:#}");
    // A waiting container keeps the pod Pending (kubelet getPhase).
    assert_eq!(phase(&pod), "Pending", "{pod:#}");
    let row = get_pods_row(&agent, "config-error").await.expect("row");
    assert_eq!(row[1], "1/2", "{row:?}");
    assert_eq!(row[2], "CreateContainerConfigError", "{row:?}");
    let (_, events) = pod_events(&agent, "default", "config-error").await;
    let failed = find_event(&events, reasons::FAILED, "spec.containers{needs-secret}")
        .unwrap_or_else(|| panic!("no Failed event: {events:#?}"));
    assert_eq!(failed["type"], "Warning", "{failed:#}");
    assert!(
        failed["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Error: ") && m.contains("db-credentials")),
        "{failed:#}"
    );
}
