//! Carrying out what the planner decided, in the kubelet's `SyncPod` order:
//! the pod's failure, kills, the sandbox (volumes first), then container
//! starts (the next init container, sidecars, regular containers) and the
//! CrashLoopBackOff waits among them, in spec order; and a deleted pod's
//! end: its containers stopped, then everything of it removed.

use std::time::Duration;

use berth_runtime::ContainerRuntime;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::handle::Termination;
use crate::plan::{
    self, Kill, KillReason, Plan, PodFailure, PodView, SandboxView, SandboxWork, Start,
};
use crate::reasons;
use crate::record::{InstanceState, Waiting};
use crate::restart_policy::PodPhase;
use crate::sandbox::Sandbox;
use crate::sink::{EventType, PodSink};
use crate::stage::Stage;
use crate::timeline::TimelineStep;
use crate::worker::{grace_period, Worker};

/// How often a pass that starts containers publishes the status meanwhile
/// (a pod whose starts take less publishes once, after the pass).
const PUBLISH_DURING_STARTS: Duration = Duration::from_millis(100);

/// How long a pod whose volumes could not be set up waits for the next try.
const MOUNT_RETRY_AFTER: Duration = Duration::from_secs(2);

/// How often a pod looks again for volume content being written for it, and
/// how long it waits quietly before it says so: the kubelet's volume manager
/// polls (`WaitForAttachAndMount`) and warns only once its timeout
/// (`podAttachAndMountTimeout`, 2m3s) has passed.
const VOLUME_CONTENT_POLL: Duration = Duration::from_millis(100);
const VOLUME_CONTENT_TIMEOUT: Duration = Duration::from_secs(123);

