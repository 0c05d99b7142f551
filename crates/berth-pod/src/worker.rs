//! The worker loop: one task owns one pod. Each turn plans and executes what
//! the pod needs (sandbox, init containers in order, main containers with
//! restarts), publishes the status, then waits for the next input: a newer
//! spec, a container exit, a termination request, or a timer.

use std::sync::Arc;
use std::time::Duration;

use berth_api::status as rules;
use berth_runtime::{
    ContainerId, ContainerKind, ContainerRuntime, ExitInfo, ImageInfo, ObservedState, PodRef,
    RuntimeError,
};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, ContainerStatus, Pod, PodCondition, PodSpec};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::backoff::{Backoff, BackoffPolicy};
use crate::dirs::PodDirs;
use crate::handle::{Adopted, Termination};
use crate::probe::{InstanceProbes, ProbeUpdate};
use crate::record::{ContainerRecord, Instance, InstanceState};
use crate::sandbox::Sandbox;
use crate::sink::{EventType, PodSink};
use crate::stage::Stage;
use crate::timeline::{Reporter, TimelineStep};

/// Node-wide settings every worker shares.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub root_dir: std::path::PathBuf,
    pub log_dir: std::path::PathBuf,
    pub node_name: String,
    pub host_ip: String,
    pub backoff: BackoffPolicy,
    /// The image pull back-off (the kubelet's: 10 s doubling to 300 s).
    pub image_pull_backoff: BackoffPolicy,
    /// Pulls allowed at once across all pods (the kubelet's
    /// `serializeImagePulls` and `maxParallelImagePulls`); `None`: no limit.
    pub image_pulls: Option<Arc<tokio::sync::Semaphore>>,
    /// The kubelet's `seccompDefault`: containers that name no seccomp
    /// profile run under RuntimeDefault instead of Unconfined.
    pub seccomp_default: bool,
    /// Cluster mode's service variables and env objects; `None` standalone.
    pub cluster_data: Option<crate::ClusterDataSource>,
    /// The cluster DNS ClusterFirst pods resolve with (none: the host's).
    pub cluster_dns: crate::ClusterDns,
    /// The node's allocatable, which `resourceFieldRef` reads for limits
    /// nothing sets.
    pub node_allocatable: berth_api::resource_field::NodeAllocatable,
    /// What the node allocated to each of its pods, which a resize must fit
    /// beside.
    pub allocations: Arc<crate::resize::NodeAllocations>,
}

/// How long a failed start or sandbox waits before the next try (the kubelet
/// re-syncs a pod whose sync failed after about 10 s).
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(10);

/// The spec's `image` a container was made from, kept with it so that a
/// restarted agent still sees a later change. The kubelet keeps a hash of
/// the name and image (`io.kubernetes.container.hash`, `HashContainer`).
pub(crate) const SPEC_IMAGE_ANNOTATION: &str = "io.berth.container.image";

/// How long a failed exit waiter pauses before it is armed again.
const REARM_AFTER: Duration = Duration::from_secs(1);

/// A container exit, forwarded from the waiter armed before its start.
pub(crate) struct ExitNote {
    pub id: ContainerId,
    pub result: Result<ExitInfo, RuntimeError>,
}

