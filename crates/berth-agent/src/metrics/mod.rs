//! The node's Prometheus metrics, under the kubelet's names and labels
//! (kubelet `pkg/kubelet/metrics`, `pkg/kubelet/prober`), plus berth's own
//! pod start steps under `berth_`. Everything is derived from what the pod
//! workers already report (timeline steps, events, statuses, probe
//! attempts), so the workers know nothing of metrics.

mod derive;
mod exposition;

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use berth_pod::{PodEvent, ProbeAttempt, ProbeResult, TimelineEntry};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub use derive::ContainerType;
use derive::{Observation, PodMarks, Step};
pub use exposition::Format;

type Labels = Vec<(&'static str, String)>;
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

/// The kubelet's pod start buckets (`kubelet_pod_start_duration_seconds`).
const POD_START_BUCKETS: [f64; 25] = [
    0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 20.0, 30.0, 45.0, 60.0, 120.0, 180.0, 240.0,
    300.0, 360.0, 480.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0,
];
/// The kubelet's image pull buckets.
const IMAGE_PULL_BUCKETS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 180.0, 240.0, 300.0, 360.0, 480.0, 600.0, 900.0,
    1200.0, 1800.0, 2700.0, 3600.0,
];
/// Prometheus' default buckets, as the kubelet's worker and prober use.
const DEFAULT_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// berth's steps take milliseconds; a hook may take its grace period.
const STEP_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

fn pod_start_histogram() -> Histogram {
    Histogram::new(POD_START_BUCKETS)
}
fn image_pull_histogram() -> Histogram {
    Histogram::new(IMAGE_PULL_BUCKETS)
}
fn default_histogram() -> Histogram {
    Histogram::new(DEFAULT_BUCKETS)
}

/// The kubelet's `image_size_in_bytes` label: a size class, not the size.
fn image_size_bucket(bytes: u64) -> &'static str {
    const MB: u64 = 1 << 20;
    const GB: u64 = 1 << 30;
    match bytes {
        b if b < 10 * MB => "0-10MB",
        b if b < 100 * MB => "10MB-100MB",
        b if b < 500 * MB => "100MB-500MB",
        b if b < GB => "500MB-1GB",
        b if b < 5 * GB => "1GB-5GB",
        b if b < 10 * GB => "5GB-10GB",
        b if b < 20 * GB => "10GB-20GB",
        b if b < 30 * GB => "20GB-30GB",
        b if b < 40 * GB => "30GB-40GB",
        b if b < 60 * GB => "40GB-60GB",
        b if b < 100 * GB => "60GB-100GB",
        _ => "GT100GB",
    }
}

/// Which API serves a request, for `kubelet_http_requests_total`'s
/// `server_type` (the kubelet's read-write port, or berth's local socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    Kubelet,
    Local,
}

/// The node's metric families and what derives their values.
pub struct NodeMetrics {
    registry: Registry,
    running_pods: Gauge,
    running_containers: Family<Labels, Gauge>,
    pod_start: Histogram,
    pod_start_sli: Histogram,
    pod_worker: Histograms,
    started_containers: Family<Labels, Counter>,
    started_container_errors: Family<Labels, Counter>,
    terminated_containers: Family<Labels, Counter>,
    evictions: Family<Labels, Counter>,
    image_pull: Histograms,
    probes: Family<Labels, Counter>,
    probe_duration: Histograms,
    http_requests: Family<Labels, Counter>,
    steps: [(Step, Histogram); 5],
    pods: Mutex<BTreeMap<String, PodState>>,
}

/// Per pod: its open steps, and its probe series (dropped with the pod, as
/// the kubelet drops a stopped prober's).
struct PodState {
    marks: PodMarks,
    probe_series: HashSet<Labels>,
}

