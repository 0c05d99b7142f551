//! Init containers on real containerd: strictly in order before the main
//! containers, the `Init:N/M` STATUS column, and failures under each restart
//! policy (docs/kubelet-semantics.md §2.3, §3, §5).

use std::time::Duration;

use berth_api::reasons;
use berth_integration::*;
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};
use tokio::time::Instant;

/// Appends `<who> <what> <uptime>` to /shared/timeline.
const STAMP: &str =
    "stamp() { read up idle < /proc/uptime; echo \"$1 $2 $up\" >> /shared/timeline; }";

fn with_mount(mut container: Value, volume: &str, path: &str) -> Value {
    container["volumeMounts"] = json!([{ "name": volume, "mountPath": path }]);
    container
}

fn with_init(mut pod: Value, init: Vec<Value>) -> Value {
    pod["spec"]["initContainers"] = Value::Array(init);
    pod
}

fn time(value: &Value) -> Timestamp {
    value
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a timestamp: {value}"))
}

#[tokio::test]
async fn init_containers_run_one_after_another_before_the_main_container() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let init = |name: &str| {
        let script = format!("{STAMP}; stamp {name} start; sleep 0.2; stamp {name} end");
        with_mount(sh_container(name, &script), "shared", "/shared")
    };
    let main = with_mount(
        sh_container(
            "main",
            &format!("{STAMP}; stamp main start; cat /shared/timeline"),
        ),
        "shared",
        "/shared",
    );
    let mut spec = with_init(
        pod("timeline", "Never", vec![main]),
        vec![init("init-a"), init("init-b")],
    );
    spec["spec"]["volumes"] = json!([{ "name": "shared", "emptyDir": {} }]);
    agent.apply_yaml(&manifest(&spec)).await;

    let done = wait_terminal(&agent, "timeline").await;
    assert_eq!(phase(&done), "Succeeded", "{done:#}");
    let log = logs(&agent, "timeline", "main").await;
    let stamps: Vec<(String, f64)> = log
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(fields.len(), 3, "bad stamp line {line:?} in:\n{log}");
            let uptime = fields[2].parse().unwrap_or_else(|_| panic!("{line:?}"));
            (format!("{} {}", fields[0], fields[1]), uptime)
        })
        .collect();
    let order: Vec<&str> = stamps.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(
        order,
        [
            "init-a start",
            "init-a end",
            "init-b start",
            "init-b end",
            "main start"
        ],
        "{log}"
    );
    for pair in stamps.windows(2) {
        assert!(pair[0].1 <= pair[1].1, "time went backwards: {log}");
    }
    // Each init container runs 0.2 s; /proc/uptime has 10 ms resolution.
    let at = |what: &str| stamps.iter().find(|s| s.0 == what).unwrap().1;
    assert!(at("init-a start") < at("init-b start"), "{log}");
    assert!(at("init-b start") < at("main start"), "{log}");
    assert!(at("init-a end") <= at("init-b start"), "{log}");
    assert!(at("init-b end") <= at("main start"), "{log}");

    // The API agrees: both init containers completed, and the main container
    // started after init-b finished (timestamps have 1 s resolution).
    for name in ["init-a", "init-b"] {
        let status = init_container_status(&done, name)
            .unwrap_or_else(|| panic!("no initContainerStatuses[{name}]: {done:#}"));
        let term = &status["state"]["terminated"];
        assert_eq!(term["exitCode"], 0, "{status:#}");
        assert_eq!(term["reason"], "Completed", "{status:#}");
        assert_eq!(status["restartCount"], 0, "{status:#}");
        // A regular init container is ready once it exited 0, and not
        // "started" since it no longer runs.
        assert_eq!(status["ready"], true, "{status:#}");
        assert_eq!(status["started"], false, "{status:#}");
    }
    let b = init_container_status(&done, "init-b").unwrap();
    let main = terminated(&done, "main").expect("main terminated");
    assert!(
        time(&main["startedAt"]) >= time(&b["state"]["terminated"]["finishedAt"]),
        "main started before init-b finished: {done:#}"
    );
    let initialized = condition(&done, "Initialized").expect("Initialized condition");
    assert_eq!(initialized["status"], "True", "{done:#}");
}

/// Polls the pod JSON until `pred` holds.
async fn wait_pod(
    agent: &AgentProcess,
    name: &str,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    agent
        .wait_for("default", name, what, START_TIMEOUT, pred)
        .await
}

fn running_init(pod: &Value, name: &str) -> bool {
    init_container_status(pod, name).is_some_and(|s| s["state"]["running"].is_object())
}

