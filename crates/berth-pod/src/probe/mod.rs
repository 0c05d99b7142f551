//! Container probes (docs/kubelet-semantics.md §8): startup, liveness and readiness.
//! Each container instance gets fresh probers once it has started (after
//! postStart); liveness and readiness wait for the startup probe. Probers
//! report verdict changes to the worker, which turns readiness into `ready`
//! and kills a container whose liveness or startup probe failed.

mod handler;
mod prober;
mod threshold;

use std::collections::HashMap;
use std::time::Duration;

use berth_runtime::{ContainerId, ContainerRuntime};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Probe};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tracing::debug;

use crate::plan::KillReason;
use crate::record::InstanceState;
use crate::sink::PodSink;
use crate::worker::Worker;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ProbeKind {
    Startup,
    Liveness,
    Readiness,
}

impl ProbeKind {
    /// The word the kubelet's messages use.
    pub(crate) fn title(self) -> &'static str {
        match self {
            Self::Startup => "Startup",
            Self::Liveness => "Liveness",
            Self::Readiness => "Readiness",
        }
    }

    pub(crate) fn spec(self, c: &Container) -> Option<&Probe> {
        match self {
            Self::Startup => c.startup_probe.as_ref(),
            Self::Liveness => c.liveness_probe.as_ref(),
            Self::Readiness => c.readiness_probe.as_ref(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Success,
    Failure,
}

/// A prober's verdict changed.
#[derive(Debug)]
pub(crate) struct ProbeUpdate {
    pub id: ContainerId,
    pub kind: ProbeKind,
    pub verdict: Verdict,
}

/// After an agent restart every adopted container's probers start at once;
/// as the kubelet does, their first attempts are spread by a random delay,
/// here at most this long (the kubelet allows a whole period).
const ADOPTION_JITTER: Duration = Duration::from_secs(1);

/// The probers of one running container instance and what they concluded.
#[derive(Debug)]
pub(crate) struct InstanceProbes {
    /// When the container started (for initialDelaySeconds).
    started_at: Instant,
    /// The instance was adopted at agent start: spread the first attempts.
    adopted: bool,
    /// The startup probe succeeded (or there is none).
    started: bool,
    /// The readiness verdict is Success.
    ready: bool,
    tasks: HashMap<ProbeKind, AbortHandle>,
}

impl InstanceProbes {
    fn stop(&mut self, kind: ProbeKind) {
        if let Some(task) = self.tasks.remove(&kind) {
            task.abort();
        }
    }
}

impl Drop for InstanceProbes {
    fn drop(&mut self) {
        for task in self.tasks.values() {
            task.abort();
        }
    }
}

fn seconds(value: Option<i32>, default: u64) -> Duration {
    Duration::from_secs(value.and_then(|v| u64::try_from(v).ok()).unwrap_or(default))
}

impl<R: ContainerRuntime, S: PodSink> Worker<R, S> {
    /// Starts the probers of container `i`'s running instance, right after
    /// its start (and postStart), or when the agent adopts it: the startup
    /// probe first, liveness and readiness only once it succeeded.
    pub(crate) fn start_probers(&mut self, i: usize, adopted: bool) {
        let Some((id, started_at)) = self.records[i]
            .current
            .as_ref()
            .and_then(|c| match c.state {
                InstanceState::Running { started_at } => Some((c.id.clone(), started_at)),
                _ => None,
            })
        else {
            return;
        };
        // initialDelaySeconds counts from the container's start, which for
        // an adopted one lies before the agent's (docs/kubelet-semantics.md §8.3).
        let started_at = if adopted {
            let age = Timestamp::now().duration_since(started_at);
            let age = Duration::try_from(age).unwrap_or_default();
            Instant::now().checked_sub(age).unwrap_or_else(Instant::now)
        } else {
            Instant::now()
        };
        if self.records[i].kind == berth_runtime::ContainerKind::Init {
            return;
        }
        let has_startup = self
            .spec_container(i)
            .is_some_and(|c| c.startup_probe.is_some());
        self.probes.insert(
            id.clone(),
            InstanceProbes {
                started_at,
                adopted,
                started: !has_startup,
                ready: false,
                tasks: HashMap::new(),
            },
        );
        if has_startup {
            self.spawn_prober(i, &id, ProbeKind::Startup);
        } else {
            self.spawn_prober(i, &id, ProbeKind::Liveness);
            self.spawn_prober(i, &id, ProbeKind::Readiness);
        }
    }

    fn spawn_prober(&mut self, i: usize, id: &ContainerId, kind: ProbeKind) {
        let Some(container) = self.spec_container(i) else {
            return;
        };
        let Some(probe) = kind.spec(container) else {
            return;
        };
        let Some(entry) = self.probes.get(id) else {
            return;
        };
        let period = seconds(probe.period_seconds, 10).max(Duration::from_secs(1));
        let jitter = if entry.adopted {
            rand::random_range(Duration::ZERO..period.min(ADOPTION_JITTER))
        } else {
            Duration::ZERO
        };
        let handler = handler::Handler::new(
            probe,
            container.ports.as_deref().unwrap_or_default(),
            self.pod_ip(),
        );
        let prober = prober::Prober {
            rt: self.rt.clone(),
            id: id.clone(),
            container: container.name.clone(),
            field_path: self.field_path(i),
            kind,
            handler,
            threshold: threshold::Threshold::new(
                kind,
                probe.success_threshold.unwrap_or(1),
                probe.failure_threshold.unwrap_or(3),
            ),
            // Never before initialDelaySeconds after the container started.
            first_at: (entry.started_at + seconds(probe.initial_delay_seconds, 0))
                .max(Instant::now() + jitter),
            period,
            timeout: seconds(probe.timeout_seconds, 1).max(Duration::from_secs(1)),
            report: self.report.clone(),
            tx: self.probe_tx.clone(),
        };
        let task = tokio::spawn(prober.run()).abort_handle();
        if let Some(entry) = self.probes.get_mut(id) {
            entry.tasks.insert(kind, task);
        }
    }

    /// Stops every prober of the instance `id` (it exited).
    pub(crate) fn stop_probers(&mut self, id: &ContainerId) {
        self.probes.remove(id);
    }

    /// Termination began: liveness and startup probing ends, readiness goes
    /// on until the containers are stopped (docs/kubelet-semantics.md §8.7).
    pub(crate) fn stop_liveness_probers(&mut self) {
        for entry in self.probes.values_mut() {
            entry.stop(ProbeKind::Liveness);
            entry.stop(ProbeKind::Startup);
        }
    }

    /// `(started, ready)` as the probes say, for the running instance of
    /// container `i` (docs/kubelet-semantics.md §8.8); the status ANDs both with "running".
    pub(crate) fn probe_status(&self, i: usize) -> (bool, bool) {
        let spec = self.spec_container(i);
        let has_startup = spec.is_some_and(|c| c.startup_probe.is_some());
        let has_readiness = spec.is_some_and(|c| c.readiness_probe.is_some());
        let entry = self.records[i]
            .current
            .as_ref()
            .and_then(|c| self.probes.get(&c.id));
        let started = !has_startup || entry.is_some_and(|e| e.started);
        let ready = !has_readiness || entry.is_some_and(|e| e.ready);
        (started, started && ready)
    }

    /// While the pod terminates only readiness counts: liveness and startup
    /// probing has ended (docs/kubelet-semantics.md §8.7).
    pub(crate) fn on_readiness(&mut self, update: ProbeUpdate) {
        if update.kind == ProbeKind::Readiness {
            if let Some(entry) = self.probes.get_mut(&update.id) {
                entry.ready = update.verdict == Verdict::Success;
            }
        }
    }

    /// Applies a prober's verdict change: readiness flips `ready`, a startup
    /// success lets liveness and readiness begin, a liveness or startup
    /// failure has the next plan kill the container (restartPolicy then
    /// decides).
    pub(crate) fn on_probe(&mut self, update: ProbeUpdate) {
        let Some(i) = self.records.iter().position(|r| {
            r.current
                .as_ref()
                .is_some_and(|c| c.id == update.id && c.is_running())
        }) else {
            return; // a stale verdict about an instance that is gone
        };
        let Some(entry) = self.probes.get_mut(&update.id) else {
            return;
        };
        debug!(pod = %self.pod_ref, container = %self.records[i].name, kind = update.kind.title(), verdict = ?update.verdict, "probe verdict");
        match (update.kind, update.verdict) {
            (ProbeKind::Readiness, verdict) => entry.ready = verdict == Verdict::Success,
            (ProbeKind::Startup, Verdict::Success) => {
                entry.started = true;
                self.spawn_prober(i, &update.id, ProbeKind::Liveness);
                self.spawn_prober(i, &update.id, ProbeKind::Readiness);
            }
            (kind, Verdict::Failure) => {
                let reason = match kind {
                    ProbeKind::Startup => KillReason::Startup,
                    _ => KillReason::Liveness,
                };
                self.records[i].kill_pending = Some(reason);
            }
            (ProbeKind::Liveness, Verdict::Success) => {}
        }
    }
}