impl Default for NodeMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl NodeMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let running_pods = Gauge::default();
        registry.register(
            "kubelet_running_pods",
            "Number of pods that have a running pod sandbox",
            running_pods.clone(),
        );
        let running_containers = Family::default();
        registry.register(
            "kubelet_running_containers",
            "Number of containers currently running",
            running_containers.clone(),
        );
        let pod_start = pod_start_histogram();
        registry.register(
            "kubelet_pod_start_duration_seconds",
            "Duration in seconds from kubelet seeing a pod for the first time to the pod starting to run",
            pod_start.clone(),
        );
        let pod_start_sli = pod_start_histogram();
        registry.register(
            "kubelet_pod_start_sli_duration_seconds",
            "Duration in seconds to start a pod, excluding time to pull images and run init containers, measured from pod creation timestamp to when all its containers are reported as started and observed via watch",
            pod_start_sli.clone(),
        );
        let pod_worker: Histograms = Family::new_with_constructor(default_histogram);
        registry.register(
            "kubelet_pod_worker_duration_seconds",
            "Duration in seconds to sync a single pod. Broken down by operation type: create, update, or sync",
            pod_worker.clone(),
        );
        let started_containers = Family::default();
        registry.register(
            "kubelet_started_containers",
            "Cumulative number of containers started",
            started_containers.clone(),
        );
        let started_container_errors = Family::default();
        registry.register(
            "kubelet_started_containers_errors",
            "Cumulative number of errors when starting containers",
            started_container_errors.clone(),
        );
        let terminated_containers = Family::default();
        registry.register(
            "kubelet_terminated_containers",
            "Cumulative number of container terminations.",
            terminated_containers.clone(),
        );
        let evictions = Family::default();
        registry.register(
            "kubelet_evictions",
            "Cumulative number of pod evictions by eviction signal",
            evictions.clone(),
        );
        let image_pull: Histograms = Family::new_with_constructor(image_pull_histogram);
        registry.register(
            "kubelet_image_pull_duration_seconds",
            "Duration in seconds to pull an image",
            image_pull.clone(),
        );
        let probes = Family::default();
        registry.register(
            "prober_probe",
            "Cumulative number of a liveness, readiness or startup probe for a container by result",
            probes.clone(),
        );
        let probe_duration: Histograms = Family::new_with_constructor(default_histogram);
        registry.register(
            "prober_probe_duration_seconds",
            "Duration in seconds for a probe response",
            probe_duration.clone(),
        );
        let http_requests = Family::default();
        registry.register(
            "kubelet_http_requests",
            "Number of the http requests received since the server started",
            http_requests.clone(),
        );
        let steps = [
            (Step::Sandbox, "berth_sandbox_create_duration_seconds", "Duration in seconds to create a pod's sandbox: namespaces, network and the sandbox record"),
            (Step::Network, "berth_pod_network_setup_duration_seconds", "Duration in seconds from asking for a pod's sandbox to its network (CNI) being set up"),
            (Step::Create, "berth_container_create_duration_seconds", "Duration in seconds from a container's image being ready to the container being created"),
            (Step::Start, "berth_container_start_duration_seconds", "Duration in seconds from a container being created to it being started"),
            (Step::PostStart, "berth_post_start_hook_duration_seconds", "Duration in seconds of a container's postStart hook"),
        ]
        .map(|(step, name, help)| {
            let histogram = Histogram::new(STEP_BUCKETS);
            registry.register(name, help, histogram.clone());
            (step, histogram)
        });
        Self {
            registry,
            running_pods,
            running_containers,
            pod_start,
            pod_start_sli,
            pod_worker,
            started_containers,
            started_container_errors,
            terminated_containers,
            evictions,
            image_pull,
            probes,
            probe_duration,
            http_requests,
            steps,
            pods: Mutex::default(),
        }
    }

    fn with_pod<T>(&self, uid: &str, f: impl FnOnce(&mut PodState) -> T) -> T {
        let mut pods = self.pods.lock().expect("metrics lock");
        let state = pods.entry(uid.to_string()).or_insert_with(|| PodState {
            marks: PodMarks::new(Timestamp::now()),
            probe_series: HashSet::new(),
        });
        f(state)
    }

    /// The pod was seen for the first time (its start is measured from here).
    pub fn seen(&self, uid: &str) {
        self.with_pod(uid, |_| ());
    }

    /// The pod is gone: its open steps and probe series go too.
    pub fn forget(&self, uid: &str) {
        let state = self.pods.lock().expect("metrics lock").remove(uid);
        for labels in state.map(|s| s.probe_series).unwrap_or_default() {
            self.probes.remove(&labels);
        }
    }

    pub fn timeline(&self, uid: &str, entry: &TimelineEntry, kind: Option<ContainerType>) {
        let seen = self.with_pod(uid, |state| state.marks.timeline(entry, kind));
        self.observe(seen);
    }

    pub fn event(&self, event: &PodEvent) {
        let seen = self.with_pod(&event.pod.uid, |state| state.marks.event(event));
        self.observe(seen);
    }

    /// The pod's worker published `status`, after `old`.
    pub fn status(
        &self,
        uid: &str,
        old: Option<&PodStatus>,
        status: &PodStatus,
        created: Option<Timestamp>,
    ) {
        for (kind, exit_code, reason) in derive::newly_terminated(old, status) {
            let labels = vec![
                ("container_type", kind.as_str().to_string()),
                ("exit_code", exit_code.to_string()),
                ("reason", reason),
            ];
            self.terminated_containers.get_or_create(&labels).inc();
        }
        let phase = status.phase.as_deref().unwrap_or_default();
        let now = Timestamp::now();
        let seen = self.with_pod(uid, |state| {
            state.marks.status(phase, created.unwrap_or(now), now)
        });
        self.observe(seen);
    }

    /// A pod evicted for `signal` (`kubelet_evictions{eviction_signal}`).
    pub fn evicted(&self, signal: &str) {
        let labels: Labels = vec![("eviction_signal", signal.to_string())];
        self.evictions.get_or_create(&labels).inc();
    }

    pub fn probe(&self, attempt: &ProbeAttempt) {
        let pod = &attempt.pod;
        let labels: Labels = vec![
            ("probe_type", attempt.probe_type.to_string()),
            ("result", attempt.result.as_str().to_string()),
            ("container", attempt.container.clone()),
            ("pod", pod.name.clone()),
            ("namespace", pod.namespace.clone()),
            ("pod_uid", pod.uid.clone()),
        ];
        self.probes.get_or_create(&labels).inc();
        self.with_pod(&pod.uid, |state| state.probe_series.insert(labels));
        // As the kubelet: the duration of successful probes only.
        if attempt.result == ProbeResult::Successful {
            let labels: Labels = vec![
                ("probe_type", attempt.probe_type.to_string()),
                ("container", attempt.container.clone()),
                ("pod", pod.name.clone()),
                ("namespace", pod.namespace.clone()),
            ];
            self.probe_duration
                .get_or_create(&labels)
                .observe(attempt.duration.as_secs_f64());
        }
    }

    /// A request to one of the APIs; `path` is the request's path.
    pub fn http_request(&self, server: Server, method: &str, path: &str) {
        let labels: Labels = vec![
            ("method", method.to_string()),
            ("path", root_path(path)),
            (
                "server_type",
                match server {
                    Server::Kubelet => "readwrite",
                    Server::Local => "local",
                }
                .to_string(),
            ),
            ("long_running", long_running(path).to_string()),
        ];
        self.http_requests.get_or_create(&labels).inc();
    }

    fn observe(&self, observations: Vec<Observation>) {
        for observation in observations {
            match observation {
                Observation::Step(step, seconds) => {
                    if let Some((_, histogram)) = self.steps.iter().find(|(s, _)| *s == step) {
                        histogram.observe(seconds);
                    }
                }
                Observation::StartedContainer(kind) => {
                    let labels = vec![("container_type", kind.as_str().to_string())];
                    self.started_containers.get_or_create(&labels).inc();
                }
                Observation::StartError(kind) => {
                    let labels = vec![
                        ("code", "Unknown".to_string()),
                        ("container_type", kind.as_str().to_string()),
                    ];
                    self.started_container_errors.get_or_create(&labels).inc();
                }
                Observation::ImagePull {
                    seconds,
                    size_bytes,
                } => {
                    let labels = vec![(
                        "image_size_in_bytes",
                        image_size_bucket(size_bytes).to_string(),
                    )];
                    self.image_pull.get_or_create(&labels).observe(seconds);
                }
                Observation::PodStart {
                    seconds,
                    sli_seconds,
                } => {
                    self.pod_start.observe(seconds);
                    self.pod_start_sli.observe(sli_seconds);
                }
                Observation::FirstSync(seconds) => {
                    let labels = vec![("operation", "create".to_string())];
                    self.pod_worker.get_or_create(&labels).observe(seconds);
                }
            }
        }
    }

    /// The metrics in `format`, with the gauges read from `pods` now.
    pub fn render(&self, pods: &[Pod], format: Format) -> (&'static str, String) {
        let mut running_pods = 0;
        let mut states: BTreeMap<&'static str, i64> =
            [("running", 0), ("exited", 0), ("created", 0)].into();
        for pod in pods {
            let Some(status) = &pod.status else { continue };
            let statuses = status
                .init_container_statuses
                .iter()
                .chain(&status.container_statuses)
                .flatten();
            let mut any_running = false;
            for state in statuses.filter_map(|c| c.state.as_ref()) {
                let name = if state.running.is_some() {
                    any_running = true;
                    "running"
                } else if state.terminated.is_some() {
                    "exited"
                } else {
                    continue;
                };
                *states.entry(name).or_default() += 1;
            }
            if any_running || status.phase.as_deref() == Some("Running") {
                running_pods += 1;
            }
        }
        self.running_pods.set(running_pods);
        for (state, count) in states {
            self.running_containers
                .get_or_create(&vec![("container_state", state.to_string())])
                .set(count);
        }
        (
            format.content_type(),
            exposition::encode(&self.registry, format),
        )
    }
}

