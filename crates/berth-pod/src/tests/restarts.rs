//! Starting, restarting and back-off; init containers; adoption.

use super::*;

#[tokio::test(start_paused = true)]
async fn a_pod_runs_and_reports_ready() {
    let h = Harness::new();
    let _w = h.spawn(pod(ONE));
    let s = h.sink.wait_for("Running", |s| phase(s) == "Running").await;
    assert_eq!(s.pod_ip.as_deref(), Some("10.88.0.1"));
    let app = container(&s, "app");
    assert!(app.ready && app.started == Some(true));
    assert!(app.state.as_ref().unwrap().running.is_some());
    let ready = s
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "True");
    // `busybox` has no tag, so its policy is Always: it is pulled again.
    assert_eq!(
        h.sink.reasons(),
        vec![
            reasons::PULLING,
            reasons::PULLED,
            reasons::CREATED,
            reasons::STARTED
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn crash_loop_backs_off_ten_then_twenty_seconds() {
    let h = Harness::new();
    h.rt.script("app", Script::exits(1, Duration::from_secs(1)));
    let begin = Instant::now();
    let _w = h.spawn(pod(ONE));
    let mut at = Vec::new();
    for n in 1..=4 {
        h.rt.wait_for_calls(|calls| start_count(calls) >= n).await;
        at.push((Instant::now() - begin).as_secs());
    }
    // Start, run 1 s, restart at once, run 1 s, wait 10 s, run 1 s, wait 20 s.
    assert_eq!(at, vec![0, 1, 12, 33]);
    let s = h
        .sink
        .wait_for("CrashLoopBackOff", |s| {
            waiting_reason(s, "app") == Some("CrashLoopBackOff")
        })
        .await;
    let app = container(&s, "app");
    assert_eq!(app.restart_count, 3);
    let waiting = app.state.as_ref().unwrap().waiting.as_ref().unwrap();
    assert!(
        waiting
            .message
            .as_deref()
            .unwrap()
            .starts_with("back-off 40s restarting failed container=app pod=web_default(uid-1)"),
        "{waiting:?}"
    );
    let last = last_terminated(&s, "app");
    assert_eq!((last.exit_code, last.reason.as_deref()), (1, Some("Error")));
    assert_eq!(phase(&s), "Running", "a crash-looping pod stays Running");
}

#[tokio::test(start_paused = true)]
async fn never_restart_fails_the_pod_with_the_exit_code() {
    let h = Harness::new();
    h.rt.script("app", Script::exits(3, Duration::from_secs(1)));
    let _w = h.spawn(pod(
        &ONE.replace("spec:\n", "spec:\n  restartPolicy: Never\n")
    ));
    let s = h.sink.wait_for("Failed", |s| phase(s) == "Failed").await;
    let t = terminated(&s, "app");
    assert_eq!((t.exit_code, t.reason.as_deref()), (3, Some("Error")));
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(h.starts("app"), 1);
}

#[tokio::test(start_paused = true)]
async fn on_failure_with_exit_zero_succeeds() {
    let h = Harness::new();
    h.rt.script("app", Script::exits(0, Duration::from_secs(1)));
    let _w = h.spawn(pod(
        &ONE.replace("spec:\n", "spec:\n  restartPolicy: OnFailure\n")
    ));
    let s = h
        .sink
        .wait_for("Succeeded", |s| phase(s) == "Succeeded")
        .await;
    let t = terminated(&s, "app");
    assert_eq!(t.reason.as_deref(), Some("Completed"));
    assert_eq!(h.starts("app"), 1);
}

#[tokio::test(start_paused = true)]
async fn an_absent_image_with_pull_policy_never_waits_with_err_image_never_pull() {
    let h = Harness::new();
    let _w = h.spawn(pod(&ONE.replace(
        "image: busybox}",
        "image: missing:v1, imagePullPolicy: Never}",
    )));
    let s = h
        .sink
        .wait_for("ErrImageNeverPull", |s| {
            waiting_reason(s, "app") == Some("ErrImageNeverPull")
        })
        .await;
    assert_eq!(phase(&s), "Pending");
    assert!(h.sink.reasons().contains(&reasons::ERR_IMAGE_NEVER_PULL));
}

#[tokio::test(start_paused = true)]
async fn a_create_failure_shows_create_container_error_and_other_containers_run() {
    let h = Harness::new();
    h.rt.script(
        "bad",
        Script {
            create_error: Some(berth_runtime::RuntimeError::other("no such device")),
            ..Script::default()
        },
    );
    let two = "
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - {name: bad, image: busybox}
  - {name: good, image: busybox}
";
    let _w = h.spawn(pod(two));
    let s = h
        .sink
        .wait_for("good running", |s| {
            s.container_statuses
                .iter()
                .flatten()
                .any(|c| c.name == "good" && c.ready)
        })
        .await;
    let bad = container(&s, "bad").state.clone().unwrap().waiting.unwrap();
    assert_eq!(bad.reason.as_deref(), Some("CreateContainerError"));
    assert_eq!(bad.message.as_deref(), Some("no such device"));
}

#[tokio::test(start_paused = true)]
async fn init_containers_run_one_after_another_before_the_main_ones() {
    let h = Harness::new();
    h.rt.script("init-a", Script::exits(0, Duration::from_secs(2)));
    h.rt.script("init-b", Script::exits(0, Duration::from_secs(3)));
    let begin = Instant::now();
    let _w = h.spawn(pod("
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  initContainers:
  - {name: init-a, image: busybox}
  - {name: init-b, image: busybox}
  containers:
  - {name: app, image: busybox}
"));
    let s = h
        .sink
        .wait_for("init-a running", |s| {
            s.init_container_statuses.iter().flatten().any(|c| {
                c.name == "init-a" && c.state.as_ref().is_some_and(|st| st.running.is_some())
            })
        })
        .await;
    let app = container(&s, "app").state.clone().unwrap().waiting.unwrap();
    assert_eq!(app.reason.as_deref(), Some("PodInitializing"));
    h.sink.wait_for("Running", |s| phase(s) == "Running").await;
    assert_eq!(Instant::now() - begin, Duration::from_secs(5));
    assert_eq!(start_order(h.rt.calls()), vec!["init-a", "init-b", "app"]);
}

#[tokio::test(start_paused = true)]
async fn a_detached_worker_leaves_the_pod_running_and_a_new_one_adopts_it() {
    let h = Harness::new();
    let w = h.spawn(pod(ONE));
    h.sink.wait_for("Running", |s| phase(s) == "Running").await;
    w.detach().await;
    let observed = berth_runtime::ContainerRuntime::list(&h.rt).await.unwrap();
    assert_eq!(observed.sandboxes.len(), 1);
    let calls_before = h.rt.calls().len();
    let (sink, w) = h.adopt(pod(ONE), None).await;
    sink.wait_for("Running", |s| phase(s) == "Running").await;
    assert_eq!(
        h.rt.calls().len(),
        calls_before,
        "nothing was created again"
    );
    // The adopted container's exit still reaches the worker.
    h.rt.exit("app", 1);
    sink.wait_for("restart", |s| {
        s.container_statuses
            .iter()
            .flatten()
            .any(|c| c.restart_count == 1)
    })
    .await;
    w.terminate(Duration::from_secs(1));
    sink.wait_finished().await;
    assert_eq!(h.rt.sandbox_count(), 0);
    assert!(h.rt.containers().is_empty());
}

/// What an agent restart must leave as it was: every condition with its
/// transition time, and the containers' start times, as the API shows them.
fn kept_across_restarts(s: &PodStatus) -> Vec<String> {
    let conditions = s.conditions.iter().flatten().map(|c| {
        let at = serde_json::to_string(&c.last_transition_time).unwrap();
        format!("{} {} {at}", c.type_, c.status)
    });
    let started = s
        .init_container_statuses
        .iter()
        .flatten()
        .chain(s.container_statuses.iter().flatten())
        .map(|c| {
            let state = c.state.clone().unwrap_or_default();
            let running = state
                .running
                .and_then(|r| r.started_at)
                .map(|t| t.0.to_string());
            let ended = state
                .terminated
                .and_then(|t| t.started_at)
                .map(|t| t.0.to_string());
            format!("{} {running:?} {ended:?}", c.name)
        });
    conditions.chain(started).collect()
}

#[tokio::test(start_paused = true)]
async fn an_adopting_worker_keeps_the_transition_and_start_times() {
    let h = Harness::new();
    let with_init = "
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  initContainers:
  - {name: init, image: busybox}
  containers:
  - {name: app, image: busybox}
";
    h.rt.script("init", Script::exits(0, Duration::from_secs(1)));
    let w = h.spawn(pod(with_init));
    let mut before = h
        .sink
        .wait_for("Ready", |s| {
            s.conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
        .await;
    w.detach().await;
    // Transitions from long before the restart, as the worker saved them.
    let saved = h.config.root_dir.join("pods/uid-1/conditions.json");
    let mut conditions: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&saved).expect("conditions saved")).unwrap();
    assert_eq!(conditions.len(), 5);
    for c in &mut conditions {
        c["lastTransitionTime"] = "2020-01-02T03:04:05Z".into();
    }
    std::fs::write(&saved, serde_json::to_vec(&conditions).unwrap()).unwrap();
    for c in before.conditions.iter_mut().flatten() {
        c.last_transition_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2020-01-02T03:04:05Z".parse().unwrap(),
        ));
    }
    let (sink, _w) = h.adopt(pod(with_init), None).await;
    let after = sink.wait_for("Running", |s| phase(s) == "Running").await;
    assert_eq!(kept_across_restarts(&after), kept_across_restarts(&before));
}

#[tokio::test(start_paused = true)]
async fn a_start_error_is_restarted_and_then_backs_off() {
    let h = Harness::new();
    h.rt.script(
        "app",
        Script {
            start_error: Some(berth_runtime::RuntimeError::other(
                "failed to create containerd task: exec: \"/no/such\": no such file",
            )),
            ..Script::default()
        },
    );
    let _w = h.spawn(pod(ONE));
    let s = h
        .sink
        .wait_for("CrashLoopBackOff", |s| {
            waiting_reason(s, "app") == Some("CrashLoopBackOff")
        })
        .await;
    assert_eq!(container(&s, "app").restart_count, 1);
    let last = last_terminated(&s, "app");
    assert_eq!(
        (last.exit_code, last.reason.as_deref()),
        (128, Some("StartError"))
    );
    assert_eq!(h.starts("app"), 2);
}

#[tokio::test(start_paused = true)]
async fn a_dead_sandbox_is_replaced_on_adoption() {
    let h = Harness::new();
    let w = h.spawn(pod(ONE));
    h.sink.wait_for("Running", |s| phase(s) == "Running").await;
    w.detach().await;
    let observed = berth_runtime::ContainerRuntime::list(&h.rt).await.unwrap();
    let mut dead = observed.sandboxes[0].clone();
    // The pause process is gone, as after a containerd restart.
    dead.pause = berth_runtime::PauseProcess::Gone;
    let (sink, _w) = h.adopt(pod(ONE), Some(dead.clone())).await;
    sink.wait_for("Running", |s| phase(s) == "Running").await;
    assert!(sink.reasons().contains(&reasons::SANDBOX_CHANGED));
    let now = berth_runtime::ContainerRuntime::list(&h.rt).await.unwrap();
    assert_eq!(now.sandboxes.len(), 1);
    assert_ne!(now.sandboxes[0].id, dead.id, "a new sandbox");
    assert!(now.containers.iter().all(|c| c.sandbox != dead.id));
}

const SHARED_PID: &str = "
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  shareProcessNamespace: true
  restartPolicy: RESTART
  containers:
  - {name: app, image: busybox}
";

#[tokio::test(start_paused = true)]
async fn a_pause_that_exits_is_replaced_with_its_sandbox() {
    let h = Harness::new();
    let _w = h.spawn(pod(&SHARED_PID.replace("RESTART", "Always")));
    h.sink.wait_for("Running", |s| phase(s) == "Running").await;
    let before = berth_runtime::ContainerRuntime::list(&h.rt).await.unwrap();
    assert!(before.sandboxes[0].pause.pid().is_some(), "a pause runs");
    h.rt.kill_pause("web");
    let s = h
        .sink
        .wait_for("app restarted in a new sandbox", |s| {
            container(s, "app").restart_count == 1
                && container(s, "app")
                    .state
                    .as_ref()
                    .is_some_and(|st| st.running.is_some())
        })
        .await;
    assert_eq!(last_terminated(&s, "app").exit_code, 137);
    assert!(h.sink.reasons().contains(&reasons::SANDBOX_CHANGED));
    let now = berth_runtime::ContainerRuntime::list(&h.rt).await.unwrap();
    assert_eq!(now.sandboxes.len(), 1);
    assert_ne!(now.sandboxes[0].id, before.sandboxes[0].id, "a new sandbox");
    assert!(now.sandboxes[0].pause.pid().is_some());
    assert!(now
        .containers
        .iter()
        .all(|c| c.sandbox == now.sandboxes[0].id));
    assert_eq!(h.starts("app"), 2);
}

#[tokio::test(start_paused = true)]
async fn a_pod_that_must_not_restart_ends_when_its_pause_exits() {
    let h = Harness::new();
    let _w = h.spawn(pod(&SHARED_PID.replace("RESTART", "Never")));
    h.sink.wait_for("Running", |s| phase(s) == "Running").await;
    h.rt.kill_pause("web");
    let s = h.sink.wait_for("Failed", |s| phase(s) == "Failed").await;
    assert_eq!(terminated(&s, "app").exit_code, 137);
    tokio::time::sleep(std::time::Duration::from_secs(60)).await;
    assert_eq!(h.rt.sandbox_count(), 1, "no new sandbox");
    assert!(!h.sink.reasons().contains(&reasons::SANDBOX_CHANGED));
    assert_eq!(h.starts("app"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_sandbox_adopted_without_its_network_is_replaced() {
    let h = Harness::new();
    let w = h.spawn(pod(ONE));
    h.sink.wait_for("Running", |s| phase(s) == "Running").await;
    w.detach().await;
    let observed = berth_runtime::ContainerRuntime::list(&h.rt).await.unwrap();
    let mut unnetworked = observed.sandboxes[0].clone();
    // The agent stopped before the pod's CNI ADD was done.
    unnetworked.ips.clear();
    let (sink, _w) = h.adopt(pod(ONE), Some(unnetworked.clone())).await;
    let running = sink.wait_for("Running", |s| phase(s) == "Running").await;
    assert!(sink.reasons().contains(&reasons::SANDBOX_CHANGED));
    assert!(running.pod_ip.is_some());
    let now = berth_runtime::ContainerRuntime::list(&h.rt).await.unwrap();
    assert_eq!(now.sandboxes.len(), 1);
    assert_ne!(now.sandboxes[0].id, unnetworked.id, "a new sandbox");
}

#[tokio::test(start_paused = true)]
async fn a_failed_exit_wait_is_armed_again_not_taken_for_an_exit() {
    let h = Harness::new();
    let _w = h.spawn(pod(ONE));
    h.sink.wait_for("Running", |s| phase(s) == "Running").await;
    // containerd restarted: every wait is cut off, the container runs on.
    h.rt.fail_waiters(berth_runtime::RuntimeError::new(
        berth_runtime::RuntimeErrorKind::Unavailable,
        "transport error",
    ));
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(h.starts("app"), 1, "a cut-off wait restarted the container");
    let s = h.sink.latest();
    assert_eq!(container(&s, "app").restart_count, 0);
    assert!(container(&s, "app")
        .state
        .as_ref()
        .unwrap()
        .running
        .is_some());
    // The re-armed waiter still sees the real exit.
    h.rt.exit("app", 3);
    let s = h
        .sink
        .wait_for("restart", |s| container(s, "app").restart_count == 1)
        .await;
    assert_eq!(last_terminated(&s, "app").exit_code, 3);
}

#[tokio::test(start_paused = true)]
async fn a_restart_rule_restarts_on_its_exit_code_under_a_never_pod() {
    let h = Harness::new();
    h.rt.script("app", Script::exits(42, Duration::from_secs(1)));
    let _w = h.spawn(pod("
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  restartPolicy: Never
  containers:
  - name: app
    image: busybox
    restartPolicy: Never
    restartPolicyRules:
    - {action: Restart, exitCodes: {operator: In, values: [42]}}
"));
    h.rt.wait_for_calls(|calls| start_count(calls) >= 1).await;
    // The next run ends with a code no rule matches.
    h.rt.script("app", Script::exits(3, Duration::from_secs(1)));
    let s = h.sink.wait_for("Failed", |s| phase(s) == "Failed").await;
    let app = container(&s, "app");
    assert_eq!(app.restart_count, 1);
    assert_eq!(terminated(&s, "app").exit_code, 3);
    assert_eq!(last_terminated(&s, "app").exit_code, 42);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(h.starts("app"), 2);
}
