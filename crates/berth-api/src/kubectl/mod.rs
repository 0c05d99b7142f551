//! The columns of `kubectl get pods` (pkg/printers/internalversion printPod,
//! docs/kubelet-semantics.md §5.3): READY, STATUS, RESTARTS, AGE.

mod duration;

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Container, Pod, PodCondition};
use k8s_openapi::jiff::Timestamp;

use crate::pod::{is_restartable_init_container, is_started};

pub use duration::human_duration;

/// READY: `ready/total`, total counting regular containers and sidecars.
pub fn ready_column(pod: &Pod) -> String {
    let row = PodRow::of(pod);
    format!("{}/{}", row.ready, row.total)
}

/// STATUS, exactly as printPod computes it.
pub fn status_column(pod: &Pod) -> String {
    PodRow::of(pod).reason
}

/// RESTARTS: `3`, or `3 (5m ago)` when a restart time is known.
pub fn restarts_column(pod: &Pod, now: Timestamp) -> String {
    let row = PodRow::of(pod);
    match row.last_restart {
        Some(at) if row.restarts != 0 => format!("{} ({} ago)", row.restarts, since(at, now)),
        _ => row.restarts.to_string(),
    }
}

/// AGE: time since `metadata.creationTimestamp`, `<unknown>` without one.
pub fn age_column(pod: &Pod, now: Timestamp) -> String {
    timestamp_since(pod.metadata.creation_timestamp.as_ref().map(|t| t.0), now)
}

/// The columns `-o wide` adds: IP, NODE, NOMINATED NODE, READINESS GATES
/// (`<none>` for an empty one; gates as `met/total`).
pub fn wide_columns(pod: &Pod) -> [String; 4] {
    let status = pod.status.as_ref();
    let ip = status
        .and_then(|s| s.pod_ips.as_ref())
        .and_then(|ips| ips.first())
        .map(|ip| ip.ip.as_str())
        .or_else(|| status.and_then(|s| s.pod_ip.as_deref()));
    let spec = pod.spec.as_ref();
    [
        or_none(ip),
        or_none(spec.and_then(|s| s.node_name.as_deref())),
        or_none(status.and_then(|s| s.nominated_node_name.as_deref())),
        readiness_gates(pod),
    ]
}

fn or_none(value: Option<&str>) -> String {
    match value {
        Some(v) if !v.is_empty() => v.to_string(),
        _ => "<none>".to_string(),
    }
}

/// `true/total` readiness gates, or `<none>`.
fn readiness_gates(pod: &Pod) -> String {
    let gates = pod
        .spec
        .as_ref()
        .and_then(|s| s.readiness_gates.as_deref())
        .unwrap_or_default();
    if gates.is_empty() {
        return "<none>".to_string();
    }
    let conditions = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let met = gates
        .iter()
        .filter(|g| {
            conditions
                .iter()
                .find(|c| c.type_ == g.condition_type)
                .is_some_and(|c| c.status == "True")
        })
        .count();
    format!("{met}/{}", gates.len())
}

/// kubectl's `translateTimestampSince`: `<unknown>` for a missing (zero)
/// time, else the `HumanDuration` of the span up to `now`.
pub fn timestamp_since(at: Option<Timestamp>, now: Timestamp) -> String {
    match at {
        Some(at) => since(at, now),
        None => "<unknown>".into(),
    }
}

fn since(at: Timestamp, now: Timestamp) -> String {
    let nanos = now.as_nanosecond() - at.as_nanosecond();
    duration::human_duration_nanos(nanos)
}

/// What printPod derives from one pod.
struct PodRow {
    ready: usize,
    total: usize,
    reason: String,
    restarts: i64,
    last_restart: Option<Timestamp>,
}