#[tokio::test]
async fn get_pods_status_walks_through_init_progress() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let gate = agent.work_dir().join("gate");
    let waiter = |name: &str, file: &str| {
        let script = format!("until [ -f /gate/{file} ]; do sleep 0.1; done");
        with_mount(sh_container(name, &script), "gate", "/gate")
    };
    let mut spec = with_init(
        pod(
            "gated",
            "Always",
            vec![sh_container("main", "exec sleep 3600")],
        ),
        vec![waiter("init-a", "go-a"), waiter("init-b", "go-b")],
    );
    spec["spec"]["volumes"] = json!([{
        "name": "gate",
        "hostPath": { "path": gate, "type": "DirectoryOrCreate" }
    }]);
    agent.apply_yaml(&manifest(&spec)).await;
    let mut seen = Vec::new();

    record_status_until(&agent, "gated", "Init:0/2", &mut seen).await;
    let first = wait_pod(&agent, "gated", "running init-a", |p| {
        running_init(p, "init-a")
    })
    .await;
    assert_eq!(phase(&first), "Pending", "{first:#}");
    assert_eq!(
        waiting_reason(&first, "main"),
        Some("PodInitializing"),
        "{first:#}"
    );
    let b = init_container_status(&first, "init-b").expect("init-b status");
    assert_eq!(
        b["state"]["waiting"]["reason"], "PodInitializing",
        "{first:#}"
    );
    let initialized = condition(&first, "Initialized").expect("Initialized condition");
    assert_eq!(initialized["status"], "False", "{first:#}");
    assert_eq!(
        initialized["reason"], "ContainersNotInitialized",
        "{first:#}"
    );
    assert_eq!(
        initialized["message"], "containers with incomplete status: [init-a init-b]",
        "{first:#}"
    );
    let row = get_pods_row(&agent, "gated").await.expect("row");
    assert_eq!(row[1], "0/1", "READY while initializing: {row:?}");
    // Still gated: the pod must not move on by itself.
    let still = get_pods_row(&agent, "gated").await.expect("row");
    assert_eq!(still[2], "Init:0/2", "{still:?}");

    std::fs::write(gate.join("go-a"), "").expect("open gate a");
    record_status_until(&agent, "gated", "Init:1/2", &mut seen).await;
    let second = wait_pod(&agent, "gated", "running init-b", |p| {
        running_init(p, "init-b")
    })
    .await;
    let a = init_container_status(&second, "init-a").expect("init-a status");
    assert_eq!(
        a["state"]["terminated"]["reason"], "Completed",
        "{second:#}"
    );
    assert_eq!(
        waiting_reason(&second, "main"),
        Some("PodInitializing"),
        "{second:#}"
    );
    let initialized = condition(&second, "Initialized").expect("Initialized condition");
    assert_eq!(
        initialized["message"], "containers with incomplete status: [init-b]",
        "{second:#}"
    );

    std::fs::write(gate.join("go-b"), "").expect("open gate b");
    record_status_until(&agent, "gated", "Running", &mut seen).await;
    let running = wait_running(&agent, "gated").await;
    assert_eq!(
        condition(&running, "Initialized").unwrap()["status"],
        "True"
    );

    // `Pending` can only show before the first init container status exists;
    // `PodInitializing` only between the last init container and Running.
    let walked: Vec<String> = seen.into_iter().skip_while(|s| s == "Pending").collect();
    let expected_short = ["Init:0/2", "Init:1/2", "Running"];
    let expected_long = ["Init:0/2", "Init:1/2", "PodInitializing", "Running"];
    assert!(
        walked == expected_short || walked == expected_long,
        "STATUS went {walked:?}"
    );
}

#[tokio::test]
async fn a_failing_init_container_fails_the_pod_under_never() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let spec = with_init(
        pod(
            "init-fails",
            "Never",
            vec![sh_container("main", "echo main-ran")],
        ),
        vec![sh_container("init", "echo init-failed; exit 1")],
    );
    agent.apply_yaml(&manifest(&spec)).await;

    let done = wait_terminal(&agent, "init-fails").await;
    assert_eq!(phase(&done), "Failed", "{done:#}");
    let init = init_container_status(&done, "init").expect("init status");
    assert_eq!(init["state"]["terminated"]["exitCode"], 1, "{done:#}");
    assert_eq!(init["state"]["terminated"]["reason"], "Error", "{done:#}");
    assert_eq!(init["restartCount"], 0, "{done:#}");
    assert_eq!(init["ready"], false, "{done:#}");
    // The main container was never created.
    assert_eq!(
        waiting_reason(&done, "main"),
        Some("PodInitializing"),
        "{done:#}"
    );
    assert_eq!(container_id(&done, "main"), None, "{done:#}");
    let initialized = condition(&done, "Initialized").expect("Initialized condition");
    assert_eq!(initialized["status"], "False", "{done:#}");
    assert_eq!(
        initialized["message"], "containers with incomplete status: [init]",
        "{done:#}"
    );
    let row = get_pods_row(&agent, "init-fails").await.expect("row");
    assert_eq!(row[2], "Init:Error", "{row:?}");
    let (_, events) = pod_events(&agent, "default", "init-fails").await;
    assert!(
        !events
            .iter()
            .any(|e| e["involvedObject"]["fieldPath"] == "spec.containers{main}"),
        "events about the main container: {events:#?}"
    );
    let out = agent.cli(&["logs", "init-fails", "-c", "main"]).await;
    assert!(
        !out.status.success(),
        "logs of a never-created container: {out:?}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("main-ran"));
}

