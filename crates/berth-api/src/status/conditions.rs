//! Kubelet-owned pod conditions (pkg/kubelet/status/generate.go,
//! docs/kubelet-semantics.md §5.2).

use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::pod::{init_containers, is_restartable_init_container, is_started};

pub const UNKNOWN_CONTAINER_STATUSES: &str = "UnknownContainerStatuses";
pub const POD_COMPLETED: &str = "PodCompleted";
pub const POD_FAILED: &str = "PodFailed";
pub const CONTAINERS_NOT_READY: &str = "ContainersNotReady";
pub const CONTAINERS_NOT_INITIALIZED: &str = "ContainersNotInitialized";
pub const READINESS_GATES_NOT_READY: &str = "ReadinessGatesNotReady";
/// The condition a pod with `RestartAllContainers` rules carries
/// (RestartAllContainersOnContainerExits, beta and on in v1.36).
pub const ALL_CONTAINERS_RESTARTING: &str = "AllContainersRestarting";
/// Its reason while a container's exit restarts all the pod's containers.
pub const RESTART_ALL_CONTAINERS_STARTED: &str = "RestartAllContainersStarted";

const KUBELET_CONDITIONS: [&str; 8] = [
    "PodScheduled",
    "Ready",
    "Initialized",
    "ContainersReady",
    "PodReadyToStartContainers",
    "PodResizePending",
    "PodResizeInProgress",
    ALL_CONTAINERS_RESTARTING,
];

/// Conditions the kubelet regenerates (everything else is preserved).
pub fn is_kubelet_condition(condition_type: &str) -> bool {
    KUBELET_CONDITIONS.contains(&condition_type)
}

/// The kubelet-owned conditions, in the kubelet's order:
/// PodReadyToStartContainers, Initialized, Ready, ContainersReady,
/// PodScheduled. `lastTransitionTime` comes from the same condition in
/// `previous` unless its status flipped, else `now`. Readiness gates are
/// looked up among the non-kubelet conditions of `previous`. Foreign
/// conditions are not returned; see `with_foreign_conditions`.
pub fn pod_conditions(
    spec: &PodSpec,
    init_statuses: &[ContainerStatus],
    statuses: &[ContainerStatus],
    phase: &str,
    sandbox_ready: bool,
    previous: &[PodCondition],
    now: Time,
) -> Vec<PodCondition> {
    // The kubelet passes `append(initStatuses, statuses...)`, nil when both are.
    let all: Option<Vec<&ContainerStatus>> = (!init_statuses.is_empty() || !statuses.is_empty())
        .then(|| init_statuses.iter().chain(statuses).collect());
    let all = all.as_deref();

    let ready_to_start = condition("PodReadyToStartContainers", sandbox_ready, None, None);
    let initialized = initialized_condition(spec, all, phase, previous);
    let containers_ready = containers_ready_condition(spec, all, phase);
    let mut gate_conditions: Vec<&PodCondition> = previous
        .iter()
        .filter(|c| !is_kubelet_condition(&c.type_))
        .collect();
    gate_conditions.extend([&ready_to_start, &initialized]);
    let ready = ready_condition(spec, &containers_ready, &gate_conditions);
    let scheduled = condition("PodScheduled", true, None, None);

    [
        ready_to_start,
        initialized,
        ready,
        containers_ready,
        scheduled,
    ]
    .into_iter()
    .map(|c| with_transition_time(c, previous, &now))
    .collect()
}

/// `c` with the `lastTransitionTime` of the same condition in `previous`
/// unless its status flipped, else `now`.
fn with_transition_time(
    mut c: PodCondition,
    previous: &[PodCondition],
    now: &Time,
) -> PodCondition {
    let old = previous.iter().find(|o| o.type_ == c.type_);
    c.last_transition_time = match old {
        Some(o) if o.status == c.status => o.last_transition_time.clone().or(Some(now.clone())),
        _ => Some(now.clone()),
    };
    c
}

