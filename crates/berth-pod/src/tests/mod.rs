//! The worker against the in-memory runtime, under tokio's paused clock.

mod big_pods;
mod ephemeral;
mod footprint;
mod hooks;
mod image_volumes;
mod images;
mod network;
mod probes;
mod pull_secrets;
mod resize;
mod restart_all;
mod restarts;
mod security;
mod spec_changes;
mod termination;
mod volumes;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_runtime::fake::{Call, FakeRuntime, Script};
use berth_runtime::{ImageConfig, SandboxInfo, Signal};
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

/// The state the newest instance of `name` ended in (its `lastState`).
fn last_terminated(
    s: &PodStatus,
    name: &str,
) -> k8s_openapi::api::core::v1::ContainerStateTerminated {
    container(s, name)
        .last_state
        .clone()
        .and_then(|st| st.terminated)
        .expect("last state terminated")
}

/// Why container `name` waits, if its status shows it waiting.
fn waiting_reason<'a>(s: &'a PodStatus, name: &str) -> Option<&'a str> {
    s.container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == name)?
        .state
        .as_ref()?
        .waiting
        .as_ref()?
        .reason
        .as_deref()
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
                image_pull_backoff: BackoffPolicy::default(),
                image_pulls: None,
                seccomp_default: false,
                cluster_data: None,
                cluster_dns: Default::default(),
                node_allocatable: Default::default(),
                allocations: Default::default(),
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

    /// A second worker for `pod` that adopts what the runtime still holds
    /// (an agent restart), reporting to a fresh recorder.
    async fn adopt(
        &self,
        pod: Arc<Pod>,
        sandbox: Option<SandboxInfo>,
    ) -> (Arc<Recorder>, PodWorkerHandle) {
        let observed = berth_runtime::ContainerRuntime::list(&self.rt)
            .await
            .unwrap();
        let sink = Arc::new(Recorder::default());
        let w = spawn(
            Arc::new(self.rt.clone()),
            sink.clone(),
            self.config.clone(),
            pod,
            Adopted {
                sandbox: sandbox.or_else(|| observed.sandboxes.first().cloned()),
                containers: observed.containers,
            },
        );
        (sink, w)
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

/// The signals sent, in order.
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

/// How many containers were started, all names together.
fn start_count(calls: &[Call]) -> usize {
    calls
        .iter()
        .filter(|c| matches!(c, Call::Start { .. }))
        .count()
}

/// The names of the containers started, in order.
fn start_order(calls: Vec<Call>) -> Vec<String> {
    calls
        .into_iter()
        .filter_map(|c| match c {
            Call::Start { name, .. } => Some(name),
            _ => None,
        })
        .collect()
}

fn stop_order(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .filter_map(|c| match c {
            Call::Signal { name, signal } if *signal == Signal::TERM => Some(name.clone()),
            _ => None,
        })
        .collect()
}

/// An HTTP server on `ip`: serves `answers` in turn, one connection each,
/// and hands back the request heads it read (lower-cased), for hook and
/// probe handler tests.
pub(crate) async fn http_server(
    ip: &str,
    answers: Vec<String>,
) -> (u16, tokio::task::JoinHandle<Vec<String>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = tokio::spawn(async move {
        let mut heads = Vec::new();
        for answer in answers {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.ends_with(b"\r\n\r\n") {
                let n = stream.read(&mut buf).await.unwrap();
                assert!(n > 0, "request ended early");
                head.extend_from_slice(&buf[..n]);
            }
            stream.write_all(answer.as_bytes()).await.unwrap();
            heads.push(String::from_utf8(head).unwrap().to_ascii_lowercase());
        }
        heads
    });
    (port, served)
}

/// A one-request [`http_server`] on loopback answering with `status`; hands
/// back the request head.
pub(crate) async fn one_shot_server(
    status: &'static str,
) -> (u16, tokio::task::JoinHandle<String>) {
    let answer = format!("HTTP/1.1 {status}\r\ncontent-length: 2\r\n\r\nok");
    let (port, served) = http_server("127.0.0.1", vec![answer]).await;
    (
        port,
        tokio::spawn(async move { served.await.unwrap().remove(0) }),
    )
}
