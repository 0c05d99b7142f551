//! The worker against the in-memory runtime, under tokio's paused clock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_runtime::fake::{Call, FakeRuntime, Script};
use berth_runtime::{ImageConfig, Signal};
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::*;

#[derive(Default)]
struct Recorder {
    statuses: Mutex<Vec<PodStatus>>,
    events: Mutex<Vec<PodEvent>>,
    finished: Mutex<bool>,
    timeline: Mutex<Vec<TimelineEntry>>,
    changed: Notify,
}

impl PodSink for Recorder {
    fn status(&self, _uid: &str, status: PodStatus) {
        self.statuses.lock().unwrap().push(status);
        self.changed.notify_waiters();
    }
    fn event(&self, event: PodEvent) {
        self.events.lock().unwrap().push(event);
    }
    fn finished(&self, _uid: &str) {
        *self.finished.lock().unwrap() = true;
        self.changed.notify_waiters();
    }
    fn timeline(&self, _uid: &str, entry: TimelineEntry) {
        self.timeline.lock().unwrap().push(entry);
    }
}

impl Recorder {
    fn latest(&self) -> PodStatus {
        self.statuses
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or_default()
    }

    /// Waits (in paused time) until the newest status satisfies `check`.
    async fn wait_for(&self, what: &str, check: impl Fn(&PodStatus) -> bool) -> PodStatus {
        let deadline = Instant::now() + Duration::from_secs(3600);
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let latest = self.latest();
            if check(&latest) {
                return latest;
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(deadline) => panic!("timed out waiting for {what}; last status: {latest:#?}"),
            }
        }
    }

    async fn wait_finished(&self) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if *self.finished.lock().unwrap() {
                return;
            }
            notified.await;
        }
    }

    fn reasons(&self) -> Vec<&'static str> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.reason)
            .collect()
    }
}

fn phase(s: &PodStatus) -> &str {
    s.phase.as_deref().unwrap_or("")
}

fn container<'a>(s: &'a PodStatus, name: &str) -> &'a k8s_openapi::api::core::v1::ContainerStatus {
    s.container_statuses
        .iter()
        .flatten()
        .chain(s.init_container_statuses.iter().flatten())
        .find(|c| c.name == name)
        .expect("container status")
}

fn terminated(s: &PodStatus, name: &str) -> k8s_openapi::api::core::v1::ContainerStateTerminated {
    container(s, name)
        .state
        .clone()
        .and_then(|st| st.terminated)
        .expect("terminated")
}

fn pod(yaml: &str) -> Arc<Pod> {
    let mut pod = berth_api::manifest::parse_pods(yaml)
        .expect("test manifest parses")
        .remove(0);
    berth_api::defaults::apply_defaults(&mut pod);
    pod.metadata.uid = Some("uid-1".into());
    Arc::new(pod)
}

struct Harness {
    rt: FakeRuntime,
    sink: Arc<Recorder>,
    _dirs: tempfile::TempDir,
    config: Arc<WorkerConfig>,
}

impl Harness {
    fn new() -> Self {
        let dirs = tempfile::tempdir().unwrap();
        let rt = FakeRuntime::new();
        rt.add_image(
            "busybox",
            ImageConfig {
                cmd: vec!["sh".into()],
                ..Default::default()
            },
        );
        Self {
            rt,
            sink: Arc::new(Recorder::default()),
            config: Arc::new(WorkerConfig {
                root_dir: dirs.path().join("root"),
                log_dir: dirs.path().join("logs"),
                node_name: "node".into(),
                host_ip: "192.0.2.1".into(),
                backoff: BackoffPolicy::default(),
            }),
            _dirs: dirs,
        }
    }

    fn spawn(&self, pod: Arc<Pod>) -> PodWorkerHandle {
        spawn(
            Arc::new(self.rt.clone()),
            self.sink.clone(),
            self.config.clone(),
            pod,
            Adopted::default(),
        )
    }

    /// A harness whose pod [`ONE`] runs, its `app` following `script`.
    async fn running(script: Script) -> (Self, PodWorkerHandle) {
        let h = Self::new();
        h.rt.script("app", script);
        let w = h.spawn(pod(ONE));
        h.sink.wait_for("Running", |s| phase(s) == "Running").await;
        (h, w)
    }

    fn starts(&self, name: &str) -> usize {
        self.rt
            .calls()
            .iter()
            .filter(|c| matches!(c, Call::Start { name: n, .. } if n == name))
            .count()
    }
}

const ONE: &str = "
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - {name: app, image: busybox}
";

/// A container that survives its stop signal, so only SIGKILL ends it.
fn ignores_stop() -> Script {
    Script {
        ignores_stop: true,
        ..Script::default()
    }
}

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
    assert_eq!(h.sink.reasons(), vec!["Pulled", "Created", "Started"]);
}