impl PodRow {
    fn of(pod: &Pod) -> PodRow {
        let spec = pod.spec.as_ref();
        let status = pod.status.clone().unwrap_or_default();
        let conditions = status.conditions.as_deref().unwrap_or_default();
        let phase = status.phase.clone().unwrap_or_default();
        let mut reason = match status.reason.as_deref() {
            Some(r) if !r.is_empty() => r.to_string(),
            _ => phase.clone(),
        };
        if conditions
            .iter()
            .any(|c| c.type_ == "PodScheduled" && c.reason.as_deref() == Some("SchedulingGated"))
        {
            reason = "SchedulingGated".into();
        }

        let init_specs: HashMap<&str, &Container> = spec
            .and_then(|s| s.init_containers.as_deref())
            .unwrap_or_default()
            .iter()
            .map(|c| (c.name.as_str(), c))
            .collect();
        let is_sidecar = |name: &str| {
            init_specs
                .get(name)
                .is_some_and(|c| is_restartable_init_container(c))
        };
        let mut total = spec.map_or(0, |s| s.containers.len());
        total += init_specs
            .values()
            .filter(|c| is_restartable_init_container(c))
            .count();

        let mut ready = 0;
        let mut restarts: i64 = 0;
        let mut sidecar_restarts: i64 = 0;
        let mut last_restart: Option<Timestamp> = None;
        let mut last_sidecar_restart: Option<Timestamp> = None;
        let mut initializing = false;
        let init_statuses = status
            .init_container_statuses
            .as_deref()
            .unwrap_or_default();
        let init_count = init_specs.len();
        for (i, c) in init_statuses.iter().enumerate() {
            let sidecar = is_sidecar(&c.name);
            restarts += i64::from(c.restart_count);
            let finished = finished_at(c.last_state.as_ref());
            later(&mut last_restart, finished);
            if sidecar {
                sidecar_restarts += i64::from(c.restart_count);
                later(&mut last_sidecar_restart, finished);
            }
            let state = c.state.clone().unwrap_or_default();
            if state.terminated.as_ref().is_some_and(|t| t.exit_code == 0) {
                continue;
            }
            if sidecar && is_started(c) {
                if c.ready {
                    ready += 1;
                }
                continue;
            }
            initializing = true;
            reason = if let Some(t) = &state.terminated {
                match t.reason.as_deref() {
                    Some(r) if !r.is_empty() => format!("Init:{r}"),
                    _ => match t.signal {
                        Some(sig) if sig != 0 => format!("Init:Signal:{sig}"),
                        _ => format!("Init:ExitCode:{}", t.exit_code),
                    },
                }
            } else {
                match state.waiting.as_ref().and_then(|w| w.reason.as_deref()) {
                    Some(r) if !r.is_empty() && r != "PodInitializing" => format!("Init:{r}"),
                    _ => format!("Init:{i}/{init_count}"),
                }
            };
            break;
        }

        if !initializing || condition_true(conditions, "Initialized") {
            restarts = sidecar_restarts;
            last_restart = last_sidecar_restart;
            let mut has_running = false;
            for c in status
                .container_statuses
                .as_deref()
                .unwrap_or_default()
                .iter()
                .rev()
            {
                restarts += i64::from(c.restart_count);
                later(&mut last_restart, finished_at(c.last_state.as_ref()));
                let state = c.state.clone().unwrap_or_default();
                let waiting_reason = state.waiting.as_ref().and_then(|w| w.reason.clone());
                if let Some(r) = waiting_reason.filter(|r| !r.is_empty()) {
                    reason = r;
                } else if let Some(t) = &state.terminated {
                    reason = match t.reason.as_deref() {
                        Some(r) if !r.is_empty() => r.to_string(),
                        _ => match t.signal {
                            Some(sig) if sig != 0 => format!("Signal:{sig}"),
                            _ => format!("ExitCode:{}", t.exit_code),
                        },
                    };
                } else if c.ready && state.running.is_some() {
                    has_running = true;
                    ready += 1;
                }
            }
            if reason == "Completed" && has_running {
                reason = if condition_true(conditions, "Ready") {
                    "Running"
                } else {
                    "NotReady"
                }
                .into();
            }
        }

        if pod.metadata.deletion_timestamp.is_some() {
            if status.reason.as_deref() == Some("NodeLost") {
                reason = "Unknown".into();
            } else if phase != "Succeeded" && phase != "Failed" {
                reason = "Terminating".into();
            }
        }

        PodRow {
            ready,
            total,
            reason,
            restarts,
            last_restart,
        }
    }
}

fn finished_at(state: Option<&k8s_openapi::api::core::v1::ContainerState>) -> Option<Timestamp> {
    state?
        .terminated
        .as_ref()?
        .finished_at
        .as_ref()
        .map(|t| t.0)
}

fn later(latest: &mut Option<Timestamp>, candidate: Option<Timestamp>) {
    if let Some(c) = candidate {
        if latest.is_none_or(|l| l < c) {
            *latest = Some(c);
        }
    }
}

fn condition_true(conditions: &[PodCondition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

#[cfg(test)]
mod tests;
