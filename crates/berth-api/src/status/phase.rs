//! The kubelet's `getPhase` (kubelet_pods.go, docs/kubelet-semantics.md §5.1), with
//! the v1.37 default feature gates: whether an exited container counts as
//! restarting is its own restart policy and rules' say
//! (`podutil.ContainerShouldRestart`), and a container stopped for a
//! `RestartAllContainers` restart always restarts.

use k8s_openapi::api::core::v1::{Container, ContainerStateTerminated, ContainerStatus, PodSpec};

use crate::pod::{
    find_status, init_containers, is_restartable_init_container, is_started, last_terminated,
    running, terminated, waiting,
};
use crate::restart_rules::{container_should_restart, RESTARTING_ALL_CONTAINERS};

/// The pod phase from its container statuses. `pod_is_terminal` is set on the
/// termination path, where nothing will be restarted any more. Whether the
/// pod has initialized is derived from `statuses` (see
/// `any_regular_container_started`); a caller that knows it from the runtime
/// (a regular container of the *current* sandbox started) should use
/// `pod_phase_initialized`.
pub fn pod_phase(
    spec: &PodSpec,
    init_statuses: &[ContainerStatus],
    statuses: &[ContainerStatus],
    pod_is_terminal: bool,
) -> String {
    let initialized = any_regular_container_started(spec, statuses);
    pod_phase_initialized(spec, init_statuses, statuses, pod_is_terminal, initialized)
}

/// A regular container is or was running: running, terminated, or waiting
/// after a previous termination.
pub fn any_regular_container_started(spec: &PodSpec, statuses: &[ContainerStatus]) -> bool {
    spec.containers.iter().any(|c| {
        find_status(statuses, &c.name).is_some_and(|s| {
            running(s).is_some() || terminated(s).is_some() || last_terminated(s).is_some()
        })
    })
}

