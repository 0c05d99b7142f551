//! Where a worker reports: status snapshots, events, and its end.

use berth_runtime::PodRef;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::PodStatus;

use crate::timeline::TimelineEntry;

/// The Kubernetes event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// An event about a pod, in the kubelet's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodEvent {
    pub pod: PodRef,
    /// `spec.containers{name}` for container events.
    pub field_path: Option<String>,
    pub event_type: EventType,
    pub reason: &'static str,
    pub message: String,
    pub at: Timestamp,
}

/// What one probe attempt came to, in the kubelet's `prober_probe_total`
/// `result` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeResult {
    Successful,
    Failed,
    /// The attempt errored (thrown away, as the kubelet does).
    Unknown,
}

impl ProbeResult {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Successful => "successful",
            Self::Failed => "failed",
            Self::Unknown => "unknown",
        }
    }
}

/// One attempt of a container's probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeAttempt {
    pub pod: PodRef,
    pub container: String,
    /// `Liveness`, `Readiness` or `Startup`.
    pub probe_type: &'static str,
    pub result: ProbeResult,
    pub duration: std::time::Duration,
}

/// The worker's single writer: the supervisor's status store.
pub trait PodSink: Send + Sync + 'static {
    /// The pod's status changed.
    fn status(&self, uid: &str, status: PodStatus);
    /// Something happened to the pod.
    fn event(&self, event: PodEvent);
    /// The pod was deleted and everything of it torn down.
    fn finished(&self, uid: &str);
    /// A step of the pod's lifecycle timeline, in the order they happened.
    fn timeline(&self, _uid: &str, _entry: TimelineEntry) {}
    /// A probe attempt ended.
    fn probe(&self, _attempt: &ProbeAttempt) {}
}
