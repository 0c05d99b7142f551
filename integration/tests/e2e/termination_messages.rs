//! Termination messages: the file at `terminationMessagePath`, the policy
//! FallbackToLogsOnError and the kubelet's size limits (docs/kubelet-semantics.md §9).

use berth_integration::*;
use serde_json::Value;

/// Runs a one-container pod under Never and returns its terminated state.
async fn terminated_with(agent: &AgentProcess, name: &str, container: Value) -> Value {
    agent
        .apply_yaml(&manifest(&pod(name, "Never", vec![container])))
        .await;
    let done = wait_terminal(agent, name).await;
    terminated(&done, "main")
        .unwrap_or_else(|| panic!("no terminated state: {done:#}"))
        .clone()
}

#[tokio::test]
async fn the_default_path_carries_the_message_of_a_failed_container() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let term = terminated_with(
        &agent,
        "default-path",
        sh_container(
            "main",
            "printf 'config missing: /etc/app.conf' > /dev/termination-log; exit 1",
        ),
    )
    .await;
    assert_eq!(term["exitCode"], 1, "{term:#}");
    assert_eq!(term["reason"], "Error", "{term:#}");
    assert_eq!(term["message"], "config missing: /etc/app.conf", "{term:#}");
}

#[tokio::test]
async fn a_custom_path_is_read_whatever_the_exit_code() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let mut container = sh_container("main", "printf 'done: 42 rows' > /tmp/exit-note; exit 0");
    container["terminationMessagePath"] = "/tmp/exit-note".into();
    let term = terminated_with(&agent, "custom-path", container).await;
    assert_eq!(term["reason"], "Completed", "{term:#}");
    assert_eq!(term["message"], "done: 42 rows", "{term:#}");
}

#[tokio::test]
async fn only_the_last_4096_bytes_of_the_file_are_kept() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let script = "head -c 5000 /dev/zero | tr '\\0' a > /dev/termination-log; \
                  printf END >> /dev/termination-log; exit 1";
    let term = terminated_with(&agent, "long-message", sh_container("main", script)).await;
    let message = term["message"].as_str().unwrap_or_default();
    assert_eq!(message.len(), 4096, "{} bytes", message.len());
    assert!(message.ends_with("aaaEND"), "{message}");
}

#[tokio::test]
async fn an_empty_file_reports_no_message() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let term = terminated_with(
        &agent,
        "no-message",
        sh_container("main", "echo some output; exit 1"),
    )
    .await;
    // Policy File: the log is never used.
    assert!(
        term["message"].as_str().unwrap_or_default().is_empty(),
        "{term:#}"
    );
}

fn fallback(script: &str) -> Value {
    let mut container = sh_container("main", script);
    container["terminationMessagePolicy"] = "FallbackToLogsOnError".into();
    container
}

#[tokio::test]
async fn fallback_to_logs_uses_the_log_tail_of_a_failed_container() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let term = terminated_with(
        &agent,
        "fallback",
        fallback("echo starting; echo 'panic: no database' >&2; exit 2"),
    )
    .await;
    assert_eq!(term["exitCode"], 2, "{term:#}");
    // Both streams, in the log file's order (stdout and stderr race).
    let message = term["message"].as_str().unwrap_or_default();
    assert_eq!(message, logs(&agent, "fallback", "main").await, "{term:#}");
    let mut lines: Vec<&str> = message.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["panic: no database", "starting"], "{term:#}");
    assert!(message.ends_with('\n'), "{term:#}");
}

#[tokio::test]
async fn fallback_to_logs_keeps_the_last_80_lines() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let term = terminated_with(
        &agent,
        "fallback-long",
        fallback("i=1; while [ $i -le 100 ]; do echo line-$i; i=$((i+1)); done; exit 1"),
    )
    .await;
    let expected: String = (21..=100).map(|i| format!("line-{i}\n")).collect();
    assert_eq!(
        term["message"].as_str().unwrap_or_default(),
        expected,
        "{term:#}"
    );
}

#[tokio::test]
async fn fallback_to_logs_keeps_the_last_2048_bytes() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    // 10 lines of 300 bytes: within 80 lines, beyond 2048 bytes.
    let script = "i=0; while [ $i -lt 10 ]; do head -c 299 /dev/zero | tr '\\0' x; echo; \
                  i=$((i+1)); done; echo tail-line; exit 1";
    let term = terminated_with(&agent, "fallback-bytes", fallback(script)).await;
    let message = term["message"].as_str().unwrap_or_default();
    assert_eq!(message.len(), 2048, "{} bytes: {term:#}", message.len());
    assert!(message.ends_with("xxx\ntail-line\n"), "{message}");
}

#[tokio::test]
async fn fallback_to_logs_prefers_the_file_and_ignores_success() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let file_wins = terminated_with(
        &agent,
        "fallback-file",
        fallback("echo log-line; printf from-file > /dev/termination-log; exit 1"),
    )
    .await;
    assert_eq!(file_wins["message"], "from-file", "{file_wins:#}");

    let success = terminated_with(&agent, "fallback-ok", fallback("echo log-line; exit 0")).await;
    assert_eq!(success["reason"], "Completed", "{success:#}");
    assert!(
        success["message"].as_str().unwrap_or_default().is_empty(),
        "a successful container reports no log message: {success:#}"
    );
}

#[tokio::test]
async fn the_message_moves_to_last_state_on_restart() {
    let Some((_containerd, agent)) = setup_with_back_off(1, 2).await else {
        return;
    };
    // Each run writes its own message: every instance gets a fresh file.
    let script = "n=$(cat /data/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /data/n; \
                  printf \"run $n failed\" > /dev/termination-log; \
                  if [ $n -ge 2 ]; then exec sleep 3600; fi; exit 1";
    let mut container = sh_container("main", script);
    container["volumeMounts"] = serde_json::json!([{ "name": "data", "mountPath": "/data" }]);
    let mut spec = pod("message-restart", "Always", vec![container]);
    spec["spec"]["volumes"] = serde_json::json!([{ "name": "data", "emptyDir": {} }]);
    agent.apply_yaml(&manifest(&spec)).await;

    let pod = agent
        .wait_for(
            "default",
            "message-restart",
            "restarted and running",
            START_TIMEOUT,
            |p| restart_count(p, "main") == 1 && is_running(p, "main"),
        )
        .await;
    let last = &container_status(&pod, "main").unwrap()["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 1, "{pod:#}");
    assert_eq!(last["message"], "run 1 failed", "{pod:#}");
}

/// The kubelet's conformance case "should report termination message from log
/// output if TerminationMessagePolicy FallbackToLogsOnError is set": the last
/// output has no newline.
#[tokio::test]
async fn fallback_to_logs_takes_a_last_line_without_newline() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let term = terminated_with(&agent, "fallback-partial", fallback("echo -n DONE; exit 1")).await;
    assert_eq!(term["exitCode"], 1, "{term:#}");
    assert_eq!(term["message"], "DONE", "{term:#}");
    assert_eq!(logs(&agent, "fallback-partial", "main").await, "DONE");
}