/// `getPhase` proper; `pod_has_initialized` is the kubelet's
/// `HasAnyActiveRegularContainerStarted`.
pub fn pod_phase_initialized(
    spec: &PodSpec,
    init_statuses: &[ContainerStatus],
    statuses: &[ContainerStatus],
    pod_is_terminal: bool,
    pod_has_initialized: bool,
) -> String {
    // The kubelet looks statuses up by name in regular ++ init statuses.
    let lookup =
        |name: &str| find_status(statuses, name).or_else(|| find_status(init_statuses, name));
    let mut pending_init = 0;
    let mut pending_sidecars = 0;
    let mut failed_init_not_restartable = 0;
    let mut stopped_not_restartable = 0;
    let restartable = |c: &Container, t: &ContainerStateTerminated| {
        container_should_restart(c, spec, t.exit_code)
            || t.reason.as_deref() == Some(RESTARTING_ALL_CONTAINERS)
    };
    let (mut unknown, mut running_n, mut waiting_n, mut stopped, mut succeeded) = (0, 0, 0, 0, 0);

    for c in init_containers(spec) {
        let Some(s) = lookup(&c.name) else {
            if is_restartable_init_container(c) {
                unknown += 1;
            } else {
                pending_init += 1;
            }
            continue;
        };
        if !is_restartable_init_container(c) {
            if running(s).is_some() {
                pending_init += 1;
            } else if let Some(t) = terminated(s) {
                if t.exit_code != 0 && !restartable(c, t) {
                    failed_init_not_restartable += 1;
                }
            } else if waiting(s).is_some() {
                match last_terminated(s) {
                    Some(t) if t.exit_code != 0 && !restartable(c, t) => {
                        failed_init_not_restartable += 1
                    }
                    Some(_) => {}
                    None => pending_init += 1,
                }
            } else {
                pending_init += 1;
            }
        } else if running(s).is_some() {
            if !is_started(s) {
                pending_sidecars += 1;
            }
            running_n += 1;
        } else if terminated(s).is_some() {
            // An exited sidecar does not count toward the phase.
        } else if waiting(s).is_some() {
            if last_terminated(s).is_none() {
                pending_sidecars += 1;
                waiting_n += 1;
            }
        } else {
            pending_sidecars += 1;
            unknown += 1;
        }
    }

    for c in &spec.containers {
        let Some(s) = lookup(&c.name) else {
            unknown += 1;
            continue;
        };
        if running(s).is_some() {
            running_n += 1;
        } else if let Some(t) = terminated(s) {
            stopped += 1;
            if !restartable(c, t) {
                stopped_not_restartable += 1;
            }
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if waiting(s).is_some() {
            if let Some(t) = last_terminated(s) {
                stopped += 1;
                if !restartable(c, t) {
                    stopped_not_restartable += 1;
                }
            } else {
                waiting_n += 1;
            }
        } else {
            unknown += 1;
        }
    }

    let phase = if failed_init_not_restartable > 0 {
        "Failed"
    } else if pending_init > 0 || (pending_sidecars > 0 && !pod_has_initialized) || waiting_n > 0 {
        "Pending"
    } else if running_n > 0 && unknown == 0 {
        "Running"
    } else if running_n == 0 && stopped > 0 && unknown == 0 {
        if pod_is_terminal {
            // Nothing restarts any more, whatever the policy says.
            if stopped == succeeded {
                "Succeeded"
            } else {
                "Failed"
            }
        } else if stopped != stopped_not_restartable {
            // Containers about to restart keep the pod Running.
            "Running"
        } else if stopped == succeeded {
            "Succeeded"
        } else {
            "Failed"
        }
    } else {
        "Pending"
    };
    phase.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{
        after_exit, container, ready, running as run, running_unstarted, sidecar, spec_with,
        terminated as exited, waiting as wait,
    };

    fn c(name: &str) -> k8s_openapi::api::core::v1::Container {
        container(name, "busybox")
    }

    struct Case {
        name: &'static str,
        policy: &'static str,
        init: Vec<k8s_openapi::api::core::v1::Container>,
        regular: Vec<&'static str>,
        init_statuses: Vec<ContainerStatus>,
        statuses: Vec<ContainerStatus>,
        terminal: bool,
        want: &'static str,
    }

    fn case(name: &'static str, policy: &'static str, want: &'static str) -> Case {
        Case {
            name,
            policy,
            init: vec![],
            regular: vec!["a", "b"],
            init_statuses: vec![],
            statuses: vec![],
            terminal: false,
            want,
        }
    }

    impl Case {
        fn init(
            mut self,
            init: Vec<k8s_openapi::api::core::v1::Container>,
            st: Vec<ContainerStatus>,
        ) -> Self {
            self.init = init;
            self.init_statuses = st;
            self
        }
        fn regular(mut self, names: Vec<&'static str>) -> Self {
            self.regular = names;
            self
        }
        fn st(mut self, st: Vec<ContainerStatus>) -> Self {
            self.statuses = st;
            self
        }
        fn terminal(mut self) -> Self {
            self.terminal = true;
            self
        }
    }

    fn cases() -> Vec<Case> {
        vec![
            // Regular containers only.
            case("no statuses yet", "Always", "Pending"),
            case("all waiting", "Always", "Pending").st(vec![
                wait("a", "ContainerCreating"),
                wait("b", "ContainerCreating"),
            ]),
            case("one running one waiting", "Always", "Pending")
                .st(vec![run("a"), wait("b", "ContainerCreating")]),
            case("one running one missing", "Always", "Pending").st(vec![run("a")]),
            case("all running", "Always", "Running").st(vec![run("a"), ready("b")]),
            case("running and exited", "Never", "Running")
                .st(vec![run("a"), exited("b", 1, "Error")]),
            case("running and crash-looping", "Always", "Running")
                .st(vec![run("a"), after_exit(wait("b", "CrashLoopBackOff"), 1)]),
            case("all exited 0, Always", "Always", "Running").st(vec![
                exited("a", 0, "Completed"),
                exited("b", 0, "Completed"),
            ]),
            case("all exited 0, OnFailure", "OnFailure", "Succeeded").st(vec![
                exited("a", 0, "Completed"),
                exited("b", 0, "Completed"),
            ]),
            case("all exited 0, Never", "Never", "Succeeded").st(vec![
                exited("a", 0, "Completed"),
                exited("b", 0, "Completed"),
            ]),
            case("one failed, Never", "Never", "Failed")
                .st(vec![exited("a", 0, "Completed"), exited("b", 1, "Error")]),
            case("one failed, OnFailure", "OnFailure", "Running")
                .st(vec![exited("a", 0, "Completed"), exited("b", 1, "Error")]),
            case("one failed, Always", "Always", "Running")
                .st(vec![exited("a", 1, "Error"), exited("b", 1, "Error")]),
            case("crash loop waiting counts as stopped", "Always", "Running").st(vec![
                after_exit(wait("a", "CrashLoopBackOff"), 1),
                after_exit(wait("b", "CrashLoopBackOff"), 2),
            ]),
            // Nothing restarts either: with ContainerRestartRules the pod
            // is done, and a waiting container never counts as succeeded.
            case(
                "waiting after exit 0 under OnFailure",
                "OnFailure",
                "Failed",
            )
            .st(vec![
                after_exit(wait("a", "CrashLoopBackOff"), 0),
                exited("b", 0, "Completed"),
            ]),
            case("stopped with one unknown", "Never", "Pending").st(vec![exited(
                "a",
                0,
                "Completed",
            )]),
            case("terminal, all exited 0, Always", "Always", "Succeeded")
                .st(vec![
                    exited("a", 0, "Completed"),
                    exited("b", 0, "Completed"),
                ])
                .terminal(),
            case("terminal, SIGTERM exit 143, Always", "Always", "Failed")
                .st(vec![exited("a", 0, "Completed"), exited("b", 143, "Error")])
                .terminal(),
            case("terminal, still running", "Always", "Running")
                .st(vec![run("a"), exited("b", 0, "Completed")])
                .terminal(),
            case("terminal, waiting after exit 0", "Always", "Failed")
                .st(vec![
                    after_exit(wait("a", "CrashLoopBackOff"), 0),
                    exited("b", 0, "Completed"),
                ])
                .terminal(),
            // Regular init containers.
            case("init not started", "Always", "Pending").init(vec![c("i1"), c("i2")], vec![]),
            case("init waiting first time", "Always", "Pending")
                .init(vec![c("i1")], vec![wait("i1", "PodInitializing")])
                .st(vec![
                    wait("a", "PodInitializing"),
                    wait("b", "PodInitializing"),
                ]),
            case("init running", "Always", "Pending").init(vec![c("i1")], vec![run("i1")]),
            case("first init done, second pending", "Always", "Pending").init(
                vec![c("i1"), c("i2")],
                vec![exited("i1", 0, "Completed"), wait("i2", "PodInitializing")],
            ),
            case("init failed, Never", "Never", "Failed")
                .init(vec![c("i1")], vec![exited("i1", 1, "Error")]),
            case("init failed, OnFailure", "OnFailure", "Pending")
                .init(vec![c("i1")], vec![exited("i1", 1, "Error")])
                .st(vec![
                    wait("a", "PodInitializing"),
                    wait("b", "PodInitializing"),
                ]),
            case("init failed, Always", "Always", "Pending")
                .init(vec![c("i1")], vec![exited("i1", 1, "Error")])
                .st(vec![
                    wait("a", "PodInitializing"),
                    wait("b", "PodInitializing"),
                ]),
            case("init crash-looping, Never", "Never", "Failed").init(
                vec![c("i1")],
                vec![after_exit(wait("i1", "CrashLoopBackOff"), 1)],
            ),
            case("init crash-looping, Always", "Always", "Pending")
                .init(
                    vec![c("i1")],
                    vec![after_exit(wait("i1", "CrashLoopBackOff"), 1)],
                )
                .st(vec![
                    wait("a", "PodInitializing"),
                    wait("b", "PodInitializing"),
                ]),
            case("init waiting after exit 0 is done", "Always", "Running")
                .init(vec![c("i1")], vec![after_exit(wait("i1", ""), 0)])
                .st(vec![run("a"), run("b")]),
            case("inits done, containers running", "Always", "Running")
                .init(
                    vec![c("i1"), c("i2")],
                    vec![exited("i1", 0, "Completed"), exited("i2", 0, "Completed")],
                )
                .st(vec![run("a"), run("b")]),
            case("inits done, containers creating", "Always", "Pending")
                .init(vec![c("i1")], vec![exited("i1", 0, "Completed")])
                .st(vec![
                    wait("a", "ContainerCreating"),
                    wait("b", "ContainerCreating"),
                ]),
            case("inits done, all succeeded, Never", "Never", "Succeeded")
                .init(vec![c("i1")], vec![exited("i1", 0, "Completed")])
                .st(vec![
                    exited("a", 0, "Completed"),
                    exited("b", 0, "Completed"),
                ]),
            // Sidecars (init containers with restartPolicy Always).
            case("sidecar missing", "Always", "Pending")
                .init(vec![sidecar("s")], vec![])
                .st(vec![
                    wait("a", "PodInitializing"),
                    wait("b", "PodInitializing"),
                ]),
            case("sidecar waiting first time", "Always", "Pending")
                .init(vec![sidecar("s")], vec![wait("s", "PodInitializing")])
                .st(vec![
                    wait("a", "PodInitializing"),
                    wait("b", "PodInitializing"),
                ]),
            case("sidecar running not started", "Always", "Pending")
                .init(vec![sidecar("s")], vec![running_unstarted("s")])
                .st(vec![
                    wait("a", "PodInitializing"),
                    wait("b", "PodInitializing"),
                ]),
            case("sidecar started, regular creating", "Always", "Pending")
                .init(vec![sidecar("s")], vec![run("s")])
                .st(vec![
                    wait("a", "ContainerCreating"),
                    wait("b", "ContainerCreating"),
                ]),
            case("sidecar and regular running", "Always", "Running")
                .init(vec![sidecar("s")], vec![ready("s")])
                .st(vec![run("a"), run("b")]),
            case(
                "sidecar unstarted after init is Running",
                "Always",
                "Running",
            )
            .init(vec![sidecar("s")], vec![running_unstarted("s")])
            .st(vec![run("a"), run("b")]),
            case("sidecar restarting after init", "Always", "Running")
                .init(
                    vec![sidecar("s")],
                    vec![after_exit(wait("s", "CrashLoopBackOff"), 1)],
                )
                .st(vec![run("a"), run("b")]),
            case("sidecar exited, job done, Never", "Never", "Succeeded")
                .init(vec![sidecar("s")], vec![exited("s", 137, "Error")])
                .st(vec![
                    exited("a", 0, "Completed"),
                    exited("b", 0, "Completed"),
                ]),
            case("sidecar running, job done, Never", "Never", "Running")
                .init(vec![sidecar("s")], vec![run("s")])
                .st(vec![
                    exited("a", 0, "Completed"),
                    exited("b", 0, "Completed"),
                ]),
            case("sidecar running, job failed, Never", "Never", "Running")
                .init(vec![sidecar("s")], vec![run("s")])
                .st(vec![exited("a", 1, "Error"), exited("b", 0, "Completed")]),
            case("sidecar then regular init running", "Always", "Pending")
                .init(vec![sidecar("s"), c("i1")], vec![run("s"), run("i1")]),
            case(
                "sidecar and init done, regular running",
                "OnFailure",
                "Running",
            )
            .init(
                vec![sidecar("s"), c("i1")],
                vec![run("s"), exited("i1", 0, "Completed")],
            )
            .st(vec![run("a"), run("b")]),
            case("terminal, sidecar stopped, job ok", "Never", "Succeeded")
                .init(vec![sidecar("s")], vec![exited("s", 143, "Error")])
                .st(vec![
                    exited("a", 0, "Completed"),
                    exited("b", 0, "Completed"),
                ])
                .terminal(),
            // Single container pods.
            case("single succeeded, Never", "Never", "Succeeded")
                .regular(vec!["a"])
                .st(vec![exited("a", 0, "Completed")]),
            case("single failed, Never", "Never", "Failed")
                .regular(vec!["a"])
                .st(vec![exited("a", 2, "Error")]),
            case("single OOM, OnFailure", "OnFailure", "Running")
                .regular(vec!["a"])
                .st(vec![exited("a", 137, "OOMKilled")]),
        ]
    }

    #[test]
    fn get_phase_table() {
        for case in cases() {
            let regular = case.regular.iter().map(|n| c(n)).collect();
            let spec = spec_with(case.init, regular, case.policy);
            let got = pod_phase(&spec, &case.init_statuses, &case.statuses, case.terminal);
            assert_eq!(got, case.want, "case {:?}", case.name);
        }
    }

    #[test]
    fn containers_own_restart_policy_and_rules_decide_what_restarts() {
        use k8s_openapi::api::core::v1::{ContainerRestartRule, ContainerRestartRuleOnExitCodes};
        let with = |policy: &str, rule: Option<i32>| {
            let mut a = c("a");
            a.restart_policy = Some(policy.into());
            a.restart_policy_rules = rule.map(|code| {
                vec![ContainerRestartRule {
                    action: "Restart".into(),
                    exit_codes: Some(ContainerRestartRuleOnExitCodes {
                        operator: "In".into(),
                        values: Some(vec![code]),
                    }),
                }]
            });
            a
        };
        let phase = |a, pod_policy, st: ContainerStatus| {
            let spec = spec_with(vec![], vec![a], pod_policy);
            pod_phase(&spec, &[], &[st], false)
        };
        let done = || exited("a", 0, "Completed");
        let failed = |code| exited("a", code, "Error");
        assert_eq!(phase(with("Always", None), "Never", done()), "Running");
        assert_eq!(phase(with("Never", None), "Always", failed(1)), "Failed");
        assert_eq!(
            phase(with("OnFailure", None), "Always", done()),
            "Succeeded"
        );
        assert_eq!(
            phase(with("Never", Some(42)), "Never", failed(42)),
            "Running"
        );
        assert_eq!(
            phase(with("Never", Some(42)), "Never", failed(41)),
            "Failed"
        );
        let crashing = after_exit(wait("a", "CrashLoopBackOff"), 42);
        assert_eq!(phase(with("Never", Some(42)), "Never", crashing), "Running");
        // Stopped for a RestartAllContainers restart: it runs again.
        let reset = exited("a", 137, RESTARTING_ALL_CONTAINERS);
        assert_eq!(phase(c("a"), "Never", reset), "Running");

        // An init container that may not restart fails the pod.
        let mut setup = c("setup");
        setup.restart_policy = Some("Never".into());
        let spec = spec_with(vec![setup.clone()], vec![c("a")], "Always");
        let st = [exited("setup", 1, "Error")];
        assert_eq!(pod_phase(&spec, &st, &[], false), "Failed");
        setup.restart_policy = Some("OnFailure".into());
        let spec = spec_with(vec![setup], vec![c("a")], "Never");
        assert_eq!(pod_phase(&spec, &st, &[], false), "Pending");
    }

    #[test]
    fn runtime_knowledge_of_initialization_overrides_the_derived_one() {
        // A regular container ran before (lastState), so from the API statuses
        // the pod looks initialized; after a sandbox re-creation the runtime
        // knows better.
        let spec = spec_with(vec![sidecar("s")], vec![c("a")], "Always");
        let init = vec![running_unstarted("s")];
        let statuses = vec![after_exit(wait("a", "PodInitializing"), 0)];
        assert_eq!(pod_phase(&spec, &init, &statuses, false), "Running");
        assert_eq!(
            pod_phase_initialized(&spec, &init, &statuses, false, true),
            "Running"
        );
        assert_eq!(
            pod_phase_initialized(&spec, &init, &statuses, false, false),
            "Pending"
        );
    }
}
