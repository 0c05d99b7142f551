//! The one kill path: containers stopped against one deadline, as the
//! planner's [`Stop`] says (turns, grace, preStop). Every kill starts at once
//! (Killing event, preStop hook); a container's stop signal waits for its
//! turn, and SIGKILL comes when the grace period is over. A later deletion
//! can only bring the deadline closer.

use std::sync::Arc;
use std::time::Duration;

use berth_api::restart_rules::restarts_after_kill;
use berth_runtime::{ContainerId, ContainerRuntime, RuntimeError, RuntimeErrorKind, Signal};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::hooks::{Hook, HookKind};
use crate::plan::{KillReason, Stop};
use crate::probe::ProbeKind;
use crate::sink::{EventType, PodSink};
use crate::timeline::{Reporter, TimelineStep};
use crate::worker::{grace_period, Worker};

/// The kubelet never gives a container less than this after its stop signal
/// (`minimumGracePeriodInSeconds`), unless the delete was forced with 0.
const MINIMUM_GRACE: Duration = Duration::from_secs(2);

/// How often a kill asks a runtime that is away again.
const RUNTIME_RETRY: Duration = Duration::from_millis(500);

impl<R: ContainerRuntime, S: PodSink> Worker<R, S> {
    /// Kills container `i` alone for `reason`, through the same path as pod
    /// termination (preStop included); returns once it exited. The grace
    /// period is the pod's, or a failed probe's own
    /// `terminationGracePeriodSeconds`, unless the pod is being deleted (the
    /// kubelet's `killContainer`).
    pub(crate) async fn kill_container(&mut self, i: usize, reason: KillReason) {
        debug_assert!(!reason.whole_pod());
        let probe = match reason {
            KillReason::Liveness => Some(ProbeKind::Liveness),
            KillReason::Startup => Some(ProbeKind::Startup),
            _ => None,
        };
        let probe_grace = probe
            .and_then(|kind| self.spec_container(i).and_then(|c| kind.spec(c)))
            .and_then(|p| p.termination_grace_period_seconds);
        let grace = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .or(probe_grace)
            .unwrap_or_else(|| self.pod_grace_seconds());
        let stop = crate::plan::stop(&self.view(), [i], grace_period(grace));
        if let Some(failure) = self.stop(&stop, reason).await {
            warn!(pod = %self.pod_ref, "kill container: {failure}");
        }
    }

    /// Kills the containers of `stop`, all against one deadline: every kill
    /// starts at once (Killing event, preStop), but a turn's stop signal waits
    /// until the containers of the turns before it have exited.
    ///
    /// Gives up when the runtime does not answer a kill in time (the pod's
    /// shim is wedged), returning the failure as the kubelet words it.
    pub(crate) async fn stop(&mut self, stop: &Stop, reason: KillReason) -> Option<String> {
        let Stop {
            turns,
            grace,
            pre_stop,
        } = stop;
        let grace = *grace;
        let (deadline_tx, deadline_rx) = watch::channel(Instant::now() + grace);
        let (unanswered_tx, mut unanswered) = mpsc::unbounded_channel();
        let (turn_tx, turn_rx) = watch::channel(0);
        // A clone, so that a request seen here is still news to the worker
        // loop when this kill happened inside a sync.
        let mut term_rx = self.term_rx.clone();
        // Pod termination: readiness is still probed and can turn false.
        let deleting = reason == KillReason::PodDeleted;
        // A deletion's shorter grace also shortens a single container's kill;
        // the worker's own whole-pod stops keep theirs.
        let follows_requests = deleting || !reason.whole_pod();
        let mut kills = JoinSet::new();
        for (turn, containers) in turns.iter().enumerate() {
            for &i in containers {
                let timing = KillTiming {
                    deadline: deadline_rx.clone(),
                    graceful: !grace.is_zero(),
                    turn,
                    turns: turn_rx.clone(),
                };
                let pre_stop = pre_stop.contains(&i);
                if let Some(kill) = self.kill(i, reason, pre_stop, timing, unanswered_tx.clone()) {
                    kills.spawn(kill);
                }
            }
        }
        for (turn, containers) in turns.iter().enumerate() {
            turn_tx.send_replace(turn);
            while containers.iter().any(|&i| self.records[i].is_running()) {
                // A single kill happens inside a sync, which publishes after.
                if reason.whole_pod() {
                    self.publish(false);
                }
                tokio::select! {
                    // Dropping the kills stops those still under way.
                    Some(failure) = unanswered.recv() => return Some(failure),
                    Some(note) = self.exits_rx.recv() => self.on_exit(*note),
                    Some(update) = self.probe_rx.recv(), if deleting => self.on_readiness(*update),
                    Ok(()) = term_rx.changed(), if follows_requests => {
                        if let Some(t) = *term_rx.borrow_and_update() {
                            let shorter = Instant::now() + t.grace;
                            deadline_tx.send_if_modified(|d| {
                                let earlier = shorter < *d;
                                if earlier {
                                    *d = shorter;
                                }
                                earlier
                            });
                        }
                    }
                }
            }
        }
        while kills.join_next().await.is_some() {}
        None
    }

