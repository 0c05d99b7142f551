//! The kubelet's result counting (docs/kubelet-semantics.md §8.4): consecutive
//! identical results are counted, and a verdict is published only once the
//! run reaches `successThreshold` or `failureThreshold`.

use super::{ProbeKind, Verdict};

/// One prober's counter. Pure: fed results, it says when the verdict changes.
#[derive(Debug, Clone)]
pub(crate) struct Threshold {
    success_threshold: u32,
    failure_threshold: u32,
    last: Option<bool>,
    run: u32,
    verdict: Option<Verdict>,
}

impl Threshold {
    /// The kubelet's initial values: readiness Failure (a container starts
    /// not ready), liveness Success, startup Unknown.
    pub(crate) fn new(kind: ProbeKind, success_threshold: i32, failure_threshold: i32) -> Self {
        let verdict = match kind {
            ProbeKind::Readiness => Some(Verdict::Failure),
            ProbeKind::Liveness => Some(Verdict::Success),
            ProbeKind::Startup => None,
        };
        Self {
            success_threshold: u32::try_from(success_threshold).unwrap_or(1).max(1),
            failure_threshold: u32::try_from(failure_threshold).unwrap_or(3).max(1),
            last: None,
            run: 0,
            verdict,
        }
    }

    /// Counts one result; returns the new verdict when it changed.
    pub(crate) fn record(&mut self, success: bool) -> Option<Verdict> {
        if self.last == Some(success) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(success);
            self.run = 1;
        }
        let (needed, verdict) = if success {
            (self.success_threshold, Verdict::Success)
        } else {
            (self.failure_threshold, Verdict::Failure)
        };
        if self.run < needed || self.verdict == Some(verdict) {
            return None;
        }
        self.verdict = Some(verdict);
        Some(verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ProbeKind::*;
    use Verdict::{Failure as F, Success as S};

    /// (kind, successThreshold, failureThreshold, results, verdict changes
    /// after each result).
    type Case = (ProbeKind, i32, i32, &'static str, Vec<Option<Verdict>>);

    #[test]
    fn verdicts_follow_the_thresholds() {
        let cases: Vec<Case> = vec![
            // Readiness starts Failure: one success is enough by default.
            (Readiness, 1, 3, "+", vec![Some(S)]),
            (Readiness, 1, 3, "-", vec![None]),
            (Readiness, 2, 3, "+-++", vec![None, None, None, Some(S)]),
            (
                Readiness,
                1,
                3,
                "+--+---",
                vec![Some(S), None, None, None, None, None, Some(F)],
            ),
            (Readiness, 1, 1, "+-+", vec![Some(S), Some(F), Some(S)]),
            // Liveness starts Success: only failures report.
            (Liveness, 1, 3, "++", vec![None, None]),
            (
                Liveness,
                1,
                3,
                "--+---",
                vec![None, None, None, None, None, Some(F)],
            ),
            (Liveness, 1, 1, "-+", vec![Some(F), Some(S)]),
            // Startup starts Unknown: its first published result reports.
            (Startup, 1, 3, "+", vec![Some(S)]),
            (Startup, 1, 2, "-+", vec![None, Some(S)]),
            (Startup, 1, 2, "--", vec![None, Some(F)]),
            // Nonsense thresholds count as 1.
            (Liveness, 0, 0, "-", vec![Some(F)]),
        ];
        for (kind, success, failure, results, expected) in cases {
            let mut t = Threshold::new(kind, success, failure);
            let got: Vec<_> = results.chars().map(|c| t.record(c == '+')).collect();
            assert_eq!(
                got, expected,
                "{kind:?} success={success} failure={failure} results={results}"
            );
        }
    }
}
