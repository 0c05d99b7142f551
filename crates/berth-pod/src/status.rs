//! The pod's API status, built from the worker's records as the kubelet's
//! `generateAPIPodStatus` builds it (docs/kubelet-semantics.md §4, §5).

use berth_api::restart_rules::{RESTARTING_ALL_CONTAINERS, RESTARTING_ALL_CONTAINERS_MESSAGE};
use berth_api::status as rules;
use berth_runtime::{ContainerKind, ContainerRuntime};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, PodCondition, PodIP, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::record::{ContainerRecord, Instance, InstanceState};
use crate::sink::PodSink;
use crate::worker::Worker;

fn terminated(instance: &Instance) -> Option<ContainerStateTerminated> {
    let InstanceState::Exited {
        started_at,
        exit,
        reason,
        message,
        ..
    } = &instance.state
    else {
        return None;
    };
    Some(ContainerStateTerminated {
        exit_code: exit.exit_code,
        reason: Some(reason.clone()),
        message: message.clone(),
        started_at: started_at.map(Time),
        finished_at: Some(Time(exit.finished_at)),
        container_id: Some(format!("containerd://{}", instance.id)),
        signal: None,
    })
}

/// The last state of a container a restart of all containers removed, as
/// the kubelet's `convertToAPIContainerStatuses` makes it up: the instance
/// is gone, and how it ended went with it.
fn removed_for_restart_all() -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: 137,
        reason: Some(RESTARTING_ALL_CONTAINERS.into()),
        message: Some(RESTARTING_ALL_CONTAINERS_MESSAGE.into()),
        ..Default::default()
    }
}

/// `probed` is `(started, ready)` as the container's probes say (docs/kubelet-semantics.md §8.8).
fn container_status(
    rec: &ContainerRecord,
    spec_image: &str,
    has_init: bool,
    probed: (bool, bool),
) -> ContainerStatus {
    let current = rec.current.as_ref();
    let running = current.is_some_and(Instance::is_running);
    let state = if let Some(waiting) = &rec.waiting {
        ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(waiting.reason.clone()),
                message: Some(waiting.message.clone()),
            }),
            ..Default::default()
        }
    } else {
        match current.map(|c| (&c.state, c)) {
            Some((InstanceState::Running { started_at }, _)) => ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(Time(*started_at)),
                }),
                ..Default::default()
            },
            Some((InstanceState::Created, _)) => ContainerState {
                waiting: Some(ContainerStateWaiting::default()),
                ..Default::default()
            },
            Some((InstanceState::Exited { .. }, instance)) => ContainerState {
                terminated: terminated(instance),
                ..Default::default()
            },
            None => rules::default_waiting_state(has_init),
        }
    };
    // While waiting to restart, the run that ended is the last state.
    let last = if rec.waiting.is_some() && current.is_some_and(|c| c.exit().is_some()) {
        current
    } else {
        rec.previous.as_ref()
    };
    let last_state = last
        .and_then(terminated)
        .or_else(|| rec.reset.map(|_| removed_for_restart_all()))
        .map(|t| ContainerState {
            terminated: Some(t),
            ..Default::default()
        });
    let ready = match rec.kind {
        ContainerKind::Init => rec.succeeded(),
        // The prober manager sets no readiness for ephemeral containers.
        ContainerKind::Ephemeral => false,
        ContainerKind::Sidecar | ContainerKind::Regular => running && probed.1,
    };
    // Nor does it say whether they started.
    let started = (rec.kind != ContainerKind::Ephemeral).then_some(running && probed.0);
    ContainerStatus {
        name: rec.name.clone(),
        image: current.map_or_else(|| spec_image.to_string(), |c| c.image.reference.clone()),
        image_id: current.map_or_else(String::new, |c| {
            if c.image.digest.is_empty() {
                String::new()
            } else {
                c.image.image_id()
            }
        }),
        container_id: current.map(|c| format!("containerd://{}", c.id)),
        state: Some(state),
        last_state: Some(last_state.unwrap_or_default()),
        ready,
        restart_count: rec.restart_count() as i32,
        started,
        // Reported for containers the runtime has (kubelet
        // `convertToAPIContainerStatuses`).
        resources: current
            .map(|c| crate::resources::status_resources(&rec.allocated, &c.actuated, running)),
        allocated_resources: current
            .and_then(|_| crate::resources::allocated_resources(&rec.allocated)),
        ..Default::default()
    }
}

/// The container statuses of each kind.
pub(crate) struct Statuses {
    /// Init containers (sidecars among them), in spec order.
    pub init: Vec<ContainerStatus>,
    /// Regular containers, in spec order.
    pub regular: Vec<ContainerStatus>,
    /// Ephemeral containers, by name (the status manager's
    /// `normalizeStatus` sorts them).
    pub ephemeral: Vec<ContainerStatus>,
}

/// The container statuses of the worker's records.
pub(crate) fn container_statuses<R: ContainerRuntime, S: PodSink>(w: &Worker<R, S>) -> Statuses {
    container_statuses_of(&w.records, w.spec(), &w.ephemeral, |i| w.probe_status(i))
}