impl<R: ContainerRuntime, S: PodSink> Worker<R, S> {
    /// What the planner sees of this worker.
    pub(crate) fn view(&self) -> PodView<'_> {
        let deadline = self
            .spec()
            .active_deadline_seconds
            .map(|seconds| self.started + Duration::from_secs(u64::try_from(seconds).unwrap_or(0)));
        let sandbox = match self.sandbox {
            Sandbox::Absent => SandboxView::Absent,
            Sandbox::Ready(_) => SandboxView::Ready,
            Sandbox::Dead { .. } => SandboxView::Dead,
        };
        PodView {
            spec: self.spec(),
            pod: &self.pod_ref,
            records: &self.records,
            ephemeral: &self.ephemeral,
            probed: (0..self.records.len())
                .map(|i| self.probe_status(i))
                .collect(),
            stage: self.stage,
            sandbox,
            backoff: &self.backoff,
            deadline,
            eviction: self.eviction.as_deref(),
        }
    }

    /// One pass, as the kubelet's `SyncPod`: plan, execute, and plan again
    /// while the last plan changed what the next one sees (a sidecar now
    /// running lets the next init container go; a container killed after a
    /// failed probe starts again). Each container is started at most once and
    /// killed at most once per pass; a container that needs more (its start
    /// failed) is due on the next pass.
    pub(crate) async fn sync(&mut self) {
        self.wake_at = None;
        self.image_volume_pulls = None;
        let mut done = Touched {
            killed: vec![false; self.records.len()],
            started: vec![false; self.records.len()],
            resized: false,
        };
        self.allocate_resize();
        // Every pass that acted touched a new container or set up the pod.
        for _ in 0..2 * self.records.len() + 3 {
            let plan = plan::plan(&self.view(), Instant::now());
            if !self.execute(plan, &mut done).await {
                return;
            }
        }
        self.wake_no_later_than(Instant::now());
    }

    /// The pod's deletion, as the kubelet's `syncTerminatingPod` then
    /// `syncTerminatedPod`: planned once, then carried out. The containers
    /// stop in the plan's order (a later request can only shorten the grace
    /// period); a runtime that does not answer in time forces the pod down.
    /// Then its containers, sandbox and files go and the final status is
    /// published.
    pub(crate) async fn terminate(mut self, request: Termination) {
        self.stage = self.stage.terminating(request.grace);
        // Its network is removed with the sandbox: set up first, or gone.
        self.settle_network(None).await;
        let plan = plan::plan(&self.view(), Instant::now());
        let end = plan.terminate.unwrap_or_default();
        self.stop_liveness_probers();
        let mut forced = false;
        if let Some(failure) = self.stop(&end.stop, KillReason::PodDeleted).await {
            self.force_stop(&failure).await;
            forced = true;
        }
        self.publish(true);
        self.teardown(&end, forced).await;
        self.step(None, TimelineStep::TornDown, String::new());
        self.publish(true);
        self.release_allocation();
        self.sink.finished(&self.pod_ref.uid);
    }

    /// Carries `plan` out, leaving alone what earlier plans of this pass
    /// did; true when it acted, so that a new plan may differ.
    async fn execute(&mut self, plan: Plan, done: &mut Touched) -> bool {
        if let Some(at) = plan.wake_at {
            self.wake_no_later_than(at);
        }
        let mut acted = false;
        if let Some(failure) = plan.failure.clone() {
            self.fail(failure);
            acted = true;
        }
        if let Some(resets) = &plan.restart_all {
            self.restart_all(resets).await;
            // Removed, they are new containers to this pass.
            for reset in resets {
                done.killed[reset.index] = false;
                done.started[reset.index] = false;
            }
            return true;
        }
        let kills: Vec<Kill> = plan
            .kills
            .iter()
            .filter(|k| !done.killed[k.index])
            .copied()
            .collect();
        if !kills.is_empty() {
            // A whole-pod stop takes every container the plan names.
            let whole_pod = plan.kills.iter().filter(|k| k.reason.whole_pod());
            let whole_pod: Vec<usize> = whole_pod.map(|k| k.index).collect();
            self.kill_all(&kills, whole_pod).await;
            for kill in &kills {
                done.killed[kill.index] = true;
            }
            acted = true;
        }
        if !plan.resizes.is_empty() && !done.resized {
            done.resized = true;
            self.resize_in_place(&plan.resizes).await;
            acted = true;
        }
        if plan.sandbox == Some(SandboxWork::Recreate) {
            self.remove_dead_sandbox().await;
        }
        if plan.prepare_volumes {
            if !self.prepare_volumes() {
                return false;
            }
            acted = true;
        }
        if plan.sandbox.is_some() {
            if !self.create_sandbox().await {
                return false;
            }
            acted = true;
        }
        let starts: Vec<Start> = plan.starts().cloned().collect();
        let mut steps: Vec<(usize, Step)> = starts
            .into_iter()
            .map(|s| (s.index, Step::Start(s)))
            .chain(plan.waiting.into_iter().map(|(i, w)| (i, Step::Wait(w))))
            .filter(|(i, _)| !done.started[*i])
            .collect();
        steps.sort_by_key(|(i, _)| *i);
        let mut published = None;
        for (i, step) in steps {
            if self.termination_requested() {
                return false;
            }
            let regular = self.records[i].kind == berth_runtime::ContainerKind::Regular;
            if regular {
                published.get_or_insert_with(Instant::now);
            }
            match step {
                Step::Wait(waiting) => self.hold(i, waiting),
                Step::Start(start) => {
                    self.start(&start).await;
                    done.started[i] = true;
                    acted = true;
                    // Its network could not be set up: the pod gets a new
                    // sandbox after a while, not at once.
                    if self.sandbox.ready().is_none() {
                        return false;
                    }
                    // Its postStart hook failed: the kill comes before any
                    // later container starts.
                    if self.records[i].kill_pending.is_some() {
                        return true;
                    }
                }
            }
            // A big pod's starts take a while: its status shows them as they
            // come, not all at the end of the pass.
            if published.is_some_and(|at| at.elapsed() >= PUBLISH_DURING_STARTS) {
                self.publish(false);
                published = Some(Instant::now());
            }
        }
        // No start waited for the network (an image to pull first, say):
        // the pod's status and /etc/hosts get its IPs now.
        if !self.settle_network(None).await {
            return false;
        }
        if let Some(phase) = plan.finish {
            debug!(pod = %self.pod_ref, phase = phase.as_str(), "pod reached a terminal phase");
            self.stage = Stage::Finished { phase };
        }
        acted
    }

    /// The pod failed as a whole: Failed with the kubelet's reason and
    /// message, before its containers are stopped. An eviction is a
    /// Warning, as the eviction manager records it.
    fn fail(&mut self, failure: PodFailure) {
        let (reason, message) = failure.reason_and_message();
        let event_type = match failure {
            PodFailure::Evicted(_) => EventType::Warning,
            PodFailure::DeadlineExceeded => EventType::Normal,
        };
        self.event(event_type, reason, None, message.clone());
        if let Err(e) = crate::saved_failure::save(&self.dirs.pod, reason, &message) {
            warn!(pod = %self.pod_ref, "save the pod's failure: {e}");
        }
        self.stage = Stage::Finished {
            phase: PodPhase::Failed,
        };
        self.terminal_reason = Some((reason.into(), message));
    }

    /// Kills one container at a time, then stops the whole pod (the
    /// containers of `whole_pod`) if asked.
    async fn kill_all(&mut self, kills: &[Kill], whole_pod: Vec<usize>) {
        for kill in kills.iter().filter(|k| !k.reason.whole_pod()) {
            self.kill_container(kill.index, kill.reason).await;
            match kill.reason {
                // Started again at once from the new definition or allocation.
                KillReason::DefinitionChanged | KillReason::ResizeRestart => {
                    self.records[kill.index].definition_changed = true
                }
                // Not again in this pass: restartPolicy decides on the next.
                KillReason::PostStartFailed => self.wake_no_later_than(Instant::now()),
                _ => {}
            }
        }
        if let Some(kill) = kills.iter().find(|k| k.reason.whole_pod()) {
            let grace = kill
                .reason
                .grace_override()
                .unwrap_or_else(|| grace_period(self.pod_grace_seconds()));
            let stop = plan::stop(&self.view(), whole_pod, grace);
            if let Some(failure) = self.stop(&stop, kill.reason).await {
                warn!(pod = %self.pod_ref, reason = ?kill.reason, "stop containers: {failure}");
            }
        }
    }

    /// Starts a container the plan found stopped (unless a kill before it
    /// did not take), counting a restart in the back-off.
    async fn start(&mut self, start: &Start) {
        let i = start.index;
        let state = self.records[i].current.as_ref().map(|c| &c.state);
        if matches!(
            state,
            Some(InstanceState::Running { .. } | InstanceState::Created)
        ) {
            return;
        }
        if let Some((key, finished)) = &start.backoff {
            self.backoff.restarted(key.clone(), *finished);
        }
        self.start_container(i).await;
        if let Some(at) = self.records[i].retry_at {
            self.wake_no_later_than(at);
        }
    }

    /// Holds container `i` back with `waiting`; the BackOff event comes when
    /// the reason or message changes.
    fn hold(&mut self, i: usize, waiting: Waiting) {
        if self.records[i].waiting.as_ref() != Some(&waiting) {
            let name = &self.records[i].name;
            let message = format!(
                "Back-off restarting failed container {name} in pod {}",
                self.pod_ref
            );
            self.event(
                EventType::Warning,
                reasons::BACK_OFF,
                self.field_path(i),
                message,
            );
        }
        self.records[i].waiting = Some(waiting);
    }

    fn prepare_volumes(&mut self) -> bool {
        let unwritten = self.dirs.unwritten_volumes(&self.pod);
        if !unwritten.is_empty() {
            let now = Instant::now();
            let since = *self.volumes_awaited_since.get_or_insert(now);
            if now.duration_since(since) < VOLUME_CONTENT_TIMEOUT {
                self.wake_no_later_than(now + VOLUME_CONTENT_POLL);
                return false;
            }
            self.volumes_awaited_since = Some(now);
            self.event(
                EventType::Warning,
                reasons::FAILED_MOUNT,
                None,
                format!(
                    "Unable to attach or mount volumes: unmounted volumes=[{}], unattached volumes=[], failed to process volumes=[]: timed out waiting for the condition",
                    unwritten.join(" ")
                ),
            );
            self.wake_no_later_than(now + VOLUME_CONTENT_POLL);
            return false;
        }
        self.volumes_awaited_since = None;
        if let Err(e) = self.dirs.prepare(&self.pod) {
            self.event(
                EventType::Warning,
                reasons::FAILED_MOUNT,
                None,
                format!("Unable to attach or mount volumes: {e}"),
            );
            self.wake_no_later_than(Instant::now() + MOUNT_RETRY_AFTER);
            return false;
        }
        crate::volume_ownership::apply(&self.dirs, &self.pod);
        self.stage = Stage::Running;
        true
    }
}

/// The containers a pass killed and started, each at most once.
struct Touched {
    killed: Vec<bool>,
    started: Vec<bool>,
    /// Running containers took their resize (or failed to): once a pass.
    resized: bool,
}

/// A container's step in a plan: start it, or hold it back.
enum Step {
    Start(Start),
    Wait(Waiting),
}