pub(crate) struct Worker<R, S> {
    pub(crate) rt: Arc<R>,
    pub(crate) sink: Arc<S>,
    /// Events and timeline steps, for this pod.
    pub(crate) report: Reporter<S>,
    pub(crate) cfg: Arc<WorkerConfig>,
    spec_rx: watch::Receiver<Arc<Pod>>,
    pub(crate) term_rx: watch::Receiver<Option<Termination>>,
    evict_rx: watch::Receiver<Option<String>>,
    /// The node evicts the pod, with this message (its next pass fails it).
    pub(crate) eviction: Option<String>,
    pub(crate) pod: Arc<Pod>,
    pub(crate) pod_ref: PodRef,
    pub(crate) dirs: PodDirs,
    pub(crate) stage: Stage,
    /// Since when the pod waits for volume content another part of the
    /// agent writes (cluster mode's API data), if it does.
    pub(crate) volumes_awaited_since: Option<Instant>,
    pub(crate) sandbox: Sandbox,
    /// The sandbox's network while it is being set up.
    pub(crate) network: Option<crate::sandbox::PendingNetwork>,
    /// Init containers first, then the main ones, then the ephemeral ones,
    /// in spec order.
    pub(crate) records: Vec<ContainerRecord>,
    /// The ephemeral containers behind the last records, as containers, in
    /// the order they were added (which never changes).
    pub(crate) ephemeral: Vec<Container>,
    pub(crate) backoff: Backoff,
    pub(crate) pull_backoff: Backoff,
    /// This pass's pulls of the pod's image volumes, made before its first
    /// container start (the kubelet's `getImageVolumes`).
    pub(crate) image_volume_pulls: Option<crate::image_volume::Pulls>,
    // Boxed messages: a channel's first block holds 32 of them, allocated
    // with the channel and kept while the pod is; boxed, it is 256 bytes,
    // not 2 KiB, per channel.
    pub(crate) exits_tx: mpsc::UnboundedSender<Box<ExitNote>>,
    pub(crate) exits_rx: mpsc::UnboundedReceiver<Box<ExitNote>>,
    pub(crate) start_time: Timestamp,
    /// `start_time` on the worker's clock, for the active deadline.
    pub(crate) started: Instant,
    /// The pod's `reason` and `message` once it failed as a whole (past its
    /// active deadline).
    pub(crate) terminal_reason: Option<(String, String)>,
    pub(crate) conditions: Vec<PodCondition>,
    pub(crate) wake_at: Option<Instant>,
    /// The probers of each running instance, by container id.
    pub(crate) probes: std::collections::HashMap<ContainerId, InstanceProbes>,
    pub(crate) probe_tx: mpsc::UnboundedSender<Box<ProbeUpdate>>,
    pub(crate) probe_rx: mpsc::UnboundedReceiver<Box<ProbeUpdate>>,
    /// The pod-level resources (`spec.resources`) the node allocated.
    pub(crate) allocated_pod_resources: k8s_openapi::api::core::v1::ResourceRequirements,
    pub(crate) resize: crate::resize::ResizeConditions,
    /// The resources checkpoint last saved (or adopted).
    pub(crate) saved_resources: Option<crate::resize::Checkpoint>,
    /// A container's exit is restarting all containers: they are being
    /// killed and removed.
    pub(crate) restarting_all: bool,
}