/// [`container_statuses`] from the records alone; `probed(i)` is record
/// `i`'s `(started, ready)` as its probes say.
pub(crate) fn container_statuses_of(
    records: &[ContainerRecord],
    spec: &PodSpec,
    ephemeral: &[Container],
    probed: impl Fn(usize) -> (bool, bool),
) -> Statuses {
    // The kubelet shares 12 KiB of messages evenly among the pod's containers.
    let share = crate::termination_message::POD_LIMIT / records.len().max(1);
    let has_init = records
        .iter()
        .any(|r| matches!(r.kind, ContainerKind::Init | ContainerKind::Sidecar));
    let mut statuses = Statuses {
        init: Vec::new(),
        regular: Vec::new(),
        ephemeral: Vec::new(),
    };
    for (i, rec) in records.iter().enumerate() {
        let image = crate::plan::spec_container(spec, ephemeral, i)
            .and_then(|c| c.image.as_deref())
            .unwrap_or_default();
        let mut status = container_status(rec, image, has_init, probed(i));
        for state in [status.state.as_mut(), status.last_state.as_mut()]
            .into_iter()
            .flatten()
        {
            if let Some(message) = state.terminated.as_mut().and_then(|t| t.message.as_mut()) {
                crate::termination_message::truncate(message, share);
            }
        }
        match rec.kind {
            ContainerKind::Regular => statuses.regular.push(status),
            ContainerKind::Ephemeral => statuses.ephemeral.push(status),
            ContainerKind::Init | ContainerKind::Sidecar => statuses.init.push(status),
        }
    }
    statuses.ephemeral.sort_by(|a, b| a.name.cmp(&b.name));
    statuses
}

pub(crate) fn pod_status<R: ContainerRuntime, S: PodSink>(
    w: &Worker<R, S>,
    pod_is_terminal: bool,
) -> PodStatus {
    let Statuses {
        init,
        regular,
        ephemeral,
    } = container_statuses(w);
    let spec = w.spec();
    // The kubelet's `mergePodStatus`: a pod that could still have running
    // containers is not reported terminal (what it holds exclusively is not
    // yet released). Its phase, reason and message wait until they stopped.
    let still_running = init.iter().chain(&regular).chain(&ephemeral).any(|s| {
        s.state
            .as_ref()
            .is_some_and(|state| state.running.is_some())
    });
    let terminal_held_back = still_running && w.stage.phase().is_some();
    let phase = if terminal_held_back {
        rules::pod_phase(spec, &init, &regular, false)
    } else {
        w.phase_of(&init, &regular, pod_is_terminal)
    };
    let terminal_reason = w.terminal_reason.as_ref().filter(|_| !terminal_held_back);
    // Ready to start containers: made, and its network set up.
    let sandbox_ready = w.sandbox.ready().is_some()
        && w.network.is_none()
        && !pod_is_terminal
        && w.stage.phase().is_none();
    // Conditions others own (readiness gates, DisruptionTarget) come with
    // the pod; they are kept, and the readiness gates read, as the
    // kubelet's status manager keeps and reads them.
    let foreign: Vec<PodCondition> = w
        .pod
        .status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .filter(|c| !rules::is_kubelet_condition(&c.type_))
        .cloned()
        .collect();
    let own = w
        .conditions
        .iter()
        .filter(|c| rules::is_kubelet_condition(&c.type_));
    let previous: Vec<PodCondition> = foreign.iter().cloned().chain(own.cloned()).collect();
    let now = Time(Timestamp::now());
    let mut generated = rules::pod_conditions(
        spec,
        &init,
        &regular,
        &phase,
        sandbox_ready,
        &previous,
        now.clone(),
    );
    generated.extend(rules::all_containers_restarting_condition(
        spec,
        &phase,
        w.restarting_all,
        &previous,
        now,
    ));
    let mut conditions = rules::with_foreign_conditions(&foreign, generated);
    conditions.extend(w.resize.list());
    let pod_ips = w.pod_ips();
    PodStatus {
        phase: Some(phase),
        conditions: Some(conditions),
        host_ip: Some(w.cfg.host_ip.clone()),
        host_ips: Some(vec![HostIP {
            ip: w.cfg.host_ip.clone(),
        }]),
        pod_ip: pod_ips.first().cloned(),
        pod_ips: (!pod_ips.is_empty())
            .then(|| pod_ips.into_iter().map(|ip| PodIP { ip }).collect()),
        start_time: Some(Time(w.start_time)),
        init_container_statuses: (!init.is_empty()).then_some(init),
        container_statuses: Some(regular),
        ephemeral_container_statuses: (!ephemeral.is_empty()).then_some(ephemeral),
        qos_class: Some(rules::qos_class(spec).into()),
        // The generation of the spec this status reflects: a resize shows
        // as observed only once it was admitted and acted on.
        observed_generation: w.pod.metadata.generation.filter(|g| *g > 0),
        reason: terminal_reason.map(|(r, _)| r.clone()),
        message: terminal_reason.map(|(_, m)| m.clone()),
        ..Default::default()
    }
}