/// The `AllContainersRestarting` condition, which only a pod with a
/// `RestartAllContainers` rule carries (`AllContainersCouldRestart`): True
/// from a matching exit until every container of the pod is removed
/// (`restarting`), False once the pod is done (the kubelet's
/// `GenerateAllContainersRestartingCondition`).
pub fn all_containers_restarting_condition(
    spec: &PodSpec,
    phase: &str,
    restarting: bool,
    previous: &[PodCondition],
    now: Time,
) -> Option<PodCondition> {
    if !crate::restart_rules::all_containers_could_restart(spec) {
        return None;
    }
    let c = match phase {
        "Succeeded" => condition(ALL_CONTAINERS_RESTARTING, false, Some(POD_COMPLETED), None),
        "Failed" => condition(ALL_CONTAINERS_RESTARTING, false, Some(POD_FAILED), None),
        _ if restarting => condition(
            ALL_CONTAINERS_RESTARTING,
            true,
            Some(RESTART_ALL_CONTAINERS_STARTED),
            Some("container exited with restart policy rule".into()),
        ),
        _ => condition(ALL_CONTAINERS_RESTARTING, false, None, None),
    };
    Some(with_transition_time(c, previous, &now))
}

/// `previous`'s non-kubelet conditions followed by `generated`: the pod's
/// full condition list as the kubelet publishes it.
pub fn with_foreign_conditions(
    previous: &[PodCondition],
    generated: Vec<PodCondition>,
) -> Vec<PodCondition> {
    previous
        .iter()
        .filter(|c| !is_kubelet_condition(&c.type_))
        .cloned()
        .chain(generated)
        .collect()
}

fn condition(
    type_: &str,
    status: bool,
    reason: Option<&str>,
    message: Option<String>,
) -> PodCondition {
    PodCondition {
        type_: type_.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: reason.map(Into::into),
        message: message.filter(|m| !m.is_empty()),
        ..Default::default()
    }
}

/// Go's `%s` of a `[]string`: `[a b]`.
fn go_list(names: &[&str]) -> String {
    format!("[{}]", names.join(" "))
}

/// First status with this name among the init and regular ones.
fn find_status<'a>(all: &[&'a ContainerStatus], name: &str) -> Option<&'a ContainerStatus> {
    all.iter().find(|s| s.name == name).copied()
}

fn initialized_condition(
    spec: &PodSpec,
    all: Option<&[&ContainerStatus]>,
    phase: &str,
    previous: &[PodCondition],
) -> PodCondition {
    let inits = init_containers(spec);
    let Some(all) = all else {
        if !inits.is_empty() {
            return condition("Initialized", false, Some(UNKNOWN_CONTAINER_STATUSES), None);
        }
        return initialized_from(spec, &[], &[], &[], phase, previous);
    };
    let mut unknown = Vec::new();
    let mut incomplete = Vec::new();
    for c in inits {
        match find_status(all, &c.name) {
            None => unknown.push(c.name.as_str()),
            Some(s) => {
                let done = if is_restartable_init_container(c) {
                    is_started(s)
                } else {
                    s.ready
                };
                if !done {
                    incomplete.push(c.name.as_str());
                }
            }
        }
    }
    initialized_from(spec, all, &unknown, &incomplete, phase, previous)
}

fn initialized_from(
    spec: &PodSpec,
    all: &[&ContainerStatus],
    unknown: &[&str],
    incomplete: &[&str],
    phase: &str,
    previous: &[PodCondition],
) -> PodCondition {
    if phase == "Succeeded" && unknown.is_empty() {
        return condition("Initialized", true, Some(POD_COMPLETED), None);
    }
    // A regular container that ever started means initialization happened,
    // even while sidecars restart.
    let regular_started = spec.containers.iter().any(|c| {
        find_status(all, &c.name).is_some_and(|s| {
            s.state
                .as_ref()
                .is_some_and(|st| st.running.is_some() || st.terminated.is_some())
        })
    });
    if regular_started {
        return condition("Initialized", true, None, None);
    }
    let mut messages = Vec::new();
    if !unknown.is_empty() {
        messages.push(format!(
            "containers with unknown status: {}",
            go_list(unknown)
        ));
    }
    if !incomplete.is_empty() {
        messages.push(format!(
            "containers with incomplete status: {}",
            go_list(incomplete)
        ));
    }
    if messages.is_empty() {
        return condition("Initialized", true, None, None);
    }
    // A pod once initialized stays so while a RestartAllContainers restart
    // runs its init containers again (RestartAllContainersOnContainerExits).
    let was_initialized = previous
        .iter()
        .any(|c| c.type_ == "Initialized" && c.status == "True");
    if was_initialized {
        return condition("Initialized", true, None, None);
    }
    condition(
        "Initialized",
        false,
        Some(CONTAINERS_NOT_INITIALIZED),
        Some(messages.join(", ")),
    )
}

