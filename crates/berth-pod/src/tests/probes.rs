//! Probes (docs/kubelet-semantics.md §8) against the fake runtime, whose exec
//! results the tests change as time passes.

use berth_runtime::ExecOutput;

use super::*;

impl Recorder {
    /// The messages of the `Unhealthy` events, in order.
    fn unhealthy(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.reason == reasons::UNHEALTHY)
            .inspect(|e| assert_eq!(e.event_type, EventType::Warning))
            .map(|e| e.message.clone())
            .collect()
    }

    fn killing(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.reason == reasons::KILLING)
            .map(|e| e.message.clone())
            .collect()
    }
}

fn exit(code: i32, output: &str) -> ExecOutput {
    ExecOutput {
        exit_code: code,
        stdout: output.as_bytes().to_vec(),
        stderr: Vec::new(),
    }
}

/// Pod [`ONE`] whose `app` has `probes` (flow-style YAML fields).
fn with_probes(probes: &str) -> Arc<Pod> {
    pod(&ONE.replace("image: busybox}", &format!("image: busybox, {probes}}}")))
}

/// The times (since `begin`) of the execs into `app` running `command`.
async fn exec_times(h: &Harness, command: &str, n: usize, begin: Instant) -> Vec<u64> {
    let mut at = Vec::new();
    for k in 1..=n {
        h.rt.wait_for_calls(|calls| {
            calls
                .iter()
                .filter(|c| matches!(c, Call::Exec { command: cmd, .. } if cmd.last().map(String::as_str) == Some(command)))
                .count()
                >= k
        })
        .await;
        at.push((Instant::now() - begin).as_secs());
    }
    at
}

fn ready(s: &PodStatus) -> bool {
    s.container_statuses
        .iter()
        .flatten()
        .any(|c| c.name == "app" && c.ready)
}

fn condition(s: &PodStatus, type_: &str) -> String {
    s.conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
        .unwrap_or_default()
}

#[tokio::test(start_paused = true)]
async fn readiness_starts_false_and_follows_the_probe_with_its_thresholds() {
    let h = Harness::new();
    h.rt.exec_result("app", exit(1, "no page yet"));
    let begin = Instant::now();
    let _w = h.spawn(with_probes(
        "readinessProbe: {exec: {command: [check, ready]}, initialDelaySeconds: 3, periodSeconds: 5, failureThreshold: 2}",
    ));
    let s = h.sink.wait_for("Running", |s| phase(s) == "Running").await;
    assert!(!ready(&s));
    assert_eq!(container(&s, "app").started, Some(true));
    assert_eq!(condition(&s, "Ready"), "False");
    // Never probed before the initial delay.
    assert_eq!(exec_times(&h, "ready", 1, begin).await, vec![3]);
    tokio::time::sleep(Duration::from_secs(3)).await; // t = 6
    assert_eq!(
        h.sink.unhealthy(),
        vec!["Readiness probe failed: no page yet"]
    );
    assert!(!ready(&h.sink.latest()));
    h.rt.exec_result("app", exit(0, ""));
    let s = h.sink.wait_for("ready", ready).await;
    assert_eq!((Instant::now() - begin).as_secs(), 8);
    assert_eq!(condition(&s, "Ready"), "True");
    assert_eq!(condition(&s, "ContainersReady"), "True");
    // Failing again: one failure is not enough, the second one is.
    tokio::time::sleep(Duration::from_secs(1)).await; // t = 9
    h.rt.exec_result("app", exit(1, "gone"));
    tokio::time::sleep(Duration::from_secs(5)).await; // t = 14, failed once at 13
    assert!(ready(&h.sink.latest()));
    h.sink.wait_for("not ready", |s| !ready(s)).await;
    assert_eq!((Instant::now() - begin).as_secs(), 18);
    assert_eq!(h.starts("app"), 1, "readiness never restarts a container");
}