#[tokio::test(start_paused = true)]
async fn crash_loop_backs_off_ten_then_twenty_seconds() {
    let h = Harness::new();
    h.rt.script("app", Script::exits(1, Duration::from_secs(1)));
    let begin = Instant::now();
    let _w = h.spawn(pod(ONE));
    let mut at = Vec::new();
    for n in 1..=4 {
        h.rt.wait_for_calls(|calls| {
            calls
                .iter()
                .filter(|c| matches!(c, Call::Start { .. }))
                .count()
                >= n
        })
        .await;
        at.push((Instant::now() - begin).as_secs());
    }
    // Start, run 1 s, restart at once, run 1 s, wait 10 s, run 1 s, wait 20 s.
    assert_eq!(at, vec![0, 1, 12, 33]);
    let s = h
        .sink
        .wait_for("CrashLoopBackOff", |s| {
            container(s, "app")
                .state
                .as_ref()
                .and_then(|st| st.waiting.as_ref())
                .and_then(|w| w.reason.as_deref())
                == Some("CrashLoopBackOff")
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
    let last = app
        .last_state
        .as_ref()
        .unwrap()
        .terminated
        .as_ref()
        .unwrap();
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
async fn a_stop_signal_ignorer_is_killed_when_the_grace_period_ends() {
    let (h, w) = Harness::running(ignores_stop()).await;
    let begin = Instant::now();
    w.terminate(Duration::from_secs(5));
    h.sink.wait_finished().await;
    assert_eq!(Instant::now() - begin, Duration::from_secs(5));
    let calls = h.rt.calls();
    let signals: Vec<_> = calls
        .iter()
        .filter_map(|c| match c {
            Call::Signal { signal, .. } => Some(*signal),
            _ => None,
        })
        .collect();
    assert_eq!(signals, vec![Signal::TERM, Signal::KILL]);
    assert!(calls.contains(&Call::RemoveContainer { name: "app".into() }));
    assert!(matches!(calls.last(), Some(Call::RemoveSandbox { .. })));
    let s = h.sink.latest();
    assert_eq!(phase(&s), "Failed");
    let t = terminated(&s, "app");
    assert_eq!(t.exit_code, 137);
    assert!(h.sink.reasons().contains(&"Killing"));
}

#[tokio::test(start_paused = true)]
async fn a_container_that_handles_the_stop_signal_ends_at_once_and_the_pod_succeeds() {
    let (h, w) = Harness::running(Script {
        stop_exit_code: 0,
        ..Script::default()
    })
    .await;
    let begin = Instant::now();
    w.terminate(Duration::from_secs(30));
    h.sink.wait_finished().await;
    assert_eq!(Instant::now() - begin, Duration::ZERO);
    assert_eq!(phase(&h.sink.latest()), "Succeeded");
}

#[tokio::test(start_paused = true)]
async fn a_shorter_grace_cuts_the_wait_and_a_longer_one_is_ignored() {
    let (h, w) = Harness::running(ignores_stop()).await;
    let begin = Instant::now();
    w.terminate(Duration::from_secs(30));
    tokio::time::sleep(Duration::from_secs(1)).await;
    w.terminate(Duration::from_secs(60));
    w.terminate(Duration::from_secs(3));
    h.sink.wait_finished().await;
    assert_eq!(Instant::now() - begin, Duration::from_secs(4));
}

#[tokio::test(start_paused = true)]
async fn force_with_zero_grace_kills_at_once_and_a_small_grace_gets_two_seconds() {
    let (h, w) = Harness::running(ignores_stop()).await;
    let begin = Instant::now();
    w.terminate(Duration::ZERO);
    h.sink.wait_finished().await;
    assert_eq!(Instant::now() - begin, Duration::ZERO);
    let signals: Vec<_> =
        h.rt.calls()
            .into_iter()
            .filter(|c| matches!(c, Call::Signal { .. }))
            .collect();
    assert_eq!(
        signals,
        vec![Call::Signal {
            name: "app".into(),
            signal: Signal::KILL
        }]
    );

    let (h, w) = Harness::running(ignores_stop()).await;
    let begin = Instant::now();
    w.terminate(Duration::from_secs(1));
    h.sink.wait_finished().await;
    assert_eq!(Instant::now() - begin, Duration::from_secs(2));
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
            s.container_statuses.iter().flatten().any(|c| {
                c.state
                    .as_ref()
                    .and_then(|st| st.waiting.as_ref())
                    .and_then(|w| w.reason.as_deref())
                    == Some("ErrImageNeverPull")
            })
        })
        .await;
    assert_eq!(phase(&s), "Pending");
    assert!(h.sink.reasons().contains(&"ErrImageNeverPull"));
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
    let order: Vec<String> =
        h.rt.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Start { name, .. } => Some(name),
                _ => None,
            })
            .collect();
    assert_eq!(order, vec!["init-a", "init-b", "app"]);
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
    let sink = Arc::new(Recorder::default());
    let w = spawn(
        Arc::new(h.rt.clone()),
        sink.clone(),
        h.config.clone(),
        pod(ONE),
        Adopted {
            sandbox: observed.sandboxes.first().cloned(),
            containers: observed.containers.clone(),
        },
    );
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