fn containers_ready_condition(
    spec: &PodSpec,
    all: Option<&[&ContainerStatus]>,
    phase: &str,
) -> PodCondition {
    let Some(all) = all else {
        return condition(
            "ContainersReady",
            false,
            Some(UNKNOWN_CONTAINER_STATUSES),
            None,
        );
    };
    let mut unknown = Vec::new();
    let mut unready = Vec::new();
    let sidecars = init_containers(spec)
        .iter()
        .filter(|c| is_restartable_init_container(c));
    for c in sidecars.chain(&spec.containers) {
        match find_status(all, &c.name) {
            None => unknown.push(c.name.as_str()),
            Some(s) if !s.ready => unready.push(c.name.as_str()),
            Some(_) => {}
        }
    }
    if (phase == "Succeeded" && unknown.is_empty()) || phase == "Failed" {
        let reason = if phase == "Failed" {
            POD_FAILED
        } else {
            POD_COMPLETED
        };
        return condition("ContainersReady", false, Some(reason), None);
    }
    let mut messages = Vec::new();
    if !unknown.is_empty() {
        messages.push(format!(
            "containers with unknown status: {}",
            go_list(&unknown)
        ));
    }
    if !unready.is_empty() {
        messages.push(format!(
            "containers with unready status: {}",
            go_list(&unready)
        ));
    }
    if messages.is_empty() {
        return condition("ContainersReady", true, None, None);
    }
    condition(
        "ContainersReady",
        false,
        Some(CONTAINERS_NOT_READY),
        Some(messages.join(", ")),
    )
}