#[tokio::test(start_paused = true)]
async fn liveness_failure_kills_after_failure_threshold_times_period_and_restarts() {
    let h = Harness::new();
    h.rt.exec_result("app", exit(1, "cat: can't open '/tmp/healthy'"));
    let begin = Instant::now();
    let _w = h.spawn(with_probes(
        "livenessProbe: {exec: {command: [check, alive]}, periodSeconds: 10, failureThreshold: 3}",
    ));
    h.rt.wait_for_calls(|calls| start_count(calls) == 2).await;
    // Probed at 0, 10 and 20 s: the third failure kills, the restart is immediate.
    assert_eq!((Instant::now() - begin).as_secs(), 20);
    // Three failures killed the first instance; the new one is probed at
    // once (it may already have failed once itself).
    let unhealthy = h.sink.unhealthy();
    assert!((3..=4).contains(&unhealthy.len()), "{unhealthy:?}");
    assert!(unhealthy
        .iter()
        .all(|m| m == "Liveness probe failed: cat: can't open '/tmp/healthy'"));
    assert_eq!(
        h.sink.killing(),
        vec!["Container app failed liveness probe, will be restarted"]
    );
    let s = h
        .sink
        .wait_for("restarted", |s| container(s, "app").restart_count == 1)
        .await;
    let last = last_terminated(&s, "app");
    assert_eq!(
        (last.exit_code, last.reason.as_deref()),
        (143, Some("Error"))
    );
    assert!(h
        .sink
        .timeline
        .lock()
        .unwrap()
        .iter()
        .any(|e| e.step == TimelineStep::ProbeFailed));
    // The new instance has a fresh prober (liveness starts at Success again).
    h.rt.exec_result("app", exit(0, ""));
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(h.starts("app"), 2);
}

#[tokio::test(start_paused = true)]
async fn a_probe_level_grace_period_replaces_the_pods() {
    let h = Harness::new();
    h.rt.script("app", ignores_stop());
    h.rt.exec_result("app", exit(1, "dead"));
    let begin = Instant::now();
    let _w = h.spawn(with_probes(
        "livenessProbe: {exec: {command: [check, alive]}, periodSeconds: 10, failureThreshold: 1, terminationGracePeriodSeconds: 5}",
    ));
    h.rt.wait_for_calls(|calls| {
        calls
            .iter()
            .any(|c| matches!(c, Call::Signal { signal, .. } if *signal == Signal::KILL))
    })
    .await;
    // Failed at 0 s; SIGKILL 5 s later instead of the pod's 30 s.
    assert_eq!((Instant::now() - begin).as_secs(), 5);
}

#[tokio::test(start_paused = true)]
async fn startup_holds_liveness_back_and_its_failure_kills() {
    let h = Harness::new();
    h.rt.exec_result("app", exit(1, "starting"));
    let begin = Instant::now();
    let _w = h.spawn(with_probes(
        "startupProbe: {exec: {command: [check, started]}, periodSeconds: 10, failureThreshold: 30}, \
         livenessProbe: {exec: {command: [check, alive]}, periodSeconds: 10, failureThreshold: 1}",
    ));
    let s = h.sink.wait_for("Running", |s| phase(s) == "Running").await;
    assert_eq!(container(&s, "app").started, Some(false));
    assert!(!ready(&s));
    assert_eq!(exec_times(&h, "started", 3, begin).await, vec![0, 10, 20]);
    tokio::time::sleep(Duration::from_secs(5)).await; // t = 25
                                                      // Liveness would have killed at its first failure: it never ran.
    assert!(!h.rt.calls().iter().any(
        |c| matches!(c, Call::Exec { command, .. } if command.last().map(String::as_str) == Some("alive"))
    ));
    assert_eq!(h.starts("app"), 1);
    assert!(h.sink.killing().is_empty());
    h.rt.exec_result("app", exit(0, ""));
    let s = h
        .sink
        .wait_for("started", |s| container(s, "app").started == Some(true))
        .await;
    assert_eq!((Instant::now() - begin).as_secs(), 30);
    assert!(ready(&s), "no readiness probe: ready once started");
    // Liveness runs from then on, at once.
    assert_eq!(exec_times(&h, "alive", 2, begin).await, vec![30, 40]);
    assert_eq!(h.starts("app"), 1);

    // A startup probe that keeps failing kills like liveness.
    let h = Harness::new();
    h.rt.exec_result("app", exit(1, "still starting"));
    let begin = Instant::now();
    let _w = h.spawn(with_probes(
        "startupProbe: {exec: {command: [check, started]}, periodSeconds: 5, failureThreshold: 2}",
    ));
    h.rt.wait_for_calls(|calls| {
        calls
            .iter()
            .any(|c| matches!(c, Call::Signal { signal, .. } if *signal == Signal::TERM))
    })
    .await;
    assert_eq!((Instant::now() - begin).as_secs(), 5);
    assert_eq!(
        h.sink.killing(),
        vec!["Container app failed startup probe, will be restarted"]
    );
    // Two failures; the restarted instance may already have failed once.
    let unhealthy = h.sink.unhealthy();
    assert!((2..=3).contains(&unhealthy.len()), "{unhealthy:?}");
    assert!(unhealthy
        .iter()
        .all(|m| m == "Startup probe failed: still starting"));
}

