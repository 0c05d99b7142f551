//! The pod's lifecycle timeline: every step the worker takes, stamped to the
//! millisecond, so `berth trace pod` can answer "did preStop finish before
//! SIGKILL?" without guessing. Events say what the kubelet would say; the
//! timeline says exactly when.

use std::sync::Arc;

use berth_runtime::{ContainerRuntime, PodRef};
use jiff::{Timestamp, Unit};

use crate::sink::{EventType, PodEvent, PodSink, ProbeAttempt, ProbeResult};
use crate::worker::Worker;

/// One step of a pod's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimelineStep {
    /// The worker asked the runtime for the pod's sandbox.
    SandboxCreating,
    /// The pod's network (CNI) was set up; detail: the pod's IPs. It is
    /// set up while the pod's first container is created, so it may come
    /// after `SandboxCreated` and that container's `ContainerCreated`.
    NetworkReady,
    /// The sandbox (namespaces, record) exists.
    SandboxCreated,
    /// The image is present; detail: the reference.
    ImageReady,
    ContainerCreated,
    ContainerStarted,
    /// Detail: `exit code N`.
    ContainerExited,
    /// Detail: the handler (`exec [..]`, `httpGet http://..`, `sleep 5s`).
    PostStartStarted,
    PostStartSucceeded,
    /// Detail: the failure message.
    PostStartFailed,
    /// The pod began terminating while the hook ran; it was abandoned.
    PostStartAbandoned,
    /// The worker decided to kill the container; detail: why.
    Killing,
    PreStopStarted,
    PreStopSucceeded,
    PreStopFailed,
    /// The grace period ran out before the hook returned.
    PreStopTimedOut,
    /// Detail: the signal's name.
    StopSignal,
    /// SIGKILL at the end of the grace period.
    Sigkill,
    /// Containers, sandbox and pod directories removed.
    TornDown,
    /// A probe's verdict turned to success; detail: the probe kind.
    ProbeSucceeded,
    /// A probe's verdict turned to failure; detail: kind and output.
    ProbeFailed,
}

impl TimelineStep {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SandboxCreating => "SandboxCreating",
            Self::NetworkReady => "NetworkReady",
            Self::SandboxCreated => "SandboxCreated",
            Self::ImageReady => "ImageReady",
            Self::ContainerCreated => "ContainerCreated",
            Self::ContainerStarted => "ContainerStarted",
            Self::ContainerExited => "ContainerExited",
            Self::PostStartStarted => "PostStartStarted",
            Self::PostStartSucceeded => "PostStartSucceeded",
            Self::PostStartFailed => "PostStartFailed",
            Self::PostStartAbandoned => "PostStartAbandoned",
            Self::Killing => "Killing",
            Self::PreStopStarted => "PreStopStarted",
            Self::PreStopSucceeded => "PreStopSucceeded",
            Self::PreStopFailed => "PreStopFailed",
            Self::PreStopTimedOut => "PreStopTimedOut",
            Self::StopSignal => "StopSignal",
            Self::Sigkill => "SIGKILL",
            Self::TornDown => "TornDown",
            Self::ProbeSucceeded => "ProbeSucceeded",
            Self::ProbeFailed => "ProbeFailed",
        }
    }
}

/// A timeline entry: when, which container (none for pod-level steps),
/// what, and a free-form detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineEntry {
    /// Wall-clock time, rounded to the millisecond.
    pub at: Timestamp,
    pub container: Option<String>,
    pub step: TimelineStep,
    pub detail: String,
}

/// Reports for one pod from wherever the work happens, including the kill
/// tasks that outlive a borrow of the worker.
pub(crate) struct Reporter<S> {
    sink: Arc<S>,
    pod: PodRef,
}

impl<S> Clone for Reporter<S> {
    fn clone(&self) -> Self {
        Self {
            sink: self.sink.clone(),
            pod: self.pod.clone(),
        }
    }
}

impl<S: PodSink> Reporter<S> {
    pub(crate) fn new(sink: Arc<S>, pod: PodRef) -> Self {
        Self { sink, pod }
    }

    pub(crate) fn step(&self, container: Option<&str>, step: TimelineStep, detail: String) {
        self.step_at(Timestamp::now(), container, step, detail);
    }

    /// Records a step that happened at `at` (reported after the fact).
    pub(crate) fn step_at(
        &self,
        at: Timestamp,
        container: Option<&str>,
        step: TimelineStep,
        detail: String,
    ) {
        let at = at.round(Unit::Millisecond).unwrap_or(at);
        self.sink.timeline(
            &self.pod.uid,
            TimelineEntry {
                at,
                container: container.map(str::to_string),
                step,
                detail,
            },
        );
    }

    /// One probe attempt's result, for the prober metrics.
    pub(crate) fn probe(
        &self,
        container: &str,
        probe_type: &'static str,
        result: ProbeResult,
        duration: std::time::Duration,
    ) {
        self.sink.probe(&ProbeAttempt {
            pod: self.pod.clone(),
            container: container.to_string(),
            probe_type,
            result,
            duration,
        });
    }

    pub(crate) fn event(
        &self,
        event_type: EventType,
        reason: &'static str,
        field_path: Option<String>,
        message: String,
    ) {
        self.sink.event(PodEvent {
            pod: self.pod.clone(),
            field_path,
            event_type,
            reason,
            message,
            at: Timestamp::now(),
        });
    }
}

impl<R: ContainerRuntime, S: PodSink> Worker<R, S> {
    /// Records a step of this pod's timeline.
    pub(crate) fn step(&self, container: Option<&str>, step: TimelineStep, detail: String) {
        self.report.step(container, step, detail);
    }
}
