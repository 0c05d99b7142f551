//! What a pod's records say about the node's metrics: its timeline steps,
//! events and status changes become observations. Pure; one `PodMarks` per
//! pod keeps the open steps (a create waits for its start).

use std::collections::BTreeMap;

use berth_pod::{PodEvent, TimelineEntry, TimelineStep};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ContainerStatus, PodStatus};

/// A container's kind, as the kubelet's `container_type` label names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContainerType {
    Container,
    InitContainer,
    EphemeralContainer,
}

impl ContainerType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Container => "container",
            Self::InitContainer => "init_container",
            Self::EphemeralContainer => "ephemeral_container",
        }
    }

    /// From an event's `fieldPath` (`spec.initContainers{x}`…) and the
    /// container's name.
    pub fn of_field_path(field_path: &str) -> Option<(Self, &str)> {
        let (kind, rest) = field_path.split_once('{')?;
        let name = rest.strip_suffix('}')?;
        let kind = match kind {
            "spec.containers" => Self::Container,
            "spec.initContainers" => Self::InitContainer,
            "spec.ephemeralContainers" => Self::EphemeralContainer,
            _ => return None,
        };
        Some((kind, name))
    }
}

/// The containers `new` shows terminated that `old` did not (or did not
/// have): their kind, exit code and reason, as the kubelet's status manager
/// counts them in `kubelet_terminated_containers_total`, once per
/// termination.
pub fn newly_terminated(
    old: Option<&PodStatus>,
    new: &PodStatus,
) -> Vec<(ContainerType, i32, String)> {
    let terminated = |c: &ContainerStatus| c.state.as_ref().and_then(|s| s.terminated.clone());
    let mut out = Vec::new();
    for ((kind, new), (_, old)) in by_kind(Some(new)).into_iter().zip(by_kind(old)) {
        for container in new.into_iter().flatten() {
            let Some(now) = terminated(container) else {
                continue;
            };
            let before = old
                .into_iter()
                .flatten()
                .find(|c| c.name == container.name)
                .and_then(terminated);
            if before.is_none() {
                out.push((kind, now.exit_code, now.reason.unwrap_or_default()));
            }
        }
    }
    out
}

/// A status's container lists, by kind.
fn by_kind(status: Option<&PodStatus>) -> [(ContainerType, Option<&Vec<ContainerStatus>>); 3] {
    [
        (
            ContainerType::InitContainer,
            status.and_then(|s| s.init_container_statuses.as_ref()),
        ),
        (
            ContainerType::Container,
            status.and_then(|s| s.container_statuses.as_ref()),
        ),
        (
            ContainerType::EphemeralContainer,
            status.and_then(|s| s.ephemeral_container_statuses.as_ref()),
        ),
    ]
}

/// berth's own pod start steps (`berth_*_duration_seconds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    Sandbox,
    Network,
    Create,
    Start,
    PostStart,
}

/// Something to count or observe.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    Step(Step, f64),
    StartedContainer(ContainerType),
    /// A start that failed after the container was created. The gRPC code
    /// behind it is not kept in berth's records: `Unknown`, as a CRI error
    /// without a status.
    StartError(ContainerType),
    ImagePull {
        seconds: f64,
        size_bytes: u64,
    },
    /// From first seen to Running (`kubelet_pod_start_duration_seconds`),
    /// and from creation to Running less the image pulls (the SLI).
    PodStart {
        seconds: f64,
        sli_seconds: f64,
    },
    /// The worker's first pass, from first seen to its first status.
    FirstSync(f64),
}

#[derive(Debug, Default)]
struct ContainerMarks {
    image_ready: Option<Timestamp>,
    created: Option<Timestamp>,
    post_start: Option<Timestamp>,
}

/// One pod's open steps.
#[derive(Debug)]
pub struct PodMarks {
    seen: Timestamp,
    synced: bool,
    running: bool,
    sandbox_creating: Option<Timestamp>,
    pulling_seconds: f64,
    containers: BTreeMap<String, ContainerMarks>,
}

fn seconds(from: Option<Timestamp>, to: Timestamp) -> Option<f64> {
    let from = from?;
    Some((to - from).total(jiff::Unit::Second).ok()?.max(0.0))
}

impl PodMarks {
    pub fn new(seen: Timestamp) -> Self {
        Self {
            seen,
            synced: false,
            running: false,
            sandbox_creating: None,
            pulling_seconds: 0.0,
            containers: BTreeMap::new(),
        }
    }

