//! `logs --previous`: the run before the current one, each run in its own
//! `<restartCount>.log`, older files removed (docs/kubelet-semantics.md §14).

use std::collections::BTreeSet;
use std::time::Duration;

use berth_integration::*;
use serde_json::{json, Value};
use tokio::time::Instant;

/// A pod whose container counts its runs in an emptyDir, prints `run <n>`,
/// and fails until run `keep_from`, which keeps running.
fn counting_pod(name: &str, keep_from: u32) -> Value {
    let script = format!(
        "n=$(cat /data/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /data/n; \
         echo run $n; if [ $n -ge {keep_from} ]; then exec sleep 3600; fi; exit 1"
    );
    let mut container = sh_container("main", &script);
    container["volumeMounts"] = json!([{ "name": "data", "mountPath": "/data" }]);
    let mut spec = pod(name, "Always", vec![container]);
    spec["spec"]["volumes"] = json!([{ "name": "data", "emptyDir": {} }]);
    spec
}

fn log_files(agent: &AgentProcess, pod: &Value) -> BTreeSet<String> {
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let dir = agent
        .log_dir()
        .join(format!("default_{name}_{}", uid(pod)))
        .join("main");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            entry
                .expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

#[tokio::test]
async fn previous_shows_the_run_before_and_older_logs_are_removed() {
    let Some((_containerd, agent)) = setup_with_back_off(1, 2).await else {
        return;
    };
    agent
        .apply_yaml(&manifest(&counting_pod("counter", 4)))
        .await;
    let pod = agent
        .wait_for(
            "default",
            "counter",
            "on its fourth run",
            START_TIMEOUT,
            |p| restart_count(p, "main") == 3 && is_running(p, "main"),
        )
        .await;
    // The running instance prints its line at once, but poll: the log file
    // may lag the status by a moment.
    let current = wait_log_contains(&agent, "counter", "main", "run 4").await;
    assert_eq!(current, "run 4\n");
    let previous = agent.cli_ok(&["logs", "counter", "-p"]).await;
    assert_eq!(previous, "run 3\n");
    let long = agent
        .cli_ok(&["logs", "counter", "--previous", "-c", "main"])
        .await;
    assert_eq!(long, "run 3\n");

    // Only the current and the previous run keep their files: the kubelet's
    // container GC keeps one dead instance per container.
    let want: BTreeSet<String> = ["2.log", "3.log"].map(String::from).into();
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let files = log_files(&agent, &pod);
        if files == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "log files {files:?}, expected {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn previous_without_an_earlier_run_is_an_error() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    agent
        .apply_yaml(&manifest(&pod(
            "first-run",
            "Always",
            vec![sh_container("main", "echo hello; exec sleep 3600")],
        )))
        .await;
    wait_running(&agent, "first-run").await;
    let out = agent.cli(&["logs", "first-run", "-p"]).await;
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("previous terminated container \"main\" in pod \"first-run\" not found"),
        "{stderr}"
    );
}

#[tokio::test]
async fn during_back_off_both_logs_show_the_last_run() {
    // A long back-off holds the pod in CrashLoopBackOff while we read.
    let Some((_containerd, agent)) = setup_with_back_off(20, 20).await else {
        return;
    };
    agent
        .apply_yaml(&manifest(&counting_pod("looping", 100)))
        .await;
    let pod = agent
        .wait_for("default", "looping", "backing off", START_TIMEOUT, |p| {
            restart_count(p, "main") == 1 && waiting_reason(p, "main") == Some("CrashLoopBackOff")
        })
        .await;
    // kubectl's resolution: a waiting container with a lastState shows the
    // last terminated run, with or without --previous.
    assert_eq!(logs(&agent, "looping", "main").await, "run 2\n", "{pod:#}");
    assert_eq!(
        agent.cli_ok(&["logs", "looping", "-p"]).await,
        "run 2\n",
        "{pod:#}"
    );
    let still = agent.get_pod_json("default", "looping").await;
    assert_eq!(
        restart_count(&still, "main"),
        1,
        "back-off ended early: {still:#}"
    );
}
