//! One prober task per (container instance, probe kind): probes at its
//! period without pile-up, reports every failing attempt as an `Unhealthy`
//! event and sends the worker verdict changes only (docs/kubelet-semantics.md §8.3).

use std::sync::Arc;
use std::time::Duration;

use berth_runtime::{ContainerId, ContainerRuntime};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::debug;

use super::handler::{Handler, Outcome};
use super::threshold::Threshold;
use super::{ProbeKind, ProbeUpdate, Verdict};
use crate::reasons;
use crate::sink::{EventType, PodSink, ProbeResult};
use crate::timeline::{Reporter, TimelineStep};

/// Runs of one attempt while it errors.
const MAX_RUNS: usize = 3;

pub(crate) struct Prober<R, S> {
    pub rt: Arc<R>,
    pub id: ContainerId,
    pub container: String,
    pub field_path: Option<String>,
    pub kind: ProbeKind,
    pub handler: Handler,
    pub threshold: Threshold,
    /// The first attempt (container start + initialDelaySeconds).
    pub first_at: Instant,
    pub period: Duration,
    pub timeout: Duration,
    pub report: Reporter<S>,
    pub tx: mpsc::UnboundedSender<Box<ProbeUpdate>>,
}

impl<R: ContainerRuntime, S: PodSink> Prober<R, S> {
    pub(crate) async fn run(mut self) {
        let mut ticker = tokio::time::interval_at(self.first_at, self.period);
        // A slow attempt delays the next one instead of letting them pile up.
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let began = Instant::now();
            let outcome = self.attempt().await;
            let title = self.kind.title();
            let result = match outcome {
                Outcome::Success | Outcome::Warning(_) => ProbeResult::Successful,
                Outcome::Failure(_) => ProbeResult::Failed,
                Outcome::Error(_) => ProbeResult::Unknown,
            };
            self.report
                .probe(&self.container, title, result, began.elapsed());
            let (success, detail) = match outcome {
                Outcome::Success => (true, String::new()),
                Outcome::Warning(output) => {
                    self.event(
                        reasons::PROBE_WARNING,
                        format!("{title} probe warning: {output}"),
                    );
                    (true, String::new())
                }
                Outcome::Failure(output) => {
                    self.event(
                        reasons::UNHEALTHY,
                        format!("{title} probe failed: {output}"),
                    );
                    (false, output)
                }
                Outcome::Error(e) => {
                    // The kubelet throws an errored attempt away.
                    self.event(
                        reasons::UNHEALTHY,
                        format!("{title} probe errored and resulted in unknown state: {e}"),
                    );
                    continue;
                }
            };
            let Some(verdict) = self.threshold.record(success) else {
                continue;
            };
            debug!(container = %self.id, kind = title, ?verdict, "probe verdict changed");
            let step = match verdict {
                Verdict::Success => TimelineStep::ProbeSucceeded,
                Verdict::Failure => TimelineStep::ProbeFailed,
            };
            let detail = if detail.is_empty() {
                title.to_string()
            } else {
                format!("{title}: {detail}")
            };
            self.report.step(Some(&self.container), step, detail);
            let update = ProbeUpdate {
                id: self.id.clone(),
                kind: self.kind,
                verdict,
            };
            if self.tx.send(Box::new(update)).is_err() {
                return;
            }
            // A failed liveness or a decided startup probe holds until a new
            // instance replaces this one (docs/kubelet-semantics.md §8.4).
            match (self.kind, verdict) {
                (ProbeKind::Startup, _) | (ProbeKind::Liveness, Verdict::Failure) => return,
                _ => {}
            }
        }
    }

    /// One attempt: an errored run (not a failed one) is run again at once,
    /// up to three runs in all, as the kubelet's `maxProbeRetries`.
    async fn attempt(&self) -> Outcome {
        let mut outcome = self.handler.run(&*self.rt, &self.id, self.timeout).await;
        for _ in 1..MAX_RUNS {
            if !matches!(outcome, Outcome::Error(_)) {
                break;
            }
            outcome = self.handler.run(&*self.rt, &self.id, self.timeout).await;
        }
        outcome
    }

    fn event(&self, reason: &'static str, message: String) {
        self.report
            .event(EventType::Warning, reason, self.field_path.clone(), message);
    }
}
