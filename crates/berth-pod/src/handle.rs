//! The supervisor's handle on a pod worker: newest spec wins, grace only
//! shrinks, and detaching leaves the pod running (agent restart).

use std::sync::Arc;
use std::time::Duration;

use berth_runtime::{ContainerRuntime, ObservedContainer, SandboxInfo};
use k8s_openapi::api::core::v1::Pod;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::sink::PodSink;
use crate::worker::{Worker, WorkerConfig};

/// A request to terminate the pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Termination {
    /// The grace period; zero kills at once (`--force --grace-period 0`).
    pub grace: Duration,
}

/// What the runtime still held of this pod when the agent started.
#[derive(Debug, Clone, Default)]
pub struct Adopted {
    pub sandbox: Option<SandboxInfo>,
    pub containers: Vec<ObservedContainer>,
}

/// The handle the supervisor keeps per pod UID.
pub struct PodWorkerHandle {
    spec: watch::Sender<Arc<Pod>>,
    termination: watch::Sender<Option<Termination>>,
    eviction: watch::Sender<Option<String>>,
    detach: CancellationToken,
    task: JoinHandle<()>,
}

impl PodWorkerHandle {
    /// Hands the worker a newer spec; intermediate ones may be skipped.
    pub fn update(&self, pod: Arc<Pod>) {
        self.spec.send_replace(pod);
    }

    /// Asks the worker to terminate the pod. A later request can only shorten
    /// the grace period, never lengthen it.
    pub fn terminate(&self, grace: Duration) {
        self.termination.send_if_modified(|current| match current {
            Some(t) if t.grace <= grace => false,
            _ => {
                *current = Some(Termination { grace });
                true
            }
        });
    }

    /// Evicts the pod (the kubelet's eviction manager's `evictPod`): it
    /// fails with reason `Evicted` and `message`, and its containers are
    /// stopped with a 1 s grace period; it is not restarted, whatever its
    /// restart policy. A pod already terminal, or evicted, stays as it is.
    /// Returns whether this call evicted it (false: asked before).
    pub fn evict(&self, message: String) -> bool {
        self.eviction.send_if_modified(|current| {
            if current.is_some() {
                return false;
            }
            *current = Some(message);
            true
        })
    }

    /// Stops the worker without touching the pod's containers.
    pub async fn detach(self) {
        self.detach.cancel();
        let _ = self.task.await;
    }
}

/// Starts the worker task for one pod.
pub fn spawn<R: ContainerRuntime, S: PodSink>(
    runtime: Arc<R>,
    sink: Arc<S>,
    config: Arc<WorkerConfig>,
    pod: Arc<Pod>,
    adopted: Adopted,
) -> PodWorkerHandle {
    let (spec_tx, spec_rx) = watch::channel(pod);
    let (term_tx, term_rx) = watch::channel(None);
    let (evict_tx, evict_rx) = watch::channel(None);
    let detach = CancellationToken::new();
    let worker = Worker::new(runtime, sink, config, spec_rx, term_rx, evict_rx);
    let token = detach.clone();
    let task = tokio::spawn(async move {
        tokio::select! {
            biased;
            _ = token.cancelled() => {}
            _ = Box::new(worker).run(adopted) => {}
        }
    });
    PodWorkerHandle {
        spec: spec_tx,
        termination: term_tx,
        eviction: evict_tx,
        detach,
        task,
    }
}
