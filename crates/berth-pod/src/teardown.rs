//! The end of a pod: every container, the sandbox and the pod's files are
//! removed. A runtime that stops answering for the pod (a containerd shim
//! that is wedged) must not keep it terminating for ever: its calls are
//! bounded, and the first that runs out of time forces the pod's processes
//! down (with a `FailedKillPod` warning), after which removal goes on.

use std::sync::Arc;
use std::time::Duration;

use berth_runtime::{ContainerId, ContainerRuntime, ExitInfo, RuntimeError, RuntimeErrorKind};
use jiff::Timestamp;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::plan::{SandboxRemoval, TerminationPlan};
use crate::record::InstanceState;
use crate::sandbox::Sandbox;
use crate::sink::{EventType, PodSink};
use crate::worker::Worker;

/// Containers removed at once: enough that a pod of hundreds goes in
/// seconds, few enough not to flood the pod's shim.
const PARALLEL_REMOVALS: usize = 8;

/// The kubelet's state for a container that was running and is gone when
/// the pod terminates (`convertToAPIContainerStatuses`).
const STATUS_UNKNOWN: &str = "ContainerStatusUnknown";
const STATUS_UNKNOWN_MESSAGE: &str =
    "The container could not be located when the pod was terminated";

impl<R: ContainerRuntime, S: PodSink> Worker<R, S> {
    /// The runtime did not answer a kill or removal in time: reports it as
    /// the kubelet reports a failed kill (`FailedKillPod`, "error killing
    /// pod: ..."), then has the runtime force the pod's processes down.
    /// Containers that were running are gone: exit code 137,
    /// `ContainerStatusUnknown`.
    pub(crate) async fn force_stop(&mut self, failure: &str) {
        warn!(pod = %self.pod_ref, "the runtime does not answer for the pod, forcing it down: {failure}");
        self.event(
            EventType::Warning,
            crate::reasons::FAILED_KILL_POD,
            None,
            format!("error killing pod: {failure}"),
        );
        if let Some(sandbox) = self.sandbox.ready().cloned() {
            if let Err(e) = self.rt.force_stop_sandbox(&sandbox).await {
                warn!(pod = %self.pod_ref, "force the pod down: {e}");
            }
        }
        for rec in &mut self.records {
            let Some(instance) = rec.current.as_mut() else {
                continue;
            };
            if let InstanceState::Running { started_at } = instance.state {
                instance.state = InstanceState::Exited {
                    started_at: Some(started_at),
                    exit: ExitInfo {
                        exit_code: 137,
                        finished_at: Timestamp::now(),
                        oom_killed: false,
                    },
                    reason: STATUS_UNKNOWN.into(),
                    message: Some(STATUS_UNKNOWN_MESSAGE.into()),
                    observed: Instant::now(),
                };
            }
        }
    }

    /// Removes the containers and sandbox `end` names (several containers
    /// at once), then the pod's files. Each removal is idempotent, so a
    /// failure is retried a few times and then reported. A removal the
    /// runtime does not answer in time forces the pod down (unless `forced`
    /// already) and is tried again.
    pub(crate) async fn teardown(&mut self, end: &TerminationPlan, mut forced: bool) {
        if end.sandbox == Some(SandboxRemoval::RemoveDead) {
            if let Sandbox::Dead { containers, .. } = &self.sandbox {
                // Deleted before its first pass replaced the dead sandbox.
                let containers = containers.clone();
                if let Err(e) = remove_containers(&self.rt, &containers).await {
                    warn!(pod = %self.pod_ref, "remove the dead sandbox's containers: {e}");
                }
            }
        }
        let ids: Vec<ContainerId> = end
            .remove
            .iter()
            .map(|&i| &self.records[i])
            .flat_map(|r| r.current.iter().chain(r.previous.iter()))
            .map(|i| i.id.clone())
            .collect();
        let sandbox = end.sandbox.and_then(|_| self.sandbox.info().cloned());
        // The sandbox stops (its network goes) while the containers are
        // removed: their processes have exited, and the kubelet too stops
        // the pod sandbox right after its containers. A failed stop is done
        // again by the sandbox's removal.
        let stop = async {
            if let Some(sandbox) = &sandbox {
                if let Err(e) = self.rt.stop_sandbox(sandbox).await {
                    debug!(pod = %self.pod_ref, "stop the sandbox (its removal tries again): {e}");
                }
            }
        };
        let (removed, ()) = tokio::join!(remove_containers(&self.rt, &ids), stop);
        if let Err(e) = removed {
            if !forced {
                self.force_stop(&format!("remove containers: {}", e.message))
                    .await;
                forced = true;
            }
            let _ = remove_containers(&self.rt, &ids).await;
        }
        // The pod's files go while its sandbox is removed: neither needs
        // the other.
        self.unmount_image_volumes().await;
        let dirs = self.dirs.clone();
        let files = tokio::task::spawn_blocking(move || dirs.remove());
        if let Some(sandbox) = sandbox {
            let removed = retry("remove sandbox", || self.rt.remove_sandbox(&sandbox)).await;
            if let Err(e) = removed {
                if !forced {
                    self.force_stop(&format!(
                        "failed to \"KillPodSandbox\" for \"{}\" with KillPodSandboxError: \"{}\"",
                        self.pod_ref.uid, e.message
                    ))
                    .await;
                }
                let _ = retry("remove sandbox", || self.rt.remove_sandbox(&sandbox)).await;
            }
        }
        match files.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(pod = %self.pod_ref, "remove pod directories: {e}"),
            Err(e) => warn!(pod = %self.pod_ref, "remove pod directories: {e}"),
        }
        debug!(pod = %self.pod_ref, "pod torn down");
    }
}

/// Removes the containers, [`PARALLEL_REMOVALS`] at a time, each with
/// [`retry`]; the first removal the runtime did not answer in time is the
/// error, and no further removal starts (it would wait as long).
async fn remove_containers<R: ContainerRuntime>(
    rt: &Arc<R>,
    ids: &[ContainerId],
) -> Result<(), RuntimeError> {
    let mut pending = ids.iter().cloned();
    let mut removals = JoinSet::new();
    let mut unanswered = None;
    loop {
        while unanswered.is_none() && removals.len() < PARALLEL_REMOVALS {
            let Some(id) = pending.next() else { break };
            let rt = Arc::clone(rt);
            removals
                .spawn(async move { retry("remove container", || rt.remove_container(&id)).await });
        }
        match removals.join_next().await {
            None => break,
            Some(Ok(Err(e))) => {
                unanswered.get_or_insert(e);
            }
            Some(_) => {}
        }
    }
    unanswered.map_or(Ok(()), Err)
}

/// Retries `call` a few times with back-off; gives up (logging) after the
/// last. A call the runtime did not answer in time is not retried: it is
/// the error, for the caller to force the pod down first.
async fn retry<F, Fut>(what: &str, mut call: F) -> Result<(), RuntimeError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), RuntimeError>>,
{
    let mut delay = Duration::from_millis(200);
    for attempt in 1..=5 {
        match call().await {
            Ok(()) => return Ok(()),
            Err(e) if e.kind == RuntimeErrorKind::Timeout => return Err(e),
            Err(e) if attempt == 5 => warn!("{what}: {e}"),
            Err(e) => {
                debug!("{what} (attempt {attempt}): {e}");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
    Ok(())
}
