//! In-place pod resize, as the kubelet does it: a spec whose container
//! resources differ from what the node allocated is admitted again (the
//! allocation manager's `handlePodResourcesResize`): accepted when the pod
//! still fits the node, else left pending (`PodResizePending`, Deferred or
//! Infeasible). Once accepted, the planner has running containers take the
//! new allocation, in place (`doPodResizeAction`) or by a restart their
//! `resizePolicy` asks for; `PodResizeInProgress` stands until every running
//! container carries its allocation. Events: ResizeStarted, ResizeDeferred,
//! ResizeInfeasible, ResizeError, ResizeCompleted.

mod checkpoint;
mod fit;
mod summary;

use berth_runtime::{ContainerKind, ContainerRuntime};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{PodCondition, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::time::Instant;
use tracing::debug;

pub(crate) use checkpoint::Checkpoint;
use fit::pod_requests;
pub use fit::NodeAllocations;

use crate::reasons;
use crate::resources::{self, Amounts};
use crate::sink::{EventType, PodSink};
use crate::worker::{Worker, RETRY_AFTER};

pub(crate) const PENDING: &str = "PodResizePending";
pub(crate) const IN_PROGRESS: &str = "PodResizeInProgress";
const INFEASIBLE: &str = "Infeasible";
const DEFERRED: &str = "Deferred";
const ERROR: &str = "Error";

/// The pod's resize conditions (the kubelet status manager's
/// `podResizeConditions`).
#[derive(Debug, Clone, Default)]
pub(crate) struct ResizeConditions {
    pending: Option<PodCondition>,
    in_progress: Option<PodCondition>,
}

impl ResizeConditions {
    pub(crate) fn list(&self) -> Vec<PodCondition> {
        self.pending
            .iter()
            .chain(&self.in_progress)
            .cloned()
            .collect()
    }
}

/// `updatedPodResizeCondition`: True, probed now, its transition time kept
/// while the reason stays.
fn condition(
    type_: &str,
    old: Option<&PodCondition>,
    reason: &str,
    message: &str,
    generation: i64,
) -> PodCondition {
    let now = Time(Timestamp::now());
    let transition = match old {
        Some(o) if o.reason.as_deref().unwrap_or("") == reason => o.last_transition_time.clone(),
        _ => Some(now.clone()),
    };
    PodCondition {
        type_: type_.into(),
        status: "True".into(),
        last_probe_time: Some(now),
        last_transition_time: transition,
        observed_generation: (generation > 0).then_some(generation),
        reason: (!reason.is_empty()).then(|| reason.into()),
        message: (!message.is_empty()).then(|| message.into()),
    }
}

/// The same condition but for its times.
fn same_condition(a: &PodCondition, b: &PodCondition) -> bool {
    a.reason == b.reason && a.message == b.message && a.observed_generation == b.observed_generation
}

impl<R: ContainerRuntime, S: PodSink> Worker<R, S> {
    fn generation(&self) -> i64 {
        self.pod.metadata.generation.unwrap_or(0)
    }

    /// What the spec asks for container `i` (init containers too, as with
    /// the kubelet's `InPlacePodVerticalScalingInitContainers`, on by
    /// default: one that is done only has its allocation changed).
    fn desired(&self, i: usize) -> ResourceRequirements {
        self.spec_container(i)
            .and_then(|c| c.resources.clone())
            .unwrap_or_default()
    }

    /// The node's record of what this pod holds, for the other pods' fit.
    pub(crate) fn record_allocation(&self) {
        let requests = pod_requests(self.spec(), |i| self.records[i].allocated.clone());
        self.cfg.allocations.set(&self.pod_ref.uid, requests);
    }

    /// Admits the spec's resources when they differ from the allocation
    /// (the kubelet's `handlePodResourcesResize`).
    pub(crate) fn allocate_resize(&mut self) {
        let desired: Vec<ResourceRequirements> =
            (0..self.records.len()).map(|i| self.desired(i)).collect();
        let containers_changed = self
            .records
            .iter()
            .zip(&desired)
            .any(|(rec, want)| !resources::same(&rec.allocated, want));
        let pod_level_changed = !resources::same(
            &self.spec().resources.clone().unwrap_or_default(),
            &self.allocated_pod_resources,
        );
        if !containers_changed && !pod_level_changed {
            // Desired = allocated: a pending resize was reverted.
            self.resize.pending = None;
            self.record_allocation();
            return;
        }
        let generation = self.generation();
        let refusal = if pod_level_changed {
            // berth gives pods no cgroup limits of their own to resize.
            Some((
                INFEASIBLE,
                "InPlacePodLevelResourcesVerticalScaling is disabled".to_string(),
            ))
        } else {
            let wanted = pod_requests(self.spec(), |i| desired[i].clone());
            self.cfg
                .allocations
                .misfit(&self.pod_ref.uid, wanted, &self.cfg.node_allocatable)
                .map(|message| (DEFERRED, message))
        };
        if let Some((reason, message)) = refusal {
            let old = self.resize.pending.take();
            let new = condition(PENDING, old.as_ref(), reason, &message, generation);
            let changed = old.as_ref().is_none_or(|o| {
                o.reason != new.reason || o.observed_generation != new.observed_generation
            });
            self.resize.pending = Some(new);
            if changed {
                let (event, prefix) = if reason == INFEASIBLE {
                    (reasons::RESIZE_INFEASIBLE, "Pod resize Infeasible")
                } else {
                    (reasons::RESIZE_DEFERRED, "Pod resize Deferred")
                };
                let text = self.summary(prefix, &desired, generation, &message);
                self.event(EventType::Warning, event, None, text);
            }
            // Room may come as other pods go: the kubelet retries pending
            // resizes when pods change; berth on its resync.
            self.wake_no_later_than(Instant::now() + RETRY_AFTER);
            return;
        }
        for (rec, want) in self.records.iter_mut().zip(desired) {
            rec.allocated = want;
        }
        self.record_allocation();
        self.resize.pending = None;
        // A new resize clears an earlier one's error and generation.
        self.resize.in_progress = Some(condition(IN_PROGRESS, None, "", "", generation));
        let allocated: Vec<_> = self.records.iter().map(|r| r.allocated.clone()).collect();
        let text = self.summary("Pod resize started", &allocated, generation, "");
        debug!(pod = %self.pod_ref, generation, "resize accepted");
        self.event(EventType::Normal, reasons::RESIZE_STARTED, None, text);
    }

    fn summary(
        &self,
        prefix: &str,
        resources: &[ResourceRequirements],
        generation: i64,
        error: &str,
    ) -> String {
        let entries = self
            .records
            .iter()
            .zip(resources)
            .map(|(rec, r)| summary::Entry {
                name: &rec.name,
                init: rec.kind != ContainerKind::Regular,
                resources: r,
            });
        summary::message(prefix, entries, generation, error)
    }

    /// Gives the running containers `indices` their allocated resources
    /// without a restart (the kubelet's `doPodResizeAction`): a memory limit
    /// below what a container uses now refuses the whole resize.
    pub(crate) async fn resize_in_place(&mut self, indices: &[usize]) {
        if let Err(message) = self.try_resize_in_place(indices).await {
            debug!(pod = %self.pod_ref, "resize: {message}");
            self.resize_failed(&message);
            self.wake_no_later_than(Instant::now() + RETRY_AFTER);
        }
    }

    async fn try_resize_in_place(&mut self, indices: &[usize]) -> Result<(), String> {
        self.check_memory_decreases(indices).await?;
        for &i in indices {
            let Some(id) = self.records[i].current.as_ref().map(|c| c.id.clone()) else {
                continue;
            };
            let allocated = self.records[i].allocated.clone();
            let cgroup = crate::container_config::cgroup_resources(&allocated);
            self.rt
                .update_container_resources(&id, &cgroup)
                .await
                .map_err(|e| e.message)?;
            if let Some(current) = self.records[i].current.as_mut() {
                current.actuated = allocated;
            }
        }
        Ok(())
    }

    /// `validateMemoryResizeAction`: a limit set or lowered must stay above
    /// the container's usage.
    async fn check_memory_decreases(&self, indices: &[usize]) -> Result<(), String> {
        let mut errors = Vec::new();
        for &i in indices {
            let rec = &self.records[i];
            let Some(current) = rec.current.as_ref() else {
                continue;
            };
            let (now, want) = (Amounts::of(&current.actuated), Amounts::of(&rec.allocated));
            let lowered = want.memory_limit != 0
                && (now.memory_limit == 0 || want.memory_limit < now.memory_limit);
            if !lowered {
                continue;
            }
            let usage = self
                .rt
                .container_memory_usage(&current.id)
                .await
                .map_err(|_| {
                    format!(
                        "unable to read memory usage for pod {:?}",
                        self.pod_ref.to_string()
                    )
                })?;
            if usage >= want.memory_limit as u64 {
                errors.push(format!(
                    "attempting to set container {:?} memory limit ({}) below current usage ({usage})",
                    rec.name, want.memory_limit
                ));
            }
        }
        match errors.len() {
            0 => Ok(()),
            1 => Err(format!("cannot decrease memory limits: {}", errors[0])),
            _ => Err(format!(
                "cannot decrease memory limits: [{}]",
                errors.join(", ")
            )),
        }
    }

    /// `PodResizeInProgress` with reason Error (its generation kept), and a
    /// ResizeError event when that is news.
    fn resize_failed(&mut self, message: &str) {
        let old = self.resize.in_progress.take();
        let generation = old
            .as_ref()
            .and_then(|c| c.observed_generation)
            .unwrap_or_else(|| self.generation());
        let new = condition(IN_PROGRESS, old.as_ref(), ERROR, message, generation);
        let changed = old.as_ref().is_none_or(|o| !same_condition(o, &new));
        self.resize.in_progress = Some(new);
        if changed {
            let allocated: Vec<_> = self.records.iter().map(|r| r.allocated.clone()).collect();
            let text = self.summary("Pod resize error", &allocated, generation, message);
            self.event(EventType::Warning, reasons::RESIZE_ERROR, None, text);
        }
    }

    /// After a pass: `PodResizeInProgress` while a running container lags
    /// its allocation, and ResizeCompleted once none does (the kubelet's
    /// `IsPodResizeInProgress` check in `SyncPod`).
    pub(crate) fn track_resize_progress(&mut self) {
        self.save_resources();
        let view = self.view();
        let lagging =
            (0..self.records.len()).any(|i| crate::plan::resize::action(&view, i).is_some());
        if lagging {
            if self.resize.in_progress.is_none() {
                let generation = self.generation();
                self.resize.in_progress = Some(condition(IN_PROGRESS, None, "", "", generation));
            }
            return;
        }
        if let Some(done) = self.resize.in_progress.take() {
            let generation = done.observed_generation.unwrap_or(0);
            let allocated: Vec<_> = self.records.iter().map(|r| r.allocated.clone()).collect();
            let text = self.summary("Pod resize completed", &allocated, generation, "");
            self.event(EventType::Normal, reasons::RESIZE_COMPLETED, None, text);
        }
    }

    /// What to keep across an agent restart: the allocation, and what each
    /// current instance's cgroup carries.
    fn checkpoint(&self) -> checkpoint::Checkpoint {
        checkpoint::Checkpoint {
            allocated: self
                .records
                .iter()
                .map(|r| (r.name.clone(), r.allocated.clone()))
                .collect(),
            pod: self.allocated_pod_resources.clone(),
            actuated: self
                .records
                .iter()
                .filter_map(|r| r.current.as_ref())
                .map(|c| (c.id.0.clone(), c.actuated.clone()))
                .collect(),
        }
    }

    /// Keeps the checkpoint in the pod's directory when it changed.
    pub(crate) fn save_resources(&mut self) {
        let checkpoint = self.checkpoint();
        if self.saved_resources.as_ref() == Some(&checkpoint) {
            return;
        }
        match checkpoint::save(&self.dirs.pod, &checkpoint) {
            Ok(()) => self.saved_resources = Some(checkpoint),
            Err(e) => debug!(pod = %self.pod_ref, "save resources: {e}"),
        }
    }

    /// Takes back the allocation an earlier agent kept, for an adopted pod;
    /// `actuated(id)` is then what instance `id`'s cgroup carries.
    pub(crate) fn load_resources(&mut self) {
        let Some(saved) = checkpoint::load(&self.dirs.pod) else {
            return;
        };
        for rec in &mut self.records {
            if let Some(allocated) = saved.allocated.get(&rec.name) {
                rec.allocated = allocated.clone();
            }
        }
        self.allocated_pod_resources = saved.pod.clone();
        self.saved_resources = Some(saved);
    }

    /// What adopted instance `id` carries: as saved, else its allocation.
    pub(crate) fn adopted_actuated(&self, i: usize, id: &str) -> ResourceRequirements {
        self.saved_resources
            .as_ref()
            .and_then(|s| s.actuated.get(id).cloned())
            .unwrap_or_else(|| self.records[i].allocated.clone())
    }

    /// The pod no longer holds anything of the node.
    pub(crate) fn release_allocation(&self) {
        self.cfg.allocations.remove(&self.pod_ref.uid);
    }
}