const WITH_SIDECARS: &str = "
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  restartPolicy: Never
  initContainers:
  - {name: proxy, image: busybox, restartPolicy: Always}
  - {name: logs, image: busybox, restartPolicy: Always}
  containers:
  - {name: app, image: busybox}
";

fn stop_order(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .filter_map(|c| match c {
            Call::Signal { name, signal } if *signal == Signal::TERM => Some(name.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn sidecars_start_first_and_stop_last_in_reverse_order() {
    let h = Harness::new();
    h.rt.script("app", ignores_stop());
    let w = h.spawn(pod(WITH_SIDECARS));
    h.sink.wait_for("Running", |s| phase(s) == "Running").await;
    let starts: Vec<String> =
        h.rt.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Start { name, .. } => Some(name),
                _ => None,
            })
            .collect();
    assert_eq!(starts, vec!["proxy", "logs", "app"]);
    let begin = Instant::now();
    w.terminate(Duration::from_secs(10));
    h.sink.wait_finished().await;
    // The main container holds out until SIGKILL; only then do the sidecars go.
    assert_eq!(Instant::now() - begin, Duration::from_secs(10));
    assert_eq!(stop_order(&h.rt.calls()), vec!["app", "logs", "proxy"]);
}

#[tokio::test(start_paused = true)]
async fn sidecars_are_stopped_when_the_main_containers_are_done() {
    let h = Harness::new();
    h.rt.script("app", Script::exits(0, Duration::from_secs(5)));
    let _w = h.spawn(pod(WITH_SIDECARS));
    let s = h
        .sink
        .wait_for("Succeeded", |s| phase(s) == "Succeeded")
        .await;
    assert_eq!(stop_order(&h.rt.calls()), vec!["logs", "proxy"]);
    assert!(s.init_container_statuses.iter().flatten().all(|c| c
        .state
        .as_ref()
        .unwrap()
        .terminated
        .is_some()));
}

// Lifecycle hooks (kubelet-semantics §2.5, §6, §7).

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

fn signals(calls: &[Call]) -> Vec<Signal> {
    calls
        .iter()
        .filter_map(|c| match c {
            Call::Signal { signal, .. } => Some(*signal),
            _ => None,
        })
        .collect()
}

fn execs(calls: &[Call]) -> usize {
    calls
        .iter()
        .filter(|c| matches!(c, Call::Exec { .. }))
        .count()
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
    h.rt.wait_for_calls(|calls| {
        calls
            .iter()
            .filter(|c| matches!(c, Call::Start { .. }))
            .count()
            >= 2
    })
    .await;
    let failed = h.sink.events_with("FailedPostStartHook");
    let first = failed.first().expect("FailedPostStartHook event");
    assert_eq!(first.event_type, EventType::Warning);
    assert_eq!(
        first.message,
        "Exec lifecycle hook ([sh -c setup]) for Container \"app\" in Pod \"web_default(uid-1)\" \
         failed - error: command 'sh -c setup' exited with 1: , message: \"boom\""
    );
    let killing = h.sink.events_with("Killing");
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
    let last = container(&s, "app").last_state.clone().unwrap().terminated;
    assert_eq!(last.map(|t| t.exit_code), Some(143));
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
    assert!(h.sink.events_with("FailedPreStopHook").is_empty());
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
    let failed = h.sink.events_with("FailedPreStopHook");
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
    assert!(h.sink.events_with("Killing").is_empty());
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
            s.container_statuses.iter().flatten().any(|c| {
                c.state
                    .as_ref()
                    .and_then(|st| st.waiting.as_ref())
                    .and_then(|w| w.reason.as_deref())
                    == Some("CrashLoopBackOff")
            })
        })
        .await;
    let app = container(&s, "app");
    assert_eq!(app.restart_count, 1);
    let last = app.last_state.clone().unwrap().terminated.unwrap();
    assert_eq!(
        (last.exit_code, last.reason.as_deref()),
        (128, Some("StartError"))
    );
    assert_eq!(h.starts("app"), 2);
}