    /// The kill of container `i` if it runs: its Killing event, then preStop
    /// (if `pre_stop`), the stop signal and SIGKILL at the deadline.
    fn kill(
        &self,
        i: usize,
        reason: KillReason,
        pre_stop: bool,
        timing: KillTiming,
        unanswered: mpsc::UnboundedSender<String>,
    ) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        let current = self.records[i].current.as_ref()?;
        if !current.is_running() {
            return None;
        }
        // lifecycle.stopSignal, else the image's STOPSIGNAL, else SIGTERM.
        let signal = self
            .spec_container(i)
            .and_then(|c| c.lifecycle.as_ref())
            .and_then(|l| l.stop_signal.as_deref())
            .or(current.image.config.stop_signal.as_deref())
            .and_then(Signal::parse)
            .unwrap_or(Signal::TERM);
        let name = self.records[i].name.clone();
        let restarts = restarts_after_kill(self.spec_container(i), self.spec());
        let message = reason.message(&name, restarts);
        let field_path = self.field_path(i);
        self.event(
            EventType::Normal,
            crate::reasons::KILLING,
            field_path.clone(),
            message.clone(),
        );
        self.step(Some(&name), TimelineStep::Killing, message);
        let task = KillTask {
            rt: self.rt.clone(),
            id: current.id.clone(),
            name,
            field_path,
            signal,
            pre_stop: pre_stop.then(|| self.hook(i, HookKind::PreStop)).flatten(),
            report: self.report.clone(),
            unanswered,
        };
        Some(task.run(timing))
    }
}

/// When a kill may act: the shared deadline (it can only come closer), and
/// the turn this container's stop signal waits for (sidecars).
struct KillTiming {
    deadline: watch::Receiver<Instant>,
    /// False for a zero grace period: SIGKILL at once, no preStop.
    graceful: bool,
    turn: usize,
    turns: watch::Receiver<usize>,
}

/// One container's kill, detached from the worker (the kubelet's `killContainer`).
struct KillTask<R, S> {
    rt: Arc<R>,
    id: ContainerId,
    name: String,
    field_path: Option<String>,
    signal: Signal,
    pre_stop: Option<Hook>,
    report: Reporter<S>,
    /// Where a signal the runtime did not answer in time is reported.
    unanswered: mpsc::UnboundedSender<String>,
}

