//! Lifecycle hooks (docs/kubelet-semantics.md §2.5, §6, §7).

use super::*;

impl Recorder {
    fn events_with(&self, reason: &str) -> Vec<PodEvent> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.reason == reason)
            .cloned()
            .collect()
    }

    /// The timeline steps of `container`, in order.
    fn steps(&self, container: &str) -> Vec<TimelineStep> {
        self.timeline
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.container.as_deref() == Some(container))
            .map(|e| e.step)
            .collect()
    }
}

/// Pod [`ONE`] whose `app` has `lifecycle` (flow-style YAML).
fn with_lifecycle(lifecycle: &str) -> Arc<Pod> {
    pod(&ONE.replace(
        "image: busybox}",
        &format!("image: busybox, lifecycle: {lifecycle}}}"),
    ))
}

const PRE_STOP: &str = "{preStop: {exec: {command: [sh, -c, drain]}}}";

#[tokio::test(start_paused = true)]
async fn post_start_holds_back_the_next_container_and_the_running_status() {
    let h = Harness::new();
    h.rt.script("init", Script::exits(0, Duration::from_secs(1)));
    h.rt.exec_delay("first", Duration::from_secs(5));
    let _w = h.spawn(pod("
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  initContainers:
  - {name: init, image: busybox}
  containers:
  - name: first
    image: busybox
    lifecycle: {postStart: {exec: {command: [sh, -c, warm-up]}}}
  - {name: second, image: busybox}
"));
    h.rt.wait_for_calls(|calls| execs(calls) == 1).await;
    let begin = Instant::now();
    // Most of the hook later: nothing of `first` shows as running yet.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let s = h.sink.latest();
    assert_eq!(phase(&s), "Pending");
    let first = container(&s, "first").state.clone().unwrap();
    assert!(first.running.is_none(), "{first:?}");
    assert_eq!(h.starts("second"), 0);
    h.rt.wait_for_calls(|calls| {
        calls
            .iter()
            .any(|c| matches!(c, Call::Start { name, .. } if name == "second"))
    })
    .await;
    assert_eq!(Instant::now() - begin, Duration::from_secs(5));
    let calls: Vec<String> =
        h.rt.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Start { name, .. } => Some(format!("start {name}")),
                Call::Exec { name, .. } => Some(format!("exec {name}")),
                _ => None,
            })
            .collect();
    assert_eq!(
        calls,
        vec!["start init", "start first", "exec first", "start second"]
    );
    h.sink.wait_for("Running", |s| phase(s) == "Running").await;
    assert_eq!(Instant::now() - begin, Duration::from_secs(5));
    assert_eq!(
        h.sink.steps("first"),
        vec![
            TimelineStep::ImageReady,
            TimelineStep::ContainerCreated,
            TimelineStep::ContainerStarted,
            TimelineStep::PostStartStarted,
            TimelineStep::PostStartSucceeded,
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_post_start_kills_the_container_and_restart_policy_restarts_it() {
    let h = Harness::new();
    h.rt.exec_result(
        "app",
        berth_runtime::ExecOutput {
            exit_code: 1,
            stdout: b"boom".to_vec(),
            stderr: Vec::new(),
        },
    );
    let _w = h.spawn(with_lifecycle(
        "{postStart: {exec: {command: [sh, -c, setup]}}}",
    ));
    h.rt.wait_for_calls(|calls| start_count(calls) >= 2).await;
    let failed = h.sink.events_with(reasons::FAILED_POST_START_HOOK);
    let first = failed.first().expect("FailedPostStartHook event");
    assert_eq!(first.event_type, EventType::Warning);
    assert_eq!(
        first.message,
        "Exec lifecycle hook ([sh -c setup]) for Container \"app\" in Pod \"web_default(uid-1)\" \
         failed - error: command 'sh -c setup' exited with 1: , message: \"boom\""
    );
    let killing = h.sink.events_with(reasons::KILLING);
    assert_eq!(killing[0].message, "FailedPostStartHook");
    assert_eq!(
        killing[0].field_path.as_deref(),
        Some("spec.containers{app}")
    );
    assert_eq!(signals(&h.rt.calls())[0], Signal::TERM);
    let s = h
        .sink
        .wait_for("a restart", |s| container(s, "app").restart_count >= 1)
        .await;
    assert_eq!(last_terminated(&s, "app").exit_code, 143);
}

#[tokio::test(start_paused = true)]
async fn a_failing_post_start_with_restart_never_fails_the_pod() {
    let h = Harness::new();
    h.rt.exec_result(
        "app",
        berth_runtime::ExecOutput {
            exit_code: 2,
            ..Default::default()
        },
    );
    let yaml = ONE
        .replace("spec:\n", "spec:\n  restartPolicy: Never\n")
        .replace(
            "image: busybox}",
            "image: busybox, lifecycle: {postStart: {exec: {command: [setup]}}}}",
        );
    let _w = h.spawn(pod(&yaml));
    let s = h.sink.wait_for("Failed", |s| phase(s) == "Failed").await;
    assert_eq!(terminated(&s, "app").exit_code, 143);
    assert_eq!(h.starts("app"), 1);
}

#[tokio::test(start_paused = true)]
async fn pre_stop_runs_before_the_stop_signal_and_its_time_comes_out_of_the_grace() {
    let h = Harness::new();
    h.rt.script("app", ignores_stop());
    h.rt.exec_delay("app", Duration::from_secs(3));
    let w = h.spawn(with_lifecycle(PRE_STOP));
    h.sink.wait_for("Running", |s| phase(s) == "Running").await;
    let begin = Instant::now();
    w.terminate(Duration::from_secs(10));
    h.rt.wait_for_calls(|calls| !signals(calls).is_empty())
        .await;
    assert_eq!(
        Instant::now() - begin,
        Duration::from_secs(3),
        "SIGTERM after preStop"
    );
    assert!(matches!(
        h.rt.calls()[..],
        [.., Call::Exec { .. }, Call::Signal { .. }]
    ));
    h.sink.wait_finished().await;
    assert_eq!(
        Instant::now() - begin,
        Duration::from_secs(10),
        "SIGKILL at the deadline"
    );
    assert_eq!(signals(&h.rt.calls()), vec![Signal::TERM, Signal::KILL]);
    let steps = h.sink.steps("app");
    let after_kill = &steps[steps
        .iter()
        .position(|s| *s == TimelineStep::Killing)
        .unwrap()..];
    assert_eq!(
        after_kill,
        [
            TimelineStep::Killing,
            TimelineStep::PreStopStarted,
            TimelineStep::PreStopSucceeded,
            TimelineStep::StopSignal,
            TimelineStep::Sigkill,
            TimelineStep::ContainerExited,
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_pre_stop_that_overruns_the_grace_gets_sigkill_two_seconds_after_the_signal() {
    let h = Harness::new();
    h.rt.script("app", ignores_stop());
    h.rt.exec_delay("app", Duration::from_secs(100));
    let w = h.spawn(with_lifecycle(PRE_STOP));
    h.sink.wait_for("Running", |s| phase(s) == "Running").await;
    let begin = Instant::now();
    w.terminate(Duration::from_secs(5));
    h.rt.wait_for_calls(|calls| !signals(calls).is_empty())
        .await;
    assert_eq!(Instant::now() - begin, Duration::from_secs(5));
    h.sink.wait_finished().await;
    assert_eq!(Instant::now() - begin, Duration::from_secs(7));
    assert_eq!(signals(&h.rt.calls()), vec![Signal::TERM, Signal::KILL]);
    assert!(h.sink.steps("app").contains(&TimelineStep::PreStopTimedOut));
    assert!(h.sink.events_with(reasons::FAILED_PRE_STOP_HOOK).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_shorter_grace_cuts_a_running_pre_stop_short() {
    let h = Harness::new();
    h.rt.script("app", ignores_stop());
    h.rt.exec_delay("app", Duration::from_secs(100));
    let w = h.spawn(with_lifecycle(PRE_STOP));
    h.sink.wait_for("Running", |s| phase(s) == "Running").await;
    let begin = Instant::now();
    w.terminate(Duration::from_secs(30));
    h.rt.wait_for_calls(|calls| execs(calls) == 1).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    w.terminate(Duration::from_secs(2));
    h.sink.wait_finished().await;
    // preStop abandoned at 3 s, SIGKILL 2 s after the stop signal.
    assert_eq!(Instant::now() - begin, Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn a_failing_pre_stop_is_reported_and_termination_goes_on() {
    let h = Harness::new();
    h.rt.exec_result(
        "app",
        berth_runtime::ExecOutput {
            exit_code: 1,
            stderr: b"no drain".to_vec(),
            ..Default::default()
        },
    );
    let w = h.spawn(with_lifecycle(PRE_STOP));
    h.sink.wait_for("Running", |s| phase(s) == "Running").await;
    w.terminate(Duration::from_secs(30));
    h.sink.wait_finished().await;
    let failed = h.sink.events_with(reasons::FAILED_PRE_STOP_HOOK);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].event_type, EventType::Warning);
    assert!(
        failed[0].message.contains("no drain"),
        "{}",
        failed[0].message
    );
    assert_eq!(signals(&h.rt.calls()), vec![Signal::TERM]);
}

#[tokio::test(start_paused = true)]
async fn pre_stop_never_runs_for_a_container_that_exited_by_itself() {
    let h = Harness::new();
    h.rt.script("app", Script::exits(0, Duration::from_secs(1)));
    let yaml = ONE
        .replace("spec:\n", "spec:\n  restartPolicy: Never\n")
        .replace(
            "image: busybox}",
            &format!("image: busybox, lifecycle: {PRE_STOP}}}"),
        );
    let w = h.spawn(pod(&yaml));
    h.sink
        .wait_for("Succeeded", |s| phase(s) == "Succeeded")
        .await;
    w.terminate(Duration::from_secs(30));
    h.sink.wait_finished().await;
    let calls = h.rt.calls();
    assert_eq!(execs(&calls), 0);
    assert!(signals(&calls).is_empty());
    assert!(h.sink.events_with(reasons::KILLING).is_empty());
}

#[tokio::test(start_paused = true)]
async fn force_with_zero_grace_skips_pre_stop() {
    let h = Harness::new();
    h.rt.script("app", ignores_stop());
    let w = h.spawn(with_lifecycle(PRE_STOP));
    h.sink.wait_for("Running", |s| phase(s) == "Running").await;
    w.terminate(Duration::ZERO);
    h.sink.wait_finished().await;
    assert_eq!(execs(&h.rt.calls()), 0);
    assert_eq!(signals(&h.rt.calls()), vec![Signal::KILL]);
}

#[tokio::test(start_paused = true)]
async fn the_stop_signal_is_lifecycle_stop_signal_else_the_image_one_else_sigterm() {
    let h = Harness::new();
    h.rt.add_image(
        "quitter",
        ImageConfig {
            cmd: vec!["sh".into()],
            stop_signal: Some("SIGQUIT".into()),
            ..Default::default()
        },
    );
    let w = h.spawn(pod("
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - {name: own, image: quitter, lifecycle: {stopSignal: SIGUSR1}}
  - {name: image, image: quitter}
  - {name: plain, image: busybox}
"));
    h.sink.wait_for("Running", |s| phase(s) == "Running").await;
    w.terminate(Duration::from_secs(30));
    h.sink.wait_finished().await;
    let mut sent: Vec<(String, String)> =
        h.rt.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Signal { name, signal } => Some((name, signal.name())),
                _ => None,
            })
            .collect();
    sent.sort();
    assert_eq!(
        sent,
        vec![
            ("image".to_string(), "SIGQUIT".to_string()),
            ("own".into(), "SIGUSR1".into()),
            ("plain".into(), "SIGTERM".into()),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn termination_abandons_a_hung_post_start() {
    let h = Harness::new();
    h.rt.exec_delay("app", Duration::from_secs(3600));
    let w = h.spawn(with_lifecycle(
        "{postStart: {exec: {command: [sh, -c, hang]}}}",
    ));
    h.rt.wait_for_calls(|calls| execs(calls) == 1).await;
    let begin = Instant::now();
    w.terminate(Duration::from_secs(5));
    h.sink.wait_finished().await;
    assert_eq!(Instant::now() - begin, Duration::ZERO);
    assert!(h
        .sink
        .steps("app")
        .contains(&TimelineStep::PostStartAbandoned));
}

#[tokio::test(start_paused = true)]
async fn sidecar_pre_stop_hooks_fire_at_the_start_of_termination() {
    let h = Harness::new();
    h.rt.script("app", ignores_stop());
    let yaml = WITH_SIDECARS.replace(
        "{name: logs, image: busybox, restartPolicy: Always}",
        &format!("{{name: logs, image: busybox, restartPolicy: Always, lifecycle: {PRE_STOP}}}"),
    );
    let w = h.spawn(pod(&yaml));
    h.sink.wait_for("Running", |s| phase(s) == "Running").await;
    w.terminate(Duration::from_secs(10));
    let begin = Instant::now();
    h.rt.wait_for_calls(|calls| execs(calls) == 1).await;
    // While `app` holds out for its whole grace period.
    assert_eq!(Instant::now() - begin, Duration::ZERO);
    assert_eq!(stop_order(&h.rt.calls()), vec!["app"]);
    h.sink.wait_finished().await;
    assert_eq!(stop_order(&h.rt.calls()), vec!["app", "logs", "proxy"]);
}