fn ready_condition(
    spec: &PodSpec,
    containers_ready: &PodCondition,
    conditions: &[&PodCondition],
) -> PodCondition {
    if containers_ready.status != "True" {
        return PodCondition {
            type_: "Ready".into(),
            ..containers_ready.clone()
        };
    }
    let mut messages = Vec::new();
    for gate in spec.readiness_gates.iter().flatten() {
        let gate_type = &gate.condition_type;
        match conditions.iter().find(|c| &c.type_ == gate_type) {
            None => messages.push(format!(
                "corresponding condition of pod readiness gate {gate_type:?} does not exist."
            )),
            Some(c) if c.status != "True" => messages.push(format!(
                "the status of pod readiness gate {gate_type:?} is not \"True\", but {}",
                c.status
            )),
            Some(_) => {}
        }
    }
    if messages.is_empty() {
        return condition("Ready", true, None, None);
    }
    condition(
        "Ready",
        false,
        Some(READINESS_GATES_NOT_READY),
        Some(messages.join(", ")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{
        after_exit, at, container, ready, running, running_unstarted, sidecar, spec_with,
        terminated, waiting,
    };
    use k8s_openapi::api::core::v1::{ContainerRestartRule, PodReadinessGate};

    /// (type, status, reason, message) in the kubelet's order.
    type Row = (
        &'static str,
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
    );

    fn rows(conditions: &[PodCondition]) -> Vec<(String, String, Option<String>, Option<String>)> {
        conditions
            .iter()
            .map(|c| {
                (
                    c.type_.clone(),
                    c.status.clone(),
                    c.reason.clone(),
                    c.message.clone(),
                )
            })
            .collect()
    }

    fn expect(want: [Row; 5]) -> Vec<(String, String, Option<String>, Option<String>)> {
        want.iter()
            .map(|(t, s, r, m)| {
                (
                    t.to_string(),
                    s.to_string(),
                    r.map(Into::into),
                    m.map(Into::into),
                )
            })
            .collect()
    }

    fn ok_init(name: &str) -> ContainerStatus {
        ContainerStatus {
            ready: true,
            ..terminated(name, 0, "Completed")
        }
    }

    #[test]
    fn conditions_table() {
        let c = |n: &str| container(n, "busybox");
        struct Case {
            name: &'static str,
            spec: PodSpec,
            init: Vec<ContainerStatus>,
            regular: Vec<ContainerStatus>,
            phase: &'static str,
            sandbox: bool,
            want: [Row; 5],
        }
        let cases = vec![
            Case {
                name: "all ready",
                spec: spec_with(vec![], vec![c("a"), c("b")], "Always"),
                init: vec![],
                regular: vec![ready("a"), ready("b")],
                phase: "Running",
                sandbox: true,
                want: [
                    ("PodReadyToStartContainers", "True", None, None),
                    ("Initialized", "True", None, None),
                    ("Ready", "True", None, None),
                    ("ContainersReady", "True", None, None),
                    ("PodScheduled", "True", None, None),
                ],
            },
            Case {
                name: "no sandbox, no statuses",
                spec: spec_with(vec![], vec![c("a")], "Always"),
                init: vec![],
                regular: vec![],
                phase: "Pending",
                sandbox: false,
                want: [
                    ("PodReadyToStartContainers", "False", None, None),
                    ("Initialized", "True", None, None),
                    ("Ready", "False", Some("UnknownContainerStatuses"), None),
                    ("ContainersReady", "False", Some("UnknownContainerStatuses"), None),
                    ("PodScheduled", "True", None, None),
                ],
            },
            Case {
                name: "init containers without statuses",
                spec: spec_with(vec![c("i")], vec![c("a")], "Always"),
                init: vec![],
                regular: vec![],
                phase: "Pending",
                sandbox: true,
                want: [
                    ("PodReadyToStartContainers", "True", None, None),
                    ("Initialized", "False", Some("UnknownContainerStatuses"), None),
                    ("Ready", "False", Some("UnknownContainerStatuses"), None),
                    ("ContainersReady", "False", Some("UnknownContainerStatuses"), None),
                    ("PodScheduled", "True", None, None),
                ],
            },
            Case {
                name: "one unready, one unknown",
                spec: spec_with(vec![], vec![c("a"), c("b"), c("d")], "Always"),
                init: vec![],
                regular: vec![running("a"), ready("b")],
                phase: "Pending",
                sandbox: true,
                want: [
                    ("PodReadyToStartContainers", "True", None, None),
                    ("Initialized", "True", None, None),
                    ("Ready", "False", Some("ContainersNotReady"), Some("containers with unknown status: [d], containers with unready status: [a]")),
                    ("ContainersReady", "False", Some("ContainersNotReady"), Some("containers with unknown status: [d], containers with unready status: [a]")),
                    ("PodScheduled", "True", None, None),
                ],
            },
            Case {
                name: "initializing",
                spec: spec_with(vec![c("i1"), c("i2"), c("i3")], vec![c("a"), c("b")], "Always"),
                init: vec![ok_init("i1"), running("i2")],
                regular: vec![waiting("a", "PodInitializing"), waiting("b", "PodInitializing")],
                phase: "Pending",
                sandbox: true,
                want: [
                    ("PodReadyToStartContainers", "True", None, None),
                    ("Initialized", "False", Some("ContainersNotInitialized"), Some("containers with unknown status: [i3], containers with incomplete status: [i2]")),
                    ("Ready", "False", Some("ContainersNotReady"), Some("containers with unready status: [a b]")),
                    ("ContainersReady", "False", Some("ContainersNotReady"), Some("containers with unready status: [a b]")),
                    ("PodScheduled", "True", None, None),
                ],
            },
            Case {
                name: "sidecar not started, then regular starts",
                spec: spec_with(vec![sidecar("s")], vec![c("a")], "Always"),
                init: vec![running_unstarted("s")],
                regular: vec![waiting("a", "PodInitializing")],
                phase: "Pending",
                sandbox: true,
                want: [
                    ("PodReadyToStartContainers", "True", None, None),
                    ("Initialized", "False", Some("ContainersNotInitialized"), Some("containers with incomplete status: [s]")),
                    ("Ready", "False", Some("ContainersNotReady"), Some("containers with unready status: [s a]")),
                    ("ContainersReady", "False", Some("ContainersNotReady"), Some("containers with unready status: [s a]")),
                    ("PodScheduled", "True", None, None),
                ],
            },
            Case {
                name: "sidecar restarting after initialization",
                spec: spec_with(vec![sidecar("s")], vec![c("a")], "Always"),
                init: vec![after_exit(waiting("s", "CrashLoopBackOff"), 1)],
                regular: vec![ready("a")],
                phase: "Running",
                sandbox: true,
                want: [
                    ("PodReadyToStartContainers", "True", None, None),
                    ("Initialized", "True", None, None),
                    ("Ready", "False", Some("ContainersNotReady"), Some("containers with unready status: [s]")),
                    ("ContainersReady", "False", Some("ContainersNotReady"), Some("containers with unready status: [s]")),
                    ("PodScheduled", "True", None, None),
                ],
            },
            Case {
                name: "succeeded",
                spec: spec_with(vec![c("i")], vec![c("a")], "Never"),
                init: vec![ok_init("i")],
                regular: vec![terminated("a", 0, "Completed")],
                phase: "Succeeded",
                sandbox: false,
                want: [
                    ("PodReadyToStartContainers", "False", None, None),
                    ("Initialized", "True", Some("PodCompleted"), None),
                    ("Ready", "False", Some("PodCompleted"), None),
                    ("ContainersReady", "False", Some("PodCompleted"), None),
                    ("PodScheduled", "True", None, None),
                ],
            },
            Case {
                name: "failed while a container still reports ready",
                spec: spec_with(vec![], vec![c("a"), c("b")], "Never"),
                init: vec![],
                regular: vec![terminated("a", 1, "Error"), ready("b")],
                phase: "Failed",
                sandbox: true,
                want: [
                    ("PodReadyToStartContainers", "True", None, None),
                    ("Initialized", "True", None, None),
                    ("Ready", "False", Some("PodFailed"), None),
                    ("ContainersReady", "False", Some("PodFailed"), None),
                    ("PodScheduled", "True", None, None),
                ],
            },
            Case {
                name: "failed init, Never",
                spec: spec_with(vec![c("i")], vec![c("a")], "Never"),
                init: vec![terminated("i", 1, "Error")],
                regular: vec![waiting("a", "PodInitializing")],
                phase: "Failed",
                sandbox: true,
                want: [
                    ("PodReadyToStartContainers", "True", None, None),
                    ("Initialized", "False", Some("ContainersNotInitialized"), Some("containers with incomplete status: [i]")),
                    ("Ready", "False", Some("PodFailed"), None),
                    ("ContainersReady", "False", Some("PodFailed"), None),
                    ("PodScheduled", "True", None, None),
                ],
            },
        ];
        for case in cases {
            let got = pod_conditions(
                &case.spec,
                &case.init,
                &case.regular,
                case.phase,
                case.sandbox,
                &[],
                at(50),
            );
            assert_eq!(rows(&got), expect(case.want), "case {:?}", case.name);
            assert!(
                got.iter().all(|c| c.last_transition_time == Some(at(50))),
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn readiness_gates() {
        let mut spec = spec_with(vec![], vec![container("a", "busybox")], "Always");
        spec.readiness_gates = Some(vec![
            PodReadinessGate {
                condition_type: "example.com/lb".into(),
            },
            PodReadinessGate {
                condition_type: "example.com/dns".into(),
            },
        ]);
        let lb = PodCondition {
            type_: "example.com/lb".into(),
            status: "False".into(),
            ..Default::default()
        };
        let got = pod_conditions(
            &spec,
            &[],
            &[ready("a")],
            "Running",
            true,
            std::slice::from_ref(&lb),
            at(1),
        );
        let ready_cond = &got[2];
        assert_eq!(ready_cond.type_, "Ready");
        assert_eq!(ready_cond.status, "False");
        assert_eq!(ready_cond.reason.as_deref(), Some("ReadinessGatesNotReady"));
        assert_eq!(
            ready_cond.message.as_deref(),
            Some(
                "the status of pod readiness gate \"example.com/lb\" is not \"True\", but False, \
                 corresponding condition of pod readiness gate \"example.com/dns\" does not exist."
            )
        );
        assert_eq!(got[3].status, "True", "ContainersReady ignores gates");

        let dns = PodCondition {
            type_: "example.com/dns".into(),
            status: "True".into(),
            ..Default::default()
        };
        let lb_ok = PodCondition {
            status: "True".into(),
            ..lb
        };
        let got = pod_conditions(
            &spec,
            &[],
            &[ready("a")],
            "Running",
            true,
            &[lb_ok.clone(), dns.clone()],
            at(1),
        );
        assert_eq!(got[2].status, "True");
        let full = with_foreign_conditions(&[lb_ok, got[2].clone(), dns], got.clone());
        let types: Vec<&str> = full.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(
            types,
            [
                "example.com/lb",
                "example.com/dns",
                "PodReadyToStartContainers",
                "Initialized",
                "Ready",
                "ContainersReady",
                "PodScheduled"
            ]
        );
    }

    #[test]
    fn last_transition_time_kept_unless_status_flips() {
        let spec = spec_with(vec![], vec![container("a", "busybox")], "Always");
        let first = pod_conditions(&spec, &[], &[running("a")], "Running", true, &[], at(10));
        let second = pod_conditions(&spec, &[], &[ready("a")], "Running", true, &first, at(20));
        let time_of = |conds: &[PodCondition], t: &str| {
            conds
                .iter()
                .find(|c| c.type_ == t)
                .unwrap()
                .last_transition_time
                .clone()
        };
        assert_eq!(time_of(&second, "PodScheduled"), Some(at(10)));
        assert_eq!(time_of(&second, "Initialized"), Some(at(10)));
        assert_eq!(time_of(&second, "PodReadyToStartContainers"), Some(at(10)));
        assert_eq!(time_of(&second, "Ready"), Some(at(20)));
        assert_eq!(time_of(&second, "ContainersReady"), Some(at(20)));
        // Same status, different reason: the time stays.
        let third = pod_conditions(
            &spec,
            &[],
            &[terminated("a", 0, "Completed")],
            "Succeeded",
            false,
            &second,
            at(30),
        );
        assert_eq!(time_of(&third, "Ready"), Some(at(30)));
        let fourth = pod_conditions(
            &spec,
            &[],
            &[terminated("a", 0, "Completed")],
            "Succeeded",
            false,
            &third,
            at(40),
        );
        assert_eq!(time_of(&fourth, "Ready"), Some(at(30)));
        assert_eq!(time_of(&fourth, "PodReadyToStartContainers"), Some(at(30)));
    }

    #[test]
    fn all_containers_restarting_only_with_such_a_rule() {
        let mut source = container("a", "busybox");
        source.restart_policy = Some("Never".into());
        let mut spec = spec_with(vec![], vec![source], "Never");
        assert_eq!(
            all_containers_restarting_condition(&spec, "Running", true, &[], at(1)),
            None
        );
        spec.containers[0].restart_policy_rules = Some(vec![ContainerRestartRule {
            action: "RestartAllContainers".into(),
            exit_codes: None,
        }]);
        let row = |phase: &str, restarting: bool| {
            let c = all_containers_restarting_condition(&spec, phase, restarting, &[], at(1))
                .expect("carried");
            assert_eq!(c.type_, "AllContainersRestarting");
            (c.status, c.reason, c.message)
        };
        let restarting = (
            "True".to_string(),
            Some("RestartAllContainersStarted".to_string()),
            Some("container exited with restart policy rule".to_string()),
        );
        assert_eq!(row("Running", true), restarting);
        assert_eq!(row("Running", false), ("False".into(), None, None));
        assert_eq!(
            row("Failed", false),
            ("False".into(), Some("PodFailed".into()), None)
        );
        assert_eq!(
            row("Succeeded", false),
            ("False".into(), Some("PodCompleted".into()), None)
        );
        assert!(is_kubelet_condition("AllContainersRestarting"));
    }

    #[test]
    fn an_initialized_pod_stays_initialized_while_its_init_containers_run_again() {
        let spec = spec_with(
            vec![container("setup", "busybox")],
            vec![container("a", "busybox")],
            "Always",
        );
        let again = [waiting("setup", "RestartingAllContainers")];
        let regular = [waiting("a", "RestartingAllContainers")];
        let initialized = |previous: &[PodCondition]| {
            let conds = pod_conditions(&spec, &again, &regular, "Running", true, previous, at(2));
            conds
                .into_iter()
                .find(|c| c.type_ == "Initialized")
                .unwrap()
        };
        assert_eq!(initialized(&[]).status, "False");
        let before = condition("Initialized", true, None, None);
        let kept = initialized(&[before]);
        assert_eq!((kept.status.as_str(), kept.reason), ("True", None));
    }
}