/// The kubelet's `path` label: the path's first segment (and the second
/// under `metrics`), so the label's values stay few.
fn root_path(path: &str) -> String {
    let mut segments = path.trim_start_matches('/').split('/');
    let first = segments.next().unwrap_or_default();
    match (first, segments.next()) {
        ("metrics", Some(second)) if !second.is_empty() => format!("metrics/{second}"),
        _ => first.to_string(),
    }
}

/// Requests that stream until the client stops them.
fn long_running(path: &str) -> bool {
    let first = path.trim_start_matches('/').split('/').next();
    matches!(first, Some("exec" | "attach" | "portForward" | "run")) || path.ends_with("/exec")
}

/// The kind of `name` in `pod`'s spec.
pub fn container_type(pod: &Pod, name: &str) -> ContainerType {
    let spec = pod.spec.as_ref();
    let in_list = |list: Option<&Vec<k8s_openapi::api::core::v1::Container>>| {
        list.is_some_and(|l| l.iter().any(|c| c.name == name))
    };
    if in_list(spec.and_then(|s| s.init_containers.as_ref())) {
        ContainerType::InitContainer
    } else if spec
        .and_then(|s| s.ephemeral_containers.as_ref())
        .is_some_and(|l| l.iter().any(|c| c.name == name))
    {
        ContainerType::EphemeralContainer
    } else {
        ContainerType::Container
    }
}