    /// A timeline step; `kind` is the entry's container's kind.
    pub fn timeline(
        &mut self,
        entry: &TimelineEntry,
        kind: Option<ContainerType>,
    ) -> Vec<Observation> {
        let at = entry.at;
        let step = |step, from| seconds(from, at).map(|s| Observation::Step(step, s));
        match entry.step {
            TimelineStep::SandboxCreating => {
                self.sandbox_creating = Some(at);
                Vec::new()
            }
            TimelineStep::NetworkReady => step(Step::Network, self.sandbox_creating)
                .into_iter()
                .collect(),
            // Not taken: the network may be ready after the sandbox is made.
            TimelineStep::SandboxCreated => step(Step::Sandbox, self.sandbox_creating)
                .into_iter()
                .collect(),
            _ => {
                let Some(name) = entry.container.as_deref() else {
                    return Vec::new();
                };
                let marks = self.containers.entry(name.to_string()).or_default();
                match entry.step {
                    TimelineStep::ImageReady => {
                        marks.image_ready = Some(at);
                        Vec::new()
                    }
                    TimelineStep::ContainerCreated => {
                        marks.created = Some(at);
                        let created = step(Step::Create, marks.image_ready.take());
                        let started = kind.map(Observation::StartedContainer);
                        created.into_iter().chain(started).collect()
                    }
                    TimelineStep::ContainerStarted => step(Step::Start, marks.created.take())
                        .into_iter()
                        .collect(),
                    TimelineStep::PostStartStarted => {
                        marks.post_start = Some(at);
                        Vec::new()
                    }
                    TimelineStep::PostStartSucceeded | TimelineStep::PostStartFailed => {
                        step(Step::PostStart, marks.post_start.take())
                            .into_iter()
                            .collect()
                    }
                    _ => Vec::new(),
                }
            }
        }
    }

    /// An event about the pod.
    pub fn event(&mut self, event: &PodEvent) -> Vec<Observation> {
        match event.reason {
            berth_pod::reasons::PULLED => match parse_pulled(&event.message) {
                Some((seconds, size_bytes)) => {
                    self.pulling_seconds += seconds;
                    vec![Observation::ImagePull {
                        seconds,
                        size_bytes,
                    }]
                }
                None => Vec::new(),
            },
            berth_pod::reasons::FAILED => {
                let Some((kind, name)) = event
                    .field_path
                    .as_deref()
                    .and_then(ContainerType::of_field_path)
                else {
                    return Vec::new();
                };
                // Created and not started: this failure is the start's.
                let created = self
                    .containers
                    .get_mut(name)
                    .and_then(|marks| marks.created.take());
                created
                    .map(|_| Observation::StartError(kind))
                    .into_iter()
                    .collect()
            }
            _ => Vec::new(),
        }
    }

    /// The pod's phase as its worker published it, at `now`; `created` is
    /// the pod's creationTimestamp.
    pub fn status(&mut self, phase: &str, created: Timestamp, now: Timestamp) -> Vec<Observation> {
        let mut out = Vec::new();
        if !self.synced {
            self.synced = true;
            out.extend(seconds(Some(self.seen), now).map(Observation::FirstSync));
        }
        if phase == "Running" && !self.running {
            self.running = true;
            if let (Some(seconds), Some(since_created)) =
                (seconds(Some(self.seen), now), seconds(Some(created), now))
            {
                out.push(Observation::PodStart {
                    seconds,
                    sli_seconds: (since_created - self.pulling_seconds).max(0.0),
                });
            }
        }
        out
    }
}

/// The pull time and image size of a `Pulled` event: `Successfully pulled
/// image "x" in 1.2s (1.5s including waiting). Image size: 123 bytes.`
fn parse_pulled(message: &str) -> Option<(f64, u64)> {
    let rest = message.strip_prefix("Successfully pulled image ")?;
    let (_, rest) = rest.rsplit_once("\" in ")?;
    let (duration, rest) = rest.split_once(' ')?;
    let size = rest.split_once("Image size: ")?.1.strip_suffix(" bytes.")?;
    Some((go_duration_seconds(duration)?, size.parse().ok()?))
}