impl<R: ContainerRuntime, S: PodSink> KillTask<R, S> {
    /// preStop, then the stop signal once it is this container's turn, then
    /// SIGKILL at the deadline (never sooner than 2 s after the signal).
    async fn run(self, mut timing: KillTiming) {
        let Some(waiter) = self.arm_waiter().await else {
            return;
        };
        tokio::pin!(waiter);
        // A container that already exited by itself gets nothing, no preStop.
        tokio::select! {
            biased;
            _ = &mut waiter => return,
            _ = std::future::ready(()) => {}
        }
        if timing.graceful {
            if let Some(hook) = &self.pre_stop {
                self.pre_stop(hook, &mut timing.deadline).await;
            }
            if timing.turn > 0 {
                tokio::select! {
                    _ = &mut waiter => return,
                    _ = async { let _ = timing.turns.wait_for(|t| *t >= timing.turn).await; } => {}
                    _ = deadline_passes(&mut timing.deadline, None) => {}
                }
            }
            if let Err(e) = self.rt.signal_container(&self.id, self.signal).await {
                if self.unanswered(&e) {
                    return;
                }
                warn!(container = %self.id, "send {}: {e}", self.signal.name());
            }
            self.step(TimelineStep::StopSignal, self.signal.name());
            let floor = Instant::now() + MINIMUM_GRACE;
            tokio::select! {
                _ = &mut waiter => return,
                _ = deadline_passes(&mut timing.deadline, Some(floor)) => {}
            }
        }
        debug!(container = %self.id, "grace period over: SIGKILL");
        // Sent until the runtime takes it: a kill lost while containerd
        // restarts would leave the pod terminating for ever.
        loop {
            match self.rt.signal_container(&self.id, Signal::KILL).await {
                Err(e) if e.kind == RuntimeErrorKind::Unavailable => {
                    debug!(container = %self.id, "SIGKILL not delivered, retrying: {e}");
                    tokio::select! {
                        _ = &mut waiter => return,
                        _ = tokio::time::sleep(RUNTIME_RETRY) => {}
                    }
                }
                Err(e) if self.unanswered(&e) => return,
                Err(e) => {
                    warn!(container = %self.id, "send SIGKILL: {e}");
                    break;
                }
                Ok(()) => break,
            }
        }
        self.step(TimelineStep::Sigkill, String::new());
    }

    /// Reports a signal the runtime did not answer in time, as the kubelet's
    /// KillContainer failure (`PodSyncResult.Error`); true if it was one.
    fn unanswered(&self, e: &RuntimeError) -> bool {
        if e.kind != RuntimeErrorKind::Timeout {
            return false;
        }
        let _ = self.unanswered.send(format!(
            "failed to \"KillContainer\" for \"{}\" with KillContainerError: \"{}\"",
            self.name, e.message
        ));
        true
    }

    /// The container's exit waiter; `None` once the container is gone. Armed
    /// again while the runtime is away (a containerd restart).
    async fn arm_waiter(&self) -> Option<berth_runtime::ExitWaiter> {
        loop {
            match self.rt.wait_container(&self.id).await {
                Ok(waiter) => return Some(waiter),
                Err(e) if e.kind == RuntimeErrorKind::Unavailable => {
                    debug!(container = %self.id, "cannot wait for the container yet: {e}");
                    tokio::time::sleep(RUNTIME_RETRY).await;
                }
                Err(_) => return None,
            }
        }
    }

    /// Runs the preStop hook until it returns or the deadline passes (the
    /// hook is then abandoned, as the kubelet stops waiting for it).
    async fn pre_stop(&self, hook: &Hook, deadline: &mut watch::Receiver<Instant>) {
        self.step(TimelineStep::PreStopStarted, hook.describe());
        let outcome = tokio::select! {
            result = hook.run(&*self.rt, &self.id) => Some(result),
            _ = deadline_passes(deadline, None) => None,
        };
        match outcome {
            Some(Ok(())) => self.step(TimelineStep::PreStopSucceeded, String::new()),
            Some(Err(message)) => {
                self.report.event(
                    EventType::Warning,
                    crate::reasons::FAILED_PRE_STOP_HOOK,
                    self.field_path.clone(),
                    message.clone(),
                );
                self.step(TimelineStep::PreStopFailed, message);
            }
            None => {
                debug!(container = %self.id, "preStop hook did not finish within the grace period");
                self.step(TimelineStep::PreStopTimedOut, String::new());
            }
        }
    }

    fn step(&self, step: TimelineStep, detail: String) {
        self.report.step(Some(&self.name), step, detail);
    }
}

/// Resolves when the deadline (which may move closer meanwhile) has passed,
/// but never before `floor`.
async fn deadline_passes(deadline: &mut watch::Receiver<Instant>, floor: Option<Instant>) {
    loop {
        let at = *deadline.borrow_and_update();
        let at = floor.map_or(at, |f| at.max(f));
        tokio::select! {
            _ = tokio::time::sleep_until(at) => return,
            changed = deadline.changed() => {
                if changed.is_err() {
                    tokio::time::sleep_until(at).await;
                    return;
                }
            }
        }
    }
}