/// The delay of a kubelet back-off message, `back-off 2s restarting ...`.
fn back_off_delay(message: &str) -> Option<&str> {
    message.strip_prefix("back-off ")?.split(' ').next()
}

/// A failing init container under `policy` (Always or OnFailure) restarts
/// with CrashLoopBackOff, doubling the delay, while the main container waits.
async fn init_crash_loop(policy: &str) {
    let Some((_containerd, agent)) = setup_with_back_off(1, 4).await else {
        return;
    };
    let name = format!("init-loop-{}", policy.to_ascii_lowercase());
    let spec = with_init(
        pod(&name, policy, vec![sh_container("main", "exec sleep 3600")]),
        vec![sh_container("init", "exit 1")],
    );
    agent.apply_yaml(&manifest(&spec)).await;

    let deadline = Instant::now() + START_TIMEOUT;
    let mut delays: Vec<String> = Vec::new();
    let mut statuses: Vec<String> = Vec::new();
    let pod = loop {
        let pod = agent.get_pod_json("default", &name).await;
        let init = init_container_status(&pod, "init")
            .cloned()
            .unwrap_or_default();
        let waiting = &init["state"]["waiting"];
        if waiting["reason"] == "CrashLoopBackOff" {
            let message = waiting["message"].as_str().unwrap_or_default();
            let expected_tail = format!(
                "restarting failed container=init pod={name}_default({})",
                uid(&pod)
            );
            assert!(message.ends_with(&expected_tail), "message {message:?}");
            let delay = back_off_delay(message)
                .unwrap_or_else(|| panic!("message {message:?}"))
                .to_owned();
            if delays.last() != Some(&delay) {
                delays.push(delay);
            }
            // While crash-looping, the pod waits for init: Pending, never
            // Failed, and the main container is not created.
            assert_eq!(phase(&pod), "Pending", "{pod:#}");
            assert_eq!(
                waiting_reason(&pod, "main"),
                Some("PodInitializing"),
                "{pod:#}"
            );
            assert_eq!(container_id(&pod, "main"), None, "{pod:#}");
            let last = &init["lastState"]["terminated"];
            assert_eq!(last["exitCode"], 1, "{pod:#}");
            assert_eq!(last["reason"], "Error", "{pod:#}");
        }
        if let Some(status) = get_pods_row(&agent, &name)
            .await
            .and_then(|r| r.get(2).cloned())
        {
            if statuses.last() != Some(&status) {
                statuses.push(status);
            }
        }
        if delays.len() >= 2 && statuses.iter().any(|s| s == "Init:CrashLoopBackOff") {
            break pod;
        }
        assert!(
            Instant::now() < deadline,
            "no growing back-off: delays {delays:?}, STATUS {statuses:?}; pod {pod:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // 1 s, then 2 s (then 4 s): the delay doubles.
    assert_eq!(delays[..2], ["1s", "2s"], "delays {delays:?}");
    assert!(
        restart_count_init(&pod) >= 2,
        "restartCount {}: {pod:#}",
        restart_count_init(&pod)
    );
    for status in &statuses {
        assert!(
            matches!(
                status.as_str(),
                "Pending" | "Init:0/1" | "Init:Error" | "Init:CrashLoopBackOff"
            ),
            "unexpected STATUS {status:?} in {statuses:?}"
        );
    }
    // Its back-off is announced with a Warning event on the init container.
    let (_, events) = pod_events(&agent, "default", &name).await;
    let back_off = find_event(&events, reasons::BACK_OFF, "spec.initContainers{init}")
        .unwrap_or_else(|| panic!("no BackOff event for init: {events:#?}"));
    assert_eq!(back_off["type"], "Warning", "{back_off:#}");
}

fn restart_count_init(pod: &Value) -> i64 {
    init_container_status(pod, "init")
        .and_then(|s| s["restartCount"].as_i64())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_failing_init_container_crash_loops_under_always() {
    init_crash_loop("Always").await;
}

#[tokio::test]
async fn a_failing_init_container_crash_loops_under_on_failure() {
    init_crash_loop("OnFailure").await;
}