#[tokio::test(start_paused = true)]
async fn an_exec_probe_that_overruns_its_timeout_fails() {
    let h = Harness::new();
    h.rt.exec_result("app", exit(0, ""));
    h.rt.exec_delay("app", Duration::from_secs(3));
    let begin = Instant::now();
    let _w = h.spawn(with_probes(
        "readinessProbe: {exec: {command: [check, ready]}, periodSeconds: 10, timeoutSeconds: 1}",
    ));
    h.sink.wait_for("Running", |s| phase(s) == "Running").await;
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert_eq!(
        h.sink.unhealthy(),
        vec!["Readiness probe failed: command \"check ready\" timed out"; 2]
    );
    assert!(!ready(&h.sink.latest()));
    h.rt.exec_delay("app", Duration::ZERO);
    h.sink.wait_for("ready", ready).await;
    assert_eq!((Instant::now() - begin).as_secs(), 20);
}

#[tokio::test(start_paused = true)]
async fn a_slow_probe_never_overlaps_its_next_run() {
    let h = Harness::new();
    h.rt.exec_result("app", exit(0, ""));
    h.rt.exec_delay("app", Duration::from_secs(12));
    let begin = Instant::now();
    let _w = h.spawn(with_probes(
        "livenessProbe: {exec: {command: [check, alive]}, periodSeconds: 10, timeoutSeconds: 20}",
    ));
    // Each run starts when the one before it ended, not on the missed ticks.
    assert_eq!(exec_times(&h, "alive", 4, begin).await, vec![0, 12, 24, 36]);
}

#[tokio::test(start_paused = true)]
async fn readiness_is_probed_while_the_pod_terminates_and_turns_false() {
    let h = Harness::new();
    h.rt.script("app", ignores_stop());
    h.rt.exec_result("app", exit(0, ""));
    let w = h.spawn(with_probes(
        "readinessProbe: {exec: {command: [check, ready]}, periodSeconds: 1, failureThreshold: 1}",
    ));
    h.sink.wait_for("ready", ready).await;
    let begin = Instant::now();
    w.terminate(Duration::from_secs(30));
    h.rt.exec_result("app", exit(1, "shutting down"));
    let s = h.sink.wait_for("not ready", |s| !ready(s)).await;
    // Still running (it ignores SIGTERM), long before the grace period ends.
    assert!(Instant::now() - begin <= Duration::from_secs(2));
    assert!(container(&s, "app")
        .state
        .as_ref()
        .unwrap()
        .running
        .is_some());
    assert_eq!(condition(&s, "Ready"), "False");
    h.sink.wait_finished().await;
}

#[tokio::test(start_paused = true)]
async fn adopted_containers_are_probed_again_within_a_small_jitter() {
    let h = Harness::new();
    h.rt.exec_result("app", exit(0, ""));
    let probed =
        with_probes("readinessProbe: {exec: {command: [check, ready]}, periodSeconds: 10}");
    let w = h.spawn(probed.clone());
    h.sink.wait_for("ready", ready).await;
    w.detach().await;
    let before = execs(&h.rt.calls());
    let adopted_at = Instant::now();
    let (sink, _w) = h.adopt(probed, None).await;
    h.rt.wait_for_calls(|calls| execs(calls) > before).await;
    // The kubelet may wait a whole period (10 s) after a restart; berth
    // spreads adopted probes over at most one second.
    assert!(Instant::now() - adopted_at < Duration::from_secs(1));
    sink.wait_for("ready again", ready).await;
}

#[tokio::test(start_paused = true)]
async fn an_errored_run_is_retried_at_once_and_three_in_a_row_are_thrown_away() {
    let h = Harness::new();
    // Two errors, then the run that counts: no event, ready at the first tick.
    h.rt.fail_exec("app", 2);
    let begin = Instant::now();
    let _w = h.spawn(with_probes(
        "readinessProbe: {exec: {command: [check, ready]}, periodSeconds: 5}",
    ));
    h.sink.wait_for("ready", ready).await;
    assert_eq!((Instant::now() - begin).as_secs(), 0);
    assert_eq!(exec_times(&h, "ready", 3, begin).await, vec![0, 0, 0]);
    assert!(h.sink.unhealthy().is_empty(), "{:?}", h.sink.unhealthy());

    // Three errors in a row: one event, and the verdict stays as it was.
    h.rt.exec_result("app", exit(1, "down"));
    h.rt.fail_exec("app", 3);
    assert_eq!(exec_times(&h, "ready", 6, begin).await[3..], [5, 5, 5]);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        h.sink.unhealthy(),
        vec!["Readiness probe errored and resulted in unknown state: exec failed: the shim went away"]
    );
    assert!(ready(&h.sink.latest()));
    // The next attempt runs once and fails for real.
    assert_eq!(exec_times(&h, "ready", 7, begin).await[6], 10);
    h.sink.wait_for("not ready", |s| !ready(s)).await;
}