/// Go's `time.Duration` text (`1m2.5s`, `512ms`, `3µs`) in seconds.
fn go_duration_seconds(text: &str) -> Option<f64> {
    const UNITS: [(&str, f64); 7] = [
        ("ns", 1e-9),
        ("µs", 1e-6),
        ("us", 1e-6),
        ("ms", 1e-3),
        ("s", 1.0),
        ("m", 60.0),
        ("h", 3600.0),
    ];
    if text == "0s" {
        return Some(0.0);
    }
    let mut rest = text;
    let mut total = 0.0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|&n| n > 0)?;
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, scale) = UNITS
            .iter()
            .filter(|(unit, _)| rest.starts_with(unit))
            .max_by_key(|(unit, _)| unit.len())?;
        total += value * scale;
        rest = &rest[unit.len()..];
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use berth_pod::EventType;
    use berth_runtime::PodRef;

    use super::*;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millisecond(1_700_000_000_000 + ms).unwrap()
    }

    fn entry(ms: i64, container: Option<&str>, step: TimelineStep) -> TimelineEntry {
        TimelineEntry {
            at: at(ms),
            container: container.map(str::to_string),
            step,
            detail: String::new(),
        }
    }

    fn event(reason: &'static str, field_path: &str, message: &str) -> PodEvent {
        PodEvent {
            pod: PodRef {
                uid: "u".into(),
                namespace: "default".into(),
                name: "p".into(),
            },
            field_path: Some(field_path.into()),
            event_type: EventType::Normal,
            reason,
            message: message.into(),
            at: at(0),
        }
    }

    #[test]
    fn a_start_gives_each_step_its_time() {
        let mut marks = PodMarks::new(at(0));
        let main = Some("main");
        let kind = Some(ContainerType::Container);
        let mut seen = Vec::new();
        for (ms, container, step) in [
            // The network is set up while the container is created.
            (10, None, TimelineStep::SandboxCreating),
            (60, None, TimelineStep::SandboxCreated),
            (70, main, TimelineStep::ImageReady),
            (90, main, TimelineStep::ContainerCreated),
            (100, None, TimelineStep::NetworkReady),
            (120, main, TimelineStep::ContainerStarted),
            (125, main, TimelineStep::PostStartStarted),
            (150, main, TimelineStep::PostStartSucceeded),
        ] {
            seen.extend(marks.timeline(&entry(ms, container, step), kind));
        }
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        let steps: Vec<(Step, f64)> = seen
            .iter()
            .filter_map(|o| match o {
                Observation::Step(step, s) => Some((*step, *s)),
                _ => None,
            })
            .collect();
        let want = [
            (Step::Sandbox, 0.050),
            (Step::Create, 0.020),
            (Step::Network, 0.090),
            (Step::Start, 0.030),
            (Step::PostStart, 0.025),
        ];
        assert_eq!(steps.len(), want.len(), "{seen:?}");
        for ((step, s), (want_step, want_s)) in steps.iter().zip(want) {
            assert_eq!(*step, want_step);
            assert!(close(*s, want_s), "{step:?}: {s} != {want_s}");
        }
        assert!(seen.contains(&Observation::StartedContainer(ContainerType::Container)));
    }

    #[test]
    fn a_failure_after_create_is_a_start_error_and_a_pull_failure_is_not() {
        let mut marks = PodMarks::new(at(0));
        let path = "spec.initContainers{init}";
        assert!(marks
            .event(&event("Failed", path, "Error: ErrImagePull"))
            .is_empty());
        let kind = Some(ContainerType::InitContainer);
        marks.timeline(
            &entry(5, Some("init"), TimelineStep::ContainerCreated),
            kind,
        );
        assert_eq!(
            marks.event(&event("Failed", path, "Error: exec: not found")),
            vec![Observation::StartError(ContainerType::InitContainer)]
        );
        // Counted once.
        assert!(marks
            .event(&event("Failed", path, "Error: again"))
            .is_empty());
    }

    #[test]
    fn running_once_observes_the_start_less_the_pulls() {
        let mut marks = PodMarks::new(at(100));
        let pulled = event(
            "Pulled",
            "spec.containers{main}",
            "Successfully pulled image \"r/busybox:1\" in 1.5s (2s including waiting). Image size: 1234 bytes.",
        );
        assert_eq!(
            marks.event(&pulled),
            vec![Observation::ImagePull {
                seconds: 1.5,
                size_bytes: 1234
            }]
        );
        assert_eq!(
            marks.status("Pending", at(0), at(600)),
            vec![Observation::FirstSync(0.5)]
        );
        assert_eq!(
            marks.status("Running", at(0), at(2500)),
            vec![Observation::PodStart {
                seconds: 2.4,
                sli_seconds: 1.0
            }]
        );
        assert!(marks.status("Running", at(0), at(3000)).is_empty());
    }

    #[test]
    fn each_termination_counts_once_with_its_kind_exit_code_and_reason() {
        use k8s_openapi::api::core::v1::{ContainerState, ContainerStateTerminated};
        let status = |exit: Option<i32>| {
            let state = |exit: Option<i32>| ContainerState {
                terminated: exit.map(|exit_code| ContainerStateTerminated {
                    exit_code,
                    reason: Some(if exit_code == 0 { "Completed" } else { "Error" }.into()),
                    ..Default::default()
                }),
                ..Default::default()
            };
            PodStatus {
                init_container_statuses: Some(vec![ContainerStatus {
                    name: "init".into(),
                    state: Some(state(Some(0))),
                    ..Default::default()
                }]),
                container_statuses: Some(vec![ContainerStatus {
                    name: "app".into(),
                    state: Some(state(exit)),
                    ..Default::default()
                }]),
                ..Default::default()
            }
        };
        let running = status(None);
        assert_eq!(
            newly_terminated(None, &running),
            vec![(ContainerType::InitContainer, 0, "Completed".into())]
        );
        assert_eq!(newly_terminated(Some(&running), &running), vec![]);
        let crashed = status(Some(139));
        assert_eq!(
            newly_terminated(Some(&running), &crashed),
            vec![(ContainerType::Container, 139, "Error".into())]
        );
        assert_eq!(newly_terminated(Some(&crashed), &crashed), vec![]);
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration_seconds("1.5s"), Some(1.5));
        assert_eq!(go_duration_seconds("512ms"), Some(0.512));
        assert_eq!(go_duration_seconds("1m2.5s"), Some(62.5));
        assert_eq!(go_duration_seconds("0s"), Some(0.0));
        assert_eq!(go_duration_seconds("3µs"), Some(3e-6));
        assert_eq!(go_duration_seconds("soon"), None);
        assert_eq!(go_duration_seconds("5"), None);
    }
}