impl<R: ContainerRuntime, S: PodSink> Worker<R, S> {
    pub(crate) fn new(
        rt: Arc<R>,
        sink: Arc<S>,
        cfg: Arc<WorkerConfig>,
        spec_rx: watch::Receiver<Arc<Pod>>,
        term_rx: watch::Receiver<Option<Termination>>,
        evict_rx: watch::Receiver<Option<String>>,
    ) -> Self {
        let pod = spec_rx.borrow().clone();
        let meta = &pod.metadata;
        let pod_ref = PodRef {
            uid: meta.uid.clone().unwrap_or_default(),
            namespace: meta.namespace.clone().unwrap_or_else(|| "default".into()),
            name: meta.name.clone().unwrap_or_default(),
        };
        let dirs = PodDirs::new(
            &cfg.root_dir,
            &cfg.log_dir,
            &pod_ref.namespace,
            &pod_ref.name,
            &pod_ref.uid,
        );
        let spec = pod.spec.clone().unwrap_or_default();
        let records = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| {
                let kind = if c.restart_policy.as_deref() == Some("Always") {
                    ContainerKind::Sidecar
                } else {
                    ContainerKind::Init
                };
                ContainerRecord::new(&c.name, kind, c.resources.clone().unwrap_or_default())
            })
            .chain(spec.containers.iter().map(|c| {
                let allocated = c.resources.clone().unwrap_or_default();
                ContainerRecord::new(&c.name, ContainerKind::Regular, allocated)
            }))
            .collect();
        let (exits_tx, exits_rx) = mpsc::unbounded_channel();
        let (probe_tx, probe_rx) = mpsc::unbounded_channel();
        let start_time = pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map_or_else(Timestamp::now, |t| t.0);
        let mut worker = Self {
            report: Reporter::new(sink.clone(), pod_ref.clone()),
            backoff: Backoff::new(cfg.backoff),
            pull_backoff: Backoff::new(cfg.image_pull_backoff),
            image_volume_pulls: None,
            rt,
            sink,
            cfg,
            spec_rx,
            term_rx,
            evict_rx,
            eviction: None,
            pod,
            pod_ref,
            dirs,
            stage: Stage::Preparing,
            volumes_awaited_since: None,
            sandbox: Sandbox::Absent,
            network: None,
            records,
            ephemeral: Vec::new(),
            exits_tx,
            exits_rx,
            start_time,
            started: {
                let age = Timestamp::now().duration_since(start_time);
                let age = Duration::try_from(age).unwrap_or_default();
                Instant::now().checked_sub(age).unwrap_or_else(Instant::now)
            },
            terminal_reason: None,
            conditions: Vec::new(),
            wake_at: None,
            probes: Default::default(),
            probe_tx,
            probe_rx,
            allocated_pod_resources: spec.resources.clone().unwrap_or_default(),
            resize: Default::default(),
            saved_resources: None,
            restarting_all: false,
        };
        worker.add_ephemeral_records();
        worker
    }

    /// Gives each ephemeral container new in the spec its record. They can
    /// only be added (the API server refuses changes and removals); a name
    /// another container already has is ignored.
    pub(crate) fn add_ephemeral_records(&mut self) {
        let Some(spec) = self.pod.spec.as_ref() else {
            return;
        };
        for ec in berth_api::pod::ephemeral_containers(spec) {
            if self.records.iter().any(|r| r.name == ec.name) {
                continue;
            }
            self.records.push(ContainerRecord::new(
                &ec.name,
                ContainerKind::Ephemeral,
                Default::default(),
            ));
            self.ephemeral
                .push(berth_api::pod::ephemeral_as_container(ec));
        }
    }

    /// Takes over what the runtime still runs for the pod, then works it
    /// until it is deleted.
    /// The worker's life. It is boxed, as are the adoption, each pass and
    /// the termination (the runtime's calls nested in them make their
    /// states large and short lived): what a waiting pod's task keeps is
    /// the worker and little more.
    pub(crate) async fn run(mut self: Box<Self>, adopted: Adopted) {
        Box::pin(self.adopt(adopted)).await;
        self.record_allocation();
        loop {
            let termination = *self.term_rx.borrow_and_update();
            if let Some(termination) = termination {
                return Box::pin((*self).terminate(termination)).await;
            }
            if self.stage.phase().is_none() {
                Box::pin(self.sync()).await;
                self.track_resize_progress();
                if self.stage.phase().is_some() {
                    self.release_allocation();
                }
            }
            self.publish(false);
            let wake_at = self.wake_at;
            tokio::select! {
                biased;
                changed = self.term_rx.changed() => {
                    if changed.is_err() {
                        return; // the supervisor is gone
                    }
                }
                Some(note) = self.exits_rx.recv() => self.on_exit(*note),
                Some(update) = self.probe_rx.recv() => self.on_probe(*update),
                Ok(()) = self.spec_rx.changed() => {
                    self.pod = self.spec_rx.borrow_and_update().clone();
                    self.add_ephemeral_records();
                }
                Ok(()) = self.evict_rx.changed() => {
                    self.eviction = self.evict_rx.borrow_and_update().clone();
                }
                _ = tokio::time::sleep_until(wake_at.unwrap_or_else(Instant::now)), if wake_at.is_some() => {}
            }
        }
    }

    pub(crate) fn wake_no_later_than(&mut self, at: Instant) {
        self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
    }

    pub(crate) fn termination_requested(&self) -> bool {
        self.term_rx.has_changed().unwrap_or(true) || self.term_rx.borrow().is_some()
    }

    pub(crate) fn event(
        &self,
        event_type: EventType,
        reason: &'static str,
        field_path: Option<String>,
        message: String,
    ) {
        self.report.event(event_type, reason, field_path, message);
    }

    /// The spec of the container behind record `i`.
    pub(crate) fn spec_container(&self, i: usize) -> Option<&Container> {
        crate::plan::spec_container(self.pod.spec.as_ref()?, &self.ephemeral, i)
    }

    pub(crate) fn field_path(&self, i: usize) -> Option<String> {
        let rec = &self.records[i];
        let list = match rec.kind {
            ContainerKind::Regular => "containers",
            ContainerKind::Ephemeral => "ephemeralContainers",
            ContainerKind::Init | ContainerKind::Sidecar => "initContainers",
        };
        Some(format!("spec.{list}{{{}}}", rec.name))
    }

    /// The pod's `terminationGracePeriodSeconds` (30 unless set).
    pub(crate) fn pod_grace_seconds(&self) -> i64 {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30)
    }

    pub(crate) fn on_exit(&mut self, note: ExitNote) {
        if self.sandbox.ready().is_some_and(|s| s.id.0 == note.id.0) {
            self.on_pause_exit(note);
            return;
        }
        let Some(i) = self
            .records
            .iter()
            .position(|r| r.current.as_ref().is_some_and(|c| c.id == note.id))
        else {
            return;
        };
        let exit = match note.result {
            Ok(exit) => exit,
            // Only the runtime's word that the container exited ends it: a
            // waiter that failed for any other reason is armed again.
            Err(e) if !e.is_not_found() => {
                debug!(container = %note.id, "exit waiter failed, re-arming: {e}");
                self.rearm_waiter(note.id);
                return;
            }
            Err(e) => {
                warn!(container = %note.id, "lost track of container: {e}");
                ExitInfo {
                    exit_code: 137,
                    finished_at: Timestamp::now(),
                    oom_killed: false,
                }
            }
        };
        self.stop_probers(&note.id);
        let fallback_to_logs = self
            .spec_container(i)
            .and_then(|c| c.termination_message_policy.as_deref())
            == Some("FallbackToLogsOnError");
        let rec = &mut self.records[i];
        let instance = rec.current.as_mut().expect("found by id");
        let InstanceState::Running { started_at } = instance.state else {
            return;
        };
        debug!(pod = %self.pod_ref, container = %rec.name, code = exit.exit_code, "container exited");
        let reason = rules::terminated_reason(exit.exit_code, exit.oom_killed).to_string();
        let mut message = instance
            .termination_message_file
            .as_deref()
            .and_then(crate::termination_message::from_file);
        if message.is_none() && fallback_to_logs && exit.exit_code != 0 {
            let log = self.dirs.log_path(&rec.name, instance.attempt);
            message = crate::termination_message::from_log(&log);
        }
        instance.state = InstanceState::Exited {
            started_at: Some(started_at),
            exit,
            reason,
            message,
            observed: Instant::now(),
        };
        rec.waiting = None;
        let name = rec.name.clone();
        self.step(
            Some(&name),
            TimelineStep::ContainerExited,
            format!("exit code {}", exit.exit_code),
        );
    }

    /// Removes a container the pod no longer needs. A failure is logged, not
    /// fatal: the container stays listed by the runtime, where the next
    /// adoption (or orphan removal) meets it again.
    pub(crate) async fn remove_container(&self, id: &ContainerId) {
        if let Err(e) = self.rt.remove_container(id).await {
            warn!(pod = %self.pod_ref, container = %id, "remove container: {e}");
        }
    }

    /// Takes over what the runtime still runs for this pod (agent restart).
    /// A pod that had failed as a whole stays Failed, whatever is left.
    async fn adopt(&mut self, adopted: Adopted) {
        if let Some(failure) = crate::saved_failure::load(&self.dirs.pod) {
            self.terminal_reason = Some(failure);
        }
        self.adopt_runtime(adopted).await;
        if self.terminal_reason.is_some() {
            self.stage = Stage::Finished {
                phase: crate::restart_policy::PodPhase::Failed,
            };
        }
    }

    async fn adopt_runtime(&mut self, adopted: Adopted) {
        let Some(sandbox) = adopted.sandbox else {
            for c in adopted.containers {
                self.remove_container(&c.id).await;
            }
            return;
        };
        // As the kubelet's `podSandboxChanged`, a sandbox without an IP off
        // the host network is replaced too: the agent stopped before its
        // network was set up.
        let no_network = !sandbox.host_network && sandbox.ips.is_empty();
        if sandbox.pause == berth_runtime::PauseProcess::Gone || no_network {
            // The pause process or the namespace pins are gone (the node
            // rebooted): the first plan replaces the sandbox.
            let containers = adopted.containers.into_iter().map(|c| c.id).collect();
            self.sandbox = Sandbox::Dead {
                sandbox,
                containers,
            };
            return;
        }
        self.load_resources();
        let reset = crate::restart_all::load(&self.dirs.pod);
        let mut containers = adopted.containers;
        containers.sort_by_key(|c| std::cmp::Reverse(c.attempt));
        for c in containers {
            if c.state == ObservedState::Created {
                // Created but never started (the agent stopped in between):
                // nothing ran, so a new instance replaces it.
                self.remove_container(&c.id).await;
                continue;
            }
            let Some(i) = self.records.iter().position(|r| r.name == c.name) else {
                self.remove_container(&c.id).await;
                continue;
            };
            let before_reset = crate::restart_all::from_before(&reset, &c.name, c.attempt);
            if c.sandbox != sandbox.id || self.records[i].previous.is_some() || before_reset {
                self.remove_container(&c.id).await;
                continue;
            }
            let image = match self.rt.image_status(&c.image).await {
                Ok(Some(image)) => image,
                _ => ImageInfo {
                    reference: c.image.clone(),
                    digest: String::new(),
                    size: 0,
                    config: Default::default(),
                },
            };
            let state = match c.state {
                ObservedState::Created => InstanceState::Created,
                ObservedState::Running { started_at } => {
                    if let Ok(waiter) = self.rt.wait_container(&c.id).await {
                        self.forward_exit(c.id.clone(), waiter);
                    }
                    InstanceState::Running { started_at }
                }
                ObservedState::Exited { started_at, exit } => InstanceState::Exited {
                    started_at,
                    exit,
                    reason: rules::terminated_reason(exit.exit_code, exit.oom_killed).into(),
                    message: None,
                    observed: Instant::now(),
                },
            };
            let actuated = self.adopted_actuated(i, &c.id.0);
            let instance = Instance {
                id: c.id,
                attempt: c.attempt,
                image,
                state,
                termination_message_file: None,
                spec_image: c.annotations.get(SPEC_IMAGE_ANNOTATION).cloned(),
                actuated,
            };
            let rec = &mut self.records[i];
            if rec.current.is_none() {
                rec.current = Some(instance);
            } else {
                rec.previous = Some(instance);
            }
        }
        // Restart counts and last states carry on from the last restart of
        // all containers.
        for rec in &mut self.records {
            rec.reset = reset.get(&rec.name).copied();
        }
        if self.dirs.prepare(&self.pod).is_ok() {
            crate::volume_ownership::apply(&self.dirs, &self.pod);
            self.stage = Stage::Running;
        }
        // Their transition times go on from before the restart.
        self.conditions = crate::saved_conditions::load(&self.dirs.pod);
        self.sandbox = Sandbox::Ready(sandbox);
        self.watch_pause().await;
        for i in 0..self.records.len() {
            self.start_probers(i, true);
        }
        debug!(pod = %self.pod_ref, "adopted running pod");
    }

    pub(crate) fn forward_exit(&self, id: ContainerId, waiter: berth_runtime::ExitWaiter) {
        let tx = self.exits_tx.clone();
        tokio::spawn(async move {
            let result = waiter.await;
            let _ = tx.send(Box::new(ExitNote { id, result }));
        });
    }

    /// Waits for the container's (or the sandbox's pause's) exit again,
    /// after a pause: the runtime could not say how the last wait ended.
    pub(crate) fn rearm_waiter(&self, id: ContainerId) {
        let pause = self.sandbox.ready().filter(|s| s.id.0 == id.0).cloned();
        let rt = Arc::clone(&self.rt);
        let tx = self.exits_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(REARM_AFTER).await;
            let result = match &pause {
                Some(sandbox) => match rt.wait_sandbox(sandbox).await {
                    Ok(Some(waiter)) => waiter.await,
                    Ok(None) => return,
                    Err(e) => Err(e),
                },
                None => match rt.wait_container(&id).await {
                    Ok(waiter) => waiter.await,
                    Err(e) => Err(e),
                },
            };
            let _ = tx.send(Box::new(ExitNote { id, result }));
        });
    }

    /// The pod's phase from container statuses already built; once
    /// terminal, the phase never changes.
    pub(crate) fn phase_of(
        &self,
        init: &[ContainerStatus],
        regular: &[ContainerStatus],
        pod_is_terminal: bool,
    ) -> String {
        if let Some(phase) = self.stage.phase() {
            return phase.as_str().into();
        }
        rules::pod_phase(self.spec(), init, regular, pod_is_terminal)
    }

    /// The pod's spec; validation guarantees there is one.
    pub(crate) fn spec(&self) -> &PodSpec {
        self.pod.spec.as_ref().expect("validated pods have a spec")
    }

    pub(crate) fn publish(&mut self, pod_is_terminal: bool) {
        let status = crate::status::pod_status(self, pod_is_terminal);
        let conditions = status.conditions.clone().unwrap_or_default();
        if conditions != self.conditions {
            if let Err(e) = crate::saved_conditions::save(&self.dirs.pod, &conditions) {
                debug!(pod = %self.pod_ref, "save conditions: {e}");
            }
        }
        self.conditions = conditions;
        self.sink.status(&self.pod_ref.uid, status);
    }
}

/// A grace period in seconds as a duration (a negative one is zero).
pub(crate) fn grace_period(seconds: i64) -> Duration {
    Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
}
